//! The harness of `tests/cni_runtimes.rs`: scratch directories, parent
//! veths, the plugin behind a logging wrapper, a podman of the test's own and
//! a containerd of the test's own.
//!
//! Every external command runs under `timeout`; every resource has a guard
//! that removes it when dropped, on failure too. Names start with `ulrt`
//! (links) or `ulrt-` (networks, containers) and carry the process id and a
//! counter, because other processes make links and namespaces on this
//! machine meanwhile. Scratch directories are `$TMPDIR/underlay-test-rt-*`
//! (the names `scripts/test.sh` checks for leftovers).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Seconds allowed to one podman, ctr or ip command.
pub const TIMEOUT: u32 = 60;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A number unique in this process.
pub fn unique() -> u32 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

// ------------------------------------------------------------ requirements

/// Whether missing tools fail the tests (the host tier of `scripts/test.sh`
/// sets `UNDERLAY_REQUIRE_RUNTIMES=1`) rather than skip them.
fn required() -> bool {
    std::env::var("UNDERLAY_REQUIRE_RUNTIMES").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `Ok` when nothing is missing; otherwise panics when the runtimes are
/// required, or says why the test is skipped and returns `Err`.
pub fn require(test: &str, missing: &[String]) -> Result<(), ()> {
    if missing.is_empty() {
        return Ok(());
    }
    let what = missing.join(", ");
    if std::env::var("UNDERLAY_TIER").as_deref() == Ok("real-kernel") {
        eprintln!(
            "SKIPPED {test}: the real-kernel tier has no writable system directories ({what})"
        );
        return Err(());
    }
    if required() {
        panic!(
            "{test}: missing {what}; UNDERLAY_REQUIRE_RUNTIMES is set, so this is a failure \
             (scripts/test.sh installs podman and fetches containerd)"
        );
    }
    eprintln!(
        "SKIPPED {test}: missing {what} (scripts/test.sh installs them; set \
         UNDERLAY_REQUIRE_RUNTIMES=1 to fail instead)"
    );
    Err(())
}

/// The programs of `names` that are not on PATH, and root if we are not it.
pub fn missing_programs(names: &[&str]) -> Vec<String> {
    let mut missing: Vec<String> = names
        .iter()
        .filter(|n| which(n).is_none())
        .map(|n| format!("the program {n}"))
        .collect();
    if rustix::process::geteuid().as_raw() != 0 {
        missing.push("root".to_owned());
    }
    if !Path::new(BUSYBOX).is_file() {
        missing.push(format!("{BUSYBOX} (busybox-static)"));
    }
    missing
}

/// The static busybox the test images are made of.
pub const BUSYBOX: &str = "/bin/busybox";

/// `name`'s path on PATH (or the sbin directories, which a non-login PATH may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

// ------------------------------------------------------------ commands

/// Runs `program args` under `timeout -k 5 SECS`, with `env` added and no
/// standard input.
pub fn run(secs: u32, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let secs = secs.to_string();
    let mut command = Command::new("timeout");
    command
        .args(["-k", "5", &secs, program])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// The command line for messages.
fn shown(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Stdout of a command that must have succeeded; panics with its output
/// otherwise (exit 124: it timed out).
pub fn success(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {} (124 = timed out)\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `ip ARGS` in the machine's namespace; must succeed.
pub fn ip(args: &[&str]) -> String {
    success(run(TIMEOUT, "ip", args, &[]), &shown("ip", args))
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write(path: &Path, contents: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn write_executable(path: &Path, contents: &str) {
    write(path, contents);
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A path as `&str` (the scratch directories are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

// ------------------------------------------------------------ scratch directory

/// A scratch directory, removed when dropped; anything still mounted below
/// it is unmounted first (and if that fails the directory is left alone
/// rather than removed through a mount).
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "underlay-test-rt-{}-{}",
            std::process::id(),
            unique()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Scratch { path }
    }

    pub fn join(&self, rest: &str) -> PathBuf {
        self.path.join(rest)
    }
}

/// Mount points of this mount namespace at or below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = s(dir);
    let below = format!("{dir}/");
    let mut found: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|m| m == dir || m.starts_with(&below))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.len()));
    found
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in mounts_under(&self.path) {
            let _ = run(TIMEOUT, "umount", &["-l", &m], &[]);
        }
        let left = mounts_under(&self.path);
        if left.is_empty() {
            // A runtime's clean-up process (podman's, run by conmon when a
            // container ends) may still be writing its lock files under
            // it: removed again until it stays removed, for up to 5 s.
            for _ in 0..50 {
                if fs::remove_dir_all(&self.path).is_ok() || !self.path.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        } else {
            eprintln!(
                "left {} alone: still mounted there: {left:?}",
                self.path.display()
            );
        }
    }
}

// ------------------------------------------------------------ parents and subnets

/// A veth pair in the machine's namespace, both ends up: the parent of a
/// test network (its peer stands in for the switch). Deleted when dropped.
pub struct Veth {
    pub name: String,
}

impl Veth {
    pub fn new() -> Self {
        let n = unique();
        let pid = std::process::id();
        // At most 13 characters (IFNAMSIZ is 16 with the NUL).
        let veth = Veth {
            name: format!("ulrt{pid:x}-{n}"),
        };
        let peer = format!("ulrp{pid:x}-{n}");
        ip(&[
            "link", "add", &veth.name, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "up"]);
        ip(&["link", "set", &veth.name, "up"]);
        veth
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run(TIMEOUT, "ip", &["link", "del", &self.name], &[]);
    }
}

/// An IPv4 /24 of a test network, `10.X.Y.0/24`, gateway `.1`.
#[derive(Clone, Debug)]
pub struct Subnet {
    prefix: String,
}

impl Subnet {
    pub fn new() -> Self {
        let n = unique();
        Subnet {
            prefix: format!("10.{}.{}", 200 + n % 50, std::process::id() % 250),
        }
    }

    /// `10.X.Y.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}.0/24", self.prefix)
    }

    /// `10.X.Y.1`.
    pub fn gateway(&self) -> String {
        self.host(1)
    }

    /// `10.X.Y.N`.
    pub fn host(&self, n: u8) -> String {
        format!("{}.{n}", self.prefix)
    }

    pub fn contains(&self, address: &str) -> bool {
        address
            .strip_prefix(&self.prefix)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|last| last.parse::<u8>().ok())
            .is_some()
    }
}

