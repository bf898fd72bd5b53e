//! End-to-end benchmark: per-endpoint attach and detach latency of underlay
//! against its peers, on one sandbox, in one run, plus a scale section.
//!
//! Run as root, with `scripts/bench.sh` (which installs the peers and builds
//! the CLI example) or `cargo bench --bench e2e`. Nothing outside the
//! sandbox is touched: the "host" is a fresh network namespace with a veth
//! pair (`eth0`, its peer `uplink0` playing the switch), and every container
//! is a namespace held by a file descriptor only.
//!
//! Sections (`UNDERLAY_BENCH=all|e2e|scale|inproc`; `scripts/bench.sh` runs
//! `all`, a plain `cargo bench` runs `e2e` and, when not root, only says it
//! skipped):
//!
//! - **e2e**: N containers (`UNDERLAY_BENCH_N`, default 100), macvlan IPv4
//!   and macvlan dual-stack, attach then detach every container with each
//!   tool: underlay in-process, the underlay CLI example (one process per
//!   call), netavark 1.4 (`setup`/`teardown`, the bench supplying the static
//!   IPs as podman does), `underlay-cni` (one process per call, its own
//!   IPAM), the CNI macvlan plugin with host-local IPAM, and
//!   the kernel floor (the same netlink requests back to back through
//!   underlay's low-level API; a second floor row adds the ownership mark
//!   and `arp_notify`, which underlay sends too). Then bulk teardown: `force_remove_network`
//!   with N endpoints against N single detaches, and the kernel's own cost
//!   of deleting N links serially or concurrently.
//! - **scale**: attach and detach with 1 and with `UNDERLAY_BENCH_NETWORKS`
//!   (200) networks; the attach latency curve up to `UNDERLAY_BENCH_SCALE_N`
//!   (2000) endpoints on one network, extended by real attaches to
//!   `UNDERLAY_BENCH_RECORDS` (10000) endpoints, each in its own namespace;
//!   the time to open the state directory then and to load its records.
//! - **inproc**: the in-process attach against the kernel floor, with the
//!   library's extra steps added to the floor one at a time (for profiling),
//!   and the time of the link's creation alone in each of them.
//!
//! Every tool meets the same machine conditions: the tools take turns every
//! `UNDERLAY_BENCH_CHUNK` (10) containers, each attaching then detaching its
//! chunk. Addresses are checked after every attach (not timed).
//!
//! Tools that are missing make the bench exit with status 2, unless skipped
//! explicitly with `UNDERLAY_BENCH_SKIP=cli,underlay-cni,netavark,cni` (printed as such).
//! `UNDERLAY_BENCH_STRICT=1` makes missed targets an error (status 3).
//! Paths: `UNDERLAY_CLI` (default: `target/release/examples/underlay`),
//! `UNDERLAY_CNI` (`target/release/underlay-cni`),
//! `NETAVARK` (`/usr/lib/podman/netavark`), `CNI_PATH` (`/usr/lib/cni`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use underlay::docker::network_create_args;
use underlay::endpoint::AttachOptions;
use underlay::link::{MacvlanMode, NewLink};
use underlay::netlink::Netlink;
use underlay::netns::NetNs;
use underlay::route::NewRoute;
use underlay::Host;

type Res<T> = std::result::Result<T, String>;

fn fail<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

// ------------------------------------------------------------------ config

struct Config {
    section: String,
    n: usize,
    scale_n: usize,
    records: usize,
    networks: usize,
    chunk: usize,
    skip: Vec<String>,
    cli: PathBuf,
    underlay_cni: PathBuf,
    netavark: PathBuf,
    cni_dir: PathBuf,
    strict: bool,
}

fn env_usize(key: &str, default: usize) -> usize {
    match std::env::var(key) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("e2e: {key}={v:?} is not a number");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}

impl Config {
    fn from_env() -> Config {
        // target/release/deps/e2e-HASH -> target/release/examples/underlay
        let default_cli = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent()?.parent().map(|d| d.join("examples/underlay")))
            .unwrap_or_else(|| PathBuf::from("target/release/examples/underlay"));
        Config {
            // Plain `cargo bench` runs the e2e section only (about a
            // minute); scripts/bench.sh asks for `all`.
            section: std::env::var("UNDERLAY_BENCH").unwrap_or_else(|_| "e2e".into()),
            n: env_usize("UNDERLAY_BENCH_N", 100).max(1),
            scale_n: env_usize("UNDERLAY_BENCH_SCALE_N", 2000),
            records: env_usize("UNDERLAY_BENCH_RECORDS", 10_000),
            networks: env_usize("UNDERLAY_BENCH_NETWORKS", 200).max(1),
            chunk: env_usize("UNDERLAY_BENCH_CHUNK", 10).max(1),
            skip: std::env::var("UNDERLAY_BENCH_SKIP")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            underlay_cni: std::env::var_os("UNDERLAY_CNI")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    // target/release/examples/underlay -> target/release/underlay-cni
                    default_cli.parent().and_then(Path::parent).map_or_else(
                        || "target/release/underlay-cni".into(),
                        |d| d.join("underlay-cni"),
                    )
                }),
            cli: std::env::var_os("UNDERLAY_CLI")
                .map(PathBuf::from)
                .unwrap_or(default_cli),
            netavark: std::env::var_os("NETAVARK")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/usr/lib/podman/netavark".into()),
            cni_dir: std::env::var_os("CNI_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/usr/lib/cni".into()),
            strict: std::env::var("UNDERLAY_BENCH_STRICT").is_ok_and(|v| v == "1"),
        }
    }

    fn skipped(&self, tool: &str) -> bool {
        self.skip.iter().any(|s| s == tool)
    }
}

// ------------------------------------------------------------------ stats

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median and nearest-rank p99.
fn stats(samples: &[Duration]) -> (Duration, Duration) {
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let mut v = samples.to_vec();
    v.sort();
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
    };
    let rank = ((v.len() as f64) * 0.99).ceil() as usize;
    (median, v[rank.clamp(1, v.len()) - 1])
}

fn median(samples: &[Duration]) -> Duration {
    stats(samples).0
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

// ------------------------------------------------------------------ sandbox

/// A host namespace with `eth0` (veth, peer `uplink0`), both up.
struct Sandbox {
    host: NetNs,
    nl: Netlink,
}

impl Sandbox {
    fn new() -> Res<Sandbox> {
        let host = NetNs::create().map_err(fail("create the host namespace"))?;
        let nl = host
            .netlink()
            .map_err(fail("netlink in the host namespace"))?;
        add_veth(&nl, "eth0", "uplink0")?;
        Ok(Sandbox { host, nl })
    }

    fn parent_index(&self) -> Res<u32> {
        Ok(self.nl.link_by_name("eth0").map_err(fail("eth0"))?.index)
    }
}

fn add_veth(nl: &Netlink, name: &str, peer: &str) -> Res<()> {
    nl.create_link(&NewLink::veth(name, peer).up())
        .map_err(fail(format!("create veth {name}")))?;
    let index = nl.link_by_name(peer).map_err(fail(peer.to_owned()))?.index;
    nl.set_link_up_by_index(index, true)
        .map_err(fail(format!("{peer} up")))
}

fn containers(n: usize) -> Res<Vec<NetNs>> {
    (0..n)
        .map(|_| NetNs::create().map_err(fail("create a container namespace")))
        .collect()
}

/// A command that runs in `ns`: the child enters it before exec (the
/// bench's threads never move).
fn command_in(ns: &NetNs, program: &Path) -> Command {
    let fd = ns.as_fd().as_raw_fd();
    let mut command = Command::new(program);
    // SAFETY: setns is async-signal-safe and affects only the forked child.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// Runs a command (optionally feeding `input` on stdin) and fails unless it
/// exits 0.
fn run(mut command: Command, input: Option<&[u8]>) -> Res<Output> {
    command.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = command
        .spawn()
        .map_err(fail(format!("spawn {:?}", command.get_program())))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input).map_err(fail("write stdin"))?;
    }
    let out = child.wait_with_output().map_err(fail("wait"))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} {:?} exited with {}: {}{}",
            command.get_program(),
            command.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok(out)
}

/// The global addresses inside `ns` (every link but `lo`) and the number of
/// links.
fn inspect(ns: &NetNs) -> Res<(Vec<IpNet>, usize)> {
    let nl = ns.netlink().map_err(fail("netlink in a container"))?;
    let links = nl.links().map_err(fail("list links"))?;
    let addresses = nl
        .addresses(None)
        .map_err(fail("list addresses"))?
        .into_iter()
        .filter(|a| !a.link_scope && !a.address.addr().is_loopback())
        .map(|a| a.address)
        .collect();
    Ok((addresses, links.len()))
}

fn expect_attached(ns: &NetNs, want: &[IpNet], tool: &str) -> Res<()> {
    let (have, _) = inspect(ns)?;
    for w in want {
        if !have.contains(w) {
            return Err(format!("{tool}: container lacks {w} (has {have:?})"));
        }
    }
    Ok(())
}

fn expect_in_subnets(ns: &NetNs, subnets: &[IpNet], tool: &str) -> Res<()> {
    let (have, _) = inspect(ns)?;
    for s in subnets {
        if !have.iter().any(|a| s.contains(&a.addr())) {
            return Err(format!(
                "{tool}: container has no address in {s} (has {have:?})"
            ));
        }
    }
    Ok(())
}

