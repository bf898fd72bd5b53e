//! The netlink layer against a real kernel, in throw-away namespaces.

mod common;

use std::net::IpAddr;

use common::{ip_link, ip_routes, run_in, Sandbox, PARENT};
use ipnet::IpNet;
use underlay::capability::KernelFeature;
use underlay::link::{LinkKind, MacAddress, MacvlanMode, NewLink};
use underlay::netlink::Netlink;
use underlay::netns::NetNs;
use underlay::route::{IpFamily, NewRoute};
use underlay::Error;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Netlink>();
    check::<NetNs>();
    check::<Error>();
    check::<underlay::Host>();
    check::<underlay::Network>();
    check::<underlay::endpoint::Endpoint>();
    check::<underlay::network::NetworkBuilder>();
}

#[test]
fn macvlan_every_mode_reads_back_with_kind_mode_and_parent() {
    let sb = Sandbox::new();
    let parent = sb.parent_index();
    let modes = [
        ("mvbridge", MacvlanMode::Bridge, "bridge"),
        ("mvprivate", MacvlanMode::Private, "private"),
        ("mvvepa", MacvlanMode::Vepa, "vepa"),
    ];
    for (name, mode, ip_name) in modes {
        sb.nl
            .create_link(&NewLink::macvlan(name, parent, mode))
            .unwrap();
        let link = sb.nl.link_by_name(name).unwrap();
        assert_eq!(link.kind, Some(LinkKind::Macvlan { mode }));
        assert_eq!(link.parent_index, Some(parent));
        // The kernel's own view, through iproute2.
        let json = ip_link(&sb.host, name);
        assert_eq!(json["linkinfo"]["info_kind"], "macvlan");
        assert_eq!(json["linkinfo"]["info_data"]["mode"], ip_name);
        assert_eq!(json["link"], PARENT);
    }
    // passthru takes the whole parent: give it one of its own.
    sb.nl.create_link(&NewLink::veth("pt0", "pt0peer")).unwrap();
    let pt_parent = sb.nl.link_by_name("pt0").unwrap().index;
    sb.nl
        .create_link(&NewLink::macvlan(
            "mvpass",
            pt_parent,
            MacvlanMode::Passthru,
        ))
        .unwrap();
    let link = sb.nl.link_by_name("mvpass").unwrap();
    assert_eq!(
        link.kind,
        Some(LinkKind::Macvlan {
            mode: MacvlanMode::Passthru
        })
    );
    assert_eq!(
        ip_link(&sb.host, "mvpass")["linkinfo"]["info_data"]["mode"],
        "passthru"
    );
}

#[test]
fn veth_reads_back_and_listing_sees_every_link() {
    let sb = Sandbox::new();
    let eth0 = sb.nl.link_by_name(PARENT).unwrap();
    assert_eq!(eth0.kind, Some(LinkKind::Veth));
    assert!(eth0.up && eth0.lower_up);
    let names: Vec<String> = sb.nl.links().unwrap().into_iter().map(|l| l.name).collect();
    assert!(names.contains(&"lo".to_owned()));
    assert!(names.contains(&PARENT.to_owned()));
    assert!(names.contains(&"uplink0".to_owned()));
    let by_index = sb.nl.link_by_index(eth0.index).unwrap();
    assert_eq!(by_index, eth0);
}

#[test]
fn macvlan_created_straight_in_a_container_despite_a_same_named_host_link() {
    let sb = Sandbox::new();
    let container = sb.container();
    // The host namespace already has an `eth0`: the parent itself.
    let parent = sb.parent_index();
    sb.nl
        .create_link(&NewLink::macvlan("eth0", parent, MacvlanMode::Bridge).netns(&container))
        .unwrap();
    let inside = container.netlink().unwrap();
    let link = inside.link_by_name("eth0").unwrap();
    assert_eq!(
        link.kind,
        Some(LinkKind::Macvlan {
            mode: MacvlanMode::Bridge
        })
    );
    assert_eq!(
        ip_link(&container, "eth0")["linkinfo"]["info_kind"],
        "macvlan"
    );
    // The host's eth0 is untouched and no temporary link is left anywhere.
    assert_eq!(
        sb.nl.link_by_name(PARENT).unwrap().kind,
        Some(LinkKind::Veth)
    );
    assert_eq!(common::link_names(&container), ["eth0", "lo"]);
    assert_eq!(common::link_names(&sb.host), ["eth0", "lo", "uplink0"]);
}

