//! Names (feature `dns`): containers find each other by name through the
//! resolver at 127.0.0.11, as the seeds' `ping ipv1` does, with glibc's
//! resolver and iputils' ping.
//!
//! A container "uses" the resolver the way `ip netns exec` gives it a
//! resolv.conf: the command runs in a mount namespace of its own where a
//! file saying `nameserver 127.0.0.11` is bind-mounted over
//! `/etc/resolv.conf` (the machine's file is never touched), then enters
//! the container's network namespace.
#![cfg(feature = "dns")]

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::StateDir;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use underlay::endpoint::AttachOptions;
use underlay::link::NewLink;
use underlay::netns::NetNs;
use underlay::resolver::{Resolver, ResolverOptions};
use underlay::{Host, Network};

/// A resolv.conf pointing at the resolver, in the test's state directory.
fn resolv_conf(dir: &StateDir) -> std::path::PathBuf {
    let path = dir.0.join("resolv.conf");
    std::fs::write(
        &path,
        "nameserver 127.0.0.11\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    path
}

/// Runs `args` in `container` with `conf` as its `/etc/resolv.conf`.
fn with_dns(container: &NetNs, conf: &std::path::Path, args: &[&str]) -> Output {
    let netns = format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        common::fd_of(container)
    );
    let script = format!(
        "mount --bind '{}' /etc/resolv.conf && exec nsenter --net='{netns}' \"$@\"",
        conf.display()
    );
    Command::new("unshare")
        .args(["-m", "sh", "-c", &script, "sh"])
        .args(args)
        .output()
        .expect("run unshare")
}

