//! The host shim (`-o host_shim=`): the host and its containers reach each
//! other, the host's other neighbours stay reachable, and the shim lives
//! and dies with its network.
//!
//! Each test builds a segment: a "host" namespace whose `eth0` (with
//! addresses `.1`) is a veth to a neighbour namespace (`.200`), standing in
//! for another machine on the LAN.

mod common;

use std::net::IpAddr;

use common::{link_names, ping, run_in, Sandbox, StateDir};
use underlay::link::NewLink;
use underlay::netns::NetNs;
use underlay::{endpoint::AttachOptions, Error, Host, Network};

/// A host namespace with `eth0` (`V4.1/24`, `V6::1/64`) whose peer is
/// `uplink0` (`V4.200`, `V6::200`) in a neighbour namespace.
struct Segment {
    sb: Sandbox,
    neighbour: NetNs,
    v4: &'static str,
    v6: &'static str,
}

impl Segment {
    fn new(v4: &'static str, v6: &'static str) -> Segment {
        let sb = Sandbox::empty();
        let neighbour = NetNs::create().unwrap();
        sb.nl
            .create_link(&NewLink::veth("eth0", "uplink0").peer_netns(&neighbour).up())
            .unwrap();
        let up = |ns: &NetNs, link: &str, last: &str| {
            for args in [
                vec!["link", "set", link, "up"],
                vec!["link", "set", "lo", "up"],
                vec!["addr", "add", &format!("{v4}.{last}/24"), "dev", link],
                vec![
                    "addr",
                    "add",
                    &format!("{v6}::{last}/64"),
                    "dev",
                    link,
                    "nodad",
                ],
            ] {
                let out = run_in(ns, "ip", &args);
                assert!(out.status.success(), "ip {args:?}: {out:?}");
            }
        };
        up(&sb.host, "eth0", "1");
        up(&neighbour, "uplink0", "200");
        Segment {
            sb,
            neighbour,
            v4,
            v6,
        }
    }

    fn host(&self, dir: &StateDir) -> Host {
        common::open_host(&self.sb, dir)
    }

    /// `V4.0/24` with `range` (a suffix such as `.0/25`, or none) and `V6::/64`.
    fn network(&self, name: &str, range: Option<&str>) -> underlay::network::NetworkBuilder {
        let mut builder = Network::builder(name)
            .macvlan()
            .parent("eth0")
            .subnet(&format!("{}.0/24", self.v4))
            .subnet(&format!("{}::/64", self.v6));
        if let Some(range) = range {
            builder = builder.ip_range(&format!("{}{range}", self.v4));
        }
        builder
    }

    /// The link `ip route get` chooses for `address` on the host.
    fn route_dev(&self, address: &str) -> String {
        let route = common::ip_json(&self.sb.host, &["route", "get", address]);
        route[0]["dev"].as_str().unwrap().to_owned()
    }

    fn neighbour_reachable(&self) -> bool {
        ping(&self.sb.host, &format!("{}.200", self.v4))
            && ping(&self.sb.host, &format!("{}::200", self.v6))
            && ping(&self.neighbour, &format!("{}.1", self.v4))
    }
}

fn address(ep: &underlay::endpoint::Endpoint, v4: bool) -> String {
    ep.addresses()
        .iter()
        .find(|a| a.addr().is_ipv4() == v4)
        .unwrap()
        .addr()
        .to_string()
}

fn shim_address(net: &Network, v4: bool) -> IpAddr {
    *net.host_shim()
        .unwrap()
        .addresses
        .iter()
        .find(|a| a.is_ipv4() == v4)
        .unwrap()
}

