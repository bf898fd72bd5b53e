//! Attach throughput with several processes on one network at once:
//! attaches per second with 1, 4 and 16 concurrent processes (400 attaches
//! in all, macvlan on a veth parent, in a throw-away sandbox), and the same
//! for detaches. The network's lock is held only for the address decision
//! and the records, so processes overlap in the kernel.
//!
//! `cargo bench --bench concurrency` (as root). `UNDERLAY_BENCH_TOTAL` sets
//! the number of attaches per run (default 400).

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use underlay::endpoint::AttachOptions;
use underlay::link::NewLink;
use underlay::netns::NetNs;
use underlay::{Host, Network};

fn main() {
    if std::env::var("UNDERLAY_BENCH_CHILD").is_ok() {
        child();
        return;
    }
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("concurrency bench: run as root (network namespaces)");
        std::process::exit(2);
    }
    let total: usize = std::env::var("UNDERLAY_BENCH_TOTAL")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400);
    println!("concurrency bench: {total} attaches and detaches per run, macvlan, one network");
    println!("| processes | attaches/s | detaches/s | wall (attach) |");
    println!("|-----------|------------|------------|---------------|");
    for processes in [1, 4, 16] {
        let (attach, detach) = run(processes, total / processes);
        let n = (total / processes * processes) as f64;
        println!(
            "| {processes:>9} | {:>10.0} | {:>10.0} | {:>11.0} ms |",
            n / attach.as_secs_f64(),
            n / detach.as_secs_f64(),
            attach.as_secs_f64() * 1000.0
        );
    }
}

/// One run: `processes` children attach `each` containers at once, then
/// detach them at once; returns the wall time of each phase.
fn run(processes: usize, each: usize) -> (Duration, Duration) {
    let host_ns = NetNs::create().expect("host namespace");
    let nl = host_ns.netlink().expect("netlink");
    nl.create_link(&NewLink::veth("eth0", "uplink0").up())
        .expect("veth");
    let uplink = nl.link_by_name("uplink0").expect("uplink0");
    nl.set_link_up_by_index(uplink.index, true).expect("up");
    let dir = std::env::temp_dir().join(format!(
        "underlay-bench-concurrency-{}-{processes}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let netns_path = format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        host_ns.as_fd().as_raw_fd()
    );
    let host = Host::options()
        .state_dir(&dir)
        .runtime_dir(dir.join("run"))
        .netns(NetNs::open(&netns_path).expect("host namespace"))
        .open()
        .expect("open host");
    host.create_network(
        Network::builder("bench")
            .macvlan()
            .parent("eth0")
            .subnet("10.200.0.0/16"),
    )
    .expect("create network");
    let mut children: Vec<std::process::Child> = (0..processes)
        .map(|i| {
            Command::new(std::env::current_exe().unwrap())
                .env("UNDERLAY_BENCH_CHILD", i.to_string())
                .env("UNDERLAY_BENCH_STATE", &dir)
                .env("UNDERLAY_BENCH_NETNS", &netns_path)
                .env("UNDERLAY_BENCH_EACH", each.to_string())
                .spawn()
                .expect("spawn a child")
        })
        .collect();
    let phase = |name: &str| -> Duration {
        // Every child is ready for the phase: go, and wait until all are done.
        wait_for(&dir, &format!("ready-{name}"), processes);
        let start = Instant::now();
        std::fs::write(dir.join(format!("go-{name}")), b"").unwrap();
        wait_for(&dir, &format!("done-{name}"), processes);
        start.elapsed()
    };
    let attach = phase("attach");
    let detach = phase("detach");
    for child in &mut children {
        assert!(child.wait().unwrap().success(), "a child failed");
    }
    host.force_remove_network("bench").expect("remove network");
    let _ = std::fs::remove_dir_all(&dir);
    (attach, detach)
}

/// Waits until `count` files named `PREFIX-*` exist in `dir`.
fn wait_for(dir: &Path, prefix: &str, count: usize) {
    loop {
        let n = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{prefix}-"))
            })
            .count();
        if n >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn child() {
    let me = std::env::var("UNDERLAY_BENCH_CHILD").unwrap();
    let dir = PathBuf::from(std::env::var("UNDERLAY_BENCH_STATE").unwrap());
    let each: usize = std::env::var("UNDERLAY_BENCH_EACH")
        .unwrap()
        .parse()
        .unwrap();
    let host = Host::options()
        .state_dir(&dir)
        .runtime_dir(dir.join("run"))
        .netns(NetNs::open(std::env::var("UNDERLAY_BENCH_NETNS").unwrap()).unwrap())
        .open()
        .expect("open host");
    let net = host.network("bench").expect("network");
    // The containers exist before the clock starts, as a runtime's do.
    let containers: Vec<NetNs> = (0..each).map(|_| NetNs::create().unwrap()).collect();
    let signal = |name: &str| std::fs::write(dir.join(format!("{name}-{me}")), b"").unwrap();
    let go = |name: &str| {
        while !dir.join(format!("go-{name}")).exists() {
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    signal("ready-attach");
    go("attach");
    for ns in &containers {
        net.attach(ns, &AttachOptions::new()).expect("attach");
    }
    signal("done-attach");
    signal("ready-detach");
    go("detach");
    for ns in &containers {
        assert!(net.detach(ns).expect("detach"));
    }
    signal("done-detach");
}