// ------------------------------------------------------------ the plugin

/// The plugin the runtimes drive: `underlay-cni` (what the tests are for)
/// or the stock `macvlan` + `host-local` of containernetworking-plugins
/// (`UNDERLAY_CNI_TEST_PLUGIN=stock`: checks the harness itself, and shows
/// whether a failure is the runtime's or the plugin's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plugin {
    Underlay,
    Stock,
}

/// The directory of the stock plugins (containernetworking-plugins).
pub const STOCK_DIR: &str = "/usr/lib/cni";

impl Plugin {
    pub fn from_env() -> Plugin {
        match std::env::var("UNDERLAY_CNI_TEST_PLUGIN").as_deref() {
            Ok("stock") => Plugin::Stock,
            Ok("underlay-cni") | Ok("") | Err(_) => Plugin::Underlay,
            Ok(other) => panic!("UNDERLAY_CNI_TEST_PLUGIN={other}: expected stock or underlay-cni"),
        }
    }

    /// The plugin's `type`, the name of its executable.
    pub fn type_name(self) -> &'static str {
        match self {
            Plugin::Underlay => "underlay-cni",
            Plugin::Stock => "macvlan",
        }
    }

    /// The real executable.
    pub fn binary(self) -> PathBuf {
        match self {
            Plugin::Underlay => PathBuf::from(env!("CARGO_BIN_EXE_underlay-cni")),
            Plugin::Stock => Path::new(STOCK_DIR).join("macvlan"),
        }
    }

    /// What the machine lacks for this plugin.
    pub fn missing(self) -> Vec<String> {
        let mut missing = Vec::new();
        if !self.binary().is_file() {
            missing.push(format!("the plugin {}", self.binary().display()));
        }
        if self == Plugin::Stock && !Path::new(STOCK_DIR).join("host-local").is_file() {
            missing.push(format!(
                "{STOCK_DIR}/host-local (containernetworking-plugins)"
            ));
        }
        missing
    }

    /// The plugin's entry in a conflist: a bridge-mode macvlan network on
    /// `parent` with `subnet` (gateway `.1`), its state under `dir`.
    pub fn conf(self, parent: &str, subnet: &Subnet, dir: &Path) -> Value {
        match self {
            Plugin::Underlay => json!({
                "type": "underlay-cni",
                "driver": "macvlan",
                "options": {"parent": parent},
                "subnets": [{"subnet": subnet.cidr(), "gateway": subnet.gateway()}],
                "stateDir": dir.join("state"),
                "runtimeDir": dir.join("run"),
            }),
            // podman reads host-local's subnets only from "ranges".
            Plugin::Stock => json!({
                "type": "macvlan",
                "master": parent,
                "mode": "bridge",
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet.cidr(), "gateway": subnet.gateway()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": dir.join("host-local"),
                },
            }),
        }
    }
}