/// Off the network: no address left in the container (underlay's detach
/// may leave the link, addressless and marked, for a sweep).
fn expect_detached(ns: &NetNs, tool: &str) -> Res<()> {
    let (have, links) = inspect(ns)?;
    if !have.is_empty() {
        return Err(format!(
            "{tool}: container still has addresses {have:?} ({links} links) after detach"
        ));
    }
    Ok(())
}

/// Waits (untimed) until `ns` holds only `lo`: underlay's sweep deletes a
/// detached link just after the detach returns.
fn wait_swept(ns: &NetNs, tool: &str) -> Res<()> {
    let start = Instant::now();
    while inspect(ns)?.1 > 1 {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("{tool}: the detached link was never swept"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Deletes (untimed) every link but `lo` in `ns`: what the CLI's detach
/// left for the next sweep (a process per call has no time to sweep).
fn clear_links(ns: &NetNs) -> Res<()> {
    let nl = ns.netlink().map_err(fail("netlink in a container"))?;
    for link in nl.links().map_err(fail("list links"))? {
        if link.name != "lo" {
            let _ = nl.delete_link(link.index);
        }
    }
    Ok(())
}

/// The `index`-th host address of a subnet (index from 0, skipping the
/// network address and the gateway at .1 / ::1).
fn nth(subnet: IpNet, index: usize) -> IpNet {
    let offset = index as u128 + 2;
    let addr = match subnet.addr() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + offset as u32).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + offset).into()),
    };
    IpNet::new(addr, subnet.prefix_len()).unwrap()
}

fn gateway(subnet: IpNet) -> IpAddr {
    match subnet.addr() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    }
}

// ------------------------------------------------------------------ tools

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    Dual,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::Dual => "dual",
        }
    }

    /// Subnets for tool number `tool`: 10.(20+tool).0.0/16 and fd(20+tool)::/64.
    fn subnets(self, tool: u8) -> Vec<IpNet> {
        let mut out = vec![format!("10.{}.0.0/16", 20 + tool).parse().unwrap()];
        if self == Family::Dual {
            out.push(format!("fd{}::/64", 20 + tool).parse().unwrap());
        }
        out
    }
}

struct Row {
    family: &'static str,
    tool: String,
    attach: Vec<Duration>,
    detach: Vec<Duration>,
    note: String,
}

fn docker_create_args(subnets: &[IpNet], parent: &str, name: &str) -> Vec<String> {
    let mut args = vec!["-d".to_owned(), "macvlan".to_owned()];
    if subnets.iter().any(|s| s.addr().is_ipv6()) {
        args.push("--ipv6".into());
    }
    for s in subnets {
        args.push(format!("--subnet={s}"));
        args.push(format!("--gateway={}", gateway(*s)));
    }
    args.push("-o".into());
    args.push(format!("parent={parent}"));
    args.push(name.to_owned());
    args
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("underlay-bench-{}-{what}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// The runtime directory a host opened without `runtime_dir` uses.
fn default_runtime_dir(state_dir: &Path) -> Option<PathBuf> {
    let id = std::fs::read_to_string(state_dir.join("id")).ok()?;
    Some(Path::new(underlay::host::DEFAULT_RUNTIME_DIR).join(id.trim()))
}

fn remove_state(state_dir: &Path) {
    if let Some(run) = default_runtime_dir(state_dir) {
        let _ = std::fs::remove_dir_all(run);
    }
    let _ = std::fs::remove_dir_all(state_dir);
}

fn open_host(sb: &Sandbox, state_dir: &Path, runtime_dir: Option<&Path>) -> Res<Host> {
    let netns = NetNs::open(format!("/proc/self/fd/{}", sb.host.as_fd().as_raw_fd()))
        .map_err(fail("reopen the host namespace"))?;
    let mut options = Host::options().state_dir(state_dir).netns(netns);
    if let Some(r) = runtime_dir {
        options = options.runtime_dir(r);
    }
    options.open().map_err(fail("open the state directory"))
}

/// One way of attaching and detaching containers. `attach` and `detach` are
/// timed; `check_attached`, `before_attach` and `after_detach` are not.
trait Tool {
    fn name(&self) -> String;
    fn note(&self) -> String {
        String::new()
    }
    fn before_attach(&mut self, _i: usize, _c: &NetNs) -> Res<()> {
        Ok(())
    }
    fn attach(&mut self, i: usize, c: &NetNs) -> Res<()>;
    fn check_attached(&self, i: usize, c: &NetNs) -> Res<()>;
    fn detach(&mut self, i: usize, c: &NetNs) -> Res<()>;
    fn after_detach(&mut self, _i: usize, _c: &NetNs) -> Res<()> {
        Ok(())
    }
    fn finish(&mut self) -> Res<()> {
        Ok(())
    }
    /// The time each attach's link creation (`RTM_NEWLINK`) took, where
    /// the tool times it apart (the floor and the ablation steps).
    fn newlink_times(&self) -> &[Duration] {
        &[]
    }
}

/// Runs every tool over the containers, interleaved by chunks: for each
/// chunk of containers, each tool attaches all of them, then detaches all of
/// them, before the next tool's turn. Every tool thus meets the same machine
/// conditions (this VM shares its 2 CPUs), and up to `chunk` endpoints exist
/// at a time.
fn run_tools(
    family: Family,
    tools: &mut [Box<dyn Tool + '_>],
    cs: &[NetNs],
    chunk: usize,
) -> Res<Vec<Row>> {
    let mut rows: Vec<Row> = tools
        .iter()
        .map(|t| Row {
            family: family.name(),
            tool: t.name(),
            attach: Vec::new(),
            detach: Vec::new(),
            note: t.note(),
        })
        .collect();
    let indexed: Vec<(usize, &NetNs)> = cs.iter().enumerate().collect();
    for part in indexed.chunks(chunk.max(1)) {
        for (tool, row) in tools.iter_mut().zip(rows.iter_mut()) {
            for &(i, c) in part {
                tool.before_attach(i, c)?;
                let (r, d) = time(|| tool.attach(i, c));
                r.map_err(fail(format!("{} attach #{i}", row.tool)))?;
                row.attach.push(d);
            }
            for &(i, c) in part {
                tool.check_attached(i, c)?;
            }
            for &(i, c) in part {
                let (r, d) = time(|| tool.detach(i, c));
                r.map_err(fail(format!("{} detach #{i}", row.tool)))?;
                row.detach.push(d);
            }
            for &(i, c) in part {
                expect_detached(c, &row.tool)?;
                tool.after_detach(i, c)?;
            }
        }
    }
    for tool in tools.iter_mut() {
        tool.finish()?;
    }
    Ok(rows)
}

/// underlay, in-process: `Network::attach` / `Network::detach`.
struct InProcess {
    dir: PathBuf,
    runtime: Option<PathBuf>,
    host: Host,
    net: underlay::Network,
    options: AttachOptions,
    endpoints: Vec<Option<Vec<IpNet>>>,
}

impl InProcess {
    /// With `tmpfs`, the endpoint records go to a runtime directory on
    /// /dev/shm (tmpfs, as /run is on most hosts; on this VM /run is ext4).
    fn new(sb: &Sandbox, family: Family, n: usize, tmpfs: bool) -> Res<InProcess> {
        let dir = temp_dir(&format!("inproc-{}-{tmpfs}", family.name()));
        let runtime = tmpfs.then(|| {
            PathBuf::from(format!(
                "/dev/shm/underlay-bench-{}-{}",
                std::process::id(),
                family.name()
            ))
        });
        let host = open_host(sb, &dir, runtime.as_deref())?;
        let name = format!("inproc_{}", family.name());
        let subnets = family.subnets(if tmpfs { 6 } else { 0 });
        let args = network_create_args(docker_create_args(&subnets, "eth0", &name))
            .map_err(fail("args"))?;
        let net = host
            .create_network(args)
            .map_err(fail("create the network"))?;
        Ok(InProcess {
            dir,
            runtime,
            host,
            net,
            options: AttachOptions::new(),
            endpoints: vec![None; n],
        })
    }
}

impl Tool for InProcess {
    fn name(&self) -> String {
        match self.runtime {
            None => "underlay in-process".into(),
            Some(_) => "underlay in-process, runtime dir on tmpfs".into(),
        }
    }
    fn attach(&mut self, i: usize, c: &NetNs) -> Res<()> {
        let ep = self.net.attach(c, &self.options).map_err(fail("attach"))?;
        self.endpoints[i] = Some(ep.addresses().to_vec());
        Ok(())
    }
    fn check_attached(&self, i: usize, c: &NetNs) -> Res<()> {
        expect_attached(
            c,
            self.endpoints[i].as_deref().unwrap_or_default(),
            "in-process",
        )
    }
    fn detach(&mut self, _i: usize, c: &NetNs) -> Res<()> {
        match self.net.detach(c) {
            Ok(true) => Ok(()),
            Ok(false) => Err("not attached".into()),
            Err(e) => Err(e.to_string()),
        }
    }
    fn after_detach(&mut self, _i: usize, c: &NetNs) -> Res<()> {
        wait_swept(c, "in-process")
    }
    fn finish(&mut self) -> Res<()> {
        self.host
            .remove_network(self.net.name())
            .map_err(fail("remove the network"))?;
        remove_state(&self.dir);
        if let Some(r) = &self.runtime {
            let _ = std::fs::remove_dir_all(r);
        }
        Ok(())
    }
}

/// The underlay CLI example, one process per call, entering the host
/// namespace before exec.
struct Cli<'a> {
    program: &'a Path,
    state_dir: PathBuf,
    host: &'a NetNs,
}

impl Cli<'_> {
    fn call(&self, args: &[&str]) -> Res<Output> {
        let mut command = command_in(self.host, self.program);
        command.arg("--state-dir").arg(&self.state_dir).args(args);
        run(command, None)
    }
}

struct CliTool<'a> {
    cli: Cli<'a>,
    name: String,
    subnets: Vec<IpNet>,
}