#[test]
fn a_real_name_conflict_in_the_container_is_an_error_and_leaves_nothing() {
    let sb = Sandbox::new();
    let container = sb.container();
    let parent = sb.parent_index();
    let spec = NewLink::macvlan("eth0", parent, MacvlanMode::Bridge).netns(&container);
    sb.nl.create_link(&spec).unwrap();
    let err = sb.nl.create_link(&spec).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
    assert!(err.to_string().contains("\"eth0\""), "{err}");
    assert_eq!(common::link_names(&container), ["eth0", "lo"]);
    assert_eq!(common::link_names(&sb.host), ["eth0", "lo", "uplink0"]);
}

#[test]
fn rename_mtu_mac_up_down_and_delete() {
    let sb = Sandbox::new();
    let parent = sb.parent_index();
    sb.nl
        .create_link(&NewLink::macvlan("mv0", parent, MacvlanMode::Bridge))
        .unwrap();
    let index = sb.nl.link_by_name("mv0").unwrap().index;
    sb.nl.rename_link(index, "mv-renamed").unwrap();
    sb.nl.set_mtu(index, 1400).unwrap();
    let mac: MacAddress = "02:00:00:aa:bb:cc".parse().unwrap();
    sb.nl.set_mac(index, mac).unwrap();
    sb.nl.set_link_up_by_index(index, true).unwrap();
    let link = sb.nl.link_by_index(index).unwrap();
    assert_eq!(link.name, "mv-renamed");
    assert_eq!(link.mtu, 1400);
    assert_eq!(link.mac, Some(mac));
    assert!(link.up);
    let json = ip_link(&sb.host, "mv-renamed");
    assert_eq!(json["mtu"], 1400);
    assert_eq!(json["address"], "02:00:00:aa:bb:cc");
    sb.nl.set_link_up_by_index(index, false).unwrap();
    assert!(!sb.nl.link_by_index(index).unwrap().up);

    sb.nl.delete_link(index).unwrap();
    assert!(matches!(
        sb.nl.link_by_name("mv-renamed"),
        Err(Error::LinkNotFound { .. })
    ));
    assert!(matches!(
        sb.nl.delete_link(index),
        Err(Error::LinkNotFound { .. })
    ));
    assert!(!run_in(&sb.host, "ip", &["link", "show", "mv-renamed"])
        .status
        .success());
}

#[test]
fn missing_links_are_reported_by_name() {
    let sb = Sandbox::empty();
    let err = sb.nl.link_by_name("nosuch0").unwrap_err();
    assert!(matches!(err, Error::LinkNotFound { .. }));
    assert_eq!(err.to_string(), "link nosuch0 not found");
    let err = sb
        .nl
        .create_link(&NewLink::macvlan("mv0", 9999, MacvlanMode::Bridge))
        .unwrap_err();
    assert!(
        err.to_string().contains("create macvlan link \"mv0\""),
        "{err}"
    );
    assert!(common::link_names(&sb.host) == ["lo"]);
}

#[test]
fn bad_names_are_refused_before_reaching_the_kernel() {
    let sb = Sandbox::new();
    let parent = sb.parent_index();
    let err = sb
        .nl
        .create_link(&NewLink::macvlan(
            "a-name-too-long-x",
            parent,
            MacvlanMode::Bridge,
        ))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }));
    assert!(err.to_string().contains("at most 15"), "{err}");
    assert_eq!(common::link_names(&sb.host), ["eth0", "lo", "uplink0"]);
}

#[test]
fn kernel_errors_carry_the_extended_ack_text() {
    let sb = Sandbox::new();
    let parent = sb.parent_index();
    // veth's maximum MTU is 65535 on every kernel of interest.
    let err = sb
        .nl
        .create_link(&NewLink::macvlan("mv0", parent, MacvlanMode::Bridge).mtu(70000))
        .unwrap_err();
    let Error::Kernel { errno, message, .. } = &err else {
        panic!("expected a kernel error, got {err:?}");
    };
    assert_eq!(*errno, libc::EINVAL);
    let message = message.as_deref().expect("an extended-ACK message");
    assert!(message.to_lowercase().contains("mtu"), "{message}");
    assert!(err.to_string().contains(message), "{err}");
    assert_eq!(common::link_names(&sb.host), ["eth0", "lo", "uplink0"]);
}

