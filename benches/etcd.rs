//! Attach with addresses claimed in etcd, beside the local store, in one
//! run (feature `etcd`; `scripts/bench.sh --section etcd`).
//!
//! A "switch" namespace with a bridge and etcd 3.4 on its address (never on
//! the machine's ports), and three "host" namespaces whose `eth0` and
//! `eth1` are veths into it. Host 0 has a local network on `eth1` and a
//! shared one on `eth0`: attach and detach take turns between them, every
//! `UNDERLAY_BENCH_CHUNK` (10) containers, `UNDERLAY_BENCH_N` (200) each.
//! Then throughput: one host attaching alone, then the three at once, on
//! the shared network. etcd: `UNDERLAY_ETCD_BIN`, or `etcd` on PATH.
//! Must run as root.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use underlay::endpoint::{AttachOptions, DetachOptions};
use underlay::link::NewLink;
use underlay::netns::NetNs;
use underlay::store::{EtcdStore, SharedStore};
use underlay::{Host, Network};

const ETCD: &str = "10.130.0.250";

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ip(ns: &NetNs, args: &[&str]) {
    let fd = ns.as_fd().as_raw_fd();
    let mut command = Command::new("ip");
    command.args(args);
    // SAFETY: setns is async-signal-safe and affects only the child.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `work` on a new thread that entered `ns`.
fn in_ns<T: Send + 'static>(ns: &NetNs, work: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/proc/{}/fd/{}", std::process::id(), ns.as_fd().as_raw_fd());
    std::thread::spawn(move || {
        let file = std::fs::File::open(path).expect("open the namespace");
        // SAFETY: setns on this thread, which the bench owns.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        work()
    })
    .join()
    .expect("bench thread")
}

fn etcd_binary() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("UNDERLAY_ETCD_BIN") {
        return Some(bin.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    })
}

