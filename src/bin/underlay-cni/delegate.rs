//! Delegated IPAM, as the specification describes it: the IPAM plugin named
//! by the configuration's `ipam.type` is found in `CNI_PATH` and run with
//! the same environment and stdin; its result gives the addresses.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Env;
use crate::reply::{AddResult, CniError, Code};

/// How long an IPAM plugin may take (the `dhcp` plugin waits for a lease).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the IPAM plugin `name` for `command` (`ADD`, `DEL`, `CHECK`, `GC`)
/// with `stdin`, the configuration as received. Returns its stdout's JSON
/// (`None` when it printed nothing, as `DEL` does).
pub fn run(name: &str, command: &str, env: &Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let path = find(name, &env.path)?;
    let mut child = Process::new(&path)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CniError::new(
                Code::Failed,
                format!("cannot run the IPAM plugin {}: {e}", path.display()),
            )
        })?;
    // The plugin reads all of stdin before it writes much, so writing
    // first cannot deadlock on a configuration of a sane size.
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CniError::new(
                    Code::TryAgainLater,
                    format!(
                        "the IPAM plugin {name} did not answer {command} within {}s",
                        TIMEOUT.as_secs()
                    ),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                return Err(CniError::new(
                    Code::Failed,
                    format!("waiting for the IPAM plugin {name}: {e}"),
                ))
            }
        }
    }
    let output = child.wait_with_output().map_err(|e| {
        CniError::new(
            Code::Failed,
            format!("reading the IPAM plugin {name}'s answer: {e}"),
        )
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let value: Option<Value> = if text.trim().is_empty() {
        None
    } else {
        Some(serde_json::from_str(&text).map_err(|e| {
            CniError::new(
                Code::Failed,
                format!("the IPAM plugin {name} answered {command} with something not JSON: {e}"),
            )
        })?)
    };
    if !output.status.success() {
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
            .unwrap_or((
                100,
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        let code = match code {
            4 => Code::InvalidConfig,
            7 => Code::InvalidEnvironment,
            11 => Code::TryAgainLater,
            _ => Code::Failed,
        };
        return Err(CniError::new(
            code,
            format!("the IPAM plugin {name} failed {command}: {msg}"),
        )
        .details(String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(value)
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