#[test]
fn missing_link_kinds_are_reported_as_unsupported_features() {
    // Runs in both tiers: on a kernel without a kind, creating it names the
    // missing feature; on a kernel with it, the same request succeeds.
    let sb = Sandbox::new();
    let parent = sb.parent_index();
    let caps = common::capabilities();
    let cases = [
        (
            KernelFeature::Ipvlan,
            NewLink::ipvlan("iv0", parent, Default::default(), Default::default()),
        ),
        (KernelFeature::Vlan, NewLink::vlan("eth0.7", parent, 7)),
        (KernelFeature::Dummy, NewLink::dummy("dm0")),
    ];
    for (feature, spec) in cases {
        match sb.nl.create_link(&spec) {
            Ok(()) => assert!(caps.supports(feature)),
            Err(Error::Unsupported { feature: f }) => {
                assert_eq!(f, feature);
                assert!(!caps.supports(feature));
                let text = Error::Unsupported { feature: f }.to_string();
                assert!(text.contains(feature.config_option()), "{text}");
            }
            Err(e) => panic!("{feature}: unexpected {e}"),
        }
    }
}

#[test]
fn nodad_ipv6_addresses_are_usable_at_once_and_dad_ones_are_tentative() {
    let sb = Sandbox::new();
    let container = sb.container();
    let (inside, eth0) = sb.macvlan_in(&container);
    inside.set_link_up_by_index(eth0, true).unwrap();
    inside.add_address_nodad(eth0, net("fd11::3/64")).unwrap();
    inside.add_address(eth0, net("fd11::4/64")).unwrap();
    inside.add_address(eth0, net("192.168.136.3/24")).unwrap();

    let addresses = inside.addresses(Some(eth0)).unwrap();
    let find = |n: &str| {
        addresses
            .iter()
            .find(|a| a.address == net(n))
            .unwrap_or_else(|| panic!("{n} missing from {addresses:?}"))
    };
    assert!(find("fd11::3/64").nodad && !find("fd11::3/64").tentative);
    assert!(
        find("fd11::4/64").tentative,
        "DAD should hold the address without nodad"
    );
    assert!(!find("192.168.136.3/24").tentative);
    // iproute2 agrees.
    let json = common::ip_json(&container, &["-6", "addr", "show", "dev", "eth0"]);
    let infos = json[0]["addr_info"].as_array().unwrap();
    let fd3 = infos.iter().find(|a| a["local"] == "fd11::3").unwrap();
    assert_eq!(fd3["nodad"], true);
    assert!(fd3.get("tentative").is_none(), "{fd3}");

    inside.delete_address(eth0, net("fd11::4/64")).unwrap();
    assert!(!inside
        .addresses(Some(eth0))
        .unwrap()
        .iter()
        .any(|a| a.address == net("fd11::4/64")));
    let err = inside
        .add_address(eth0, net("192.168.136.3/24"))
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EEXIST));
}