/// A conflist of one plugin.
pub fn conflist(name: &str, plugin: Value) -> String {
    json!({"cniVersion": "1.0.0", "name": name, "plugins": [plugin]}).to_string()
}

/// Makes `dir` a CNI plugin directory: `plugin` behind a wrapper that logs
/// every call into `log` (the real executable copied to `real_dir`), and
/// links to the stock plugins (host-local, loopback...) beside it.
pub fn install_plugin(plugin: Plugin, dir: &Path, real_dir: &Path, log: &CallLog) {
    fs::create_dir_all(dir).unwrap();
    fs::create_dir_all(real_dir).unwrap();
    let name = plugin.type_name();
    let real = real_dir.join(name);
    fs::copy(plugin.binary(), &real)
        .unwrap_or_else(|e| panic!("copy {}: {e}", plugin.binary().display()));
    let wrapper = format!(
        "#!/bin/sh\n\
         # One CNI call of the runtime under test: logged, then run by the real plugin.\n\
         call={log}/$(date +%s%N)-$$\n\
         env | grep '^CNI_' >\"$call.env\"\n\
         cat >\"$call.in\"\n\
         {real} <\"$call.in\" >\"$call.out\" 2>\"$call.err\"\n\
         rc=$?\n\
         echo \"$rc\" >\"$call.rc\"\n\
         cat \"$call.out\"\n\
         cat \"$call.err\" >&2\n\
         exit \"$rc\"\n",
        log = s(&log.dir),
        real = s(&real),
    );
    write_executable(&dir.join(name), &wrapper);
    for entry in fs::read_dir(STOCK_DIR).into_iter().flatten().flatten() {
        let target = dir.join(entry.file_name());
        if !target.exists() {
            let _ = std::os::unix::fs::symlink(entry.path(), target);
        }
    }
}

/// One call of the plugin, as the wrapper logged it.
#[derive(Debug)]
pub struct Call {
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub stdin: Value,
    pub stdout: String,
    pub stderr: String,
    /// None while the plugin runs.
    pub rc: Option<i32>,
}

impl Call {
    pub fn var(&self, name: &str) -> &str {
        self.env.get(name).map(String::as_str).unwrap_or("")
    }

    /// The result it printed, if any.
    pub fn result(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }
}

/// The directory the plugin's wrapper logs its calls into; printed (all
/// but VERSION) when a test fails, or always with
/// `UNDERLAY_CNI_TEST_SHOW_CALLS=1` (and `--nocapture`).
pub struct CallLog {
    pub dir: PathBuf,
}

