//! Several hosts on one segment, their addresses arbitrated by a real etcd
//! (3.4, Debian's `etcd-server`; `UNDERLAY_ETCD_BIN`, or `etcd` on PATH).
//!
//! The segment: a "switch" namespace with a bridge, and three "host"
//! namespaces whose `eth0` are veths into it, each host with a state
//! directory of its own (a host is its state directory's id). etcd listens
//! on the bridge's address inside the switch namespace, never on the
//! machine's ports. Each host's work runs on a thread of the test's that
//! entered the host's namespace, so the library's netlink and HTTP sockets
//! are both the host's.
#![cfg(feature = "etcd")]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_in, StateDir};
use underlay::endpoint::AttachOptions;
use underlay::link::NewLink;
use underlay::netns::NetNs;
use underlay::store::{Claim, EtcdStore, SharedStore};
use underlay::{Error, Host, Network};

const ETCD_ADDRESS: &str = "10.120.0.250";

/// Member `k`'s address on the bridge: 10.120.0.250, .251, ...
fn member_address(k: usize) -> String {
    format!("10.120.0.{}", 250 + k)
}

/// The etcd binary, if there is one.
fn etcd_binary() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("UNDERLAY_ETCD_BIN") {
        return Some(PathBuf::from(bin));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var("UNDERLAY_REQUIRE_RUNTIMES").is_ok_and(|v| v == "1") {
        panic!("no etcd (set UNDERLAY_ETCD_BIN; scripts/test.sh unpacks Debian's etcd-server)");
    }
    found
}

/// Runs `work` on a new thread that entered `ns` (the test's own thread,
/// never the library's business).
fn in_ns<T: Send + 'static>(ns: &NetNs, work: impl FnOnce() -> T + Send + 'static) -> T {
    let fd = ns.as_fd().as_raw_fd();
    let dup = unsafe { libc::dup(fd) };
    assert!(dup >= 0);
    std::thread::spawn(move || {
        // SAFETY: setns on this thread, which the test owns; the duplicate
        // descriptor is ours to close.
        unsafe {
            assert_eq!(libc::setns(dup, libc::CLONE_NEWNET), 0, "setns");
            libc::close(dup);
        }
        work()
    })
    .join()
    .unwrap()
}

/// The segment: a switch with a bridge, `hosts` hosts, etcd on the bridge.
struct Segment {
    switch: NetNs,
    hosts: Vec<NetNs>,
    dirs: Vec<StateDir>,
    etcd_dir: StateDir,
    etcd_bin: PathBuf,
    /// The cluster's members, each running or stopped.
    etcd: Vec<Option<Child>>,
}

impl Segment {
    fn new(hosts: usize) -> Option<Segment> {
        Segment::with_members(hosts, 1)
    }

    /// `hosts` hosts and an etcd cluster of `members` members.
    fn with_members(hosts: usize, members: usize) -> Option<Segment> {
        let Some(etcd_bin) = etcd_binary() else {
            eprintln!("SKIPPED: no etcd binary");
            return None;
        };
        let switch = NetNs::create().unwrap();
        let ip = |ns: &NetNs, args: &[&str]| {
            let out = run_in(ns, "ip", args);
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&switch, &["link", "add", "br0", "type", "bridge"]);
        ip(&switch, &["link", "set", "br0", "up"]);
        for k in 0..members {
            ip(
                &switch,
                &[
                    "addr",
                    "add",
                    &format!("{}/24", member_address(k)),
                    "dev",
                    "br0",
                ],
            );
        }
        let nl = switch.netlink().unwrap();
        let mut all = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..hosts {
            let host = NetNs::create().unwrap();
            let port = format!("h{i}");
            nl.create_link(&NewLink::veth("eth0", &port).netns(&host))
                .unwrap();
            ip(&switch, &["link", "set", &port, "master", "br0", "up"]);
            ip(&host, &["link", "set", "eth0", "up"]);
            ip(
                &host,
                &[
                    "addr",
                    "add",
                    &format!("10.120.0.{}/24", i + 1),
                    "dev",
                    "eth0",
                ],
            );
            all.push(host);
            dirs.push(StateDir::new());
        }
        let mut segment = Segment {
            switch,
            hosts: all,
            dirs,
            etcd_dir: StateDir::new(),
            etcd_bin,
            etcd: (0..members).map(|_| None).collect(),
        };
        for k in 0..members {
            segment.start_member(k);
        }
        segment.wait_ready();
        Some(segment)
    }

    /// The first member's client URL.
    fn endpoint() -> String {
        format!("http://{ETCD_ADDRESS}:2379")
    }

    /// Every member's client URL.
    fn endpoints(&self) -> Vec<String> {
        (0..self.etcd.len())
            .map(|k| format!("http://{}:2379", member_address(k)))
            .collect()
    }