/// `getent ahosts NAME` in `container`: the addresses glibc resolves.
fn resolve(container: &NetNs, conf: &std::path::Path, name: &str) -> Vec<IpAddr> {
    let out = with_dns(container, conf, &["getent", "ahosts", name]);
    let mut addresses: Vec<IpAddr> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// `ping -c 1 NAME` (with `-6` for IPv6) in `container`, by name.
fn ping_name(container: &NetNs, conf: &std::path::Path, name: &str, v6: bool) -> bool {
    let mut args = vec!["ping", "-c", "1", "-W", "2"];
    if v6 {
        args.push("-6");
    }
    args.push(name);
    let out = with_dns(container, conf, &args);
    if !out.status.success() {
        eprintln!(
            "ping {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// One query sent to 127.0.0.11 from inside `container`; the reply.
fn query(container: &NetNs, name: &str, qtype: RecordType) -> Option<Message> {
    let mut message = Message::new();
    message
        .set_id(0x5151)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let bytes = message.to_vec().unwrap();
    raw_query(container, &bytes, Duration::from_secs(1))
        .and_then(|reply| Message::from_vec(&reply).ok())
}

/// Sends `bytes` to 127.0.0.11:53 from inside `container`; the reply, if
/// one comes within `wait`. (A connected socket: with no listener there,
/// the kernel's "port unreachable" ends the wait at once.)
fn raw_query(container: &NetNs, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let bytes = bytes.to_vec();
    container
        .run(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_read_timeout(Some(wait)).unwrap();
            socket.connect("127.0.0.11:53").unwrap();
            if socket.send(&bytes).is_err() {
                return Ok(None);
            }
            let mut buf = vec![0u8; 4096];
            Ok(socket.recv(&mut buf).ok().map(|n| {
                buf.truncate(n);
                buf
            }))
        })
        .unwrap()
}

fn addresses(message: &Message) -> Vec<IpAddr> {
    message
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn netns_of(container: &NetNs) -> NetNs {
    NetNs::open(format!("/proc/self/fd/{}", common::fd_of(container))).unwrap()
}

fn attach(net: &Network, container: &NetNs, name: &str, aliases: &[&str]) -> Vec<IpAddr> {
    let mut options = AttachOptions::new().name(name);
    for alias in aliases {
        options = options.dns_name(alias);
    }
    net.attach(&netns_of(container), &options)
        .unwrap()
        .addresses()
        .iter()
        .map(|a| a.addr())
        .collect()
}

/// A resolver with no upstream (an empty resolv.conf): names that are not
/// the containers' get SERVFAIL at once.
fn start_resolver(host: &Host, dir: &StateDir) -> Resolver {
    let empty = dir.0.join("upstream.conf");
    std::fs::write(&empty, "").unwrap();
    Resolver::start(host, ResolverOptions::new().resolv_conf(&empty)).unwrap()
}

/// Waits (up to `limit`) until `check` holds; how long it took.
fn until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

#[test]
fn the_seed_flow_ping_by_name_and_alias() {
    let (sb, dir, host) = common::fixture();
    let conf = resolv_conf(&dir);
    let net = host
        .create_network(
            Network::builder("db_net")
                .macvlan()
                .parent("eth0")
                .subnet("192.168.55.0/24"),
        )
        .unwrap();
    let (c1, c2) = (sb.container(), sb.container());
    let ipv1 = attach(&net, &c1, "ipv1", &["db"]);
    attach(&net, &c2, "ipv2", &[]);
    // A container whose loopback is down: the resolver brings it up.
    assert!(common::run_in(&c2, "ip", &["link", "set", "lo", "down"])
        .status
        .success());
    let resolver = start_resolver(&host, &dir);
    assert_eq!(resolver.served(), 2);
    assert!(common::ip_link(&c2, "lo")["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "UP"));

    // docker run --net=db_net --name=ipv2 ... ping -c 4 ipv1
    assert!(ping_name(&c2, &conf, "ipv1", false));
    assert!(ping_name(&c2, &conf, "db", false));
    assert!(ping_name(&c2, &conf, "IPV1.underlay.internal", false));
    assert_eq!(resolve(&c2, &conf, "ipv1"), ipv1);
    // The reverse: PTR.
    let reverse = with_dns(&c2, &conf, &["getent", "hosts", &ipv1[0].to_string()]);
    assert!(
        String::from_utf8_lossy(&reverse.stdout).contains("ipv1.underlay.internal"),
        "{reverse:?}"
    );
    // Unknown names: not found (no upstream here), quickly.
    let start = Instant::now();
    assert!(resolve(&c2, &conf, "nosuch").is_empty());
    assert!(start.elapsed() < Duration::from_secs(3));
    let reply = query(&c2, "nosuch.underlay.internal.", RecordType::A).unwrap();
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
    drop(resolver);
    // Stopped: nothing answers.
    assert!(query(&c2, "ipv1.", RecordType::A).is_none());
}

#[test]
fn names_follow_connects_and_disconnects_and_stay_in_their_networks() {
    let (sb, dir, host) = common::fixture();
    let conf = resolv_conf(&dir);
    // A second parent for a second network.
    sb.nl
        .create_link(&NewLink::veth("eth1", "uplink1").up())
        .unwrap();
    let uplink = sb.nl.link_by_name("uplink1").unwrap();
    sb.nl.set_link_up_by_index(uplink.index, true).unwrap();
    let front = host
        .create_network(
            Network::builder("front")
                .macvlan()
                .parent("eth0")
                .subnet("10.66.1.0/24"),
        )
        .unwrap();
    let back = host
        .create_network(
            Network::builder("back")
                .macvlan()
                .parent("eth1")
                .subnet("10.66.2.0/24"),
        )
        .unwrap();
    let (web, api, db) = (sb.container(), sb.container(), sb.container());
    // No periodic look for a minute: only file notifications tell the
    // resolver (how fast: `cargo bench --bench dns`).
    let empty = dir.0.join("upstream.conf");
    std::fs::write(&empty, "").unwrap();
    let resolver = Resolver::start(
        &host,
        ResolverOptions::new()
            .resolv_conf(&empty)
            .refresh_interval(Duration::from_secs(60)),
    )
    .unwrap();
    assert_eq!(resolver.served(), 0);

    let web_front = attach(&front, &web, "web", &[]);
    until(Duration::from_secs(10), || {
        query(&web, "web.", RecordType::A).is_some_and(|m| addresses(&m) == web_front)
    })
    .expect("web never resolved");

    let api_front = attach(&front, &api, "api", &[]);
    let api_back = attach(&back, &api, "api", &[]);
    let db_back = attach(&back, &db, "db", &[]);
    until(Duration::from_secs(2), || resolver.served() == 3).unwrap();
    // web (front only) sees api's front address, and not db.
    until(Duration::from_secs(2), || {
        !resolve(&web, &conf, "api").is_empty()
    })
    .unwrap();
    assert_eq!(resolve(&web, &conf, "api"), api_front);
    assert!(resolve(&web, &conf, "db").is_empty());
    // db (back only) sees api's back address, and not web.
    assert_eq!(resolve(&db, &conf, "api"), api_back);
    assert!(resolve(&db, &conf, "web").is_empty());
    // api, on both, resolves both.
    assert_eq!(resolve(&api, &conf, "web"), web_front);
    assert_eq!(resolve(&api, &conf, "db"), db_back);
    assert!(ping_name(&api, &conf, "db", false));
    assert!(ping_name(&api, &conf, "web", false));

    // Detached: its name stops resolving, and its namespace is no longer
    // served once it has no endpoint.
    assert!(back.detach(&netns_of(&db)).unwrap());
    until(Duration::from_secs(10), || {
        query(&api, "db.", RecordType::A).is_some_and(|m| addresses(&m).is_empty())
    })
    .expect("db kept resolving");
    until(Duration::from_secs(10), || resolver.served() == 2).unwrap();
    assert!(query(&db, "api.", RecordType::A).is_none());
    // Idle, it reads nothing again: its own reading is no change.
    let refreshes = resolver.refreshes();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        resolver.refreshes() <= refreshes + 1,
        "{refreshes} -> {}",
        resolver.refreshes()
    );
    drop(resolver);

    // A container that goes away without a detach: its name goes at the
    // next periodic look.
    let resolver = Resolver::start(
        &host,
        ResolverOptions::new()
            .resolv_conf(&empty)
            .refresh_interval(Duration::from_millis(100)),
    )
    .unwrap();
    drop(web);
    until(Duration::from_secs(10), || {
        query(&api, "web.", RecordType::A).is_some_and(|m| addresses(&m).is_empty())
    })
    .expect("a dead container's name kept resolving");
    drop(resolver);
}

#[test]
fn other_names_go_upstream_and_come_back_unchanged() {
    let (sb, dir, host) = common::fixture();
    let conf = resolv_conf(&dir);
    // The upstream: dnsmasq in a namespace of its own behind a veth.
    let upstream = NetNs::create().unwrap();
    sb.nl
        .create_link(&NewLink::veth("dns0", "dns1").peer_netns(&upstream).up())
        .unwrap();
    for (ns, link, address) in [
        (&sb.host, "dns0", "10.67.0.1/24"),
        (&upstream, "dns1", "10.67.0.2/24"),
    ] {
        for args in [
            vec!["link", "set", link, "up"],
            vec!["addr", "add", address, "dev", link],
        ] {
            assert!(common::run_in(ns, "ip", &args).status.success());
        }
    }
    let fd = common::fd_of(&upstream);
    let mut dnsmasq = unsafe_in_netns(
        fd,
        Command::new("dnsmasq").args([
            "--no-daemon",
            "--port=53",
            "--listen-address=10.67.0.2",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--address=/example.test/192.0.2.9",
            "--address=/nx.test/",
            &format!("--txt-record=big.example.test,{}", "x".repeat(250)),
            &format!("--txt-record=big.example.test,{}", "y".repeat(250)),
            &format!("--txt-record=big.example.test,{}", "z".repeat(250)),
            &format!("--pid-file={}", dir.0.join("dnsmasq.pid").display()),
        ]),
    )
    .spawn()
    .expect("dnsmasq (apt install dnsmasq-base)");
    // Wait for it to answer.
    until(Duration::from_secs(5), || {
        common::run_in(&sb.host, "sh", &["-c", "exec 3<>/dev/udp/10.67.0.2/53"])
            .status
            .success()
    });
    std::thread::sleep(Duration::from_millis(200));

    let net = host
        .create_network(
            Network::builder("lan")
                .macvlan()
                .parent("eth0")
                .subnet("10.68.0.0/24"),
        )
        .unwrap();
    let c = sb.container();
    attach(&net, &c, "c", &[]);
    let resolver = Resolver::start(
        &host,
        ResolverOptions::new().upstream("10.67.0.2:53".parse::<SocketAddr>().unwrap()),
    )
    .unwrap();
    assert_eq!(
        resolve(&c, &conf, "example.test"),
        ["192.0.2.9".parse::<IpAddr>().unwrap()]
    );
    let reply = query(&c, "www.example.test.", RecordType::A).unwrap();
    assert_eq!(addresses(&reply), ["192.0.2.9".parse::<IpAddr>().unwrap()]);
    assert!(!reply.authoritative() || reply.id() == 0x5151);
    // NXDOMAIN is passed on as it is.
    let reply = query(&c, "a.nx.test.", RecordType::A).unwrap();
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
    assert_eq!(reply.id(), 0x5151);
    // The container's own names still come from the resolver.
    assert_eq!(addresses(&query(&c, "c.", RecordType::A).unwrap()).len(), 1);
    // An answer too large for UDP: truncated over UDP, whole over TCP
    // (relayed to the upstream over TCP).
    let udp = query(&c, "big.example.test.", RecordType::TXT).unwrap();
    assert!(udp.truncated() || udp.answers().len() == 3, "{udp:?}");
    let tcp = tcp_query(&c, "big.example.test.", RecordType::TXT);
    assert_eq!(tcp.answers().len(), 3, "{tcp:?}");
    assert!(!tcp.truncated());
    drop(resolver);
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
}

#[test]
fn tcp_queries_and_hostile_packets() {
    let (sb, dir, host) = common::fixture();
    let net = host
        .create_network(
            Network::builder("lan")
                .macvlan()
                .parent("eth0")
                .subnet("10.69.0.0/24"),
        )
        .unwrap();
    let c = sb.container();
    let own = attach(&net, &c, "c", &["alias-1"]);
    let resolver = start_resolver(&host, &dir);
    // Garbage, truncated and oversized datagrams: FORMERR or nothing, and
    // the resolver keeps answering.
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 3],
        vec![0xff; 12],
        vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f],
        vec![0xaa; 4000],
    ];
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..200 {
        let len = (seed % 300) as usize;
        let mut packet = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            packet.push(seed as u8);
        }
        junk.push(packet);
    }
    for packet in &junk {
        if let Some(reply) = raw_query(&c, packet, Duration::from_millis(30)) {
            if let Ok(m) = Message::from_vec(&reply) {
                assert_ne!(m.response_code(), ResponseCode::NoError, "{packet:?}");
            }
        }
    }
    let reply = query(&c, "alias-1.", RecordType::A).unwrap();
    assert_eq!(addresses(&reply), own);

    // TCP, two queries on one connection.
    let answers = c
        .run(|| {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect("127.0.0.11:53").unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut out = Vec::new();
            for name in ["c.", "alias-1.underlay.internal."] {
                let mut m = Message::new();
                m.set_id(7)
                    .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
                let bytes = m.to_vec().unwrap();
                stream
                    .write_all(&(bytes.len() as u16).to_be_bytes())
                    .unwrap();
                stream.write_all(&bytes).unwrap();
                let mut len = [0u8; 2];
                stream.read_exact(&mut len).unwrap();
                let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
                stream.read_exact(&mut reply).unwrap();
                out.push(Message::from_vec(&reply).unwrap());
            }
            Ok(out)
        })
        .unwrap();
    for m in answers {
        assert_eq!(addresses(&m), own);
    }
    drop(resolver);
}

/// One query over TCP to 127.0.0.11 from inside `container`.
fn tcp_query(container: &NetNs, name: &str, qtype: RecordType) -> Message {
    let name = name.to_owned();
    container
        .run(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect("127.0.0.11:53").unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut m = Message::new();
            m.set_id(9)
                .set_recursion_desired(true)
                .add_query(Query::query(Name::from_ascii(&name).unwrap(), qtype));
            let bytes = m.to_vec().unwrap();
            stream
                .write_all(&(bytes.len() as u16).to_be_bytes())
                .unwrap();
            stream.write_all(&bytes).unwrap();
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).unwrap();
            let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
            stream.read_exact(&mut reply).unwrap();
            Ok(Message::from_vec(&reply).unwrap())
        })
        .unwrap()
}

