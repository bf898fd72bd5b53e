//! The integration-test harness: throw-away network namespaces.
//!
//! Every test gets its own "host" namespace with a veth pair standing in for
//! the NIC (`eth0`, whose far end `uplink0` plays the switch), plus as many
//! container namespaces as it asks for. Namespaces are held only by file
//! descriptors, never bind-mounted, so they vanish with everything in them
//! when the test ends, whether it passes, panics or the process is killed;
//! the machine's own namespace is never touched.
//!
//! Kernel-dependent tests live in modules named `needs_ipvlan`, `needs_vlan`
//! or `needs_dummy`, are `#[ignore]`d with the reason (so a plain `cargo test`
//! on a kernel without the feature shows them as skipped, never as passed),
//! and call [`require`] first, which fails the test if the feature is
//! missing. `scripts/test.sh` runs them with `--include-ignored` in the
//! real-kernel tier.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use underlay::capability::{KernelCapabilities, KernelFeature};
use underlay::netlink::Netlink;
use underlay::netns::NetNs;
use underlay::Host;

/// The name of the stand-in NIC in every sandbox's host namespace.
pub const PARENT: &str = "eth0";

/// A host namespace with a parent link, and helpers for containers.
pub struct Sandbox {
    /// The "host" namespace.
    pub host: NetNs,
    /// A netlink socket in it.
    pub nl: Netlink,
}

impl Sandbox {
    /// A host namespace with `eth0` (a veth whose peer `uplink0` stays in
    /// the host namespace as the "switch"), both up.
    pub fn new() -> Self {
        let host = NetNs::create().expect("create the host namespace");
        let nl = host.netlink().expect("netlink in the host namespace");
        nl.create_link(&underlay::link::NewLink::veth(PARENT, "uplink0").up())
            .expect("create the veth parent");
        let uplink = nl.link_by_name("uplink0").expect("uplink0");
        nl.set_link_up_by_index(uplink.index, true)
            .expect("uplink0 up");
        Sandbox { host, nl }
    }

    /// A host namespace with no parent link at all.
    pub fn empty() -> Self {
        let host = NetNs::create().expect("create the host namespace");
        let nl = host.netlink().expect("netlink in the host namespace");
        Sandbox { host, nl }
    }

    /// The index of `eth0` in the host namespace.
    pub fn parent_index(&self) -> u32 {
        self.nl.link_by_name(PARENT).expect("parent link").index
    }

    /// A fresh container namespace.
    pub fn container(&self) -> NetNs {
        NetNs::create().expect("create a container namespace")
    }

    /// A bridge macvlan `eth0` on the parent, made inside `container`:
    /// returns a socket in the container and the link's index there.
    pub fn macvlan_in(&self, container: &NetNs) -> (Netlink, u32) {
        let spec = underlay::link::NewLink::macvlan(
            "eth0",
            self.parent_index(),
            underlay::link::MacvlanMode::Bridge,
        );
        self.nl
            .create_link(&spec.netns(container))
            .expect("create eth0 in the container");
        let inside = container.netlink().expect("netlink in the container");
        let index = inside.link_by_name("eth0").expect("eth0").index;
        (inside, index)
    }

    /// Runs a command in the host namespace.
    pub fn host_run(&self, program: &str, args: &[&str]) -> Output {
        run_in(&self.host, program, args)
    }
}