impl CallLog {
    pub fn new(dir: PathBuf) -> Self {
        fs::create_dir_all(&dir).unwrap();
        CallLog { dir }
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        let mut stems: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".env").map(str::to_owned)
            })
            .collect();
        stems.sort();
        stems
            .iter()
            .map(|stem| {
                let read = |ext: &str| {
                    fs::read_to_string(self.dir.join(format!("{stem}.{ext}"))).unwrap_or_default()
                };
                let env: BTreeMap<String, String> = read("env")
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                Call {
                    command: env.get("CNI_COMMAND").cloned().unwrap_or_default(),
                    stdin: serde_json::from_str(&read("in")).unwrap_or(Value::Null),
                    stdout: read("out"),
                    stderr: read("err"),
                    rc: read("rc").trim().parse().ok(),
                    env,
                }
            })
            .collect()
    }

    /// The calls of `command` (ADD, DEL, CHECK...).
    pub fn of(&self, command: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.command == command)
            .collect()
    }

    /// The calls but VERSION, for a failure message.
    pub fn report(&self) -> String {
        let mut text = String::new();
        for c in self.calls().iter().filter(|c| c.command != "VERSION") {
            let _ = writeln!(
                text,
                "--- {} rc={:?} env={:?}\n    stdin: {}\n    stdout: {}\n    stderr: {}",
                c.command,
                c.rc,
                c.env,
                c.stdin,
                c.stdout.trim(),
                c.stderr.trim()
            );
        }
        text
    }
}

impl Drop for CallLog {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("UNDERLAY_CNI_TEST_SHOW_CALLS").is_some() {
            eprintln!("plugin calls (VERSION left out):\n{}", self.report());
        }
    }
}

// ------------------------------------------------------------ images

/// The interface's first IPv4 address and prefix length in busybox's
/// `ip -o -4 addr show` output (`2: eth0    inet 10.1.2.3/24 brd ...`).
pub fn ipv4_of(text: &str, ifname: &str) -> Option<(String, u8)> {
    text.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(ifname))
        .find_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            let (address, len) = words.next()?.split_once('/')?;
            Some((address.to_owned(), len.parse().ok()?))
        })
}

/// Makes `dir/rootfs.tar`: a root filesystem of the static busybox with
/// links for the applets the tests use.
pub fn rootfs_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    fs::create_dir_all(root.join("bin")).unwrap();
    for d in ["proc", "sys", "dev", "etc", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "ip", "ping", "sleep", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    success(
        run(TIMEOUT, "tar", &["-C", s(&root), "-cf", s(&tar), "."], &[]),
        "tar the root filesystem",
    );
    tar
}

/// sha256 of a file, hex (coreutils' `sha256sum`).
fn sha256(path: &Path) -> String {
    let out = success(run(TIMEOUT, "sha256sum", &[s(path)], &[]), "sha256sum");
    out.split_whitespace().next().expect("a digest").to_owned()
}

/// Makes `dir/image.tar`, a docker-archive of one layer (the root
/// filesystem) tagged `reference`, for `ctr images import`.
pub fn docker_archive(dir: &Path, rootfs: &Path, reference: &str) -> PathBuf {
    let work = dir.join("docker-archive");
    fs::create_dir_all(&work).unwrap();
    fs::copy(rootfs, work.join("layer.tar")).unwrap();
    let diff_id = sha256(&work.join("layer.tar"));
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    });
    write(&work.join("config.json"), &config.to_string());
    let config_name = format!("{}.json", sha256(&work.join("config.json")));
    fs::rename(work.join("config.json"), work.join(&config_name)).unwrap();
    let manifest =
        json!([{"Config": config_name, "RepoTags": [reference], "Layers": ["layer.tar"]}]);
    write(&work.join("manifest.json"), &manifest.to_string());
    let archive = dir.join("image.tar");
    success(
        run(
            TIMEOUT,
            "tar",
            &[
                "-C",
                s(&work),
                "-cf",
                s(&archive),
                "manifest.json",
                &config_name,
                "layer.tar",
            ],
            &[],
        ),
        "tar the docker-archive",
    );
    archive
}