#[test]
fn both_default_route_forms_are_visible() {
    let sb = Sandbox::new();
    let via = sb.container();
    let dev = sb.container();
    for ns in [&via, &dev] {
        sb.nl
            .create_link(
                &NewLink::macvlan("eth0", sb.parent_index(), MacvlanMode::Bridge).netns(ns),
            )
            .unwrap();
    }
    // default via GATEWAY (macvlan, ipvlan L2)
    let nl = via.netlink().unwrap();
    let eth0 = nl.link_by_name("eth0").unwrap().index;
    nl.set_link_up_by_index(eth0, true).unwrap();
    nl.add_address(eth0, net("172.16.86.2/24")).unwrap();
    nl.add_address_nodad(eth0, net("2001:db8:abc8::2/64"))
        .unwrap();
    nl.add_route(&NewRoute::default_via(ip("172.16.86.1"), eth0))
        .unwrap();
    nl.add_route(&NewRoute::default_via(ip("2001:db8:abc8::10"), eth0))
        .unwrap();
    assert!(ip_routes(&via, false).contains("default via 172.16.86.1 dev eth0"));
    assert!(ip_routes(&via, true).contains("default via 2001:db8:abc8::10 dev eth0"));
    let routes = nl.routes(IpFamily::V4).unwrap();
    let default = routes.iter().find(|r| r.is_default()).unwrap();
    assert_eq!(default.gateway, Some(ip("172.16.86.1")));
    assert_eq!(default.oif, Some(eth0));

    // default dev IF (ipvlan L3), both families.
    let nl = dev.netlink().unwrap();
    let eth0 = nl.link_by_name("eth0").unwrap().index;
    nl.set_link_up_by_index(eth0, true).unwrap();
    nl.add_address(eth0, net("192.168.112.2/24")).unwrap();
    nl.add_address_nodad(eth0, net("2001:db8:abc6::10/64"))
        .unwrap();
    nl.add_route(&NewRoute::default_dev(IpFamily::V4, eth0))
        .unwrap();
    nl.add_route(&NewRoute::default_dev(IpFamily::V6, eth0).metric(1024))
        .unwrap();
    assert!(
        ip_routes(&dev, false).contains("default dev eth0 proto boot scope link")
            || ip_routes(&dev, false).contains("default dev eth0 scope link"),
        "{}",
        ip_routes(&dev, false)
    );
    assert!(
        ip_routes(&dev, true).contains("default dev eth0"),
        "{}",
        ip_routes(&dev, true)
    );
    let v4 = nl.routes(IpFamily::V4).unwrap();
    let default = v4.iter().find(|r| r.is_default()).unwrap();
    assert_eq!(default.gateway, None);
    assert!(default.link_scope);
    let v6 = nl.routes(IpFamily::V6).unwrap();
    let default = v6.iter().find(|r| r.is_default()).unwrap();
    assert_eq!((default.gateway, default.metric), (None, Some(1024)));

    nl.delete_route(&NewRoute::default_dev(IpFamily::V4, eth0))
        .unwrap();
    assert!(!nl
        .routes(IpFamily::V4)
        .unwrap()
        .iter()
        .any(|r| r.is_default()));
}

#[test]
fn two_macvlan_containers_ping_each_other() {
    let sb = Sandbox::new();
    let a = sb.container();
    let b = sb.container();
    for (ns, address) in [(&a, "10.1.20.9/24"), (&b, "10.1.20.10/24")] {
        sb.nl
            .create_link(
                &NewLink::macvlan("eth0", sb.parent_index(), MacvlanMode::Bridge).netns(ns),
            )
            .unwrap();
        let nl = ns.netlink().unwrap();
        let eth0 = nl.link_by_name("eth0").unwrap().index;
        nl.add_address(eth0, net(address)).unwrap();
        nl.set_link_up_by_index(eth0, true).unwrap();
    }
    assert!(common::ping(&a, "10.1.20.10"));
    assert!(common::ping(&b, "10.1.20.9"));
}

#[test]
fn arp_notify_goes_through_netlink_and_sysctls_stay_in_their_namespace() {
    let sb = Sandbox::new();
    let container = sb.container();
    let (nl, eth0) = sb.macvlan_in(&container);
    let read = |ns: &NetNs, key: &'static str| {
        ns.run(move || Ok(std::fs::read_to_string(format!("/proc/sys/{key}")).unwrap()))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(read(&container, "net/ipv4/conf/eth0/arp_notify"), "0");
    nl.set_arp_notify(eth0).unwrap();
    assert_eq!(read(&container, "net/ipv4/conf/eth0/arp_notify"), "1");
    // Other IPv4 settings are left alone.
    assert_eq!(read(&container, "net/ipv4/conf/eth0/forwarding"), "0");

    container
        .write_sysctl("net/ipv6/conf/eth0/ndisc_notify", "1")
        .unwrap();
    assert_eq!(read(&container, "net/ipv6/conf/eth0/ndisc_notify"), "1");
    assert_eq!(read(&sb.host, "net/ipv6/conf/eth0/ndisc_notify"), "0");
    let err = container.write_sysctl("../etc/passwd", "x").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}

#[test]
fn non_network_namespace_paths_are_refused_clearly() {
    let err = NetNs::open("/etc/hostname").unwrap_err();
    assert!(matches!(err, Error::NotANetworkNamespace { .. }));
    assert!(
        err.to_string()
            .contains("/etc/hostname is not a network namespace: it is a regular file"),
        "{err}"
    );
    let err = NetNs::open("/proc/self/ns/uts").unwrap_err();
    assert!(
        err.to_string()
            .contains("it is a UTS namespace, not a network namespace"),
        "{err}"
    );
    let err = NetNs::open("/run/netns/no-such-namespace-here").unwrap_err();
    assert!(err.to_string().contains("no such file"), "{err}");
    let err = NetNs::open("/proc").unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
}