/// [`pings`], where each that fails is tried twice more, a second apart:
/// for the cases that must reach (a first neighbour discovery under a
/// loaded TCG guest can miss `ping`'s deadline); the cases that must not
/// reach are asked once, by [`pings`].
fn pings_reaching(
    segment: &Segment,
    net: &Network,
    container: &NetNs,
    ep: &underlay::endpoint::Endpoint,
) -> [bool; 4] {
    let mut got = pings(segment, net, container, ep);
    for _ in 0..2 {
        if got == [true; 4] {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        let again = pings(segment, net, container, ep);
        for (g, a) in got.iter_mut().zip(again) {
            *g |= a;
        }
    }
    got
}

/// The pings between the host and a container attached to `net`, IPv4 and
/// IPv6 each way (to the shim's addresses when the network has one, to
/// the host's `eth0` otherwise).
fn pings(
    segment: &Segment,
    net: &Network,
    container: &NetNs,
    ep: &underlay::endpoint::Endpoint,
) -> [bool; 4] {
    let (host4, host6) = match net.host_shim() {
        Some(_) => (
            shim_address(net, true).to_string(),
            shim_address(net, false).to_string(),
        ),
        None => (format!("{}.1", segment.v4), format!("{}::1", segment.v6)),
    };
    [
        ping(&segment.sb.host, &address(ep, true)),
        ping(&segment.sb.host, &address(ep, false)),
        ping(container, &host4),
        ping(container, &host6),
    ]
}

fn attach(net: &Network, container: &NetNs) -> underlay::endpoint::Endpoint {
    let path = format!("/proc/self/fd/{}", common::fd_of(container));
    net.attach(&NetNs::open(path).unwrap(), &AttachOptions::new())
        .unwrap()
}

#[test]
fn without_a_shim_host_and_container_are_apart_and_with_one_they_meet() {
    let segment = Segment::new("10.7.60", "fd07:60:0:0");
    let dir = StateDir::new();
    let host = segment.host(&dir);
    assert!(segment.neighbour_reachable());

    // Before: the kernel keeps them apart, as the seeds warn.
    let plain = host
        .create_network(segment.network("plain", Some(".128/25")))
        .unwrap();
    let c1 = segment.sb.container();
    let ep1 = attach(&plain, &c1);
    assert_eq!(pings(&segment, &plain, &c1, &ep1), [false; 4]);
    host.force_remove_network("plain").unwrap();

    // With a shim.
    let net = host
        .create_network(
            segment
                .network("shimmed", Some(".128/25"))
                .host_shim("auto"),
        )
        .unwrap();
    let shim = net.host_shim().unwrap().clone();
    assert!(shim.link.starts_with("hs-"), "{shim:?}");
    // auto: the highest free address outside the range (just below it),
    // and IPv6's highest (IPv6 has no broadcast address).
    assert_eq!(
        shim.addresses,
        [
            "10.7.60.127".parse::<IpAddr>().unwrap(),
            "fd07:60::ffff:ffff:ffff:ffff".parse().unwrap()
        ]
    );
    let c2 = segment.sb.container();
    let ep = attach(&net, &c2);
    assert_eq!(pings_reaching(&segment, &net, &c2, &ep), [true; 4]);

    // The host's other neighbours are where they were, through eth0, even
    // one whose address is in the containers' ip-range (.128/25).
    assert!(segment.neighbour_reachable());
    assert_eq!(segment.route_dev("10.7.60.200"), "eth0");
    assert_eq!(segment.route_dev("fd07:60::200"), "eth0");
    assert_eq!(segment.route_dev(&address(&ep, true)), shim.link);
    assert_eq!(segment.route_dev(&address(&ep, false)), shim.link);
    // Each container address goes through the shim, never a range.
    let routes = common::ip_routes(&segment.sb.host, false);
    assert!(
        routes.contains(&format!("{} dev {}", address(&ep, true), shim.link)),
        "{routes}"
    );
    assert!(!routes.contains("10.7.60.128/25"), "{routes}");
    let routes6 = common::ip_routes(&segment.sb.host, true);
    assert!(
        routes6.contains(&format!("{} dev {}", address(&ep, false), shim.link)),
        "{routes6}"
    );

    // Reported by inspect, and never handed to a container.
    let json = serde_json::to_value(&net).unwrap();
    assert_eq!(json["host_shim"]["link"], shim.link.as_str());
    assert_eq!(
        json["options"]["host_shim"],
        "10.7.60.127,fd07:60::ffff:ffff:ffff:ffff"
    );
    let aux: Vec<(String, IpAddr)> = net
        .ipam()
        .subnets()
        .iter()
        .flat_map(|s| s.aux_addresses().map(|(n, a)| (n.to_owned(), a)))
        .collect();
    assert_eq!(
        aux,
        [
            ("host_shim".to_owned(), shim.addresses[0]),
            ("host_shim_ipv6".to_owned(), shim.addresses[1])
        ]
    );
    let c3 = segment.sb.container();
    let err = net
        .attach(
            &NetNs::open(format!("/proc/self/fd/{}", common::fd_of(&c3))).unwrap(),
            &AttachOptions::new().ip(shim.addresses[0]),
        )
        .unwrap_err();
    assert!(err.to_string().contains("host_shim"), "{err}");

    // Detach: the container's host routes go.
    assert!(net.detach_endpoint(ep.name()).unwrap());
    let routes6 = common::ip_routes(&segment.sb.host, true);
    assert!(!routes6.contains(&address(&ep, false)), "{routes6}");
    let routes = common::ip_routes(&segment.sb.host, false);
    assert!(!routes.contains(&address(&ep, true)), "{routes}");

    // network rm deletes the shim and nothing else.
    host.remove_network("shimmed").unwrap();
    assert_eq!(link_names(&segment.sb.host), ["eth0", "lo"]);
    assert!(!common::ip_routes(&segment.sb.host, false).contains("hs-"));
    assert!(segment.neighbour_reachable());
}

#[test]
fn given_addresses_and_no_ranges_route_each_container() {
    let segment = Segment::new("10.7.61", "fd07:61:0:0");
    let dir = StateDir::new();
    let host = segment.host(&dir);
    let net = host
        .create_network(
            segment
                .network("given", None)
                .host_shim("10.7.61.9,fd07:61::9"),
        )
        .unwrap();
    let shim = net.host_shim().unwrap().clone();
    assert_eq!(
        shim.addresses,
        [
            "10.7.61.9".parse::<IpAddr>().unwrap(),
            "fd07:61::9".parse().unwrap()
        ]
    );
    let containers: Vec<NetNs> = (0..3).map(|_| segment.sb.container()).collect();
    let eps: Vec<_> = containers.iter().map(|c| attach(&net, c)).collect();
    for (c, ep) in containers.iter().zip(&eps) {
        assert!(ping(&segment.sb.host, &address(ep, true)));
        assert!(ping(&segment.sb.host, &address(ep, false)));
        assert!(ping(c, "10.7.61.9"));
        assert!(ping(c, "fd07:61::9"));
    }
    let routes = common::ip_routes(&segment.sb.host, false);
    for ep in &eps {
        assert!(
            routes.contains(&format!("{} dev {}", address(ep, true), shim.link)),
            "{routes}"
        );
    }
    assert!(segment.neighbour_reachable());
    // Detaching takes each container's routes away.
    for (c, ep) in containers.iter().zip(&eps) {
        let path = format!("/proc/self/fd/{}", common::fd_of(c));
        assert!(net.detach(&NetNs::open(path).unwrap()).unwrap());
        let routes = common::ip_routes(&segment.sb.host, false);
        assert!(!routes.contains(&address(ep, true)), "{routes}");
    }
    // A route of underlay's left behind (a crash between the kernel and the
    // record) is taken away by recovery, and a missing one is put back.
    // Routes an administrator added through the shim (`proto boot`, `ip
    // route`'s default; to another machine on the segment, say) stay.
    let c = segment.sb.container();
    let ep = attach(&net, &c);
    let ip_route = |args: &[&str]| {
        let out = common::run_in(&segment.sb.host, "ip", args);
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    };
    ip_route(&[
        "route",
        "add",
        "10.7.61.77/32",
        "dev",
        &shim.link,
        "proto",
        "85",
    ]);
    ip_route(&["route", "add", "10.7.61.78/32", "dev", &shim.link]);
    ip_route(&["-6", "route", "add", "fd07:61::78/128", "dev", &shim.link]);
    ip_route(&[
        "route",
        "del",
        &format!("{}/32", address(&ep, true)),
        "dev",
        &shim.link,
    ]);
    host.recover().unwrap();
    let routes = common::ip_routes(&segment.sb.host, false);
    assert!(!routes.contains("10.7.61.77"), "{routes}");
    assert!(routes.contains("10.7.61.78 dev"), "{routes}");
    assert!(
        routes.contains(&format!(
            "{} dev {} proto 85",
            address(&ep, true),
            shim.link
        )),
        "{routes}"
    );
    let routes6 = common::ip_routes(&segment.sb.host, true);
    assert!(routes6.contains("fd07:61::78 dev"), "{routes6}");
    assert!(ping(&segment.sb.host, &address(&ep, true)));
    // An administrator's route to a container's address through another
    // link (the parent) is left, and warned of: the host reaches the
    // container that way, not through the shim. Once it goes, recovery
    // puts underlay's back.
    let mine = format!("{}/32", address(&ep, true));
    ip_route(&["route", "del", &mine, "dev", &shim.link]);
    ip_route(&["route", "add", &mine, "dev", "eth0"]);
    common::warnings();
    host.recover().unwrap();
    let routes = common::ip_routes(&segment.sb.host, false);
    assert!(
        routes.contains(&format!("{} dev eth0", address(&ep, true))),
        "{routes}"
    );
    assert!(
        !routes.contains(&format!("{} dev {}", address(&ep, true), shim.link)),
        "{routes}"
    );
    let said = common::warnings();
    assert!(
        said.iter()
            .any(|w| w.contains(&mine) && w.contains("not through its host shim")),
        "{said:?}"
    );
    ip_route(&["route", "del", &mine, "dev", "eth0"]);
    // The same with a route through the shim beside it, of another metric
    // (the host takes the other link's, of the usual metric).
    ip_route(&["route", "add", &mine, "dev", &shim.link, "metric", "50"]);
    ip_route(&["route", "add", &mine, "dev", "eth0"]);
    let warned = |said: &[String]| said.iter().filter(|w| w.contains(&mine)).count();
    let before = warned(&common::warnings());
    host.recover().unwrap();
    assert_eq!(
        warned(&common::warnings()),
        before + 1,
        "{:?}",
        common::warnings()
    );
    ip_route(&["route", "del", &mine, "dev", "eth0"]);
    ip_route(&["route", "del", &mine, "dev", &shim.link, "metric", "50"]);
    host.recover().unwrap();
    assert!(ping(&segment.sb.host, &address(&ep, true)));
    // An administrator's route to a container's address through the shim
    // stands in for underlay's, and the container's detach leaves it.
    let c2 = segment.sb.container();
    let ep2 = attach(&net, &c2);
    let theirs = format!("{}/32", address(&ep2, true));
    ip_route(&["route", "del", &theirs, "dev", &shim.link]);
    ip_route(&["route", "add", &theirs, "dev", &shim.link]);
    host.recover().unwrap();
    let routes = common::ip_routes(&segment.sb.host, false);
    assert!(
        routes.contains(&format!(
            "{} dev {} scope link",
            address(&ep2, true),
            shim.link
        )),
        "{routes}"
    );
    let path = format!("/proc/self/fd/{}", common::fd_of(&c2));
    assert!(net.detach(&NetNs::open(path).unwrap()).unwrap());
    let routes = common::ip_routes(&segment.sb.host, false);
    assert!(routes.contains(&address(&ep2, true)), "{routes}");
    host.force_remove_network("given").unwrap();
    assert_eq!(link_names(&segment.sb.host), ["eth0", "lo"]);
}

#[test]
fn the_shim_comes_back_after_a_reboot_and_goes_with_its_network_alone() {
    let segment = Segment::new("10.7.62", "fd07:62:0:0");
    let dir = StateDir::new();
    let host = segment.host(&dir);
    let net = host
        .create_network(
            segment
                .network("rebooted", Some(".128/25"))
                .host_shim("auto"),
        )
        .unwrap();
    let shim = net.host_shim().unwrap().clone();
    // Outside the range: the first address below it.
    assert_eq!(shim.addresses[0], "10.7.62.127".parse::<IpAddr>().unwrap());
    drop((net, host));

    // "Reboot": the shim vanishes, and so does the runtime directory.
    let index = segment.sb.nl.link_by_name(&shim.link).unwrap().index;
    segment.sb.nl.delete_link(index).unwrap();
    std::fs::remove_dir_all(dir.0.join("run")).unwrap();
    let host = segment.host(&dir);
    let link = segment.sb.nl.link_by_name(&shim.link).unwrap();
    assert!(link.up);
    let net = host.network("rebooted").unwrap();
    let c = segment.sb.container();
    let ep = attach(&net, &c);
    assert_eq!(pings_reaching(&segment, &net, &c, &ep), [true; 4]);
    assert!(host.recover().unwrap().is_clean());

    // Deleted by hand, made again by recover, which says so.
    segment.sb.nl.delete_link(link.index).unwrap();
    let report = host.recover().unwrap();
    assert_eq!(report.recreated_shims, std::slice::from_ref(&shim.link));
    assert_eq!(pings_reaching(&segment, &net, &c, &ep), [true; 4]);

    // A link of ours that no record explains goes; the neighbour stays.
    host.force_remove_network("rebooted").unwrap();
    assert_eq!(link_names(&segment.sb.host), ["eth0", "lo"]);
    assert!(segment.neighbour_reachable());
}

#[test]
fn a_one_family_shim_routes_that_family_and_overlapping_shims_are_refused() {
    let segment = Segment::new("10.7.64", "fd07:64:0:0");
    let dir = StateDir::new();
    let host = segment.host(&dir);
    // IPv4 only, on a dual-stack network: IPv4 goes through the shim, IPv6
    // is left alone (and attaching works).
    let net = host
        .create_network(segment.network("four", None).host_shim("10.7.64.9"))
        .unwrap();
    let c = segment.sb.container();
    let ep = attach(&net, &c);
    assert!(ping(&segment.sb.host, &address(&ep, true)));
    assert!(ping(&c, "10.7.64.9"));
    let routes6 = common::ip_routes(&segment.sb.host, true);
    assert!(
        !routes6.contains(&net.host_shim().unwrap().link),
        "{routes6}"
    );
    // Another network with a shim on an overlapping subnet (on another
    // parent) would fight over the same routes: refused, nothing made.
    segment
        .sb
        .nl
        .create_link(&NewLink::veth("eth1", "uplink1").up())
        .unwrap();
    let before = dir.snapshot();
    let err = host
        .create_network(
            Network::builder("again")
                .macvlan()
                .parent("eth1")
                .subnet("10.7.64.0/25")
                .host_shim("auto"),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("overlaps 10.7.64.0/24 of network \"four\""),
        "{err}"
    );
    assert_eq!(dir.snapshot(), before);
    // Without a shim it is the usual overlap on another parent: allowed.
    host.create_network(
        Network::builder("again")
            .macvlan()
            .parent("eth1")
            .subnet("10.7.64.0/25"),
    )
    .unwrap();

    // A shim renamed by hand: recover makes it anew and deletes the other
    // (one link per mark); its sysctls and routes come back too.
    let shim = net.host_shim().unwrap().link.clone();
    let index = segment.sb.nl.link_by_name(&shim).unwrap().index;
    segment.sb.nl.set_link_up_by_index(index, false).unwrap();
    segment.sb.nl.rename_link(index, "renamed0").unwrap();
    let report = host.recover().unwrap();
    assert_eq!(report.recreated_shims, std::slice::from_ref(&shim));
    assert!(!link_names(&segment.sb.host).contains(&"renamed0".to_owned()));
    assert!(ping(&segment.sb.host, &address(&ep, true)));
    host.force_remove_network("four").unwrap();
    host.force_remove_network("again").unwrap();
    assert_eq!(
        link_names(&segment.sb.host),
        ["eth0", "eth1", "lo", "uplink1"]
    );
}

#[test]
fn bad_host_shims_are_refused_by_name_and_leave_nothing() {
    let segment = Segment::new("10.7.63", "fd07:63:0:0");
    let dir = StateDir::new();
    let host = segment.host(&dir);
    let before = dir.snapshot();
    let links = link_names(&segment.sb.host);
    let builder = || segment.network("bad", Some(".0/25"));
    let cases: Vec<(underlay::network::NetworkBuilder, &str)> = vec![
        (
            builder().host_shim("10.9.9.9"),
            "in none of the network's subnets",
        ),
        (
            builder().host_shim("fd07:99::9"),
            "in none of the network's subnets",
        ),
        (
            builder().host_shim("10.7.63.1"),
            "already an address of eth0",
        ),
        (
            builder().host_shim("fd07:63::1"),
            "already an address of eth0",
        ),
        (
            builder().gateway("10.7.63.5").host_shim("10.7.63.5"),
            "gateway",
        ),
        (builder().host_shim("10.7.63.0"), "network address"),
        (builder().host_shim("10.7.63.255"), "broadcast"),
        (builder().host_shim("yes"), "neither an address nor auto"),
        (
            builder()
                .aux_address("printer", "10.7.63.9")
                .host_shim("10.7.63.9"),
            "the aux address \"printer\"",
        ),
        (
            Network::builder("bad")
                .macvlan()
                .parent("eth0")
                .subnet("10.7.163.0/32")
                .host_shim("auto"),
            "last address of its subnet",
        ),
        (builder().host_shim("10.7.63.9,10.7.63.8"), "two IPv4"),
        (
            builder()
                .aux_address("host_shim", "10.7.63.40")
                .host_shim("auto"),
            "aux address named host_shim already",
        ),
        (
            builder()
                .option("macvlan_mode", "private")
                .host_shim("auto"),
            "private mode",
        ),
        (
            builder()
                .option("macvlan_mode", "passthru")
                .host_shim("auto"),
            "passthru",
        ),
        (
            Network::builder("bad")
                .macvlan()
                .parent("eth0")
                .ipv4(false)
                .host_shim("auto"),
            "no address family",
        ),
        (
            Network::builder("bad")
                .macvlan()
                .parent("eth0")
                .subnet("10.7.63.0/30")
                .ip_range("10.7.63.0/30")
                .host_shim("10.7.63.2"),
            "last address of its subnet",
        ),
    ];
    for (builder, needle) in cases {
        let err = host.create_network(builder).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { .. } | Error::Ipam(_)),
            "{err:?}"
        );
        let text = err.to_string();
        eprintln!("refused: {text}");
        assert!(text.contains(needle), "{needle}: {text}");
        assert_eq!(dir.snapshot(), before, "{needle}: state changed");
        assert_eq!(link_names(&segment.sb.host), links, "{needle}: links");
        assert!(host.network("bad").is_err());
    }
}