#[test]
fn one_container_cannot_take_the_resolver_from_the_others() {
    let (sb, dir, host) = common::fixture();
    let net = host
        .create_network(
            Network::builder("lan")
                .macvlan()
                .parent("eth0")
                .subnet("10.70.0.0/24"),
        )
        .unwrap();
    let (bad, good) = (sb.container(), sb.container());
    attach(&net, &bad, "bad", &[]);
    let own = attach(&net, &good, "good", &[]);
    let resolver = start_resolver(&host, &dir);
    // The bad container opens 40 TCP connections and sends each a length
    // and then nothing (a slow client holds its slot as long as it can).
    let held: Vec<std::net::TcpStream> = bad
        .run(|| {
            use std::io::Write;
            let mut held = Vec::new();
            for _ in 0..40 {
                if let Ok(mut s) = std::net::TcpStream::connect("127.0.0.11:53") {
                    let _ = s.write_all(&[0xff]);
                    held.push(s);
                }
            }
            Ok(held)
        })
        .unwrap();
    assert!(!held.is_empty());
    std::thread::sleep(Duration::from_millis(200));
    // The other container is answered over TCP and UDP all the same.
    let start = Instant::now();
    assert_eq!(addresses(&tcp_query(&good, "good.", RecordType::A)), own);
    assert_eq!(
        addresses(&query(&good, "bad.", RecordType::A).unwrap()).len(),
        1
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // And the slow connections are closed within the per-message limit
    // (2 s), however slowly they trickle.
    let closed = until(Duration::from_secs(6), || {
        held.iter().all(|s| {
            let mut buf = [0u8; 1];
            s.set_nonblocking(true).unwrap();
            matches!(std::io::Read::read(&mut &*s, &mut buf), Ok(0))
                || matches!(std::io::Read::read(&mut &*s, &mut buf), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
        })
    });
    assert!(closed.is_some(), "slow connections were kept");
    drop(resolver);
}

/// A command that enters the namespace whose descriptor (in this
/// process) is `fd` before it executes.
fn unsafe_in_netns(fd: i32, command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setns is async-signal-safe and only affects the child.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

mod needs_ipvlan {
    use super::*;
    use underlay::capability::KernelFeature;

    /// The ipvlan guide's flow, for real: `db_net_ipv`, `ipv1` and a second
    /// container that pings it by name; and an IPv6-only network.
    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn ipvlan_seed_flow_and_ipv6_only_names() {
        common::require(KernelFeature::Ipvlan);
        let (sb, dir, host) = common::fixture();
        let conf = resolv_conf(&dir);
        let net = host
            .create_network(
                Network::builder("db_net_ipv")
                    .ipvlan()
                    .parent("eth0")
                    .subnet("192.168.1.0/24")
                    .gateway("192.168.1.1"),
            )
            .unwrap();
        let (c1, c2) = (sb.container(), sb.container());
        attach(&net, &c1, "ipv1", &[]);
        attach(&net, &c2, "ipv2", &[]);
        let resolver = start_resolver(&host, &dir);
        assert!(ping_name(&c2, &conf, "ipv1", false));
        drop(resolver);
        host.force_remove_network("db_net_ipv").unwrap();

        // IPv6 only.
        let net = host
            .create_network(
                Network::builder("v6only")
                    .ipvlan()
                    .parent("eth0")
                    .ipv4(false)
                    .subnet("fd00:77::/64"),
            )
            .unwrap();
        let (c3, c4) = (sb.container(), sb.container());
        let six = attach(&net, &c3, "six", &["sechs"]);
        attach(&net, &c4, "other", &[]);
        let resolver = start_resolver(&host, &dir);
        assert_eq!(resolve(&c4, &conf, "sechs"), six);
        assert!(ping_name(&c4, &conf, "six", true));
        drop(resolver);
    }
}

mod v6 {
    use super::*;

    /// An IPv6-only macvlan network: `ping -6 NAME`.
    #[test]
    fn ipv6_only_names_resolve_and_ping() {
        let (sb, dir, host) = common::fixture();
        let conf = resolv_conf(&dir);
        let net = host
            .create_network(
                Network::builder("v6only")
                    .macvlan()
                    .parent("eth0")
                    .ipv4(false)
                    .subnet("fd00:78::/64"),
            )
            .unwrap();
        let (c1, c2) = (sb.container(), sb.container());
        let six = attach(&net, &c1, "six", &[]);
        attach(&net, &c2, "other", &[]);
        let resolver = start_resolver(&host, &dir);
        assert_eq!(resolve(&c2, &conf, "six"), six);
        assert!(ping_name(&c2, &conf, "six", true));
        drop(resolver);
    }
}