// ------------------------------------------------------------ podman

/// The image the podman tests run.
pub const PODMAN_IMAGE: &str = "localhost/ulrt-busybox:latest";

/// A podman of the test's own: containers.conf (CNI backend, its own
/// network config and plugin directories), storage and runtime state all
/// below one scratch directory. Its containers are removed when dropped.
pub struct Podman {
    dir: PathBuf,
    conf: PathBuf,
    storage_conf: PathBuf,
    /// Where the test puts its conflists (`network_config_dir`).
    pub net_dir: PathBuf,
}

impl Podman {
    /// What the machine lacks for podman.
    pub fn missing() -> Vec<String> {
        missing_programs(&["podman", "runc", "conmon", "ip", "tar", "timeout"])
    }

    /// A podman below `dir` whose first CNI plugin directory is `plugin_dir`,
    /// with the busybox image imported.
    pub fn new(dir: &Path, plugin_dir: &Path) -> Self {
        let net_dir = dir.join("podman-net");
        fs::create_dir_all(&net_dir).unwrap();
        let conf = dir.join("containers.conf");
        write(
            &conf,
            &format!(
                "[containers]\n\
                 netns = \"private\"\n\
                 default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 tmp_dir = \"{tmp}\"\n\
                 static_dir = \"{root}/libpod\"\n\
                 volume_path = \"{root}/volumes\"\n\
                 [network]\n\
                 network_backend = \"cni\"\n\
                 cni_plugin_dirs = [\"{plugins}\", \"{STOCK_DIR}\"]\n\
                 network_config_dir = \"{net}\"\n",
                tmp = s(&dir.join("podman-tmp")),
                root = s(&dir.join("podman-root")),
                plugins = s(plugin_dir),
                net = s(&net_dir),
            ),
        );
        let storage_conf = dir.join("storage.conf");
        write(
            &storage_conf,
            &format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                s(&dir.join("podman-root")),
                s(&dir.join("podman-runroot")),
            ),
        );
        let podman = Podman {
            dir: dir.to_owned(),
            conf,
            storage_conf,
            net_dir,
        };
        let tar = rootfs_tar(dir);
        podman.ok(&[
            "import",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            s(&tar),
            PODMAN_IMAGE,
        ]);
        podman
    }

    /// `podman GLOBAL-OPTIONS args` under a timeout.
    pub fn run(&self, args: &[&str]) -> Output {
        let root = self.dir.join("podman-root");
        let runroot = self.dir.join("podman-runroot");
        let mut full = vec![
            "--root",
            s(&root),
            "--runroot",
            s(&runroot),
            "--storage-driver",
            "vfs",
        ];
        full.extend_from_slice(args);
        run(
            TIMEOUT,
            "podman",
            &full,
            &[
                ("CONTAINERS_CONF", s(&self.conf)),
                ("CONTAINERS_STORAGE_CONF", s(&self.storage_conf)),
            ],
        )
    }

    /// `podman args`, which must succeed: its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        success(self.run(args), &shown("podman", args))
    }

    /// Writes the conflist of network `name`.
    pub fn add_network(&self, name: &str, plugin: Value) {
        write(
            &self.net_dir.join(format!("{name}.conflist")),
            &conflist(name, plugin),
        );
    }

    /// Container `name`'s IPv4 address on `ifname` (`podman exec ip`).
    pub fn address(&self, name: &str, ifname: &str) -> Option<String> {
        let out = self.ok(&["exec", name, "ip", "-o", "-4", "addr", "show"]);
        ipv4_of(&out, ifname).map(|(a, _)| a)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // The plugin's DEL for whatever is left, while the parents exist.
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
    }
}

// ------------------------------------------------------------ containerd

/// The image the ctr tests run.
pub const CTR_IMAGE: &str = "localhost/ulrt-busybox:latest";

