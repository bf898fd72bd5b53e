//! The resolver under load (feature `dns`): `cargo bench --features dns
//! --bench dns`, as root.
//!
//! One sandbox "host" namespace with a veth parent, one macvlan network,
//! `UNDERLAY_BENCH_DNS_N` containers (1000 by default), each its own
//! namespace, all served by one [`Resolver`]. It measures, and prints:
//!
//! - the memory the resolver takes per endpoint served (the process's RSS
//!   before and after it starts; its descriptors);
//! - queries per second and p50/p99 latency answered at 127.0.0.11 for
//!   random container names, from `UNDERLAY_BENCH_DNS_CLIENTS` containers at
//!   once (4), one query outstanding each; and the same load against
//!   dnsmasq serving the same names from a hosts file at 127.0.0.53 in one
//!   container (the reference peer), when dnsmasq is installed;
//! - how long after `attach` returns a new container's name resolves
//!   (file notifications; the target is 50 ms).
//!
//! Nothing outside the bench's own namespaces and temporary directory is
//! touched.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use underlay::endpoint::AttachOptions;
use underlay::link::NewLink;
use underlay::netns::NetNs;
use underlay::resolver::{Resolver, ResolverOptions};
use underlay::{Host, Network};

type Res<T> = std::result::Result<T, String>;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("dns bench: {e}");
        std::process::exit(1);
    }
}