mod needs_ipvlan {
    use super::*;
    use underlay::capability::KernelFeature;

    fn ipvlan(segment: &Segment, host: &Host, name: &str, mode: &str) {
        let builder = || {
            Network::builder(name)
                .ipvlan()
                .option("ipvlan_mode", mode)
                .parent("eth0")
                .subnet(&format!("{}.0/24", segment.v4))
                .ip_range(&format!("{}.0/25", segment.v4))
                .subnet(&format!("{}::/64", segment.v6))
        };
        let net = host.create_network(builder()).unwrap();
        let c = segment.sb.container();
        let ep = attach(&net, &c);
        assert_eq!(pings(segment, &net, &c, &ep), [false; 4], "{mode} without");
        host.force_remove_network(name).unwrap();

        let net = host.create_network(builder().host_shim("auto")).unwrap();
        let shim = net.host_shim().unwrap().link.clone();
        let kind = common::ip_link(&segment.sb.host, &shim);
        assert_eq!(kind["linkinfo"]["info_kind"], "ipvlan", "{kind}");
        assert_eq!(kind["linkinfo"]["info_data"]["mode"], mode, "{kind}");
        let c = segment.sb.container();
        let ep = attach(&net, &c);
        assert_eq!(
            pings_reaching(segment, &net, &c, &ep),
            [true; 4],
            "{mode} with"
        );
        assert!(segment.neighbour_reachable(), "{mode}");
        host.force_remove_network(name).unwrap();
        assert_eq!(link_names(&segment.sb.host), ["eth0", "lo"]);
    }

    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn ipvlan_l2_host_and_containers_meet_through_the_shim() {
        common::require(KernelFeature::Ipvlan);
        let segment = Segment::new("10.7.64", "fd07:64:0:0");
        let dir = StateDir::new();
        let host = segment.host(&dir);
        ipvlan(&segment, &host, "l2shim", "l2");
    }

    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn ipvlan_l3_host_and_containers_meet_through_the_shim() {
        common::require(KernelFeature::Ipvlan);
        let segment = Segment::new("10.7.65", "fd07:65:0:0");
        let dir = StateDir::new();
        let host = segment.host(&dir);
        ipvlan(&segment, &host, "l3shim", "l3");
    }

    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn ipvlan_private_refuses_a_shim() {
        common::require(KernelFeature::Ipvlan);
        let segment = Segment::new("10.7.66", "fd07:66:0:0");
        let dir = StateDir::new();
        let host = segment.host(&dir);
        let before = dir.snapshot();
        let err = host
            .create_network(
                Network::builder("private")
                    .ipvlan()
                    .option("ipvlan_flag", "private")
                    .parent("eth0")
                    .host_shim("auto"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("ipvlan_flag=private"), "{err}");
        assert_eq!(dir.snapshot(), before);
        assert_eq!(link_names(&segment.sb.host), ["eth0", "lo"]);
    }
}

mod needs_dummy {
    use super::*;
    use underlay::capability::KernelFeature;