fn median(mut xs: Vec<Duration>) -> (f64, f64) {
    xs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(xs[xs.len() / 2]),
        ms(xs[(xs.len() * 99 / 100).min(xs.len() - 1)]),
    )
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("etcd bench: SKIPPED (needs root)");
        return;
    }
    let Some(etcd_bin) = etcd_binary() else {
        eprintln!("etcd bench: no etcd (set UNDERLAY_ETCD_BIN; scripts/bench.sh unpacks Debian's etcd-server)");
        std::process::exit(2);
    };
    let n = env_usize("UNDERLAY_BENCH_N", 200).max(10);
    let chunk = env_usize("UNDERLAY_BENCH_CHUNK", 10).max(1);
    let dir = std::env::temp_dir().join(format!("underlay-bench-etcd-{}", std::process::id()));

    // The segment.
    let switch = NetNs::create().expect("switch");
    ip(&switch, &["link", "add", "br0", "type", "bridge"]);
    ip(&switch, &["link", "set", "br0", "up"]);
    ip(
        &switch,
        &["addr", "add", &format!("{ETCD}/24"), "dev", "br0"],
    );
    let nl = switch.netlink().expect("netlink");
    let hosts: Vec<NetNs> = (0..3).map(|_| NetNs::create().expect("host")).collect();
    for (i, host) in hosts.iter().enumerate() {
        for nic in ["eth0", "eth1"] {
            let port = format!("h{i}{nic}");
            nl.create_link(&NewLink::veth(nic, &port).netns(host))
                .expect("veth");
            ip(&switch, &["link", "set", &port, "master", "br0", "up"]);
            ip(host, &["link", "set", nic, "up"]);
        }
        ip(
            host,
            &[
                "addr",
                "add",
                &format!("10.130.0.{}/24", i + 1),
                "dev",
                "eth0",
            ],
        );
    }
    let endpoint = format!("http://{ETCD}:2379");
    let peer = format!("http://{ETCD}:2380");
    let fd = switch.as_fd().as_raw_fd();
    let mut command = Command::new(&etcd_bin);
    command
        .args(["--name", "n0", "--data-dir"])
        .arg(dir.join("etcd"))
        .args([
            "--listen-client-urls",
            &endpoint,
            "--advertise-client-urls",
            &endpoint,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("n0={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setns is async-signal-safe and affects only the child.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut etcd = command.spawn().expect("start etcd");
    let probe = endpoint.clone();
    let up = in_ns(&hosts[0], move || {
        let store = EtcdStore::new(&[probe]).expect("client");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if store.claims("probe").is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    assert!(up, "etcd did not come up");

    let open = move |i: usize, shared: bool, endpoint: String, dir: PathBuf| {
        let state = dir.join(format!("host{i}{}", if shared { "s" } else { "l" }));
        let mut options = Host::options()
            .state_dir(&state)
            .runtime_dir(state.join("run"));
        if shared {
            options = options.shared_store(EtcdStore::new(&[endpoint]).expect("client"));
        }
        options.open().expect("open the host")
    };

    // Latency: host 0, local (eth1) and shared (eth0) taking turns.
    let (e, d) = (endpoint.clone(), dir.clone());
    let (local, shared) = in_ns(&hosts[0], move || {
        let local_host = open(0, false, e.clone(), d.clone());
        let shared_host = open(0, true, e, d);
        let local = local_host
            .create_network(
                Network::builder("local")
                    .macvlan()
                    .parent("eth1")
                    .subnet("10.131.0.0/20"),
            )
            .expect("local network");
        let shared = shared_host
            .create_network(
                Network::builder("shared")
                    .macvlan()
                    .parent("eth0")
                    .subnet("10.132.0.0/20"),
            )
            .expect("shared network");
        let containers: Vec<NetNs> = (0..n)
            .map(|_| NetNs::create().expect("container"))
            .collect();
        let (mut la, mut sa, mut ld, mut sd) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let wait = DetachOptions::new().delete_link(true);
        for part in containers.chunks(chunk) {
            for (net, attach, detach) in [(&local, &mut la, &mut ld), (&shared, &mut sa, &mut sd)] {
                for c in part {
                    let t = Instant::now();
                    net.attach(c, &AttachOptions::new()).expect("attach");
                    attach.push(t.elapsed());
                }
                for c in part {
                    let t = Instant::now();
                    net.detach_with(c, &wait).expect("detach");
                    detach.push(t.elapsed());
                }
            }
        }
        ((median(la).0, median(ld).0), (median(sa), median(sd).0))
    });

    // Throughput: one host alone, then three at once, on the shared network.
    let per_host = n;
    // Attaches per second, all hosts together (the detaches after are not
    // timed); every host starts when all are ready.
    let run = |hosts_at_once: usize| -> f64 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(hosts_at_once));
        let spans: Vec<Duration> = std::thread::scope(|scope| {
            let mut runs = Vec::new();
            for (i, host) in hosts.iter().enumerate().take(hosts_at_once) {
                let (e, d) = (endpoint.clone(), dir.clone());
                let barrier = barrier.clone();
                runs.push(scope.spawn(move || {
                    in_ns(host, move || {
                        let host = open(i, true, e, d);
                        let net = match host.network("tput") {
                            Ok(net) => net,
                            Err(_) => host
                                .create_network(
                                    Network::builder("tput")
                                        .macvlan()
                                        .parent("eth1")
                                        .subnet("10.133.0.0/18"),
                                )
                                .expect("network"),
                        };
                        let cs: Vec<NetNs> =
                            (0..per_host).map(|_| NetNs::create().expect("c")).collect();
                        barrier.wait();
                        let start = Instant::now();
                        for c in &cs {
                            net.attach(c, &AttachOptions::new()).expect("attach");
                        }
                        let span = start.elapsed();
                        for c in &cs {
                            net.detach_with(c, &DetachOptions::new().delete_link(true))
                                .expect("detach");
                        }
                        span
                    })
                }));
            }
            runs.into_iter().map(|r| r.join().expect("host")).collect()
        });
        let longest = spans.into_iter().max().unwrap_or_default();
        (hosts_at_once * per_host) as f64 / longest.as_secs_f64()
    };
    let one = run(1);
    let three = run(3);

    let _ = etcd.kill();
    let _ = etcd.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let ((la, ld), ((sa, sa99), sd)) = (local, shared);
    println!("\n== etcd: macvlan on a veth parent, {n} containers per store, one run ==");
    println!("| store | attach p50 | attach p99 | detach p50 (link deleted) |");
    println!("|---|---|---|---|");
    println!("| local (files) | {la:.3} ms | | {ld:.3} ms |");
    println!("| shared (etcd 3.4, one member) | {sa:.3} ms | {sa99:.3} ms | {sd:.3} ms |");
    println!(
        "added by the shared store: attach {:.3} ms, detach {:.3} ms",
        sa - la,
        sd - ld
    );
    println!(
        "throughput, attaches/s on the shared network: one host {one:.0}, three hosts at once {three:.0} ({:.2}x)",
        three / one
    );
}