impl<'a> CliTool<'a> {
    fn new(cfg: &'a Config, sb: &'a Sandbox, family: Family) -> Res<CliTool<'a>> {
        let cli = Cli {
            program: &cfg.cli,
            state_dir: temp_dir(&format!("cli-{}", family.name())),
            host: &sb.host,
        };
        let subnets = family.subnets(1);
        let name = format!("cli_{}", family.name());
        let mut args = vec!["network".to_owned(), "create".to_owned()];
        args.extend(docker_create_args(&subnets, "eth0", &name));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli.call(&args)?;
        Ok(CliTool { cli, name, subnets })
    }
}

impl Tool for CliTool<'_> {
    fn name(&self) -> String {
        "underlay CLI example (process/call)".into()
    }
    fn attach(&mut self, _i: usize, c: &NetNs) -> Res<()> {
        let path = c.path().to_string_lossy().into_owned();
        self.cli
            .call(&["network", "connect", &self.name, &path])
            .map(|_| ())
    }
    fn check_attached(&self, _i: usize, c: &NetNs) -> Res<()> {
        expect_in_subnets(c, &self.subnets, "cli")
    }
    fn detach(&mut self, _i: usize, c: &NetNs) -> Res<()> {
        let path = c.path().to_string_lossy().into_owned();
        self.cli
            .call(&["network", "disconnect", &self.name, &path])
            .map(|_| ())
    }
    fn after_detach(&mut self, _i: usize, c: &NetNs) -> Res<()> {
        clear_links(c)
    }
    fn finish(&mut self) -> Res<()> {
        self.cli.call(&["network", "rm", &self.name])?;
        remove_state(&self.cli.state_dir);
        Ok(())
    }
}

/// netavark's network-options JSON for one container, as podman passes it:
/// the static IPs chosen by the caller's IPAM.
fn netavark_options(container: usize, subnets: &[IpNet], name: &str) -> String {
    let ips: Vec<String> = subnets
        .iter()
        .map(|s| format!("\"{}\"", nth(*s, container).addr()))
        .collect();
    let subnet_json: Vec<String> = subnets
        .iter()
        .map(|s| format!("{{\"subnet\":\"{s}\",\"gateway\":\"{}\"}}", gateway(*s)))
        .collect();
    format!(
        r#"{{"container_id":"bench{container:060}","container_name":"c{container}",
"networks":{{"{name}":{{"static_ips":[{ips}],"interface_name":"eth0"}}}},
"network_info":{{"{name}":{{"name":"{name}","id":"{id}","driver":"macvlan",
"network_interface":"eth0","subnets":[{subnets}],"ipv6_enabled":{v6},"internal":false,
"dns_enabled":false,"ipam_options":{{"driver":"host-local"}},"options":{{"mode":"bridge"}}}}}}}}"#,
        ips = ips.join(","),
        id = "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9",
        subnets = subnet_json.join(","),
        v6 = subnets.len() > 1,
    )
}

/// netavark `setup` / `teardown NETNS` with `--file OPTIONS.json`.
struct Netavark<'a> {
    program: &'a Path,
    host: &'a NetNs,
    dir: PathBuf,
    subnets: Vec<IpNet>,
    files: Vec<PathBuf>,
}

impl<'a> Netavark<'a> {
    fn new(cfg: &'a Config, sb: &'a Sandbox, family: Family, n: usize) -> Res<Netavark<'a>> {
        let dir = temp_dir(&format!("netavark-{}", family.name()));
        let subnets = family.subnets(2);
        let name = format!("nv_{}", family.name());
        let files = (0..n)
            .map(|i| {
                let path = dir.join(format!("c{i}.json"));
                std::fs::write(&path, netavark_options(i, &subnets, &name)).map(|_| path)
            })
            .collect::<std::io::Result<_>>()
            .map_err(fail("write netavark options"))?;
        Ok(Netavark {
            program: &cfg.netavark,
            host: &sb.host,
            dir,
            subnets,
            files,
        })
    }

    fn call(&self, what: &str, i: usize, c: &NetNs) -> Res<()> {
        let mut command = command_in(self.host, self.program);
        command
            .arg("--config")
            .arg(self.dir.join("config"))
            .arg("--file")
            .arg(&self.files[i])
            .arg(what)
            .arg(c.path());
        run(command, None).map(|_| ())
    }
}

impl Tool for Netavark<'_> {
    fn name(&self) -> String {
        "netavark 1.4 (process/call)".into()
    }
    fn attach(&mut self, i: usize, c: &NetNs) -> Res<()> {
        self.call("setup", i, c)
    }
    fn check_attached(&self, i: usize, c: &NetNs) -> Res<()> {
        let want: Vec<IpNet> = self.subnets.iter().map(|s| nth(*s, i)).collect();
        expect_attached(c, &want, "netavark")
    }
    fn detach(&mut self, i: usize, c: &NetNs) -> Res<()> {
        self.call("teardown", i, c)
    }
    fn finish(&mut self) -> Res<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

fn cni_netconf(subnets: &[IpNet], data_dir: &Path, name: &str) -> String {
    let ranges: Vec<String> = subnets
        .iter()
        .map(|s| format!("[{{\"subnet\":\"{s}\",\"gateway\":\"{}\"}}]", gateway(*s)))
        .collect();
    let routes: Vec<&str> = subnets
        .iter()
        .map(|s| {
            if s.addr().is_ipv4() {
                r#"{"dst":"0.0.0.0/0"}"#
            } else {
                r#"{"dst":"::/0"}"#
            }
        })
        .collect();
    format!(
        r#"{{"cniVersion":"1.0.0","name":"{name}","type":"macvlan","master":"eth0","mode":"bridge",
"ipam":{{"type":"host-local","dataDir":"{data}","ranges":[{ranges}],"routes":[{routes}]}}}}"#,
        data = data_dir.display(),
        ranges = ranges.join(","),
        routes = routes.join(","),
    )
}

/// The CNI macvlan plugin with host-local IPAM (`CNI_COMMAND=ADD|DEL`,
/// netconf on stdin). With `dad_off`, IPv6 duplicate address detection is
/// turned off in the container just before ADD and back on after DEL: the
/// plugin otherwise waits for DAD to finish, 1-2 s per container.
struct Cni<'a> {
    plugin: PathBuf,
    cni_path: &'a Path,
    host: &'a NetNs,
    dir: PathBuf,
    subnets: Vec<IpNet>,
    netconf: String,
    dad_off: bool,
    dual: bool,
}

impl<'a> Cni<'a> {
    fn new(cfg: &'a Config, sb: &'a Sandbox, family: Family, dad_off: bool) -> Res<Cni<'a>> {
        let dir = temp_dir(&format!("cni-{}-{dad_off}", family.name()));
        let subnets = family.subnets(3);
        let netconf = cni_netconf(
            &subnets,
            &dir.join("data"),
            &format!("cni_{}", family.name()),
        );
        Ok(Cni {
            plugin: cfg.cni_dir.join("macvlan"),
            cni_path: &cfg.cni_dir,
            host: &sb.host,
            dir,
            subnets,
            netconf,
            dad_off: dad_off && family == Family::Dual,
            dual: family == Family::Dual,
        })
    }

    fn call(&self, what: &str, i: usize, c: &NetNs) -> Res<()> {
        let mut command = command_in(self.host, &self.plugin);
        command
            .env("CNI_COMMAND", what)
            .env("CNI_CONTAINERID", format!("bench{i}"))
            .env("CNI_NETNS", c.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.cni_path);
        run(command, Some(self.netconf.as_bytes())).map(|_| ())
    }
}

impl Tool for Cni<'_> {
    fn name(&self) -> String {
        let mut name = "CNI macvlan+host-local 1.1 (process/call)".to_owned();
        if self.dual {
            name.push_str(if self.dad_off { " DAD off" } else { " DAD on" });
        }
        name
    }
    fn note(&self) -> String {
        if self.dad_off {
            "accept_dad=0 set in the container before ADD (untimed); with DAD on the plugin waits 1-2 s for it".into()
        } else {
            String::new()
        }
    }
    fn before_attach(&mut self, _i: usize, c: &NetNs) -> Res<()> {
        if self.dad_off {
            c.write_sysctl("net/ipv6/conf/default/accept_dad", "0")
                .map_err(fail("accept_dad"))?;
        }
        Ok(())
    }
    fn attach(&mut self, i: usize, c: &NetNs) -> Res<()> {
        self.call("ADD", i, c)
    }
    fn check_attached(&self, _i: usize, c: &NetNs) -> Res<()> {
        expect_in_subnets(c, &self.subnets, "cni")
    }
    fn detach(&mut self, i: usize, c: &NetNs) -> Res<()> {
        self.call("DEL", i, c)
    }
    fn after_detach(&mut self, _i: usize, c: &NetNs) -> Res<()> {
        if self.dad_off {
            c.write_sysctl("net/ipv6/conf/default/accept_dad", "1")
                .map_err(fail("accept_dad"))?;
        }
        Ok(())
    }
    fn finish(&mut self) -> Res<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// The `underlay-cni` plugin, one process per call, as a runtime runs it:
/// its own IPAM, macvlan on `eth0`, the configuration on stdin.
struct UnderlayCni<'a> {
    plugin: &'a Path,
    host: &'a NetNs,
    dir: PathBuf,
    subnets: Vec<IpNet>,
    netconf: String,
}

impl<'a> UnderlayCni<'a> {
    fn new(cfg: &'a Config, sb: &'a Sandbox, family: Family) -> Res<UnderlayCni<'a>> {
        let dir = temp_dir(&format!("underlay-cni-{}", family.name()));
        let subnets = family.subnets(6);
        let list: Vec<String> = subnets
            .iter()
            .map(|s| format!("{{\"subnet\":\"{s}\"}}"))
            .collect();
        let netconf = format!(
            r#"{{"cniVersion":"1.0.0","name":"ucni_{family}","type":"underlay-cni","driver":"macvlan",
"options":{{"parent":"eth0"}},"subnets":[{list}],"stateDir":"{state}","runtimeDir":"{run}"}}"#,
            family = family.name(),
            list = list.join(","),
            state = dir.join("state").display(),
            run = dir.join("run").display(),
        );
        if !cfg.underlay_cni.is_file() {
            return Err(format!(
                "no underlay-cni at {} (cargo build --release --bin underlay-cni, or set UNDERLAY_CNI; UNDERLAY_BENCH_SKIP=underlay-cni skips it)",
                cfg.underlay_cni.display()
            ));
        }
        Ok(UnderlayCni {
            plugin: &cfg.underlay_cni,
            host: &sb.host,
            dir,
            subnets,
            netconf,
        })
    }

    fn call(&self, what: &str, i: usize, c: &NetNs) -> Res<()> {
        let mut command = command_in(self.host, self.plugin);
        command
            .env("CNI_COMMAND", what)
            .env("CNI_CONTAINERID", format!("bench{i}"))
            .env("CNI_NETNS", c.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni");
        run(command, Some(self.netconf.as_bytes())).map(|_| ())
    }
}

impl Tool for UnderlayCni<'_> {
    fn name(&self) -> String {
        "underlay-cni (process/call)".into()
    }
    fn attach(&mut self, i: usize, c: &NetNs) -> Res<()> {
        self.call("ADD", i, c)
    }
    fn check_attached(&self, _i: usize, c: &NetNs) -> Res<()> {
        expect_in_subnets(c, &self.subnets, "underlay-cni")
    }
    fn detach(&mut self, i: usize, c: &NetNs) -> Res<()> {
        self.call("DEL", i, c)
    }
    fn after_detach(&mut self, _i: usize, c: &NetNs) -> Res<()> {
        // DEL returns once the addresses are free; its background sweeper
        // deletes the link just after: the next tool waits for it (untimed).
        wait_swept(c, "underlay-cni")
    }
    fn finish(&mut self) -> Res<()> {
        remove_state(&self.dir.join("state"));
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// The kernel floor: the same requests back to back with the low-level API
/// (`create_link` with `.netns()` on the host socket, then `link_by_name`,
/// `add_address`, `set_link_up_by_index`, `add_route` inside; `delete_link`),
/// container sockets opened beforehand; no IPAM, no state, no checks.
struct Floor<'a> {
    /// Also underlay's other netlink requests: the mark (alias) and
    /// `arp_notify` (which makes the kernel send a gratuitous ARP at up).
    same_requests: bool,
    host: &'a Netlink,
    parent: u32,
    subnets: Vec<IpNet>,
    sockets: Vec<Netlink>,
    socket_open: Vec<Duration>,
    indexes: Vec<u32>,
    newlink: Vec<Duration>,
}

impl<'a> Floor<'a> {
    fn new(sb: &'a Sandbox, family: Family, cs: &[NetNs]) -> Res<Floor<'a>> {
        let mut sockets = Vec::new();
        let mut socket_open = Vec::new();
        for c in cs {
            let (nl, d) = time(|| c.netlink());
            sockets.push(nl.map_err(fail("netlink in a container"))?);
            socket_open.push(d);
        }
        Ok(Floor {
            same_requests: false,
            host: &sb.nl,
            parent: sb.parent_index()?,
            subnets: family.subnets(4),
            sockets,
            socket_open,
            indexes: vec![0; cs.len()],
            newlink: Vec::new(),
        })
    }
}

impl Tool for Floor<'_> {
    fn name(&self) -> String {
        if self.same_requests {
            "kernel floor + mark, arp_notify (underlay's requests)".into()
        } else {
            "kernel floor (raw netlink, no state)".into()
        }
    }
    fn attach(&mut self, i: usize, c: &NetNs) -> Res<()> {
        let inside = &self.sockets[i];
        let newlink = &mut self.newlink;
        let r = (|| -> underlay::Result<u32> {
            let (made, d) = time(|| {
                self.host.create_link(
                    &NewLink::macvlan("eth0", self.parent, MacvlanMode::Bridge).netns(c),
                )
            });
            made?;
            newlink.push(d);
            let index = inside.link_by_name("eth0")?.index;
            if self.same_requests {
                inside.set_alias(index, "underlay:0123456789abcdef:0123456789abcdef")?;
                inside.set_arp_notify(index)?;
            }
            for s in &self.subnets {
                if s.addr().is_ipv6() {
                    inside.add_address_nodad(index, nth(*s, i))?;
                } else {
                    inside.add_address(index, nth(*s, i))?;
                }
            }
            inside.set_link_up_by_index(index, true)?;
            for s in &self.subnets {
                inside.add_route(&NewRoute::default_via(gateway(*s), index))?;
            }
            Ok(index)
        })();
        self.indexes[i] = r.map_err(fail("floor attach"))?;
        Ok(())
    }
    fn check_attached(&self, i: usize, c: &NetNs) -> Res<()> {
        let want: Vec<IpNet> = self.subnets.iter().map(|s| nth(*s, i)).collect();
        expect_attached(c, &want, "floor")
    }
    fn detach(&mut self, i: usize, _c: &NetNs) -> Res<()> {
        self.sockets[i]
            .delete_link(self.indexes[i])
            .map_err(fail("floor detach"))
    }
    fn newlink_times(&self) -> &[Duration] {
        &self.newlink
    }
}

// ------------------------------------------------------------------ report

struct Report {
    out: String,
    targets: Vec<(String, bool, String)>,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        self.out.push_str(s.as_ref());
        self.out.push('\n');
    }

    fn target(&mut self, name: impl Into<String>, met: bool, detail: impl Into<String>) {
        self.targets.push((name.into(), met, detail.into()));
    }

    fn table(&mut self, rows: &[Row]) {
        self.line(format!(
            "| {:<6} | {:<48} | {:>10} | {:>10} | {:>8} | {:>10} | {:>10} | {:>8} |",
            "family",
            "tool",
            "attach p50",
            "attach p99",
            "x inproc",
            "detach p50",
            "detach p99",
            "x inproc"
        ));
        self.line(format!(
            "|{:-<8}|{:-<50}|{:-<12}|{:-<12}|{:-<10}|{:-<12}|{:-<12}|{:-<10}|",
            "", "", "", "", "", "", "", ""
        ));
        for row in rows {
            let base = rows
                .iter()
                .find(|r| r.family == row.family && r.tool == "underlay in-process");
            let (a50, a99) = stats(&row.attach);
            let (d50, d99) = stats(&row.detach);
            let ratio = |x: Duration, b: Option<Duration>| match b {
                Some(b) if !b.is_zero() => format!("{:.2}", x.as_secs_f64() / b.as_secs_f64()),
                _ => "-".into(),
            };
            let line = format!(
                "| {:<6} | {:<48} | {:>7.3} ms | {:>7.3} ms | {:>8} | {:>7.3} ms | {:>7.3} ms | {:>8} |",
                row.family,
                format!("{} (n={})", row.tool, row.attach.len()),
                ms(a50),
                ms(a99),
                ratio(a50, base.map(|b| median(&b.attach))),
                ms(d50),
                ms(d99),
                ratio(d50, base.map(|b| median(&b.detach))),
            );
            self.line(line);
        }
        for row in rows.iter().filter(|r| !r.note.is_empty()) {
            self.line(format!(
                "  note ({} {}): {}",
                row.family, row.tool, row.note
            ));
        }
    }
}

fn find<'a>(rows: &'a [Row], family: &str, prefix: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.family == family && r.tool.starts_with(prefix))
}

// ------------------------------------------------------------------ e2e