/// Runs `program` in `ns` (the child process enters it; the test's threads
/// stay where they are) and returns its output.
pub fn run_in(ns: &NetNs, program: &str, args: &[&str]) -> Output {
    let fd = ns.as_fd().as_raw_fd();
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: setns is async-signal-safe and only affects the forked child.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// Runs `ip -j ARGS` in `ns` and parses its JSON.
pub fn ip_json(ns: &NetNs, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = run_in(ns, "ip", &full);
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return serde_json::Value::Array(vec![]);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {text}"))
}

/// `ip -d -j link show NAME` in `ns`: the one link's JSON object.
pub fn ip_link(ns: &NetNs, name: &str) -> serde_json::Value {
    ip_json(ns, &["-d", "link", "show", "dev", name])[0].clone()
}

/// The text `ip route` (or `ip -6 route`) prints in `ns`.
pub fn ip_routes(ns: &NetNs, v6: bool) -> String {
    let args: &[&str] = if v6 { &["-6", "route"] } else { &["route"] };
    String::from_utf8_lossy(&run_in(ns, "ip", args).stdout).into_owned()
}

/// Whether `ns` can ping `address` (two tries, short timeout).
pub fn ping(ns: &NetNs, address: &str) -> bool {
    run_in(ns, "ping", &["-c", "2", "-i", "0.2", "-W", "2", address])
        .status
        .success()
}

/// This process's view of the kernel's capabilities, probed once.
pub fn capabilities() -> KernelCapabilities {
    static CAPS: OnceLock<KernelCapabilities> = OnceLock::new();
    *CAPS.get_or_init(|| KernelCapabilities::probe().expect("probe the kernel"))
}

/// Fails the test unless the kernel has `feature`: a kernel-dependent test
/// must never pass without running.
pub fn require(feature: KernelFeature) {
    if !capabilities().supports(feature) {
        panic!(
            "this kernel lacks {} ({}): this test belongs to the real-kernel tier \
             (scripts/test.sh runs it under QEMU)",
            feature.name(),
            feature.config_option()
        );
    }
}

/// The names of the links in `ns`, sorted.
pub fn link_names(ns: &NetNs) -> Vec<String> {
    let mut names: Vec<String> = ns
        .netlink()
        .expect("netlink")
        .links()
        .expect("list links")
        .into_iter()
        .map(|l| l.name)
        .collect();
    names.sort();
    names
}

/// A fresh state directory for one test, removed when dropped.
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn new() -> Self {
        // The time too: tests that run as pid 1 of pid namespaces of their
        // own (several at once) have the same pid.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "underlay-test-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            now.as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        StateDir(dir)
    }

    /// Every file below the directory with its contents, lock files aside.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.file_name().is_some_and(|n| n != "lock") {
                    // Lock files hold only a change counter, not state.
                    out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.0, &mut out);
        out
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn open_host(sb: &Sandbox, dir: &StateDir) -> Host {
    Host::options()
        .state_dir(&dir.0)
        .runtime_dir(dir.0.join("run"))
        .netns(NetNs::open(format!("/proc/self/fd/{}", fd_of(&sb.host))).unwrap())
        .open()
        .unwrap()
}

/// A sandbox with a parent link, a fresh state directory and a host on
/// them: what most network and endpoint tests start from.
pub fn fixture() -> (Sandbox, StateDir, Host) {
    let sb = Sandbox::new();
    let dir = StateDir::new();
    let host = open_host(&sb, &dir);
    (sb, dir, host)
}

/// In a child process: the host the parent test handed over in
/// `UNDERLAY_STATE` (a state directory) and `UNDERLAY_NETNS` (a namespace
/// path).
pub fn open_child_host() -> Host {
    let state = PathBuf::from(std::env::var("UNDERLAY_STATE").unwrap());
    Host::options()
        .state_dir(&state)
        .runtime_dir(state.join("run"))
        .netns(NetNs::open(std::env::var("UNDERLAY_NETNS").unwrap()).unwrap())
        .open()
        .unwrap()
}

pub fn fd_of(ns: &NetNs) -> i32 {
    ns.as_fd().as_raw_fd()
}