/// A DNS query for `name` (type A), with `id`.
fn query_bytes(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

/// The resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// An error inside a namespace's thread.
fn io(e: impl std::fmt::Display) -> underlay::Error {
    underlay::Error::Internal(e.to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs `clients` load loops at once, each in its own container, each
/// sending `per_client` queries for random names to `server`; returns
/// queries per second and the sorted latencies. Every answer must be a
/// NOERROR with one answer.
fn load(
    containers: &[NetNs],
    names: &[String],
    server: SocketAddr,
    clients: usize,
    per_client: usize,
) -> Res<(f64, Vec<Duration>)> {
    let start = Instant::now();
    let results: Vec<Res<Vec<Duration>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = containers
            .iter()
            .take(clients)
            .enumerate()
            .map(|(c, ns)| {
                scope.spawn(move || -> Res<Vec<Duration>> {
                    ns.run(|| {
                        let socket = UdpSocket::bind("127.0.0.1:0")
                            .and_then(|s| s.connect(server).map(|()| s))
                            .map_err(io)?;
                        socket
                            .set_read_timeout(Some(Duration::from_secs(2)))
                            .map_err(io)?;
                        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1);
                        let mut latencies = Vec::with_capacity(per_client);
                        let mut buf = [0u8; 512];
                        for i in 0..per_client {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            let name = &names[(seed % names.len() as u64) as usize];
                            let q = query_bytes(i as u16, name);
                            let t = Instant::now();
                            socket.send(&q).map_err(io)?;
                            let n = socket.recv(&mut buf).map_err(io)?;
                            latencies.push(t.elapsed());
                            let ok =
                                n >= 12 && buf[..2] == q[..2] && buf[3] & 0x0f == 0 && buf[7] >= 1;
                            if !ok {
                                return Err(io(format!(
                                    "bad answer for {name}: {:?}",
                                    &buf[..n.min(16)]
                                )));
                            }
                        }
                        Ok(latencies)
                    })
                    .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    all.sort();
    Ok((all.len() as f64 / elapsed.as_secs_f64(), all))
}

fn run() -> Res<()> {
    let n = env_usize("UNDERLAY_BENCH_DNS_N", 1000);
    let clients = env_usize("UNDERLAY_BENCH_DNS_CLIENTS", 4);
    let per_client = env_usize("UNDERLAY_BENCH_DNS_QUERIES", 5000);
    let tmp = std::env::temp_dir().join(format!("underlay-bench-dns-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let result = bench(&tmp, n, clients, per_client);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn bench(tmp: &std::path::Path, n: usize, clients: usize, per_client: usize) -> Res<()> {
    let e = |what: &'static str| move |err: underlay::Error| format!("{what}: {err}");
    let host_ns = NetNs::create().map_err(e("host namespace"))?;
    let nl = host_ns.netlink().map_err(e("netlink"))?;
    nl.create_link(&NewLink::veth("eth0", "uplink0").up())
        .map_err(e("veth"))?;
    let uplink = nl.link_by_name("uplink0").map_err(e("uplink0"))?;
    nl.set_link_up_by_index(uplink.index, true)
        .map_err(e("uplink0 up"))?;
    let host = Host::options()
        .state_dir(tmp.join("state"))
        .runtime_dir(tmp.join("run"))
        .netns(
            NetNs::open(format!("/proc/self/fd/{}", host_ns.as_fd().as_raw_fd()))
                .map_err(e("reopen"))?,
        )
        .open()
        .map_err(e("open the host"))?;
    let net = host
        .create_network(
            Network::builder("bench")
                .macvlan()
                .parent("eth0")
                .subnet("10.200.0.0/16"),
        )
        .map_err(e("create the network"))?;

    eprintln!("==> attaching {n} containers");
    let t = Instant::now();
    let mut containers = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut hosts = String::new();
    for i in 0..n {
        let ns = NetNs::create().map_err(e("container"))?;
        let name = format!("c{i}");
        let path = format!("/proc/self/fd/{}", ns.as_fd().as_raw_fd());
        let ep = net
            .attach(
                &NetNs::open(&path).map_err(e("reopen"))?,
                &AttachOptions::new().name(&name),
            )
            .map_err(e("attach"))?;
        hosts.push_str(&format!("{} {name}\n", ep.addresses()[0].addr()));
        names.push(name);
        containers.push(ns);
    }
    eprintln!("    done in {:.1} s", t.elapsed().as_secs_f64());

    let (rss0, fds0) = (rss_kib(), open_fds());
    let t = Instant::now();
    let empty = tmp.join("empty.conf");
    std::fs::write(&empty, "").map_err(|e| e.to_string())?;
    let resolver =
        Resolver::start(&host, ResolverOptions::new().resolv_conf(&empty)).map_err(e("start"))?;
    let start_time = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let (rss1, fds1) = (rss_kib(), open_fds());
    println!(
        "resolver, {n} endpoints served ({} namespaces)",
        resolver.served()
    );
    println!(
        "  start (listeners in every namespace): {:.1} ms",
        start_time.as_secs_f64() * 1e3
    );
    println!(
        "  memory: RSS +{} KiB in all, {:.2} KiB per endpoint; {} descriptors ({:.1} per endpoint)",
        rss1.saturating_sub(rss0),
        rss1.saturating_sub(rss0) as f64 / n as f64,
        fds1.saturating_sub(fds0),
        fds1.saturating_sub(fds0) as f64 / n as f64
    );

    let listen = SocketAddr::new(IpAddr::from([127, 0, 0, 11]), 53);
    // Warm up.
    load(&containers, &names, listen, clients, 200)?;
    let (qps, lat) = load(&containers, &names, listen, clients, per_client)?;
    println!(
        "  load: {clients} clients x {per_client} queries: {qps:.0} queries/s, p50 {:.1} us, p99 {:.1} us",
        percentile(&lat, 0.5).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6
    );

    // How soon a new container's name resolves after attach returns.
    let mut delays = Vec::new();
    for i in 0..20 {
        let ns = NetNs::create().map_err(e("container"))?;
        let name = format!("late{i}");
        let path = format!("/proc/self/fd/{}", ns.as_fd().as_raw_fd());
        let reopen = NetNs::open(&path).map_err(e("reopen"))?;
        net.attach(&reopen, &AttachOptions::new().name(&name))
            .map_err(e("attach"))?;
        let t = Instant::now();
        let q = query_bytes(7, &name);
        let resolved = ns
            .run(|| {
                let socket = UdpSocket::bind("127.0.0.1:0").map_err(io)?;
                socket.connect(listen).map_err(io)?;
                socket
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .map_err(io)?;
                let mut buf = [0u8; 512];
                while t.elapsed() < Duration::from_secs(5) {
                    if socket.send(&q).is_err() {
                        std::thread::sleep(Duration::from_micros(100));
                        continue;
                    }
                    match socket.recv(&mut buf) {
                        Ok(n) if n >= 12 && buf[3] & 0x0f == 0 && buf[7] >= 1 => {
                            return Ok(Some(t.elapsed()))
                        }
                        Ok(_) => {}
                        Err(_) => std::thread::sleep(Duration::from_micros(100)),
                    }
                }
                Ok(None)
            })
            .map_err(e("query"))?;
        delays.push(resolved.ok_or_else(|| format!("{name} never resolved"))?);
        containers.push(ns);
    }
    delays.sort();
    println!(
        "  a new name resolves {:.1} ms (p50), {:.1} ms (max) after attach returns (target 50 ms: {})",
        percentile(&delays, 0.5).as_secs_f64() * 1e3,
        delays.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        if delays.last().copied().unwrap_or_default() <= Duration::from_millis(50) {
            "met"
        } else {
            "MISSED"
        }
    );
    drop(resolver);

    // The reference peer: dnsmasq with the same names in a hosts file.
    match dnsmasq(&containers[0], tmp, &hosts)? {
        Some(mut child) => {
            let server = SocketAddr::new(IpAddr::from([127, 0, 0, 53]), 53);
            std::thread::sleep(Duration::from_millis(300));
            let result = load(&containers, &names, server, 1, 200)
                .and_then(|_| load(&containers[..1], &names, server, 1, per_client));
            let rss = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned()))
                .unwrap_or_default();
            let _ = child.kill();
            let _ = child.wait();
            let (qps, lat) = result?;
            println!("dnsmasq (reference: one listener, the same {n} names from a hosts file; RSS {rss})");
            println!(
                "  load: 1 client x {per_client} queries: {qps:.0} queries/s, p50 {:.1} us, p99 {:.1} us",
                percentile(&lat, 0.5).as_secs_f64() * 1e6,
                percentile(&lat, 0.99).as_secs_f64() * 1e6
            );
        }
        None => println!("dnsmasq: not installed (apt install dnsmasq-base); no reference row"),
    }
    // The same single-client load against underlay, for the side-by-side row.
    let resolver =
        Resolver::start(&host, ResolverOptions::new().resolv_conf(&empty)).map_err(e("start"))?;
    std::thread::sleep(Duration::from_millis(200));
    let (qps, lat) = load(&containers, &names, listen, 1, per_client)?;
    println!(
        "underlay, 1 client x {per_client} queries: {qps:.0} queries/s, p50 {:.1} us, p99 {:.1} us",
        percentile(&lat, 0.5).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6
    );
    drop(resolver);
    host.force_remove_network("bench").map_err(e("remove"))?;
    Ok(())
}

/// dnsmasq serving `hosts` at 127.0.0.53 inside `ns`, if installed.
fn dnsmasq(ns: &NetNs, tmp: &std::path::Path, hosts: &str) -> Res<Option<Child>> {
    let Some(binary) = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        return Ok(None);
    };
    let file = tmp.join("hosts");
    std::fs::write(&file, hosts).map_err(|e| e.to_string())?;
    let fd = ns.as_fd().as_raw_fd();
    let mut command = Command::new(binary);
    command.args([
        "--no-daemon",
        "--port=53",
        "--listen-address=127.0.0.53",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--log-facility=-",
        "--cache-size=10000",
        &format!("--addn-hosts={}", file.display()),
        &format!("--pid-file={}", tmp.join("dnsmasq.pid").display()),
    ]);
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setns is async-signal-safe and only affects the child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().map(Some).map_err(|e| e.to_string())
}