fn e2e(cfg: &Config, report: &mut Report) -> Res<()> {
    let sb = Sandbox::new()?;
    let cs = containers(cfg.n)?;
    report.line(format!(
        "\n== e2e: macvlan (bridge) on a veth parent, {} containers reused by every tool, one sandbox ==",
        cfg.n
    ));
    let mut rows = Vec::new();
    let mut socket_opens = Vec::new();
    for family in [Family::V4, Family::Dual] {
        eprintln!(
            "e2e {}: {} containers, chunks of {}",
            family.name(),
            cs.len(),
            cfg.chunk
        );
        let mut tools: Vec<Box<dyn Tool + '_>> = vec![
            Box::new(InProcess::new(&sb, family, cs.len(), false)?),
            Box::new(InProcess::new(&sb, family, cs.len(), true)?),
        ];
        if !cfg.skipped("cli") {
            tools.push(Box::new(CliTool::new(cfg, &sb, family)?));
        }
        if !cfg.skipped("netavark") {
            tools.push(Box::new(Netavark::new(cfg, &sb, family, cs.len())?));
        }
        if !cfg.skipped("underlay-cni") {
            tools.push(Box::new(UnderlayCni::new(cfg, &sb, family)?));
        }
        if !cfg.skipped("cni") {
            tools.push(Box::new(Cni::new(cfg, &sb, family, true)?));
        }
        let mut floor = Floor::new(&sb, family, &cs)?;
        socket_opens.extend(std::mem::take(&mut floor.socket_open));
        tools.push(Box::new(floor));
        let mut same = Floor::new(&sb, family, &cs)?;
        same.same_requests = true;
        same.subnets = family.subnets(7);
        tools.push(Box::new(same));
        rows.extend(run_tools(family, &mut tools, &cs, cfg.chunk)?);
        if family == Family::Dual && !cfg.skipped("cni") {
            let k = cs.len().min(5);
            eprintln!("e2e dual: CNI with DAD on ({k} containers)");
            let mut tools: Vec<Box<dyn Tool + '_>> =
                vec![Box::new(Cni::new(cfg, &sb, family, false)?)];
            rows.extend(run_tools(family, &mut tools, &cs[..k], k)?);
        }
    }
    report.table(&rows);
    for tool in ["cli", "underlay-cni", "netavark", "cni"] {
        if cfg.skipped(tool) {
            report.line(format!("  SKIPPED by UNDERLAY_BENCH_SKIP: {tool}"));
        }
    }
    let (s50, s99) = stats(&socket_opens);
    report.line(format!(
        "  (not in the floor) NetNs::netlink(), a socket inside a container (thread + setns + socket): p50 {:.3} ms, p99 {:.3} ms",
        ms(s50),
        ms(s99)
    ));

    for family in ["ipv4", "dual"] {
        let Some(inproc) = find(&rows, family, "underlay in-process") else {
            continue;
        };
        let a = median(&inproc.attach);
        let ratio = |r: &Row| median(&r.attach).as_secs_f64() / a.as_secs_f64();
        if let Some(nv) = find(&rows, family, "netavark") {
            let x = ratio(nv);
            report.target(
                format!("{family}: in-process attach >=10x faster than netavark setup"),
                x >= 10.0,
                format!("{x:.1}x"),
            );
        }
        if let Some(cni) = find(&rows, family, "CNI") {
            let x = ratio(cni);
            report.target(
                format!(
                    "{family}: in-process attach >=20x faster than CNI ADD ({})",
                    cni.tool
                ),
                x >= 20.0,
                format!("{x:.1}x"),
            );
        }
        if let Some(floor) = find(&rows, family, "kernel floor") {
            let x = 1.0 / ratio(floor);
            report.target(
                format!("{family}: in-process attach within 1.5x of the kernel floor"),
                x <= 1.5,
                format!("{x:.2}x the floor"),
            );
        }
        // Detach: off the network at once, the link deleted after.
        let d = median(&inproc.detach);
        report.target(
            format!("{family}: in-process detach p50 <= 1 ms"),
            d <= Duration::from_millis(1),
            format!("{:.3} ms", ms(d)),
        );
        for peer in ["netavark", "CNI"] {
            if let Some(p) = find(&rows, family, peer) {
                let x = median(&p.detach).as_secs_f64() / d.as_secs_f64().max(1e-9);
                report.target(
                    format!("{family}: in-process detach >=15x faster than {}", p.tool),
                    x >= 15.0,
                    format!("{x:.1}x"),
                );
            }
        }
        if let Some(cli) = find(&rows, family, "underlay CLI") {
            let c = median(&cli.detach);
            for peer in ["netavark", "CNI"] {
                if let Some(p) = find(&rows, family, peer) {
                    report.target(
                        format!("{family}: CLI disconnect faster than {}", p.tool),
                        c < median(&p.detach),
                        format!("{:.3} ms vs {:.3} ms", ms(c), ms(median(&p.detach))),
                    );
                }
            }
        }
        if let (Some(ours), Some(stock)) = (
            find(&rows, family, "underlay-cni"),
            find(&rows, family, "CNI"),
        ) {
            let (a, b) = (median(&ours.attach), median(&stock.attach));
            report.target(
                format!(
                    "{family}: underlay-cni ADD at most 1/3 of {} ADD",
                    stock.tool
                ),
                a.as_secs_f64() * 3.0 <= b.as_secs_f64(),
                format!(
                    "{:.3} ms vs {:.3} ms ({:.2} of it); DEL {:.3} ms vs {:.3} ms",
                    ms(a),
                    ms(b),
                    a.as_secs_f64() / b.as_secs_f64(),
                    ms(median(&ours.detach)),
                    ms(median(&stock.detach))
                ),
            );
        }
        if let (Some(cli), Some(nv)) = (
            find(&rows, family, "underlay CLI"),
            find(&rows, family, "netavark"),
        ) {
            let (c, n) = (median(&cli.attach), median(&nv.attach));
            report.target(
                format!("{family}: CLI connect no slower than netavark setup"),
                c <= n,
                format!("{:.3} ms vs {:.3} ms", ms(c), ms(n)),
            );
        }
    }
    let one_detach = find(&rows, "ipv4", "underlay in-process")
        .map(|r| (median(&r.detach), r.detach.iter().sum()));
    let one_deletion = find(&rows, "ipv4", "kernel floor").map(|r| median(&r.detach));
    bulk(&sb, &cs, one_detach, one_deletion, report)?;
    Ok(())
}