    /// An internal network (a dummy parent) with a shim: the host reaches
    /// its isolated containers, and they reach nothing else.
    #[test]
    #[ignore = "needs dummy links: runs in the real-kernel tier"]
    fn an_internal_network_with_a_shim_reaches_the_host_only() {
        common::require(KernelFeature::Dummy);
        let segment = Segment::new("10.7.67", "fd07:67:0:0");
        let dir = StateDir::new();
        let host = segment.host(&dir);
        let net = host
            .create_network(
                Network::builder("inside")
                    .macvlan()
                    .internal(true)
                    .subnet("10.7.68.0/24")
                    .subnet("fd07:68::/64")
                    .host_shim("auto"),
            )
            .unwrap();
        let shim = net.host_shim().unwrap().clone();
        let c = segment.sb.container();
        let ep = attach(&net, &c);
        assert!(ping(&segment.sb.host, &address(&ep, true)));
        assert!(ping(&segment.sb.host, &address(&ep, false)));
        assert!(ping(&c, &shim.addresses[0].to_string()));
        assert!(!ping(&c, "10.7.67.200"));
        host.force_remove_network("inside").unwrap();
        assert_eq!(link_names(&segment.sb.host), ["eth0", "lo"]);
    }
}

mod needs_vlan {
    use super::*;
    use underlay::capability::KernelFeature;