#[test]
fn the_same_namespace_has_the_same_identity_by_every_path() {
    let current = NetNs::current().unwrap();
    let by_pid = NetNs::open(format!("/proc/{}/ns/net", std::process::id())).unwrap();
    assert_eq!(current.id(), by_pid.id());
    let fresh = NetNs::create().unwrap();
    assert_ne!(fresh.id(), current.id());
    // The caller's thread never moved.
    assert_eq!(NetNs::current().unwrap().id(), current.id());
}

#[test]
fn one_socket_serves_many_threads() {
    let sb = Sandbox::new();
    let parent = sb.parent_index();
    std::thread::scope(|s| {
        for t in 0..4 {
            let nl = &sb.nl;
            s.spawn(move || {
                for i in 0..10 {
                    let name = format!("mv{t}x{i}");
                    nl.create_link(&NewLink::macvlan(&name, parent, MacvlanMode::Bridge))
                        .unwrap();
                    assert_eq!(nl.link_by_name(&name).unwrap().parent_index, Some(parent));
                }
            });
        }
    });
    assert_eq!(sb.nl.links().unwrap().len(), 3 + 40);
}

mod needs_ipvlan {
    use super::*;
    use underlay::link::{IpvlanFlag, IpvlanMode};

    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn ipvlan_every_mode_and_flag_reads_back() {
        common::require(KernelFeature::Ipvlan);
        let sb = Sandbox::new();
        let parent = sb.parent_index();
        let modes = [
            (IpvlanMode::L2, "l2"),
            (IpvlanMode::L3, "l3"),
            (IpvlanMode::L3s, "l3s"),
        ];
        let flags = [
            (IpvlanFlag::Bridge, "bridge"),
            (IpvlanFlag::Private, "private"),
            (IpvlanFlag::Vepa, "vepa"),
        ];
        for (m, (mode, mode_name)) in modes.into_iter().enumerate() {
            for (f, (flag, flag_name)) in flags.into_iter().enumerate() {
                let name = format!("iv{m}{f}");
                sb.nl
                    .create_link(&NewLink::ipvlan(&name, parent, mode, flag))
                    .unwrap();
                let link = sb.nl.link_by_name(&name).unwrap();
                assert_eq!(link.kind, Some(LinkKind::Ipvlan { mode, flag }));
                assert_eq!(link.parent_index, Some(parent));
                let json = ip_link(&sb.host, &name);
                assert_eq!(json["linkinfo"]["info_kind"], "ipvlan");
                assert_eq!(json["linkinfo"]["info_data"]["mode"], mode_name);
                // iproute2 shows the flag as a boolean key (`"private": true`),
                // bridge being the absence of both.
                let data = &json["linkinfo"]["info_data"];
                let shown = ["private", "vepa"]
                    .into_iter()
                    .find(|f| data[*f] == true)
                    .unwrap_or("bridge");
                assert_eq!(shown, flag_name, "{json}");
            }
        }
    }

    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn ipvlan_created_straight_in_a_container_despite_a_same_named_host_link() {
        common::require(KernelFeature::Ipvlan);
        let sb = Sandbox::new();
        let container = sb.container();
        sb.nl
            .create_link(
                &NewLink::ipvlan(
                    "eth0",
                    sb.parent_index(),
                    IpvlanMode::L3,
                    IpvlanFlag::Bridge,
                )
                .netns(&container),
            )
            .unwrap();
        let link = container.netlink().unwrap().link_by_name("eth0").unwrap();
        assert_eq!(
            link.kind,
            Some(LinkKind::Ipvlan {
                mode: IpvlanMode::L3,
                flag: IpvlanFlag::Bridge
            })
        );
        assert_eq!(common::link_names(&container), ["eth0", "lo"]);
        assert_eq!(common::link_names(&sb.host), ["eth0", "lo", "uplink0"]);
    }

    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn ipvlan_l3_containers_in_different_subnets_ping_each_other() {
        common::require(KernelFeature::Ipvlan);
        let sb = Sandbox::new();
        let a = sb.container();
        let b = sb.container();
        for (ns, address) in [(&a, "192.168.214.10/24"), (&b, "10.1.214.10/24")] {
            sb.nl
                .create_link(
                    &NewLink::ipvlan(
                        "eth0",
                        sb.parent_index(),
                        IpvlanMode::L3,
                        IpvlanFlag::Bridge,
                    )
                    .netns(ns),
                )
                .unwrap();
            let nl = ns.netlink().unwrap();
            let eth0 = nl.link_by_name("eth0").unwrap().index;
            nl.add_address(eth0, net(address)).unwrap();
            nl.set_link_up_by_index(eth0, true).unwrap();
            nl.add_route(&NewRoute::default_dev(IpFamily::V4, eth0))
                .unwrap();
        }
        assert!(common::ping(&a, "10.1.214.10"));
        assert!(common::ping(&b, "192.168.214.10"));
    }
}