    fn start_member(&mut self, k: usize) {
        let fd = self.switch.as_fd().as_raw_fd();
        let peer = |k: usize| format!("http://{}:2380", member_address(k));
        let cluster: Vec<String> = (0..self.etcd.len())
            .map(|m| format!("n{m}={}", peer(m)))
            .collect();
        let client = format!("http://{}:2379", member_address(k));
        let mut command = Command::new(&self.etcd_bin);
        command
            .args(["--name", &format!("n{k}"), "--data-dir"])
            .arg(self.etcd_dir.0.join(format!("data{k}")))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer(k)])
            .args(["--initial-advertise-peer-urls", &peer(k)])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", "new"])
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
        self.etcd[k] = Some(command.spawn().expect("start etcd"));
    }

    /// Waits until the cluster answers, from a host.
    fn wait_ready(&self) {
        let endpoints = self.endpoints();
        let ready = in_ns(&self.hosts[0].try_clone_for_test(), move || {
            let etcd = EtcdStore::new(&endpoints).unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if etcd.claims("probe").is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        });
        assert!(ready, "etcd did not come up");
    }

    fn start_etcd(&mut self) {
        for k in 0..self.etcd.len() {
            if self.etcd[k].is_none() {
                self.start_member(k);
            }
        }
        self.wait_ready();
    }

    fn stop_member(&mut self, k: usize) {
        if let Some(mut etcd) = self.etcd[k].take() {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
    }

    fn stop_etcd(&mut self) {
        for k in 0..self.etcd.len() {
            self.stop_member(k);
        }
    }

    /// Host `i`, opened with the shared store, on a thread in its namespace.
    fn with_host<T: Send + 'static>(
        &self,
        i: usize,
        work: impl FnOnce(Host) -> T + Send + 'static,
    ) -> T {
        let dir = self.dirs[i].0.clone();
        let endpoints = self.endpoints();
        in_ns(&self.hosts[i].try_clone_for_test(), move || {
            work(open_shared_host(&dir, &endpoints))
        })
    }

    /// The same network (its parent each host's eth0) on hosts `0..hosts`.
    fn create_everywhere(&self, hosts: usize, network: fn() -> underlay::network::NetworkBuilder) {
        for i in 0..hosts {
            self.with_host(i, move |host| {
                host.create_network(network()).unwrap();
            });
        }
    }

    /// Every claim on network `id`, read from host 0.
    fn claims(&self, id: &str) -> Vec<(IpAddr, Claim)> {
        let id = id.to_owned();
        in_ns(&self.hosts[0].try_clone_for_test(), move || {
            EtcdStore::new(&[Segment::endpoint()])
                .unwrap()
                .claims(&id)
                .unwrap()
        })
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.stop_etcd();
    }
}

/// The host of state directory `dir` (its runtime directory inside it),
/// with etcd at `endpoints`, opened from the calling thread's namespace.
fn open_shared_host(dir: &std::path::Path, endpoints: &[String]) -> Host {
    Host::options()
        .state_dir(dir)
        .runtime_dir(dir.join("run"))
        .shared_store(EtcdStore::new(endpoints).unwrap())
        .open()
        .unwrap()
}

/// A second handle on a namespace (a test helper: the library's handles
/// are not Clone).
trait CloneForTest {
    fn try_clone_for_test(&self) -> NetNs;
}

impl CloneForTest for NetNs {
    fn try_clone_for_test(&self) -> NetNs {
        NetNs::open(common::netns_path_for_child(self)).unwrap()
    }
}

fn shared_network() -> underlay::network::NetworkBuilder {
    Network::builder("shared")
        .macvlan()
        .parent("eth0")
        .subnet("10.121.0.0/24")
        .gateway("10.121.0.1")
}

/// Room for 1200 containers.
fn big_network() -> underlay::network::NetworkBuilder {
    Network::builder("shared")
        .macvlan()
        .parent("eth0")
        .subnet("10.126.0.0/21")
}

/// In a child process (started by [`spawn_attacher`]): opens host
/// `UNDERLAY_STATE` with etcd at `UNDERLAY_ETCD_ENDPOINTS`, from inside
/// `UNDERLAY_NETNS`, and attaches each container of `UNDERLAY_CONTAINERS`
/// (namespace paths, comma-separated) to network "shared", one after
/// another, printing `ATTACHED ADDRESS PATH` for each. With
/// `UNDERLAY_PACED`, each attach waits for a byte on stdin first.
#[test]
#[ignore = "helper: run by the multi-process tests in a child process"]
fn attacher_child() {
    let Ok(state) = std::env::var("UNDERLAY_STATE") else {
        return;
    };
    let host_ns = NetNs::open(std::env::var("UNDERLAY_NETNS").unwrap()).unwrap();
    let endpoints: Vec<String> = std::env::var("UNDERLAY_ETCD_ENDPOINTS")
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let containers = std::env::var("UNDERLAY_CONTAINERS").unwrap();
    in_ns(&host_ns, move || {
        use std::io::Write;
        let host = open_shared_host(&PathBuf::from(state), &endpoints);
        let net = host.network("shared").unwrap();
        let mut out = std::io::stdout().lock();
        let paced = std::env::var_os("UNDERLAY_PACED").is_some();
        for path in containers.split(',').filter(|p| !p.is_empty()) {
            if paced {
                use std::io::Read;
                let mut go = [0u8];
                if std::io::stdin().read(&mut go).unwrap() == 0 {
                    return;
                }
            }
            let c = NetNs::open(path).unwrap();
            let ep = net.attach(&c, &AttachOptions::new()).unwrap();
            writeln!(out, "ATTACHED {} {path}", ep.addresses()[0].addr()).unwrap();
            out.flush().unwrap();
        }
    });
}

/// Starts [`attacher_child`] for host `i` of `segment` on `containers`
/// (`paced`: each attach waits for a byte on its stdin).
fn spawn_attacher(segment: &Segment, i: usize, containers: &[NetNs], paced: bool) -> Child {
    let paths: Vec<String> = containers
        .iter()
        .map(common::netns_path_for_child)
        .collect();
    let mut command = common::child_command("attacher_child");
    if paced {
        command.env("UNDERLAY_PACED", "1").stdin(Stdio::piped());
    } else {
        command.stdin(Stdio::null());
    }
    command
        .env("UNDERLAY_STATE", &segment.dirs[i].0)
        .env(
            "UNDERLAY_NETNS",
            common::netns_path_for_child(&segment.hosts[i]),
        )
        .env("UNDERLAY_ETCD_ENDPOINTS", segment.endpoints().join(","))
        .env("UNDERLAY_CONTAINERS", paths.join(","))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What an attacher printed: (address, container path) per attach.
fn attached(output: &std::process::Output) -> Vec<(IpAddr, String)> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            // (libtest's "test attacher_child ... " may start the first.)
            let (_, rest) = line.split_once("ATTACHED ")?;
            let mut words = rest.split(' ');
            Some((words.next()?.parse().ok()?, words.next()?.to_owned()))
        })
        .collect()
}