    /// On an owned VLAN parent: after a reboot the parent comes back first,
    /// then the shim on it; `network rm` deletes both and nothing else.
    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn the_shim_comes_back_with_its_owned_vlan_parent() {
        common::require(KernelFeature::Vlan);
        let segment = Segment::new("10.7.69", "fd07:69:0:0");
        let dir = StateDir::new();
        let host = segment.host(&dir);
        let net = host
            .create_network(
                Network::builder("tagged")
                    .macvlan()
                    .parent("eth0.69")
                    .subnet("10.7.169.0/24")
                    .host_shim("auto"),
            )
            .unwrap();
        let shim = net.host_shim().unwrap().clone();
        assert_eq!(shim.addresses, ["10.7.169.254".parse::<IpAddr>().unwrap()]);
        drop((net, host));
        // "Reboot": the VLAN goes, and the shim on it with it.
        let vlan = segment.sb.nl.link_by_name("eth0.69").unwrap();
        segment.sb.nl.delete_link(vlan.index).unwrap();
        assert!(segment.sb.nl.link_by_name(&shim.link).is_err());
        std::fs::remove_dir_all(dir.0.join("run")).unwrap();
        let host = segment.host(&dir);
        let vlan = segment.sb.nl.link_by_name("eth0.69").unwrap();
        let link = segment.sb.nl.link_by_name(&shim.link).unwrap();
        assert!(link.up);
        let detail = common::ip_link(&segment.sb.host, &shim.link);
        assert_eq!(detail["link"], "eth0.69", "{detail}");
        assert_eq!(vlan.index, link.parent_index.unwrap_or(vlan.index));
        let net = host.network("tagged").unwrap();
        let c = segment.sb.container();
        let ep = attach(&net, &c);
        assert!(ping(&segment.sb.host, &address(&ep, true)));
        assert!(ping(&c, "10.7.169.254"));
        host.force_remove_network("tagged").unwrap();
        assert_eq!(link_names(&segment.sb.host), ["eth0", "lo"]);
    }
}