mod needs_vlan {
    use super::*;

    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn vlan_reads_back_with_id_and_parent() {
        common::require(KernelFeature::Vlan);
        let sb = Sandbox::new();
        let parent = sb.parent_index();
        sb.nl
            .create_link(&NewLink::vlan("eth0.50", parent, 50).up())
            .unwrap();
        let link = sb.nl.link_by_name("eth0.50").unwrap();
        assert_eq!(link.kind, Some(LinkKind::Vlan { id: 50 }));
        assert_eq!(link.parent_index, Some(parent));
        assert!(link.up);
        let json = ip_link(&sb.host, "eth0.50");
        assert_eq!(json["linkinfo"]["info_kind"], "vlan");
        assert_eq!(json["linkinfo"]["info_data"]["id"], 50);
        assert_eq!(json["link"], PARENT);
        sb.nl.delete_link(link.index).unwrap();
        assert_eq!(common::link_names(&sb.host), ["eth0", "lo", "uplink0"]);
    }

    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn vlan_id_4095_is_refused_with_the_kernels_text() {
        common::require(KernelFeature::Vlan);
        let sb = Sandbox::new();
        let err = sb
            .nl
            .create_link(&NewLink::vlan("eth0.4095", sb.parent_index(), 4095))
            .unwrap_err();
        let Error::Kernel { errno, message, .. } = &err else {
            panic!("expected a kernel error, got {err:?}");
        };
        assert_eq!(*errno, libc::ERANGE, "{err}");
        let message = message.as_deref().expect("an extended-ACK message");
        assert!(message.to_lowercase().contains("vlan id"), "{message}");
        assert_eq!(common::link_names(&sb.host), ["eth0", "lo", "uplink0"]);
    }

    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn deleting_a_vlan_parent_takes_its_macvlan_children() {
        common::require(KernelFeature::Vlan);
        let sb = Sandbox::new();
        sb.nl
            .create_link(&NewLink::vlan("eth0.60", sb.parent_index(), 60).up())
            .unwrap();
        let vlan = sb.nl.link_by_name("eth0.60").unwrap().index;
        for i in 0..3 {
            sb.nl
                .create_link(&NewLink::macvlan(
                    &format!("mv{i}"),
                    vlan,
                    MacvlanMode::Bridge,
                ))
                .unwrap();
        }
        sb.nl.delete_link(vlan).unwrap();
        assert_eq!(common::link_names(&sb.host), ["eth0", "lo", "uplink0"]);
    }
}

mod needs_dummy {
    use super::*;

    #[test]
    #[ignore = "needs dummy: runs in the real-kernel tier"]
    fn dummy_reads_back_and_parents_a_macvlan() {
        common::require(KernelFeature::Dummy);
        let sb = Sandbox::empty();
        sb.nl.create_link(&NewLink::dummy("dm-test").up()).unwrap();
        let dummy = sb.nl.link_by_name("dm-test").unwrap();
        assert_eq!(dummy.kind, Some(LinkKind::Dummy));
        assert!(dummy.up);
        assert_eq!(
            ip_link(&sb.host, "dm-test")["linkinfo"]["info_kind"],
            "dummy"
        );
        let container = sb.container();
        sb.nl
            .create_link(
                &NewLink::macvlan("eth0", dummy.index, MacvlanMode::Bridge).netns(&container),
            )
            .unwrap();
        assert_eq!(common::link_names(&container), ["eth0", "lo"]);
        sb.nl.delete_link(dummy.index).unwrap();
        // The child went with its parent, even across namespaces.
        assert_eq!(common::link_names(&container), ["lo"]);
        assert_eq!(common::link_names(&sb.host), ["lo"]);
    }
}
