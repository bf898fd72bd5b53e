//! Delegated IPAM, as the specification describes it: the IPAM plugin named
//! by the configuration's `ipam.type` is found in `CNI_PATH` and run with
//! the same environment and stdin; its result gives the addresses.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Env;
use crate::reply::{AddResult, CniError, Code};

/// How long an IPAM plugin may take (the `dhcp` plugin waits for a lease).
const TIMEOUT: Duration = Duration::from_secs(60);

/// How long its output may stay open after it exited (a child it left
/// behind holding the pipe).
const GRACE: Duration = Duration::from_secs(1);

/// The most read of its stdout and of its stderr.
const MAX_OUTPUT: usize = 1 << 20;

/// Runs the IPAM plugin `name` for `command` (`ADD`, `DEL`, `CHECK`, `GC`,
/// `STATUS`) with `stdin`, the configuration as received. Returns its
/// stdout's JSON (`None` when it printed nothing, as `DEL` does). It runs in
/// a process group of its own, fed and read on threads of this process, and
/// everything it started is killed when it overruns [`TIMEOUT`] or leaves
/// its output open past [`GRACE`] after exiting.
pub fn run(name: &str, command: &str, env: &Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let path = find(name, &env.path)?;
    let failed = |what: String| CniError::new(Code::Failed, what);
    let mut child = Process::new(&path)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            failed(format!(
                "cannot run the IPAM plugin {}: {e}",
                path.display()
            ))
        })?;
    let group = child.id();
    let (done, finished) = mpsc::channel::<(&'static str, Vec<u8>, bool)>();
    if let Some(mut input) = child.stdin.take() {
        let data = stdin.to_vec();
        // A plugin that never reads its stdin blocks this thread only.
        std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
    }
    let mut readers = 0;
    if let Some(out) = child.stdout.take() {
        spawn_reader("stdout", out, done.clone());
        readers += 1;
    }
    if let Some(err) = child.stderr.take() {
        spawn_reader("stderr", err, done.clone());
        readers += 1;
    }
    drop(done);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                kill_group(group);
                let _ = child.wait();
                return Err(CniError::new(
                    Code::TryAgainLater,
                    format!(
                        "the IPAM plugin {name} did not answer {command} within {}s",
                        TIMEOUT.as_secs()
                    ),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(failed(format!("waiting for the IPAM plugin {name}: {e}"))),
        }
    };
    let (mut stdout, mut stderr, mut overflow) = (Vec::new(), Vec::new(), false);
    let mut killed = false;
    while readers > 0 {
        match finished.recv_timeout(GRACE) {
            Ok((which, bytes, over)) => {
                readers -= 1;
                overflow |= over && which == "stdout";
                if which == "stdout" {
                    stdout = bytes;
                } else {
                    stderr = bytes;
                }
            }
            // Something it left behind holds the pipe: ended, then read on.
            Err(mpsc::RecvTimeoutError::Timeout) if !killed => {
                kill_group(group);
                killed = true;
            }
            Err(_) => break,
        }
    }
    if overflow {
        return Err(failed(format!(
            "the IPAM plugin {name} answered {command} with more than {MAX_OUTPUT} bytes"
        )));
    }
    let text = String::from_utf8_lossy(&stdout);
    let value: Option<Value> = if text.trim().is_empty() {
        None
    } else {
        Some(serde_json::from_str(&text).map_err(|e| {
            failed(format!(
                "the IPAM plugin {name} answered {command} with something not JSON: {e}"
            ))
        })?)
    };
    let stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
    if !status.success() {
        // Its own error object, passed on with its code.
        let (code, msg) = value
            .as_ref()
            .map(|v| {
                (
                    v.get("code").and_then(Value::as_u64).unwrap_or(100),
                    v.get("msg")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                )
            })
            .unwrap_or((100, stderr.clone()));
        let code = match code {
            1 => Code::IncompatibleVersion,
            3 => Code::UnknownContainer,
            4 => Code::InvalidConfig,
            6 => Code::Decode,
            7 => Code::InvalidEnvironment,
            11 => Code::TryAgainLater,
            50 => Code::NotAvailable,
            _ => Code::Failed,
        };
        return Err(CniError::new(
            code,
            format!("the IPAM plugin {name} failed {command}: {msg}"),
        )
        .details(stderr));
    }
    Ok(value)
}

/// Reads `from` to its end on a thread, keeping at most [`MAX_OUTPUT`]
/// bytes (the rest is read and dropped, so the writer never blocks), and
/// sends what it kept, and whether there was more, on `done`.
fn spawn_reader(
    which: &'static str,
    mut from: impl Read + Send + 'static,
    done: mpsc::Sender<(&'static str, Vec<u8>, bool)>,
) {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut over = false;
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buffer[..n.min(room)]);
                    over |= n > room;
                }
            }
        }
        let _ = done.send((which, kept, over));
    });
}

/// Kills the IPAM plugin's process group: it and whatever it started.
fn kill_group(group: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(group as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// `ADD`: the plugin's addresses, gateways and routes.
pub fn add(name: &str, env: &Env, stdin: &[u8]) -> Result<AddResult, CniError> {
    let value = run(name, "ADD", env, stdin)?.ok_or_else(|| {
        CniError::new(
            Code::Failed,
            format!("the IPAM plugin {name} answered ADD with nothing"),
        )
    })?;
    let result = AddResult::from_json(&value, &format!("the IPAM plugin {name}'s result"))?;
    if result.ips.is_empty() {
        return Err(CniError::new(
            Code::Failed,
            format!("the IPAM plugin {name} gave no address"),
        ));
    }
    Ok(result)
}

/// The plugin's file in `CNI_PATH`: the first directory that has it.
fn find(name: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    if path.is_empty() {
        return Err(CniError::new(
            Code::InvalidEnvironment,
            format!("CNI_PATH is not set: the IPAM plugin {name} cannot be found"),
        ));
    }
    path.iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            let dirs: Vec<String> = path.iter().map(|p| p.display().to_string()).collect();
            CniError::new(
                Code::InvalidConfig,
                format!(
                    "the IPAM plugin {name} is not in CNI_PATH ({})",
                    dirs.join(":")
                ),
            )
        })
}