/// force_remove_network with N endpoints against one detach, and the
/// kernel's cost of deleting N links serially and concurrently.
fn bulk(
    sb: &Sandbox,
    cs: &[NetNs],
    one_detach: Option<(Duration, Duration)>,
    one_deletion: Option<Duration>,
    report: &mut Report,
) -> Res<()> {
    report.line(format!(
        "\n== bulk teardown: {} endpoints (existing parent eth0) ==",
        cs.len()
    ));
    let dir = temp_dir("bulk");
    let host = open_host(sb, &dir, None)?;
    let subnets = Family::V4.subnets(5);
    let net = host
        .create_network(
            network_create_args(docker_create_args(&subnets, "eth0", "bulk"))
                .map_err(fail("args"))?,
        )
        .map_err(fail("create"))?;
    for c in cs {
        net.attach(c, &AttachOptions::new())
            .map_err(fail("attach"))?;
    }
    let start = Instant::now();
    let (r, remove) = time(|| host.force_remove_network("bulk"));
    r.map_err(fail("force_remove_network"))?;
    for c in cs {
        expect_detached(c, "force_remove_network")?;
    }
    // The links are deleted in the background; waited for (untimed above)
    // before the kernel rows below, which would share the kernel with them.
    host.settle();
    let gone = start.elapsed();
    for c in cs {
        if inspect(c)?.1 > 1 {
            return Err("force_remove_network: a link is left after settle".into());
        }
    }
    drop(host);
    remove_state(&dir);
    let (one, sum) = one_detach.unwrap_or_default();
    report.line(format!(
        "{} single in-process detaches (the e2e rows above): {:.1} ms in all",
        cs.len(),
        ms(sum)
    ));
    report.line(format!(
        "underlay force_remove_network, {} endpoints: {:.1} ms = {:.1}x one in-process detach ({:.3} ms), {:.1} ms per endpoint",
        cs.len(),
        ms(remove),
        remove.as_secs_f64() / one.as_secs_f64().max(1e-9),
        ms(one),
        ms(remove) / cs.len() as f64
    ));
    report.line(format!(
        "  every container off the network when it returned; every link deleted (background, all in flight) {:.1} ms after the call began",
        ms(gone)
    ));
    if let Some(deletion) = one_deletion {
        let x = remove.as_secs_f64() / deletion.as_secs_f64().max(1e-9);
        report.target(
            format!(
                "force_remove_network of {} endpoints <=1.5x one kernel link deletion",
                cs.len()
            ),
            x <= 1.5,
            format!("{:.1}x ({:.1} ms vs {:.1} ms)", x, ms(remove), ms(deletion)),
        );
    }
    // The kernel's side: N macvlans in N namespaces deleted with 1, 8 or N
    // threads in flight (each its own RTM_DELLINK).
    let parent = sb.parent_index()?;
    let sockets: Vec<Netlink> = cs
        .iter()
        .map(|c| c.netlink())
        .collect::<underlay::Result<_>>()
        .map_err(fail("netlink"))?;
    for threads in [1usize, 8, cs.len()] {
        let mut indexes = Vec::new();
        for (c, inside) in cs.iter().zip(&sockets) {
            sb.nl
                .create_link(&NewLink::macvlan("eth0", parent, MacvlanMode::Bridge).netns(c))
                .map_err(fail("floor create"))?;
            indexes.push(inside.link_by_name("eth0").map_err(fail("eth0"))?.index);
        }
        let jobs: Vec<(&Netlink, u32)> = sockets.iter().zip(indexes).collect();
        let chunk = jobs.len().div_ceil(threads);
        let (r, d) = time(|| {
            std::thread::scope(|s| {
                let handles: Vec<_> = jobs
                    .chunks(chunk)
                    .map(|part| {
                        s.spawn(move || part.iter().try_for_each(|(nl, i)| nl.delete_link(*i)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .try_for_each(|h| h.join().expect("delete thread"))
            })
        });
        r.map_err(fail("floor bulk delete"))?;
        report.line(format!(
            "kernel floor: delete {} macvlans (one per namespace), {} thread(s) in flight: {:.1} ms total, {:.2} ms per link",
            jobs.len(),
            threads.min(jobs.len()),
            ms(d),
            ms(d) / jobs.len() as f64
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ scale

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn raise_nofile(report: &mut Report, need: u64) -> Res<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        let old = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        report.line(format!(
            "RLIMIT_NOFILE: soft {old} -> {} (hard {}); need about {need} (one fd per namespace)",
            limit.rlim_cur, limit.rlim_max
        ));
    }
    if limit.rlim_cur < need {
        return Err(format!(
            "RLIMIT_NOFILE hard limit {} < {need}: lower UNDERLAY_BENCH_RECORDS",
            limit.rlim_max
        ));
    }
    Ok(())
}

fn attach_detach(net: &underlay::Network, cs: &[NetNs]) -> Res<(Vec<Duration>, Vec<Duration>)> {
    let mut a = Vec::new();
    let mut d = Vec::new();
    for c in cs {
        let (r, t) = time(|| net.attach(c, &AttachOptions::new()));
        r.map_err(fail("attach"))?;
        a.push(t);
        let (r, t) = time(|| net.detach(c));
        r.map_err(fail("detach"))?;
        d.push(t);
    }
    Ok((a, d))
}

fn cli_attach_detach(cli: &Cli, name: &str, cs: &[NetNs]) -> Res<(Vec<Duration>, Vec<Duration>)> {
    let mut a = Vec::new();
    let mut d = Vec::new();
    for c in cs {
        let path = c.path().to_string_lossy().into_owned();
        let (r, t) = time(|| cli.call(&["network", "connect", name, &path]));
        r?;
        a.push(t);
        let (r, t) = time(|| cli.call(&["network", "disconnect", name, &path]));
        r?;
        d.push(t);
    }
    Ok((a, d))
}

/// Floor attaches (create in the namespace, look up, address, up, route)
/// on each probe namespace, each deleted again untimed.
fn floor_probe(sb: &Sandbox, probes: &[NetNs], garp: bool) -> Res<Vec<Duration>> {
    let parent = sb.parent_index()?;
    // In the scale network's subnet (10.100.0.0/16), above what it hands
    // out, so that the other containers treat the GARP as they treat the
    // library's.
    let subnet: IpNet = "10.100.0.0/16".parse().unwrap();
    let mut out = Vec::new();
    for (i, c) in probes.iter().enumerate() {
        let inside = c.netlink().map_err(fail("netlink"))?;
        let (r, t) = time(|| -> underlay::Result<u32> {
            sb.nl
                .create_link(&NewLink::macvlan("eth0", parent, MacvlanMode::Bridge).netns(c))?;
            let index = inside.link_by_name("eth0")?.index;
            if garp {
                inside.set_arp_notify(index)?;
            }
            inside.add_address(index, nth(subnet, 200 * 256 + i))?;
            inside.set_link_up_by_index(index, true)?;
            inside.add_route(&NewRoute::default_via(gateway(subnet), index))?;
            Ok(index)
        });
        let index = r.map_err(fail("floor probe"))?;
        out.push(t);
        inside
            .delete_link(index)
            .map_err(fail("floor probe delete"))?;
    }
    Ok(out)
}

/// Attach latency, with `count` endpoints on the parent, of: the kernel
/// floor; the floor plus `arp_notify` (the gratuitous ARP the library asks
/// for, which macvlan bridge mode delivers to every other macvlan on the
/// parent); and the library on a second state directory whose network (same
/// parent) has no endpoint records, runtime dir on tmpfs.
struct Probe {
    count: usize,
    floor: Duration,
    floor_garp: Duration,
    empty_tmpfs: Duration,
}

fn probe(sb: &Sandbox, probes: &[NetNs], side: &underlay::Network, count: usize) -> Res<Probe> {
    let floor = median(&floor_probe(sb, probes, false)?);
    let floor_garp = median(&floor_probe(sb, probes, true)?);
    let mut lib = Vec::new();
    for c in probes {
        let (r, t) = time(|| side.attach(c, &AttachOptions::new()));
        r.map_err(fail("probe attach"))?;
        lib.push(t);
        side.detach(c).map_err(fail("probe detach"))?;
    }
    Ok(Probe {
        count,
        floor,
        floor_garp,
        empty_tmpfs: median(&lib),
    })
}

fn p50s(v: &[Duration]) -> String {
    let (m, p) = stats(v);
    format!("p50 {:.3} ms, p99 {:.3} ms (n={})", ms(m), ms(p), v.len())
}

fn scale(cfg: &Config, report: &mut Report) -> Res<()> {
    let total = cfg.scale_n.max(cfg.records);
    report.line(format!(
        "\n== scale: one state directory, macvlan IPv4 /16 on eth0; curve to {} endpoints, {} networks ==",
        total, cfg.networks
    ));
    raise_nofile(report, total as u64 + 200)?;
    let use_cli = !cfg.skipped("cli");
    let sb = Sandbox::new()?;
    let dir = temp_dir("scale");
    // The default runtime directory, so that the CLI, given only
    // --state-dir, sees the same endpoints.
    let host = open_host(&sb, &dir, None)?;
    let net = host
        .create_network(
            network_create_args(docker_create_args(
                &["10.100.0.0/16".parse().unwrap()],
                "eth0",
                "scale0",
            ))
            .map_err(fail("args"))?,
        )
        .map_err(fail("create"))?;
    let cli = Cli {
        program: &cfg.cli,
        state_dir: dir.clone(),
        host: &sb.host,
    };
    let probes = containers(20)?;
    let cli_probes = &probes[..10];

    // 1 network versus many.
    let (a1, d1) = attach_detach(&net, &probes)?;
    let cli1 = if use_cli {
        Some(cli_attach_detach(&cli, "scale0", cli_probes)?)
    } else {
        None
    };
    let (_, open1) = time(|| open_host(&sb, &dir, None));
    let extra = cfg.networks - 1;
    let mut creates = Vec::new();
    for i in 1..=extra {
        add_veth(&sb.nl, &format!("p{i}"), &format!("q{i}"))?;
        let subnet: IpNet = format!("10.{}.{}.0/24", 101 + i / 256, i % 256)
            .parse()
            .unwrap();
        let name = format!("scale{i}");
        let args = network_create_args(docker_create_args(&[subnet], &format!("p{i}"), &name))
            .map_err(fail("args"))?;
        let (r, t) = time(|| host.create_network(args));
        r.map_err(fail(format!("create {name}")))?;
        creates.push(t);
    }
    let (a200, d200) = attach_detach(&net, &probes)?;
    let cli200 = if use_cli {
        Some(cli_attach_detach(&cli, "scale0", cli_probes)?)
    } else {
        None
    };
    let opens: Vec<Duration> = (0..5)
        .map(|_| time(|| open_host(&sb, &dir, None)).1)
        .collect();
    let (m1, m200) = (median(&a1), median(&a200));
    report.line(format!("in-process attach, 1 network:    {}", p50s(&a1)));
    report.line(format!(
        "in-process attach, {} networks: {}  ({:.2}x)",
        cfg.networks,
        p50s(&a200),
        m200.as_secs_f64() / m1.as_secs_f64()
    ));
    report.line(format!("in-process detach, 1 network:    {}", p50s(&d1)));
    report.line(format!(
        "in-process detach, {} networks: {}  ({:.2}x)",
        cfg.networks,
        p50s(&d200),
        median(&d200).as_secs_f64() / median(&d1).as_secs_f64()
    ));
    if let (Some((ca1, cd1)), Some((ca200, cd200))) = (&cli1, &cli200) {
        report.line(format!("CLI connect, 1 network:          {}", p50s(ca1)));
        report.line(format!(
            "CLI connect, {} networks:       {}  ({:.2}x)",
            cfg.networks,
            p50s(ca200),
            median(ca200).as_secs_f64() / median(ca1).as_secs_f64()
        ));
        report.line(format!("CLI disconnect, 1 network:       {}", p50s(cd1)));
        report.line(format!(
            "CLI disconnect, {} networks:    {}  ({:.2}x)",
            cfg.networks,
            p50s(cd200),
            median(cd200).as_secs_f64() / median(cd1).as_secs_f64()
        ));
    }
    report.line(format!(
        "Host::open, 1 network: {:.3} ms; {} networks: {}",
        ms(open1),
        cfg.networks,
        p50s(&opens)
    ));
    if !creates.is_empty() {
        let k = creates.len().min(10);
        report.line(format!(
            "create_network (existing veth parent): 2nd..{}th {}; last {}: {}",
            k + 1,
            p50s(&creates[..k]),
            k,
            p50s(&creates[creates.len() - k..])
        ));
    }
    for i in 1..=extra {
        host.remove_network(&format!("scale{i}"))
            .map_err(fail("remove"))?;
        let index = sb
            .nl
            .link_by_name(&format!("p{i}"))
            .map_err(fail("p"))?
            .index;
        sb.nl.delete_link(index).map_err(fail("delete p"))?;
    }

    // The curve: one new namespace per endpoint.
    let mem0 = mem_available_kib();
    let (cs, create_time) = time(|| containers(total));
    let cs = cs?;
    let mem1 = mem_available_kib();
    report.line(format!(
        "{} container namespaces created in {:.1} s ({:.2} ms each); MemAvailable {} -> {} MiB ({:.0} KiB per namespace)",
        total,
        create_time.as_secs_f64(),
        ms(create_time) / total as f64,
        mem0 / 1024,
        mem1 / 1024,
        (mem0.saturating_sub(mem1)) as f64 / total as f64
    ));
    let mut curve = Vec::with_capacity(total);
    // The kernel floor (no library) on 20 probe namespaces, with 0, scale_n
    // and all endpoints in place: what the kernel alone adds as links pile
    // up on one parent.
    let side_dir = temp_dir("scale-side");
    let side_run = PathBuf::from(format!(
        "/dev/shm/underlay-bench-{}-side",
        std::process::id()
    ));
    let side_host = open_host(&sb, &side_dir, Some(&side_run))?;
    let side = side_host
        .create_network(
            // The scale network's subnet, another range of it.
            network_create_args([
                "-d",
                "macvlan",
                "--subnet=10.100.0.0/16",
                "--gateway=10.100.0.1",
                "--ip-range=10.100.201.0/24",
                "-o",
                "parent=eth0",
                "side",
            ])
            .map_err(fail("args"))?,
        )
        .map_err(fail("create"))?;
    let mut floors: Vec<Probe> = vec![probe(&sb, &probes, &side, 0)?];
    let start = Instant::now();
    let mut paused = Duration::ZERO;
    for c in &cs {
        let (r, t) = time(|| net.attach(c, &AttachOptions::new()));
        r.map_err(fail(format!("attach #{}", curve.len() + 1)))?;
        curve.push(t);
        if curve.len() == cfg.scale_n && cfg.scale_n < total {
            let (f, d) = time(|| probe(&sb, &probes, &side, curve.len()));
            floors.push(f?);
            paused += d;
        }
    }
    let attach_all = start.elapsed() - paused;
    floors.push(probe(&sb, &probes, &side, curve.len())?);
    side_host
        .remove_network("side")
        .map_err(fail("remove side"))?;
    drop(side_host);
    remove_state(&side_dir);
    let _ = std::fs::remove_dir_all(&side_run);
    report.line("probes (20 namespaces each, p50) with N endpoints on the parent:");
    report.line("| N endpoints | kernel floor | floor + arp_notify (GARP) | underlay, empty records, tmpfs |");
    report.line("|------------:|-------------:|--------------------------:|-------------------------------:|");
    for p in &floors {
        report.line(format!(
            "| {:>11} | {:>9.3} ms | {:>22.3} ms | {:>27.3} ms |",
            p.count,
            ms(p.floor),
            ms(p.floor_garp),
            ms(p.empty_tmpfs)
        ));
    }
    let mem2 = mem_available_kib();
    report.line(format!(
        "{} attaches in {:.1} s; MemAvailable now {} MiB ({:.0} KiB per endpoint link)",
        total,
        attach_all.as_secs_f64(),
        mem2 / 1024,
        (mem1.saturating_sub(mem2)) as f64 / total as f64
    ));
    let window = |i: usize| {
        let lo = i.saturating_sub(10);
        let hi = (i + 10).min(curve.len());
        median(&curve[lo..hi])
    };
    let mut points = vec![1usize, 100, 1000, 2000, 5000, 10_000];
    points.retain(|&p| p <= curve.len());
    if !points.contains(&curve.len()) {
        points.push(curve.len());
    }
    report.line("| endpoint # | attach (that one) | median of the 20 around it |");
    report.line("|-----------:|------------------:|---------------------------:|");
    for &p in &points {
        report.line(format!(
            "| {:>10} | {:>14.3} ms | {:>23.3} ms |",
            p,
            ms(curve[p - 1]),
            ms(window(p - 1))
        ));
    }
    let at = |p: usize| window(p.min(curve.len()) - 1);
    if curve.len() >= 2000.min(cfg.scale_n) && cfg.scale_n >= 2 {
        let p = cfg.scale_n.min(curve.len());
        let x = at(p).as_secs_f64() / at(1).as_secs_f64();
        report.target(
            format!("attach at endpoint #{p} within 1.25x of #1 (medians of 20 around)"),
            x <= 1.25,
            format!(
                "{x:.2}x ({:.3} ms vs {:.3} ms); the kernel floor alone grew {:.2}x from 0 to {} endpoints",
                ms(at(p)),
                ms(at(1)),
                floors
                    .iter()
                    .find(|f| f.count == p)
                    .map_or(0.0, |f| f.floor.as_secs_f64() / floors[0].floor.as_secs_f64()),
                p
            ),
        );
    }

    // With every endpoint in place: detach, CLI calls, opening.
    let n = cs.len();
    let tail = &cs[n - 20.min(n)..];
    let mut dn = Vec::new();
    for c in tail {
        let (r, t) = time(|| net.detach(c));
        r.map_err(fail("detach"))?;
        dn.push(t);
    }
    report.line(format!(
        "in-process detach with ~{n} endpoints: {}  ({:.2}x the 1-network, empty case)",
        p50s(&dn),
        median(&dn).as_secs_f64() / median(&d1).as_secs_f64()
    ));
    for c in tail {
        net.attach(c, &AttachOptions::new())
            .map_err(fail("re-attach"))?;
    }
    let opens: Vec<Duration> = (0..5)
        .map(|_| time(|| open_host(&sb, &dir, None)).1)
        .collect();
    report.line(format!(
        "Host::open with {n} endpoint records: {}",
        p50s(&opens)
    ));
    let mut loads = Vec::new();
    let mut first_attach = Vec::new();
    let fresh = containers(5)?;
    for c in &fresh {
        let (h, t0) = time(|| open_host(&sb, &dir, None));
        let h = h?;
        let (r, t1) =
            time(|| -> underlay::Result<usize> { Ok(h.network("scale0")?.endpoints()?.len()) });
        let count = r.map_err(fail("endpoints"))?;
        if count != n {
            return Err(format!("expected {n} endpoints, found {count}"));
        }
        loads.push(t0 + t1);
        let net2 = h.network("scale0").map_err(fail("network"))?;
        let (r, t) = time(|| net2.attach(c, &AttachOptions::new()));
        r.map_err(fail("attach"))?;
        first_attach.push(t);
        net2.detach(c).map_err(fail("detach"))?;
    }
    report.line(format!(
        "Host::open + network() + endpoints() (reads all {n} records): {}",
        p50s(&loads)
    ));
    report.line(format!(
        "first attach on a fresh handle after that (records cached): {}",
        p50s(&first_attach)
    ));
    let mut fresh_attach = Vec::new();
    for c in &fresh {
        let h = open_host(&sb, &dir, None)?;
        let net2 = h.network("scale0").map_err(fail("network"))?;
        let (r, t) = time(|| net2.attach(c, &AttachOptions::new()));
        r.map_err(fail("attach"))?;
        fresh_attach.push(t);
        net2.detach(c).map_err(fail("detach"))?;
    }
    report.line(format!(
        "first attach on a fresh handle, records not loaded yet (as a new process): {}",
        p50s(&fresh_attach)
    ));
    if use_cli {
        let (ca, cd) = cli_attach_detach(&cli, "scale0", &fresh)?;
        report.line(format!(
            "CLI connect with {n} endpoints:    {}  ({:.1}x the empty network)",
            p50s(&ca),
            cli1.as_ref().map_or(0.0, |c| median(&ca).as_secs_f64()
                / median(&c.0).as_secs_f64())
        ));
        report.line(format!("CLI disconnect with {n} endpoints: {}", p50s(&cd)));
    }

    // Tear down by dropping everything: the kernel deletes the namespaces
    // (and their links) in batches, in the background.
    let (_, t) = time(|| {
        drop(net);
        drop(host);
        remove_state(&dir);
    });
    eprintln!(
        "scale: state removed in {:.1} s; namespaces are freed by the kernel in the background",
        t.as_secs_f64()
    );
    drop(cs);
    Ok(())
}

/// `UNDERLAY_BENCH=inproc`: only the in-process IPv4 attach/detach loop and
/// the floor, for profiling (perf, strace) without the peers' processes.
fn inproc_only(cfg: &Config, report: &mut Report) -> Res<()> {
    report.line(format!(
        "\n== in-process attach against the floor, and the floor with the library's steps added one by one ({} containers, interleaved) ==",
        cfg.n
    ));
    let sb = Sandbox::new()?;
    let cs = containers(cfg.n)?;
    let mut floor = Floor::new(&sb, Family::V4, &cs)?;
    let opens = std::mem::take(&mut floor.socket_open);
    let mut tools: Vec<Box<dyn Tool + '_>> = vec![
        Box::new(InProcess::new(&sb, Family::V4, cs.len(), false)?),
        Box::new(InProcess::new(&sb, Family::V4, cs.len(), true)?),
        Box::new(floor),
    ];
    for step in 1..=4 {
        tools.push(Box::new(Ablation::new(&sb, step, cs.len())?));
    }
    let rows = run_tools(Family::V4, &mut tools, &cs, cfg.chunk)?;
    // The same request costs more after other work: the kernel's own
    // (a socket made in the container, records written) leaves its
    // caches colder.
    report.line(
        "RTM_NEWLINK alone (the same request each time), by what ran just before it in the attach:",
    );
    for tool in &tools {
        let times = tool.newlink_times();
        if !times.is_empty() {
            report.line(format!("  {}: {}", tool.name().trim(), p50s(times)));
        }
    }
    drop(tools);
    report.table(&rows);
    report.line(format!("NetNs::netlink() in a container: {}", p50s(&opens)));
    let runs: Vec<Duration> = cs.iter().map(|c| time(|| c.run(|| Ok(()))).1).collect();
    report.line(format!(
        "NetNs::run(empty closure) (thread spawn + setns + join): {}",
        p50s(&runs)
    ));
    Ok(())
}

/// The floor with the library's extra steps added one at a time (step 1 to
/// 4), to see where an in-process attach spends its time beyond the
/// kernel's work.
struct Ablation<'a> {
    step: usize,
    host: &'a Netlink,
    parent: u32,
    subnet: IpNet,
    dir: PathBuf,
    lock: std::fs::File,
    inside: Vec<Option<(Netlink, u32)>>,
    newlink: Vec<Duration>,
}

impl<'a> Ablation<'a> {
    fn new(sb: &'a Sandbox, step: usize, n: usize) -> Res<Ablation<'a>> {
        let dir = temp_dir(&format!("ablation{step}"));
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("lock"))
            .map_err(fail("lock"))?;
        Ok(Ablation {
            step,
            host: &sb.nl,
            parent: sb.parent_index()?,
            subnet: format!("10.{}.0.0/16", 30 + step).parse().unwrap(),
            dir,
            lock,
            inside: (0..n).map(|_| None).collect(),
            newlink: Vec::new(),
        })
    }

    fn write_record(&self, i: usize) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".tmp-{i}.json"));
        std::fs::write(&tmp, [b'x'; 330])?;
        std::fs::rename(&tmp, self.dir.join(format!("{i}.json")))
    }
}

impl Tool for Ablation<'_> {
    fn name(&self) -> String {
        match self.step {
            1 => "floor + socket per attach (NetNs::run) + link dump",
            2 => " ... + GETLINK parent on the host",
            3 => " ... + alias, arp_notify (2 requests)",
            _ => " ... + flock + 2 record writes (ext4)",
        }
        .into()
    }
    fn attach(&mut self, i: usize, c: &NetNs) -> Res<()> {
        let step = self.step;
        let mut newlink = None;
        let r = (|| -> underlay::Result<(Netlink, u32)> {
            if step >= 4 {
                // SAFETY: flock on a descriptor we own.
                unsafe { libc::flock(self.lock.as_raw_fd(), libc::LOCK_EX) };
                let _ = std::os::unix::fs::FileExt::write_all_at(&self.lock, &[1u8; 8], 0);
                let _ = self.write_record(i);
            }
            let inside = c.run(|| {
                let nl = Netlink::open()?;
                nl.links()?;
                Ok(nl)
            })?;
            let parent = if step >= 2 {
                self.host.link_by_name("eth0")?.index
            } else {
                self.parent
            };
            let (made, d) = time(|| {
                self.host
                    .create_link(&NewLink::macvlan("eth0", parent, MacvlanMode::Bridge).netns(c))
            });
            made?;
            newlink = Some(d);
            let index = inside.link_by_name("eth0")?.index;
            if step >= 3 {
                inside.set_alias(index, "underlay:0123456789abcdef:0123456789abcdef")?;
                inside.set_arp_notify(index)?;
            }
            inside.add_address(index, nth(self.subnet, i))?;
            inside.set_link_up_by_index(index, true)?;
            inside.add_route(&NewRoute::default_via(gateway(self.subnet), index))?;
            if step >= 4 {
                let _ = self.write_record(i);
                // SAFETY: as above.
                unsafe { libc::flock(self.lock.as_raw_fd(), libc::LOCK_UN) };
            }
            Ok((inside, index))
        })();
        self.inside[i] = Some(r.map_err(fail("ablation attach"))?);
        self.newlink.extend(newlink);
        Ok(())
    }
    fn check_attached(&self, i: usize, c: &NetNs) -> Res<()> {
        expect_attached(c, &[nth(self.subnet, i)], "ablation")
    }
    fn detach(&mut self, i: usize, _c: &NetNs) -> Res<()> {
        let (nl, index) = self.inside[i].take().ok_or("not attached")?;
        nl.delete_link(index).map_err(fail("ablation detach"))
    }
    fn finish(&mut self) -> Res<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
    fn newlink_times(&self) -> &[Duration] {
        &self.newlink
    }
}