/// The id of host `i`.
fn host_id(segment: &Segment, i: usize) -> String {
    std::fs::read_to_string(segment.dirs[i].0.join("id"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn three_hosts_attach_at_once_and_no_address_is_handed_out_twice() {
    let Some(segment) = Segment::new(3) else {
        return;
    };
    // The same network on each host (its parent is each host's eth0).
    segment.create_everywhere(3, big_network);
    // 3 hosts x 4 processes x 100 attaches, all at once. The containers
    // are this test's (they live as long as it does); each process attaches
    // its 100 one after another.
    let per_process = 100;
    let containers: Vec<Vec<NetNs>> = (0..12)
        .map(|_| (0..per_process).map(|_| NetNs::create().unwrap()).collect())
        .collect();
    let children: Vec<Child> = containers
        .iter()
        .enumerate()
        .map(|(k, batch)| spawn_attacher(&segment, k / 4, batch, false))
        .collect();
    let mut results: Vec<Vec<(usize, IpAddr, NetNs)>> = Vec::new();
    for (k, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "process {k}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let done = attached(&output);
        assert_eq!(done.len(), per_process, "process {k}");
        results.push(
            done.into_iter()
                .zip(&containers[k])
                .map(|((address, path), c)| {
                    assert_eq!(path, common::netns_path_for_child(c));
                    (k / 4, address, c.try_clone_for_test())
                })
                .collect(),
        );
    }
    let all: Vec<&(usize, IpAddr, NetNs)> = results.iter().flatten().collect();
    assert_eq!(all.len(), 3 * 4 * per_process);
    let distinct: BTreeSet<IpAddr> = all.iter().map(|(_, a, _)| *a).collect();
    assert_eq!(distinct.len(), all.len(), "an address was handed out twice");
    // Claims in etcd == endpoints recorded == links present, per host.
    let claims = segment.claims("shared");
    assert_eq!(claims.len(), all.len());
    for i in 0..3 {
        let host_id = std::fs::read_to_string(segment.dirs[i].0.join("id")).unwrap();
        let claims: BTreeSet<IpAddr> = claims
            .iter()
            .filter(|(_, c)| c.host == host_id.trim())
            .map(|(a, _)| *a)
            .collect();
        let recorded: BTreeSet<IpAddr> = segment.with_host(i, |host| {
            host.network("shared")
                .unwrap()
                .endpoints()
                .unwrap()
                .iter()
                .map(|e| e.addresses()[0].addr())
                .collect()
        });
        let mine: BTreeSet<IpAddr> = all
            .iter()
            .filter(|(h, _, _)| *h == i)
            .map(|(_, a, _)| *a)
            .collect();
        assert_eq!(recorded, mine, "host {i}");
        assert_eq!(claims, mine, "host {i}: claims");
    }
    for (_, address, c) in &all {
        let addresses = common::global_addresses(c);
        assert_eq!(addresses, vec![address.to_string()]);
    }
    // Containers on different hosts reach each other across the bridge.
    let (a, b) = (
        all.iter().find(|(h, _, _)| *h == 0).unwrap(),
        all.iter().find(|(h, _, _)| *h == 2).unwrap(),
    );
    assert!(common::ping(&a.2, &b.1.to_string()), "{} -> {}", a.1, b.1);

    // Detaching gives the claims back.
    let containers: Vec<NetNs> = all
        .iter()
        .filter(|(h, _, _)| *h == 1)
        .map(|(_, _, c)| c.try_clone_for_test())
        .collect();
    segment.with_host(1, move |host| {
        let net = host.network("shared").unwrap();
        for c in &containers {
            assert!(net
                .detach_with(
                    c,
                    &underlay::endpoint::DetachOptions::new().delete_link(true)
                )
                .unwrap());
        }
    });
    assert_eq!(segment.claims("shared").len(), all.len() - 4 * per_process);
}

#[test]
fn another_hosts_address_is_skipped_and_a_request_for_it_refused() {
    let Some(segment) = Segment::new(2) else {
        return;
    };
    segment.create_everywhere(2, shared_network);
    let attach = |i: usize, c: &NetNs, ip: Option<IpAddr>| {
        let c = c.try_clone_for_test();
        segment.with_host(i, move |host| {
            let mut options = AttachOptions::new();
            if let Some(ip) = ip {
                options = options.ip(ip);
            }
            host.network("shared")
                .unwrap()
                .attach(&c, &options)
                .map(|ep| ep.addresses()[0].addr())
                .map_err(|e| e.to_string())
        })
    };
    // X: what host 1's allocator proposes first.
    let c1 = NetNs::create().unwrap();
    let x = attach(1, &c1, None).unwrap();
    let c1b = c1.try_clone_for_test();
    segment.with_host(1, move |host| {
        let wait = underlay::endpoint::DetachOptions::new().delete_link(true);
        host.network("shared")
            .unwrap()
            .detach_with(&c1b, &wait)
            .unwrap();
    });
    // Host 0 takes X. Host 1 proposes X again, loses the claim, moves on.
    let c0 = NetNs::create().unwrap();
    assert_eq!(attach(0, &c0, Some(x)).unwrap(), x);
    let y = attach(1, &c1, None).unwrap();
    assert_ne!(y, x);
    // --ip X on host 1: refused, naming the holder; nothing made.
    let c2 = NetNs::create().unwrap();
    let e = attach(1, &c2, Some(x)).unwrap_err();
    assert!(e.contains(&x.to_string()) && e.contains("held by"), "{e}");
    assert_eq!(common::link_names(&c2), vec!["lo".to_owned()]);
}

#[test]
fn with_etcd_down_attaches_fail_cleanly_and_resume_when_it_is_back() {
    let Some(mut segment) = Segment::new(1) else {
        return;
    };
    segment.with_host(0, |host| {
        host.create_network(shared_network()).unwrap();
    });
    segment.stop_etcd();
    let c = NetNs::create().unwrap();
    let cb = c.try_clone_for_test();
    let e = segment.with_host(0, move |host| {
        host.network("shared")
            .unwrap()
            .attach(&cb, &AttachOptions::new())
            .unwrap_err()
    });
    assert!(matches!(e, Error::SharedStoreUnavailable { .. }), "{e}");
    assert!(e.to_string().contains(&Segment::endpoint()), "{e}");
    // Nothing half-made: no link, no record.
    assert_eq!(common::link_names(&c), vec!["lo".to_owned()]);
    let recorded = segment.with_host(0, |host| {
        host.network("shared").unwrap().endpoints().unwrap().len()
    });
    assert_eq!(recorded, 0);
    segment.start_etcd();
    let cb = c.try_clone_for_test();
    let address = segment.with_host(0, move |host| {
        host.network("shared")
            .unwrap()
            .attach(&cb, &AttachOptions::new())
            .unwrap()
            .addresses()[0]
            .addr()
    });
    assert!(address.to_string().starts_with("10.121.0."), "{address}");
    assert_eq!(segment.claims("shared").len(), 1);
}

#[test]
fn a_foreign_claim_is_never_released_and_recovery_gives_back_what_no_record_explains() {
    let Some(segment) = Segment::new(1) else {
        return;
    };
    segment.with_host(0, |host| {
        host.create_network(shared_network()).unwrap();
    });
    let id = "shared".to_owned();
    let host_id = std::fs::read_to_string(segment.dirs[0].0.join("id"))
        .unwrap()
        .trim()
        .to_owned();
    let idc = id.clone();
    let (foreign_kept, report) = segment.with_host(0, move |host| {
        let etcd = EtcdStore::new(&[Segment::endpoint()]).unwrap();
        let theirs = Claim {
            host: "another-host".into(),
            network: "shared".into(),
            endpoint: "00000000000000aa".into(),
            name: "web".into(),
            container: "/run/netns/web".into(),
        };
        let mine_lost = Claim {
            host: host_id.clone(),
            endpoint: "00000000000000bb".into(),
            ..theirs.clone()
        };
        let address: IpAddr = "10.121.0.40".parse().unwrap();
        // Only a host that has the network claims: another host joins it.
        assert!(matches!(
            etcd.claim(&idc, address, &theirs),
            Err(Error::NoLongerShared { .. })
        ));
        // Joined only to the definition it read: a stale one is not.
        assert!(!etcd.join(&idc, "another-host", "{}").unwrap());
        assert!(etcd.claim(&idc, address, &theirs).is_err());
        let definition = etcd.definition(&idc).unwrap().unwrap();
        assert!(etcd.join(&idc, "another-host", &definition).unwrap());
        assert_eq!(etcd.claim(&idc, address, &theirs).unwrap(), None);
        // Someone else's claim: a release by another holder is refused,
        // naming the holder.
        let refused = etcd.release(&idc, address, &mine_lost).unwrap_err();
        assert!(refused.to_string().contains("another-host"), "{refused}");
        let released = false;
        // A claim of this host that no record explains (a crash between
        // the claim and the record's end): recovery gives it back.
        let orphan: IpAddr = "10.121.0.41".parse().unwrap();
        assert_eq!(etcd.claim(&idc, orphan, &mine_lost).unwrap(), None);
        let report = host.recover().unwrap();
        (!released, report)
    });
    assert!(foreign_kept);
    assert_eq!(
        report.released_claims,
        vec!["shared: 1".to_owned()],
        "{report:?}"
    );
    let left: Vec<String> = segment
        .claims(&id)
        .into_iter()
        .map(|(a, c)| format!("{a} {}", c.host))
        .collect();
    assert_eq!(left, vec!["10.121.0.40 another-host".to_owned()]);
}

/// A network made before the host had the shared store is this host's
/// alone: with the store, its attaches work and claim nothing in it, and
/// recovery leaves it be.
#[test]
fn a_network_made_before_the_shared_store_stays_local_and_claims_nothing() {
    let Some(segment) = Segment::new(1) else {
        return;
    };
    let dir = segment.dirs[0].0.clone();
    in_ns(&segment.hosts[0].try_clone_for_test(), move || {
        let host = Host::options()
            .state_dir(&dir)
            .runtime_dir(dir.join("run"))
            .open()
            .unwrap();
        host.create_network(shared_network()).unwrap();
    });
    let c = NetNs::create().unwrap();
    let cb = c.try_clone_for_test();
    let cb2 = c.try_clone_for_test();
    segment.with_host(0, move |host| {
        let net = host.network("shared").unwrap();
        net.attach(&cb, &AttachOptions::new()).unwrap();
        let report = host.recover().unwrap();
        assert!(report.is_clean(), "{report:?}");
    });
    assert!(segment.claims("shared").is_empty());
    assert_eq!(common::global_addresses(&c).len(), 1);
    segment.with_host(0, move |host| {
        assert!(host.network("shared").unwrap().detach(&cb2).unwrap());
        host.force_remove_network("shared").unwrap();
    });
}

#[test]
fn one_definition_for_every_host_and_a_different_one_is_refused() {
    let Some(segment) = Segment::new(3) else {
        return;
    };
    // Host 0 defines it with no subnet: a default pool. Host 1 joins with
    // the same words and gets the same subnet, whatever its own pools say.
    let open = || Network::builder("shared").macvlan().parent("eth0");
    let s0 = segment.with_host(0, move |host| {
        host.create_network(open()).unwrap().ipam().subnets()[0].subnet()
    });
    let s1 = segment.with_host(1, move |host| {
        host.create_network(open()).unwrap().ipam().subnets()[0].subnet()
    });
    assert_eq!(s0, s1);
    // Host 2 asks for another subnet: refused, naming it; nothing made.
    segment.with_host(2, |_| ());
    let snapshot = |dir: &PathBuf| {
        // A StateDir removes its directory when dropped: not this one.
        let view = common::StateDir(dir.clone());
        let files = view.snapshot();
        std::mem::forget(view);
        files
    };
    let before = snapshot(&segment.dirs[2].0);
    let e = segment.with_host(2, move |host| {
        host.create_network(open().subnet("10.99.0.0/24"))
            .unwrap_err()
    });
    match &e {
        Error::DefinitionDiffers { field, .. } => assert_eq!(*field, "subnet", "{e}"),
        other => panic!("{other}"),
    }
    assert!(segment.with_host(2, |host| host.network("shared").is_err()));
    assert_eq!(snapshot(&segment.dirs[2].0), before);
    // The definition goes with the last host.
    let definition = || {
        in_ns(&segment.hosts[0].try_clone_for_test(), || {
            let etcd = EtcdStore::new(&[Segment::endpoint()]).unwrap();
            etcd.define("shared", "{}").unwrap()
        })
    };
    segment.with_host(0, |host| host.remove_network("shared").unwrap());
    assert!(definition().is_some(), "host 1 still has it");
    segment.with_host(1, |host| host.remove_network("shared").unwrap());
    // Gone: a define now writes the proposal (and it is cleaned up).
    assert_eq!(definition(), None);
}

#[test]
fn forgetting_a_dead_host_frees_its_addresses_and_only_then() {
    let Some(segment) = Segment::new(2) else {
        return;
    };
    segment.create_everywhere(2, shared_network);
    let c0 = NetNs::create().unwrap();
    let c0b = c0.try_clone_for_test();
    let held = segment.with_host(0, move |host| {
        host.network("shared")
            .unwrap()
            .attach(&c0b, &AttachOptions::new())
            .unwrap()
            .addresses()[0]
            .addr()
    });
    // Host 0 "dies": its container keeps its address, and host 1 never
    // takes it on a guess.
    let c1 = NetNs::create().unwrap();
    let c1b = c1.try_clone_for_test();
    let refused = segment.with_host(1, move |host| {
        let options = AttachOptions::new().ip(held);
        host.network("shared")
            .unwrap()
            .attach(&c1b, &options)
            .is_err()
    });
    assert!(refused);
    // Forgotten by an explicit call: its address is free.
    let dead = std::fs::read_to_string(segment.dirs[0].0.join("id"))
        .unwrap()
        .trim()
        .to_owned();
    let own = std::fs::read_to_string(segment.dirs[1].0.join("id"))
        .unwrap()
        .trim()
        .to_owned();
    let (released, refused) = segment.with_host(1, move |host| {
        let refused = host.forget_host(&own).is_err() && host.forget_host("../etc").is_err();
        (host.forget_host(&dead).unwrap(), refused)
    });
    assert!(refused);
    assert_eq!(released, 1);
    let c2 = NetNs::create().unwrap();
    let c2b = c2.try_clone_for_test();
    let a2 = segment.with_host(1, move |host| {
        let options = AttachOptions::new().ip(held);
        host.network("shared")
            .unwrap()
            .attach(&c2b, &options)
            .unwrap()
            .addresses()[0]
            .addr()
    });
    assert_eq!(a2, held);
}

#[test]
fn the_cli_on_two_hosts_with_etcd() {
    let Some(segment) = Segment::new(2) else {
        return;
    };
    let cli = env!("CARGO_BIN_EXE_underlay-cni").replace("underlay-cni", "examples/underlay");
    if !std::path::Path::new(&cli).exists() {
        // Built by `cargo test` for tests/examples.rs; say so if not.
        panic!("no CLI example at {cli}: cargo build --all-features --examples");
    }
    let run = |i: usize, args: &[&str]| {
        let mut full = vec![
            "--etcd".to_owned(),
            Segment::endpoint(),
            "--state-dir".to_owned(),
            segment.dirs[i].0.display().to_string(),
            "--runtime-dir".to_owned(),
            segment.dirs[i].0.join("run").display().to_string(),
        ];
        full.extend(args.iter().map(|a| a.to_string()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        common::run_in(&segment.hosts[i], &cli, &full)
    };
    // `network create` of "lan" on host `i` with `subnet`.
    let create = |i: usize, subnet: &str| {
        let subnet = format!("--subnet={subnet}");
        let args = [
            "network",
            "create",
            "-d",
            "macvlan",
            &subnet,
            "-o",
            "parent=eth0",
            "lan",
        ];
        run(i, &args)
    };
    for i in 0..2 {
        let out = create(i, "10.122.0.0/24");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (c0, c1) = (NetNs::create().unwrap(), NetNs::create().unwrap());
    for (i, c) in [(0, &c0), (1, &c1)] {
        let path = common::netns_path_for_child(c);
        let out = run(i, &["network", "connect", "lan", &path]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (a0, a1) = (common::global_addresses(&c0), common::global_addresses(&c1));
    assert_eq!((a0.len(), a1.len()), (1, 1));
    assert_ne!(a0, a1);
    assert!(a0[0].starts_with("10.122.0.") && a1[0].starts_with("10.122.0."));
    assert!(common::ping(&c1, &a0[0]));
    // Host 0 leaves; host 1 keeps the definition. Host 0 coming back with
    // another subnet is refused, naming the field.
    let path = common::netns_path_for_child(&c0);
    assert!(run(0, &["network", "disconnect", "lan", &path])
        .status
        .success());
    assert!(run(0, &["network", "rm", "lan"]).status.success());
    let out = create(0, "10.124.0.0/24");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("subnet"), "{err}");
    // Host 0 joins again; `network rm -f` there would remove the network
    // everywhere, and is refused while host 1 holds an address, naming it;
    // `-ff` removes it anyway, and host 1's container keeps its address.
    assert!(create(0, "10.122.0.0/24").status.success());
    let out = run(0, &["network", "rm", "-f", "lan"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&host_id(&segment, 1)),
        "{err}"
    );
    assert!(run(0, &["network", "ls", "-q"]).stdout.starts_with(b"lan"));
    let out = run(0, &["network", "rm", "-ff", "lan"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(common::global_addresses(&c1), a1);
    assert_eq!(segment.claims("lan").len(), 1);
    // Defined afresh: another subnet is no longer refused.
    let out = create(0, "10.124.0.0/24");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn removing_a_network_everywhere_is_refused_while_other_hosts_hold_addresses_unless_forced() {
    let Some(segment) = Segment::new(3) else {
        return;
    };
    segment.create_everywhere(3, shared_network);
    let attach = |i: usize, c: &NetNs| {
        let c = c.try_clone_for_test();
        segment.with_host(i, move |host| {
            host.network("shared")
                .unwrap()
                .attach(&c, &AttachOptions::new())
                .unwrap()
                .addresses()[0]
                .addr()
        })
    };
    let (c0, c1) = (NetNs::create().unwrap(), NetNs::create().unwrap());
    let a0 = attach(0, &c0);
    let a1 = attach(1, &c1);
    // Refused, naming host 1 and its one address; nothing changes.
    let before = {
        let view = common::StateDir(segment.dirs[0].0.clone());
        let files = view.snapshot();
        std::mem::forget(view);
        files
    };
    let e = segment.with_host(0, |host| {
        host.remove_network_everywhere("shared", false).unwrap_err()
    });
    match &e {
        Error::NetworkInUseElsewhere {
            network,
            hosts,
            addresses,
        } => {
            assert_eq!(network, "shared");
            assert_eq!(hosts, &vec![host_id(&segment, 1)]);
            assert_eq!(*addresses, 1);
        }
        other => panic!("{other}"),
    }
    assert!(e.is_conflict(), "{e}");
    assert!(e.to_string().contains("force"), "{e}");
    let after = {
        let view = common::StateDir(segment.dirs[0].0.clone());
        let files = view.snapshot();
        std::mem::forget(view);
        files
    };
    assert_eq!(before, after);
    assert_eq!(common::global_addresses(&c0), vec![a0.to_string()]);
    assert_eq!(segment.claims("shared").len(), 2);
    // Forced: host 0's half and the definition go; host 1's container
    // keeps its address, and its claim.
    segment.with_host(0, |host| {
        host.remove_network_everywhere("shared", true).unwrap();
        host.settle();
        assert!(host.network("shared").is_err());
    });
    assert_eq!(common::link_names(&c0), vec!["lo".to_owned()]);
    assert_eq!(common::global_addresses(&c1), vec![a1.to_string()]);
    let left: Vec<IpAddr> = segment
        .claims("shared")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(left, vec![a1]);
    // The name is free for a new definition (another subnet is no longer
    // "different"), while hosts 1 and 2 still have their halves.
    segment.with_host(0, |host| {
        host.create_network(shared_network().subnet("10.99.0.0/24"))
            .unwrap();
    });
    // Host 2 kept its half of the old definition: it claims nothing more
    // under the name, and its recovery does not join it to the new
    // definition. Its container is left as it was.
    let c3 = NetNs::create().unwrap();
    let c3b = c3.try_clone_for_test();
    segment.with_host(2, move |host| {
        let attach = || {
            host.network("shared")
                .unwrap()
                .attach(&c3b, &AttachOptions::new())
                .unwrap_err()
        };
        let e = attach();
        assert!(matches!(e, Error::NoLongerShared { .. }), "{e}");
        assert!(e.is_conflict());
        assert!(e.to_string().contains("removed it everywhere"), "{e}");
        host.recover().unwrap();
        assert!(matches!(attach(), Error::NoLongerShared { .. }));
    });
    assert_eq!(common::link_names(&c3), vec!["lo".to_owned()]);
    assert_eq!(segment.claims("shared").len(), 1);
    // Host 1's own detach gives its claim back; with no address held
    // anywhere, an unforced removal everywhere succeeds.
    let c1b = c1.try_clone_for_test();
    segment.with_host(1, move |host| {
        let wait = underlay::endpoint::DetachOptions::new().delete_link(true);
        assert!(host
            .network("shared")
            .unwrap()
            .detach_with(&c1b, &wait)
            .unwrap());
    });
    assert!(segment.claims("shared").is_empty());
    segment.with_host(0, |host| {
        host.remove_network_everywhere("shared", false).unwrap();
    });
    // Host 2 defines it again and attaches; host 0, which leaves its half,
    // can still remove it everywhere: refused while host 2 holds an
    // address, then forced. A name defined nowhere is not found.
    let c2 = NetNs::create().unwrap();
    let c2b = c2.try_clone_for_test();
    segment.with_host(1, |host| host.remove_network("shared").unwrap());
    segment.with_host(2, |host| host.remove_network("shared").unwrap());
    segment.with_host(2, move |host| {
        host.create_network(shared_network()).unwrap();
        host.network("shared")
            .unwrap()
            .attach(&c2b, &AttachOptions::new())
            .unwrap();
    });
    let host2 = host_id(&segment, 2);
    segment.with_host(0, move |host| {
        host.create_network(shared_network()).unwrap();
        host.remove_network("shared").unwrap();
        match host.remove_network_everywhere("shared", false) {
            Err(Error::NetworkInUseElsewhere { hosts, .. }) => assert_eq!(hosts, vec![host2]),
            other => panic!("{other:?}"),
        }
        host.remove_network_everywhere("shared", true).unwrap();
        assert!(matches!(
            host.remove_network_everywhere("nowhere", true),
            Err(Error::NetworkNotFound { .. })
        ));
        // Names that cannot be a network's never reach the store.
        for bad in ["../shared", "sha/red", "shared\n", ""] {
            let e = host.remove_network_everywhere(bad, true).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { .. }), "{bad:?}: {e}");
        }
    });
    assert_eq!(common::global_addresses(&c2).len(), 1);
    // Hosts 1 and 2 remove their halves (nothing to leave there now), and
    // the store is empty of the network: a define writes afresh.
    segment.with_host(2, |host| host.force_remove_network("shared").unwrap());
    in_ns(&segment.hosts[0].try_clone_for_test(), || {
        let etcd = EtcdStore::new(&[Segment::endpoint()]).unwrap();
        assert_eq!(etcd.define("shared", "{}").unwrap(), None);
        assert!(etcd.undefine("shared", true).unwrap());
    });
}

#[test]
fn with_one_member_of_three_stopped_attaches_still_succeed() {
    let Some(mut segment) = Segment::with_members(1, 3) else {
        return;
    };
    segment.with_host(0, |host| {
        host.create_network(shared_network()).unwrap();
    });
    let attach = |segment: &Segment| {
        let c = NetNs::create().unwrap();
        let cb = c.try_clone_for_test();
        let address = segment.with_host(0, move |host| {
            host.network("shared")
                .unwrap()
                .attach(&cb, &AttachOptions::new())
                .map(|ep| ep.addresses()[0].addr())
        });
        (address, c)
    };
    let (first, _c1) = attach(&segment);
    let first = first.unwrap();
    // The member the client tries first goes down: the others answer.
    segment.stop_member(0);
    let (second, _c2) = attach(&segment);
    assert_ne!(second.unwrap(), first);
    // Two of three down: no quorum; a clear error, nothing half-made.
    segment.stop_member(1);
    let (third, c3) = attach(&segment);
    let e = third.unwrap_err();
    assert!(matches!(e, Error::SharedStoreUnavailable { .. }), "{e}");
    assert_eq!(common::link_names(&c3), vec!["lo".to_owned()]);
}

#[test]
fn kill_9_during_attaches_then_recovery_leaks_no_claim_link_or_record() {
    let Some(segment) = Segment::new(1) else {
        return;
    };
    let cli = env!("CARGO_BIN_EXE_underlay-cni").replace("underlay-cni", "examples/underlay");
    let endpoints = segment.endpoints().join(",");
    let run = |args: &[&str], crash: Option<&str>| {
        let mut command = Command::new(&cli);
        command
            .args(["--etcd", &endpoints, "--state-dir"])
            .arg(&segment.dirs[0].0)
            .arg("--runtime-dir")
            .arg(segment.dirs[0].0.join("run"))
            .args(args);
        if let Some(step) = crash {
            command.env("UNDERLAY_CRASH_AT", step);
        }
        let fd = segment.hosts[0].as_fd().as_raw_fd();
        // SAFETY: setns is async-signal-safe and affects only the child.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.output().unwrap()
    };
    let create = [
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet=10.125.0.0/24",
        "-o",
        "parent=eth0",
        "lan",
    ];
    assert!(run(&create, None).status.success());
    let mut containers = Vec::new();
    for step in ["recorded as attaching", "created link", "attached"] {
        let c = NetNs::create().unwrap();
        let path = common::netns_path_for_child(&c);
        let out = run(&["network", "connect", "lan", &path], Some(step));
        assert!(common::killed(&out), "{step}: not killed: {out:?}");
        containers.push(c);
    }
    assert!(run(&["recover"], None).status.success());
    // Claims == records == addresses on links, for what survived.
    let on_links: BTreeSet<String> = containers
        .iter()
        .flat_map(common::global_addresses)
        .collect();
    let recorded: BTreeSet<String> = segment.with_host(0, |host| {
        host.network("lan")
            .unwrap()
            .endpoints()
            .unwrap()
            .iter()
            .map(|e| e.addresses()[0].addr().to_string())
            .collect()
    });
    let claimed: BTreeSet<String> = segment
        .claims("lan")
        .into_iter()
        .map(|(a, _)| a.to_string())
        .collect();
    assert_eq!(recorded, on_links);
    assert_eq!(claimed, recorded);
    // The attach that finished before its process died is whole.
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    // Links of the undone attaches are gone.
    for c in &containers[..2] {
        assert_eq!(common::link_names(c), vec!["lo".to_owned()]);
    }
}

/// Host 0 without its shared store (a connect without --etcd).
fn host_without_store(segment: &Segment, i: usize) -> Result<(), String> {
    let dir = segment.dirs[i].0.clone();
    in_ns(&segment.hosts[i].try_clone_for_test(), move || {
        let host = Host::options()
            .state_dir(&dir)
            .runtime_dir(dir.join("run"))
            .open()
            .unwrap();
        let c = NetNs::create().unwrap();
        host.network("shared")
            .unwrap()
            .attach(&c, &AttachOptions::new())
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

#[test]
fn removal_releases_claims_no_store_is_refused_and_a_mistaken_forget_is_undone_by_recovery() {
    let Some(segment) = Segment::new(2) else {
        return;
    };
    segment.create_everywhere(2, shared_network);
    // Without the shared store, the shared network is refused.
    let e = host_without_store(&segment, 0).unwrap_err();
    assert!(e.contains("shared"), "{e}");

    // A detached endpoint's claim goes with a removal; so does a forced one's.
    let (c1, c2) = (NetNs::create().unwrap(), NetNs::create().unwrap());
    let (c1b, c2b) = (c1.try_clone_for_test(), c2.try_clone_for_test());
    segment.with_host(0, move |host| {
        let net = host.network("shared").unwrap();
        net.attach(&c1b, &AttachOptions::new()).unwrap();
        net.attach(&c2b, &AttachOptions::new()).unwrap();
        let fast = underlay::endpoint::DetachOptions::new().sweep(false);
        net.detach_with(&c1b, &fast).unwrap();
        host.force_remove_network("shared").unwrap();
    });
    let host0 = std::fs::read_to_string(segment.dirs[0].0.join("id")).unwrap();
    assert!(
        segment
            .claims("shared")
            .iter()
            .all(|(_, c)| c.host != host0.trim()),
        "{:?}",
        segment.claims("shared")
    );

    // Host 1 has a container.
    let c3 = NetNs::create().unwrap();
    let c3b = c3.try_clone_for_test();
    let held = segment.with_host(1, move |host| {
        host.network("shared")
            .unwrap()
            .attach(&c3b, &AttachOptions::new())
            .unwrap()
            .addresses()[0]
            .addr()
    });

    // Host 1 forgotten by mistake, then recovers: its address is claimed
    // again, and no one else can take it.
    let host1 = std::fs::read_to_string(segment.dirs[1].0.join("id"))
        .unwrap()
        .trim()
        .to_owned();
    segment.with_host(0, move |host| {
        host.create_network(shared_network()).unwrap();
        assert_eq!(host.forget_host(&host1).unwrap(), 1);
    });
    segment.with_host(1, |host| {
        host.recover().unwrap();
    });
    let c4 = NetNs::create().unwrap();
    let c4b = c4.try_clone_for_test();
    let taken = segment.with_host(0, move |host| {
        let options = AttachOptions::new().ip(held);
        host.network("shared")
            .unwrap()
            .attach(&c4b, &options)
            .is_ok()
    });
    assert!(!taken, "{held} went to a second container");
}

/// A small generator for the random points (xorshift64*), its seed printed
/// so that a failure can be replayed (`UNDERLAY_TEST_SEED`).
struct Random(u64);

impl Random {
    fn new() -> Random {
        let seed = std::env::var("UNDERLAY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("UNDERLAY_TEST_SEED={seed}");
        Random(seed)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[test]
fn kill_9_of_attaching_processes_at_random_points_then_recovery_leaks_nothing() {
    let Some(segment) = Segment::new(2) else {
        return;
    };
    segment.create_everywhere(2, big_network);
    let mut random = Random::new();
    let per_process = 20;
    // (host, container) for every container made.
    let mut containers: Vec<(usize, NetNs)> = Vec::new();
    let mut killed = 0;
    for _round in 0..3 {
        // 2 hosts x 3 processes, at once; each attaches a random number of
        // containers, starts one more, and is killed (SIGKILL) after a
        // random delay of up to 4 ms: inside that attach, at a random step
        // (or just after it).
        let mut runs = Vec::new();
        for i in 0..2 {
            for _ in 0..3 {
                let batch: Vec<NetNs> =
                    (0..per_process).map(|_| NetNs::create().unwrap()).collect();
                let child = spawn_attacher(&segment, i, &batch, true);
                // (At least half the attaches left: more than the delay
                // could see finish.)
                let after = 1 + random.below(per_process as u64 / 2) as usize;
                let delay = Duration::from_micros(random.below(4000));
                runs.push((child, after, delay));
                containers.extend(batch.into_iter().map(|c| (i, c)));
            }
        }
        let outcomes: Vec<(bool, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = runs
                .into_iter()
                .map(|(mut child, after, delay)| {
                    scope.spawn(move || {
                        use std::io::{BufRead, Write};
                        let stdout = child.stdout.take().unwrap();
                        let mut go = child.stdin.take().unwrap();
                        let mut lines = std::io::BufReader::new(stdout).lines();
                        let mut seen = 0;
                        'attaches: while seen < after {
                            go.write_all(b"g").unwrap();
                            for line in lines.by_ref() {
                                match line {
                                    Ok(line) if line.contains("ATTACHED ") => {
                                        seen += 1;
                                        continue 'attaches;
                                    }
                                    Ok(_) => {}
                                    Err(_) => break 'attaches,
                                }
                            }
                            break;
                        }
                        if seen == after {
                            go.write_all(b"g").unwrap();
                            std::thread::sleep(delay);
                            let _ = child.kill();
                        }
                        drop(go);
                        let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
                        let output = child.wait_with_output().unwrap();
                        (
                            common::killed(&output),
                            format!(
                                "{} after {seen} of {after} attaches; then {rest:?}; {}",
                                output.status,
                                String::from_utf8_lossy(&output.stderr)
                            ),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (was_killed, stderr) in outcomes {
            // Every process is killed: none failed or ran out first.
            assert!(was_killed, "an attacher was not killed: {stderr}");
            killed += 1;
        }
    }
    assert_eq!(killed, 18);
    // Where the kills landed, as the kernel shows it (for the log).
    let linked = containers
        .iter()
        .filter(|(_, c)| common::link_names(c).len() > 1)
        .count();
    let addressed = containers
        .iter()
        .filter(|(_, c)| !common::global_addresses(c).is_empty())
        .count();
    for i in 0..2 {
        let report = segment.with_host(i, |host| host.recover().unwrap());
        eprintln!(
            "host {i}: before recovery {linked} links, {addressed} with an address; {report:?}"
        );
    }
    // Per host: the addresses recorded == on the containers' links ==
    // claimed in etcd; a container with a link of the network is recorded.
    let claims = segment.claims("shared");
    let mut everyone = BTreeSet::new();
    for i in 0..2 {
        let recorded: Vec<(IpAddr, String)> = segment.with_host(i, |host| {
            host.network("shared")
                .unwrap()
                .endpoints()
                .unwrap()
                .iter()
                .map(|e| (e.addresses()[0].addr(), e.ifname().to_owned()))
                .collect()
        });
        let mut on_links = BTreeSet::new();
        let mut with_links = 0;
        for (_, c) in containers.iter().filter(|(h, _)| *h == i) {
            let links = common::link_names(c);
            assert!(links.len() <= 2, "{links:?}");
            let addresses = common::global_addresses(c);
            if links.len() == 2 {
                with_links += 1;
                assert_eq!(addresses.len(), 1, "a link without its address: {links:?}");
            } else {
                assert!(addresses.is_empty());
            }
            on_links.extend(addresses);
        }
        let recorded_set: BTreeSet<String> = recorded.iter().map(|(a, _)| a.to_string()).collect();
        let id = host_id(&segment, i);
        let claimed: BTreeSet<String> = claims
            .iter()
            .filter(|(_, c)| c.host == id)
            .map(|(a, _)| a.to_string())
            .collect();
        assert_eq!(
            recorded.len(),
            with_links,
            "host {i}: a link no record explains"
        );
        assert_eq!(recorded_set, on_links, "host {i}");
        assert_eq!(claimed, recorded_set, "host {i}: claims");
        for address in recorded_set {
            assert!(everyone.insert(address.clone()), "{address} held twice");
        }
    }
    assert_eq!(claims.len(), everyone.len(), "a claim of no host");
    // Work resumes: the containers the kills left out are attached now,
    // every address still distinct, and hosts reach each other.
    let mut children = Vec::new();
    let mut rest: Vec<(usize, NetNs)> = Vec::new();
    for i in 0..2 {
        let left: Vec<NetNs> = containers
            .iter()
            .filter(|(h, c)| *h == i && common::link_names(c).len() == 1)
            .map(|(_, c)| c.try_clone_for_test())
            .collect();
        children.push(spawn_attacher(&segment, i, &left, false));
        rest.extend(left.into_iter().map(|c| (i, c)));
    }
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut all = BTreeSet::new();
    for (_, c) in &containers {
        let addresses = common::global_addresses(c);
        assert_eq!(addresses.len(), 1);
        assert!(all.insert(addresses[0].clone()), "{} twice", addresses[0]);
    }
    assert_eq!(segment.claims("shared").len(), containers.len());
    let a = containers.iter().find(|(h, _)| *h == 0).unwrap();
    let b = containers.iter().find(|(h, _)| *h == 1).unwrap();
    let target = common::global_addresses(&b.1)[0].clone();
    assert!(common::ping(&a.1, &target), "-> {target}");
}