/// A directory with `containerd`, `ctr` and `containerd-shim-runc-v2`:
/// `UNDERLAY_CONTAINERD_BIN` (scripts/test.sh extracts Debian's package
/// there) or the directory of `containerd` on PATH.
pub fn containerd_bin() -> Result<PathBuf, String> {
    let has_all = |d: &Path| {
        ["containerd", "ctr", "containerd-shim-runc-v2"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Ok(dir) = std::env::var("UNDERLAY_CONTAINERD_BIN") {
        let dir = PathBuf::from(dir);
        return if has_all(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "containerd, ctr and containerd-shim-runc-v2 in UNDERLAY_CONTAINERD_BIN={}",
                dir.display()
            ))
        };
    }
    which("containerd")
        .and_then(|p| p.parent().map(Path::to_owned))
        .filter(|d| has_all(d))
        .ok_or_else(|| {
            "containerd (UNDERLAY_CONTAINERD_BIN, set by scripts/test.sh, or on PATH)".to_owned()
        })
}

/// The script that runs a command in a private mount namespace of its own
/// (`unshare -m nsrun.sh OVERLAYS SRC:DST... -- COMMAND...`), with each SRC
/// bind-mounted over DST. A DST that does not exist is made inside an
/// overlay of its nearest existing ancestor (upper directory below
/// OVERLAYS), so the machine's directories are never written.
const NSRUN: &str = r#"#!/bin/sh
set -e
overlays=$1
shift
mount --make-rprivate /
while [ "$1" != "--" ]; do
    src=${1%%:*}
    dst=${1#*:}
    shift
    if [ ! -d "$dst" ]; then
        up=$(dirname "$dst")
        while [ ! -d "$up" ]; do up=$(dirname "$up"); done
        mkdir -p "$overlays"
        o=$(mktemp -d "$overlays/XXXXXX")
        mkdir "$o/upper" "$o/work"
        mount -t overlay overlay -o "lowerdir=$up,upperdir=$o/upper,workdir=$o/work" "$up"
        mkdir -p "$dst"
    fi
    mount --bind "$src" "$dst"
done
shift
exec "$@"
"#;

/// A containerd of the test's own (config, root, state, sockets below one
/// scratch directory; the CRI plugin disabled), in a private mount
/// namespace where that directory is mounted over `/run/containerd` (the
/// shims' sockets). Stopped, with its containers, when dropped.
pub struct Containerd {
    bin: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    nsrun: PathBuf,
    daemon: Child,
}

impl Containerd {
    /// What the machine lacks for containerd.
    pub fn missing() -> Vec<String> {
        let mut missing = missing_programs(&[
            "runc",
            "unshare",
            "mount",
            "ip",
            "tar",
            "sha256sum",
            "timeout",
        ]);
        if let Err(e) = containerd_bin() {
            missing.push(e);
        }
        missing
    }

    pub fn start(dir: &Path) -> Self {
        let bin = containerd_bin().expect("containerd");
        let dir = dir.join("containerd");
        fs::create_dir_all(dir.join("run")).unwrap();
        fs::create_dir_all(dir.join("fifo")).unwrap();
        let nsrun = dir.join("nsrun.sh");
        write_executable(&nsrun, NSRUN);
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        write(
            &config,
            &format!(
                "version = 2\n\
                 root = \"{root}\"\n\
                 state = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\", \
                 \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\", \
                 \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\"]\n\
                 [grpc]\n  address = \"{socket}\"\n\
                 [ttrpc]\n  address = \"{socket}.ttrpc\"\n\
                 [debug]\n  address = \"{socket}.debug\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
                root = s(&dir.join("root")),
                state = s(&dir.join("state")),
                socket = s(&socket),
                opt = s(&dir.join("opt")),
            ),
        );
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            s(&bin)
        );
        let mut command = Command::new("unshare");
        command
            .arg("-m")
            .arg(&nsrun)
            .arg(dir.join("overlays"))
            .arg(format!("{}:/run/containerd", s(&dir.join("run"))))
            .arg("--")
            .arg(bin.join("containerd"))
            .arg("--config")
            .arg(&config)
            .env("PATH", path)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; containerd dies with this thread
        // if the test process is killed before the guard runs.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let daemon = command.spawn().expect("start containerd");
        let containerd = Containerd {
            bin,
            dir,
            socket,
            nsrun,
            daemon,
        };
        let up = wait_for(Duration::from_secs(30), || {
            containerd.ctr(&["version"]).status.success().then_some(())
        });
        if up.is_none() {
            panic!(
                "containerd did not answer within 30 s:\n{}",
                fs::read_to_string(containerd.dir.join("containerd.log")).unwrap_or_default()
            );
        }
        containerd
    }

    fn ctr_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut full = vec!["-a", s(&self.socket)];
        full.extend_from_slice(args);
        full
    }

    /// `ctr -a SOCKET args` under a timeout.
    pub fn ctr(&self, args: &[&str]) -> Output {
        run(TIMEOUT, s(&self.bin.join("ctr")), &self.ctr_args(args), &[])
    }

    /// `ctr args`, which must succeed: its stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        success(self.ctr(args), &shown("ctr", args))
    }

    /// The command line of `ctr run --rm --cni` in a private mount namespace
    /// where `net_dir` is /etc/cni/net.d, `plugin_dir` /opt/cni/bin and
    /// `cache_dir` /var/lib/cni (ctr has no options for them).
    fn cni_run_command(
        &self,
        net_dir: &Path,
        plugin_dir: &Path,
        cache_dir: &Path,
        id: &str,
        script: &str,
    ) -> Command {
        let mut command = Command::new("timeout");
        command
            .args(["-k", "5", &TIMEOUT.to_string(), "unshare", "-m"])
            .arg(&self.nsrun)
            .arg(self.dir.join("overlays"))
            .arg(format!("{}:/etc/cni/net.d", s(net_dir)))
            .arg(format!("{}:/opt/cni/bin", s(plugin_dir)))
            .arg(format!("{}:/var/lib/cni", s(cache_dir)))
            .arg("--")
            .arg(self.bin.join("ctr"))
            .args(self.ctr_args(&[
                "run",
                "--rm",
                "--cni",
                "--snapshotter",
                "native",
                "--fifo-dir",
                s(&self.dir.join("fifo")),
                CTR_IMAGE,
                id,
                "sh",
                "-c",
                script,
            ]))
            .stdin(Stdio::null());
        command
    }

    /// Runs `sh -c script` in a new container `id` with CNI networking,
    /// waits for it to end (ctr then sends DEL and removes the container).
    pub fn cni_run(
        &self,
        net: &Path,
        plugins: &Path,
        cache: &Path,
        id: &str,
        script: &str,
    ) -> Output {
        self.cni_run_command(net, plugins, cache, id, script)
            .output()
            .expect("run ctr")
    }

    /// Like `cni_run`, in the background, its output going to `out`.
    pub fn cni_spawn(
        &self,
        net: &Path,
        plugins: &Path,
        cache: &Path,
        id: &str,
        script: &str,
        out: &Path,
    ) -> Child {
        let file = fs::File::create(out).unwrap();
        self.cni_run_command(net, plugins, cache, id, script)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start ctr")
    }

    /// Imports a docker-archive with the native snapshotter.
    pub fn import(&self, archive: &Path) {
        self.ctr_ok(&["images", "import", "--snapshotter", "native", s(archive)]);
    }

    /// The ids of the containers containerd has.
    pub fn containers(&self) -> Vec<String> {
        self.ctr_ok(&["containers", "list", "--quiet"])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let out = self.ctr(&["containers", "list", "--quiet"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.ctr(&["tasks", "kill", "--signal", "KILL", id]);
            let _ = self.ctr(&["tasks", "delete", "--force", id]);
            let _ = self.ctr(&["containers", "delete", id]);
        }
        let pid = self.daemon.id() as libc::pid_t;
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let stopped = wait_for(Duration::from_secs(10), || {
            self.daemon.try_wait().ok().flatten()
        });
        if stopped.is_none() {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }
}