// ------------------------------------------------------------------ main

fn check_tools(cfg: &Config, report: &mut Report) -> bool {
    let mut ok = true;
    let checks: [(&str, PathBuf, &str); 3] = [
        (
            "cli",
            cfg.cli.clone(),
            "cargo build --release --example underlay",
        ),
        (
            "netavark",
            cfg.netavark.clone(),
            "apt-get install -y netavark",
        ),
        (
            "cni",
            cfg.cni_dir.join("macvlan"),
            "apt-get install -y containernetworking-plugins",
        ),
    ];
    for (tool, path, fix) in checks {
        if cfg.skipped(tool) {
            report.line(format!("tool {tool}: SKIPPED (UNDERLAY_BENCH_SKIP)"));
        } else if path.is_file() {
            report.line(format!("tool {tool}: {}", path.display()));
        } else {
            eprintln!("e2e: {tool} missing at {} (install: {fix}; or opt out with UNDERLAY_BENCH_SKIP={tool})", path.display());
            ok = false;
        }
    }
    if !cfg.skipped("cni") && !cfg.cni_dir.join("host-local").is_file() {
        eprintln!(
            "e2e: CNI host-local IPAM missing in {}",
            cfg.cni_dir.display()
        );
        ok = false;
    }
    ok
}

fn main() {
    // `cargo bench` passes --bench; nothing else is understood.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cfg = Config::from_env();
    let mut report = Report {
        out: String::new(),
        targets: Vec::new(),
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var_os("UNDERLAY_BENCH").is_none() {
            // Plain `cargo bench` as a user: say so, and let the other
            // benches run.
            println!("e2e: SKIPPED, not root; run `sudo scripts/bench.sh` (network namespaces and macvlan links need CAP_NET_ADMIN)");
            return;
        }
        eprintln!("e2e: must run as root (network namespaces, macvlan links)");
        std::process::exit(2);
    }
    let uname = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    report.line(format!(
        "underlay e2e bench: kernel {}, {} CPUs, section {}, N={}",
        uname.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cfg.section,
        cfg.n
    ));
    if cfg.section != "inproc" && !check_tools(&cfg, &mut report) {
        std::process::exit(2);
    }
    let loadavg = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    report.line(format!(
        "load average at start: {} (this VM has 2 vCPUs; other work on it inflates p99s)",
        loadavg()
    ));
    let started = Instant::now();
    let mut result = Ok(());
    if matches!(cfg.section.as_str(), "all" | "e2e") {
        result = e2e(&cfg, &mut report);
    }
    if result.is_ok() && matches!(cfg.section.as_str(), "all" | "scale") {
        result = scale(&cfg, &mut report);
    }
    if cfg.section == "inproc" {
        result = inproc_only(&cfg, &mut report);
    }
    if let Err(e) = result {
        eprintln!("e2e: FAILED: {e}");
        std::process::exit(1);
    }
    report.line(format!("\nload average at end: {}", loadavg()));
    report.line("\n== targets (medians, this run) ==");
    let mut missed = 0;
    let targets = std::mem::take(&mut report.targets);
    for (name, met, detail) in &targets {
        if !met {
            missed += 1;
        }
        report.line(format!(
            "[{}] {name}: {detail}",
            if *met { "met" } else { "MISSED" }
        ));
    }
    let mut summary = String::new();
    let _ = write!(
        summary,
        "{} of {} targets met; bench took {:.0} s",
        targets.len() - missed,
        targets.len(),
        started.elapsed().as_secs_f64()
    );
    report.line(summary);
    if let Ok(path) = std::env::var("UNDERLAY_BENCH_REPORT") {
        let _ = std::fs::write(path, &report.out);
    }
    if missed > 0 && cfg.strict {
        std::process::exit(3);
    }
}