/// Child processes for crash and concurrency tests: the test binary runs
/// itself again with `--exact TEST`, and the child reads its orders from
/// the environment.
pub fn run_child(test: &str, env: &[(&str, String)]) -> std::process::Output {
    let mut command = child_command(test);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// [`run_child`] with one order, `key=1`, for a child that does all the
/// checking itself: it must end well and say `ran` on its standard error
/// (a child that found no order returns at once, and would pass unseen).
pub fn run_checking_child(test: &str, key: &str, ran: &str) {
    let output = run_child(test, &[(key, "1".to_owned())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(ran), "the child did not run: {stderr}");
}

/// The test binary, to run only `test` (an ignored helper), its output
/// not captured: [`run_child`]'s command, for callers that spawn it
/// themselves.
pub fn child_command(test: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        "--exact",
        test,
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

/// Runs helper `test` in a child process on the host of `dir` (in `sb`'s
/// host namespace), with `extra` orders, killed with SIGKILL the moment
/// the library logs `step` (see [`install_kill_switch`]); fails the test
/// unless it was.
pub fn kill_child_at(
    test: &str,
    step: &str,
    sb: &Sandbox,
    dir: &StateDir,
    extra: &[(&str, String)],
) {
    let mut env = vec![
        ("UNDERLAY_CRASH_AT", step.to_owned()),
        ("UNDERLAY_STATE", dir.0.display().to_string()),
        ("UNDERLAY_NETNS", netns_path_for_child(&sb.host)),
    ];
    env.extend(extra.iter().cloned());
    let output = run_child(test, &env);
    assert!(
        killed(&output),
        "{test}, {step}: not killed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether a child was killed by SIGKILL.
pub fn killed(output: &std::process::Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    output.status.signal() == Some(libc::SIGKILL)
}

/// In a child: when `UNDERLAY_CRASH_AT` is set, installs a logger that
/// kills the process with SIGKILL (as `kill -9` would) the moment the
/// library logs a message containing that text. Returns whether it did.
pub fn install_kill_switch() -> bool {
    let Ok(point) = std::env::var("UNDERLAY_CRASH_AT") else {
        return false;
    };
    struct KillAt(String);
    impl log::Log for KillAt {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if record.args().to_string().contains(&self.0) {
                // SAFETY: kill on our own pid.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
        }
        fn flush(&self) {}
    }
    log::set_boxed_logger(Box::new(KillAt(point))).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    true
}

/// In a child: when `UNDERLAY_PAUSE_AT` is set, installs a logger that,
/// the moment the library logs a message containing that text, creates the
/// file `UNDERLAY_PAUSED` and waits (at most 20 s) until the file
/// `UNDERLAY_RESUME` exists: the library is stopped at that step, with
/// whatever it holds. Returns whether it did.
pub fn install_pause_switch() -> bool {
    let Ok(point) = std::env::var("UNDERLAY_PAUSE_AT") else {
        return false;
    };
    /// Pauses at each point once: says so with the file `paused`, and
    /// waits (up to 20 s) for the file `resume`.
    struct PauseAt(Vec<(String, PathBuf, PathBuf)>);
    impl log::Log for PauseAt {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            let message = record.args().to_string();
            for (point, paused, resume) in &self.0 {
                if message.contains(point.as_str()) && !paused.exists() {
                    std::fs::write(paused, b"").unwrap();
                    for _ in 0..2000 {
                        if resume.exists() {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
            }
        }
        fn flush(&self) {}
    }
    let paused = PathBuf::from(std::env::var("UNDERLAY_PAUSED").unwrap());
    let resume = PathBuf::from(std::env::var("UNDERLAY_RESUME").unwrap());
    let mut points = vec![(point, paused.clone(), resume.clone())];
    // A second point, if asked for: `paused2` and `resume2` beside.
    if let Ok(second) = std::env::var("UNDERLAY_PAUSE_AT2") {
        points.push((
            second,
            paused.with_extension("2"),
            resume.with_extension("2"),
        ));
    }
    log::set_boxed_logger(Box::new(PauseAt(points))).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    true
}

/// The path under which a child process can open `ns` of this process.
pub fn netns_path_for_child(ns: &NetNs) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), fd_of(ns))
}

/// Waits (up to 10 s) until the links in `ns` are `expected`: a detach
/// takes the container off the network at once and deletes the link in a
/// sweep just after.
pub fn wait_for_links(ns: &NetNs, expected: &[&str]) {
    let start = std::time::Instant::now();
    loop {
        let names = link_names(ns);
        if names == expected {
            return;
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            panic!("links {names:?}, expected {expected:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The global (IPv4 and IPv6) addresses in `ns`, on every link.
pub fn global_addresses(ns: &NetNs) -> Vec<String> {
    ip_json(ns, &["addr"])
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["scope"] == "global")
        .filter_map(|a| a["local"].as_str().map(str::to_owned))
        .collect()
}

/// The library's warnings so far in this test process (every test's); the
/// first call installs the logger that keeps them, so call it before what
/// should warn.
pub fn warnings() -> Vec<String> {
    use std::sync::{Mutex, OnceLock};
    static SAID: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static INSTALLED: OnceLock<()> = OnceLock::new();
    struct Warnings;
    impl log::Log for Warnings {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= log::Level::Warn
        }
        fn log(&self, record: &log::Record) {
            if self.enabled(record.metadata()) {
                SAID.lock().unwrap().push(record.args().to_string());
            }
        }
        fn flush(&self) {}
    }
    INSTALLED.get_or_init(|| {
        log::set_boxed_logger(Box::new(Warnings)).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
    });
    SAID.lock().unwrap().clone()
}
