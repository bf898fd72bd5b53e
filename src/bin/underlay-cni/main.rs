//! `underlay-cni`: underlay as a CNI plugin (specification 1.1.0; configurations
//! declaring 0.4.0 and 1.0.0 are answered in their own shapes).
//!
//! A runtime (podman, containerd, CRI-O) runs it with `CNI_COMMAND` and the
//! other `CNI_*` variables set and the network configuration on stdin; it
//! answers on stdout with a result or an error object and exits non-zero on
//! error. It is built on underlay's public API alone: the network of the
//! configuration's `name` is created on first use, and each attachment
//! `(CNI_CONTAINERID, CNI_IFNAME)` is an endpoint of it. The README has
//! the configuration's fields and an example.
//!
//! Logs go to stderr when `UNDERLAY_LOG` is set (`error` ... `trace`).

mod commands;
mod config;
mod delegate;
mod reply;

use std::io::{Read, Write};

use serde_json::Value;

use config::{Command, Env, NetConf};
use reply::{CniError, Code, LATEST};

/// Stdin larger than this is refused: a network configuration is small.
const MAX_INPUT: u64 = 1 << 20;

fn main() {
    init_log();
    if let Ok(network) = std::env::var(commands::SWEEP_VAR) {
        // The background sweeper a DEL or GC started: it answers no one.
        if let Err(e) = commands::sweep(&network) {
            log::info!("sweeper of {network}: {}", e.msg);
        }
        return;
    }
    let mut input = Vec::new();
    let read = std::io::stdin().take(MAX_INPUT + 1).read_to_end(&mut input);
    let version = declared_version(&input);
    let outcome = match read {
        Err(e) => Err(CniError::new(Code::Io, format!("cannot read stdin: {e}"))),
        Ok(_) if input.len() as u64 > MAX_INPUT => Err(CniError::new(
            Code::Decode,
            format!("the network configuration on stdin is larger than {MAX_INPUT} bytes"),
        )),
        Ok(_) => run(&input, &version),
    };
    let mut stdout = std::io::stdout().lock();
    let code = match outcome {
        Ok(None) => 0,
        Ok(Some(value)) => {
            let _ = writeln!(stdout, "{value}");
            0
        }
        Err(error) => {
            log::debug!("failed: {} (code {})", error.msg, error.code as u32);
            let _ = writeln!(stdout, "{}", error.to_json(&version));
            1
        }
    };
    let _ = stdout.flush();
    std::process::exit(code);
}

/// The version to answer in: the configuration's, if it is one this plugin
/// speaks, else the latest.
fn declared_version(input: &[u8]) -> String {
    serde_json::from_slice::<Value>(input)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .filter(|v| reply::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_owned())
}

fn run(input: &[u8], version: &str) -> Result<Option<Value>, CniError> {
    let env = Env::read(|name| std::env::var(name).ok())?;
    if env.command == Command::Version {
        return Ok(Some(commands::version(version)));
    }
    let conf = NetConf::parse(input)?;
    if matches!(env.command, Command::Gc | Command::Status) && conf.cni_version != LATEST {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "{:?} exists from cniVersion {LATEST} on; this configuration declares {}",
                env.command, conf.cni_version
            ),
        ));
    }
    log::debug!(
        "{:?} ({}) network {:?} container {:?} ifname {:?} netns {:?}",
        env.command,
        conf.plugin_type,
        conf.name,
        env.container_id,
        env.ifname,
        env.netns
    );
    match env.command {
        Command::Add => commands::add(&env, &conf, input).map(Some),
        Command::Del => commands::del(&env, &conf, input).map(|()| None),
        Command::Check => commands::check(&env, &conf, input).map(|()| None),
        Command::Gc => commands::gc(&env, &conf, input).map(|()| None),
        Command::Status => commands::status(&env, &conf, input).map(|()| None),
        Command::Version => Ok(Some(commands::version(version))),
    }
}

/// A minimal stderr logger for the `log` facade, on when `UNDERLAY_LOG`
/// names a level. For crash tests (debug builds only),
/// `UNDERLAY_CRASH_AT=TEXT` kills the process (SIGKILL) when the library
/// logs a message containing TEXT.
fn init_log() {
    struct Stderr {
        level: log::LevelFilter,
        crash_at: Option<String>,
    }
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if record.level() <= self.level {
                eprintln!("underlay-cni: {}: {}", record.level(), record.args());
            }
            if let Some(point) = &self.crash_at {
                if record.args().to_string().contains(point.as_str()) {
                    let _ = rustix::process::kill_process(
                        rustix::process::getpid(),
                        rustix::process::Signal::KILL,
                    );
                    std::process::abort(); // not reached
                }
            }
        }
        fn flush(&self) {}
    }
    let level = std::env::var("UNDERLAY_LOG")
        .ok()
        .and_then(|l| l.parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Off);
    // A test hook: only in debug builds (the tests'), never in a release.
    let crash_at = if cfg!(debug_assertions) {
        std::env::var("UNDERLAY_CRASH_AT").ok()
    } else {
        None
    };
    let max = if crash_at.is_some() {
        log::LevelFilter::Trace
    } else {
        level
    };
    if max != log::LevelFilter::Off
        && log::set_logger(Box::leak(Box::new(Stderr { level, crash_at }))).is_ok()
    {
        log::set_max_level(max);
    }
}
