//! Tests of the allocator: the seeds' examples, each rule, and properties
//! checked against a simple model.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

use IpFamily::{V4 as Ipv4, V6 as Ipv6};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A network as `docker network create` would make it: gateways inferred.
fn docker_network(
    name: &str,
    subnets: &[&str],
    gateways: &[&str],
    ranges: &[&str],
    aux: &[&str],
) -> Ipam {
    let mut config = NetworkIpamConfig::from_docker_lists(subnets, gateways, ranges, aux).unwrap();
    config.infer_gateways();
    Ipam::new(name, &config, AllocationPolicy::LowestFree)
}

fn snapshot(ipam: &Ipam) -> Vec<Allocation> {
    ipam.allocations().collect()
}

fn assert_names(err: &IpamError, value: &str) {
    let text = err.to_string();
    assert!(text.contains(value), "{text:?} does not name {value:?}");
}

// ---- The seeds' examples -------------------------------------------------

#[test]
fn seed_mcv0_ip_range_and_aux_addresses() {
    // 002: the container gets 192.168.136.3/24 via 192.168.136.1 and
    // fd11::3/64 via fd11::1.
    let mut ipam = docker_network(
        "mcv0",
        &["192.168.136.0/24", "192.168.138.0/24", "fd11::/64"],
        &[],
        &["192.168.136.0/25", "192.168.138.0/25"],
        &[
            "reserved1=fd11::2",
            "reserved2=192.168.136.2",
            "reserved3=192.168.138.2",
        ],
    );
    let v4 = ipam.allocate(Ipv4, 1).unwrap();
    assert_eq!(v4.address(), net("192.168.136.3/24"));
    assert_eq!(v4.gateway(), Some(ip("192.168.136.1")));
    let v6 = ipam.allocate(Ipv6, 1).unwrap();
    assert_eq!(v6.address(), net("fd11::3/64"));
    assert_eq!(v6.gateway(), Some(ip("fd11::1")));

    // The range 192.168.136.0/25 holds .3 to .127; then the next subnet's
    // range is used, whose .2 is reserved too.
    for expected in 4..=127 {
        let a = ipam.allocate(Ipv4, expected).unwrap();
        assert_eq!(a.ip(), ip(&format!("192.168.136.{expected}")));
    }
    let next = ipam.allocate(Ipv4, 200).unwrap();
    assert_eq!(next.address(), net("192.168.138.3/24"));
    assert_eq!(next.gateway(), Some(ip("192.168.138.1")));
    // Addresses outside the ranges may still be requested.
    assert_eq!(
        ipam.request(ip("192.168.136.200"), 300).unwrap().address(),
        net("192.168.136.200/24")
    );
}

#[test]
fn seed_macnet32_ip_range() {
    // 002: "allocates addresses beginning at 192.168.32.128 and increments
    // n+1 upwards from there".
    let mut ipam = docker_network(
        "macnet32",
        &["192.168.32.0/24"],
        &["192.168.32.254"],
        &["192.168.32.128/25"],
        &[],
    );
    let first = ipam.allocate(Ipv4, 1).unwrap();
    assert_eq!(first.address(), net("192.168.32.128/24"));
    assert_eq!(first.gateway(), Some(ip("192.168.32.254")));
    assert_eq!(ipam.allocate(Ipv4, 2).unwrap().ip(), ip("192.168.32.129"));
    // .130 to .253 remain: the gateway .254 and broadcast .255 are not.
    for holder in 3..=126 {
        ipam.allocate(Ipv4, holder).unwrap();
    }
    assert_eq!(ipam.holder(ip("192.168.32.253")), Some(126));
    let err = ipam.allocate(Ipv4, 127).unwrap_err();
    assert_eq!(
        err,
        IpamError::Exhausted {
            network: "macnet32".into(),
            family: Ipv4,
            pools: vec![net("192.168.32.128/25")],
        }
    );
    assert_names(&err, "macnet32");
    assert_names(&err, "192.168.32.128/25");
}

#[test]
fn seed_v6ipvlan139_gateway_and_default_ipv4_pool() {
    // 000/003: --subnet=2001:db8:abc2::/64 --gateway=2001:db8:abc2::22, no
    // IPv4 subnet: the containers get 2001:db8:abc2::1 and ::2, and
    // 172.18.0.2/16 and 172.18.0.3/16 from the default pools (docker0 holds
    // 172.17.0.0/16).
    let mut config = NetworkIpamConfig::from_docker_lists(
        &["2001:db8:abc2::/64"],
        &["2001:db8:abc2::22"],
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(config.subnets_of(Ipv4).count(), 0);
    let subnet = DefaultPools::default()
        .pick_ipv4([net("172.17.0.0/16")])
        .unwrap();
    config
        .add_subnet(SubnetConfig::new(subnet).unwrap())
        .unwrap();
    config.infer_gateways();
    let mut ipam = Ipam::new("v6ipvlan139", &config, AllocationPolicy::LowestFree);

    let first = (
        ipam.allocate(Ipv4, 1).unwrap(),
        ipam.allocate(Ipv6, 1).unwrap(),
    );
    let second = (
        ipam.allocate(Ipv4, 2).unwrap(),
        ipam.allocate(Ipv6, 2).unwrap(),
    );
    assert_eq!(first.0.address(), net("172.18.0.2/16"));
    assert_eq!(first.1.address(), net("2001:db8:abc2::1/64"));
    assert_eq!(second.0.address(), net("172.18.0.3/16"));
    assert_eq!(second.1.address(), net("2001:db8:abc2::2/64"));
    assert_eq!(second.1.gateway(), Some(ip("2001:db8:abc2::22")));
    assert_eq!(first.0.gateway(), Some(ip("172.18.0.1")));
}

#[test]
fn ipv6_allocation_skips_the_gateway() {
    let mut ipam = docker_network(
        "v6ipvlan139",
        &["2001:db8:abc2::/64"],
        &["2001:db8:abc2::22"],
        &[],
        &[],
    );
    let addresses: Vec<IpAddr> = (0..0x23)
        .map(|h| ipam.allocate(Ipv6, h).unwrap().ip())
        .collect();
    assert_eq!(addresses[0x20], ip("2001:db8:abc2::21"));
    assert_eq!(addresses[0x21], ip("2001:db8:abc2::23"));
}

#[test]
fn seed_ipvlan140_dual_stack() {
    // 000/003: the container gets 192.168.140.2/24 via 192.168.140.1 and
    // 2001:db8:abc9::1/64 via 2001:db8:abc9::22.
    let mut ipam = docker_network(
        "ipvlan140",
        &["192.168.140.0/24", "192.168.142.0/24", "2001:db8:abc9::/64"],
        &["192.168.140.1", "192.168.142.1", "2001:db8:abc9::22"],
        &[],
        &[],
    );
    let v4 = ipam.allocate(Ipv4, 1).unwrap();
    let v6 = ipam.allocate(Ipv6, 1).unwrap();
    assert_eq!(v4.address(), net("192.168.140.2/24"));
    assert_eq!(v4.gateway(), Some(ip("192.168.140.1")));
    assert_eq!(v6.address(), net("2001:db8:abc9::1/64"));
    assert_eq!(v6.gateway(), Some(ip("2001:db8:abc9::22")));
    // The second container, --ip=192.168.140.10.
    assert_eq!(
        ipam.request(ip("192.168.140.10"), 2).unwrap().address(),
        net("192.168.140.10/24")
    );
}

#[test]
fn seed_pub_net_requested_and_dynamic() {
    // 002: --ip=172.16.86.10 for the first container, 172.16.86.2 for the
    // second; then the same network with the parent's address excluded.
    let mut ipam = docker_network("pub_net", &["172.16.86.0/24"], &["172.16.86.1"], &[], &[]);
    assert_eq!(
        ipam.request(ip("172.16.86.10"), 1).unwrap().address(),
        net("172.16.86.10/24")
    );
    let second = ipam.allocate(Ipv4, 2).unwrap();
    assert_eq!(second.address(), net("172.16.86.2/24"));
    assert_eq!(second.gateway(), Some(ip("172.16.86.1")));

    let mut ipam = docker_network(
        "pub_net",
        &["172.16.86.0/24"],
        &["172.16.86.1"],
        &[],
        &["exclude_host=172.16.86.250"],
    );
    let err = ipam.request(ip("172.16.86.250"), 1).unwrap_err();
    assert_eq!(
        err,
        IpamError::AddressReserved {
            network: "pub_net".into(),
            address: ip("172.16.86.250"),
            subnet: net("172.16.86.0/24"),
            reservation: Reservation::AuxAddress {
                name: "exclude_host".into()
            },
        }
    );
    assert_names(&err, "172.16.86.250");
    assert_names(&err, "exclude_host");
    // Dynamic allocation walks past it.
    for _ in 2..250 {
        ipam.allocate(Ipv4, 0).unwrap();
    }
    assert_eq!(ipam.allocate(Ipv4, 0).unwrap().ip(), ip("172.16.86.251"));
}

#[test]
fn seed_macvlan216_requests_and_dynamic_ipv6() {
    // 002: requested addresses in both subnets, --ip6=2001:db8:abc8::20, then
    // a container with --ip=192.168.216.11 gets 2001:db8:abc8::1/64 and its
    // routes go via 192.168.216.1 and 2001:db8:abc8::10.
    let mut ipam = docker_network(
        "macvlan216",
        &["192.168.216.0/24", "192.168.218.0/24", "2001:db8:abc8::/64"],
        &["192.168.216.1", "192.168.218.1", "2001:db8:abc8::10"],
        &[],
        &[],
    );
    ipam.request(ip("192.168.216.10"), 1).unwrap();
    let on_218 = ipam.request(ip("192.168.218.10"), 2).unwrap();
    assert_eq!(on_218.gateway(), Some(ip("192.168.218.1")));
    ipam.request(ip("2001:db8:abc8::20"), 3).unwrap();

    let v4 = ipam.request(ip("192.168.216.11"), 4).unwrap();
    let v6 = ipam.allocate(Ipv6, 4).unwrap();
    assert_eq!(v4.address(), net("192.168.216.11/24"));
    assert_eq!(v4.gateway(), Some(ip("192.168.216.1")));
    assert_eq!(v6.address(), net("2001:db8:abc8::1/64"));
    assert_eq!(v6.gateway(), Some(ip("2001:db8:abc8::10")));
    assert_eq!(ipam.release(v4.ip()), Some(4));
    assert_eq!(ipam.release(v6.ip()), Some(4));

    // --ip=192.168.218.11, then --ip=192.168.216.50 --ip6=2001:db8:abc8::50.
    ipam.request(ip("192.168.218.11"), 5).unwrap();
    assert_eq!(
        ipam.request(ip("192.168.216.50"), 6).unwrap().address(),
        net("192.168.216.50/24")
    );
    assert_eq!(
        ipam.request(ip("2001:db8:abc8::50"), 6).unwrap().address(),
        net("2001:db8:abc8::50/64")
    );
}

#[test]
fn seed_ipvlan114_gateways_at_the_end() {
    // 000/003: gateways .254; --ip=192.168.114.10 and .11.
    let mut ipam = docker_network(
        "ipvlan114",
        &["192.168.114.0/24", "192.168.116.0/24"],
        &["192.168.114.254", "192.168.116.254"],
        &[],
        &[],
    );
    ipam.request(ip("192.168.114.10"), 1).unwrap();
    ipam.request(ip("192.168.114.11"), 2).unwrap();
    let dynamic = ipam.allocate(Ipv4, 3).unwrap();
    assert_eq!(dynamic.address(), net("192.168.114.1/24"));
    assert_eq!(dynamic.gateway(), Some(ip("192.168.114.254")));
    assert!(matches!(
        ipam.request(ip("192.168.116.254"), 4),
        Err(IpamError::AddressReserved {
            reservation: Reservation::Gateway,
            ..
        })
    ));
}

#[test]
fn seed_mcv101_and_ipnet210_requests_in_two_subnets() {
    // 002 mcv101 (macvlan, explicit gateways) and 000 ipnet210 (ipvlan L3,
    // no gateway wanted).
    let mut mcv101 = docker_network(
        "mcv101",
        &["10.1.20.0/24", "10.1.10.0/24"],
        &["10.1.20.1", "10.1.10.1"],
        &[],
        &[],
    );
    for (address, gateway) in [
        ("10.1.20.9", "10.1.20.1"),
        ("10.1.20.10", "10.1.20.1"),
        ("10.1.10.10", "10.1.10.1"),
        ("10.1.10.9", "10.1.10.1"),
    ] {
        assert_eq!(
            mcv101.request(ip(address), 1).unwrap().gateway(),
            Some(ip(gateway))
        );
    }

    let config =
        NetworkIpamConfig::from_docker_lists(&["192.168.214.0/24", "10.1.214.0/24"], &[], &[], &[])
            .unwrap();
    let mut ipnet210 = Ipam::new("ipnet210", &config, AllocationPolicy::LowestFree);
    for address in [
        "192.168.214.10",
        "10.1.214.10",
        "192.168.214.9",
        "10.1.214.9",
    ] {
        let allocation = ipnet210.request(ip(address), 1).unwrap();
        assert_eq!(allocation.gateway(), None);
    }
    // Without a gateway, the first dynamic address is the subnet's first.
    assert_eq!(
        ipnet210.allocate(Ipv4, 2).unwrap().ip(),
        ip("192.168.214.1")
    );
}

#[test]
fn seed_ipnet110_l3_dual_stack() {
    // 000/003: three subnets, no gateway; --ip6=2001:db8:abc6::10,
    // --ip=192.168.112.50, then --ip6=2001:db8:abc6::50 --ip=192.168.112.50
    // (the seed runs both with --rm, so .50 is free again by then).
    let config = NetworkIpamConfig::from_docker_lists(
        &["192.168.110.0/24", "192.168.112.0/24", "2001:db8:abc6::/64"],
        &[],
        &[],
        &[],
    )
    .unwrap();
    let mut ipam = Ipam::new("ipnet110", &config, AllocationPolicy::LowestFree);
    let v6 = ipam.request(ip("2001:db8:abc6::10"), 2).unwrap();
    assert_eq!(v6.address(), net("2001:db8:abc6::10/64"));
    assert_eq!(v6.gateway(), None);
    ipam.request(ip("192.168.112.50"), 3).unwrap();
    assert_eq!(ipam.release(ip("192.168.112.50")), Some(3));
    ipam.request(ip("192.168.112.50"), 4).unwrap();
    ipam.request(ip("2001:db8:abc6::50"), 4).unwrap();

    // The seed prints 192.168.112.2/24 for the --ip6=2001:db8:abc6::10
    // container. Subnets are tried in order, so that address comes out once
    // 192.168.110.0/24 is full (with Docker's inferred gateways .1).
    let mut config = config;
    config.infer_gateways();
    let mut ipam = Ipam::new("ipnet110", &config, AllocationPolicy::LowestFree);
    for holder in 0..253 {
        assert!(ipam.allocate(Ipv4, holder).unwrap().ip() != ip("192.168.112.2"));
    }
    assert_eq!(
        ipam.allocate(Ipv4, 253).unwrap().address(),
        net("192.168.112.2/24")
    );
}

#[test]
fn seed_db_net_inferred_gateway() {
    // 000/003/004: "if the subnet provided in the network create is
    // --subnet=192.168.1.0/24 then the gateway the container receives is
    // 192.168.1.1".
    let mut ipam = docker_network("db_net", &["192.168.1.0/24"], &[], &[], &[]);
    let a = ipam.allocate(Ipv4, 1).unwrap();
    assert_eq!(a.gateway(), Some(ip("192.168.1.1")));
    assert_eq!(a.address(), net("192.168.1.2/24"));
}

// ---- Rules ---------------------------------------------------------------

#[test]
fn reserved_addresses_are_refused_with_the_reason() {
    let mut ipam = docker_network(
        "n",
        &["192.168.1.0/24", "fd11::/64"],
        &[],
        &[],
        &["host=192.168.1.250"],
    );
    for (address, subnet, reservation) in [
        ("192.168.1.0", "192.168.1.0/24", Reservation::NetworkAddress),
        (
            "192.168.1.255",
            "192.168.1.0/24",
            Reservation::BroadcastAddress,
        ),
        ("192.168.1.1", "192.168.1.0/24", Reservation::Gateway),
        (
            "192.168.1.250",
            "192.168.1.0/24",
            Reservation::AuxAddress {
                name: "host".into(),
            },
        ),
        ("fd11::", "fd11::/64", Reservation::SubnetRouterAnycast),
        ("fd11::1", "fd11::/64", Reservation::Gateway),
    ] {
        let before = snapshot(&ipam);
        let err = ipam.request(ip(address), 1).unwrap_err();
        assert_eq!(
            err,
            IpamError::AddressReserved {
                network: "n".into(),
                address: ip(address),
                subnet: net(subnet),
                reservation: reservation.clone(),
            }
        );
        assert_names(&err, address);
        assert_names(&err, &reservation.to_string());
        assert_eq!(snapshot(&ipam), before);
        // Releasing a reserved address releases nothing.
        assert_eq!(ipam.release(ip(address)), None);
        assert_eq!(ipam.holder(ip(address)), None);
    }
}

#[test]
fn address_in_use_names_the_holder_and_changes_nothing() {
    let mut ipam = docker_network("n", &["192.168.1.0/24"], &[], &[], &[]);
    ipam.request(ip("192.168.1.10"), 77).unwrap();
    let before = snapshot(&ipam);
    let err = ipam.request(ip("192.168.1.10"), 78).unwrap_err();
    assert_eq!(
        err,
        IpamError::AddressInUse {
            network: "n".into(),
            address: ip("192.168.1.10"),
            holder: 77,
        }
    );
    assert_names(&err, "192.168.1.10");
    assert_names(&err, "77");
    assert_eq!(snapshot(&ipam), before);
    assert_eq!(ipam.holder(ip("192.168.1.10")), Some(77));
}

#[test]
fn requested_address_outside_every_subnet() {
    let mut ipam = docker_network("n", &["192.168.1.0/24", "10.0.0.0/24"], &[], &[], &[]);
    let before = snapshot(&ipam);
    let err = ipam.request(ip("192.168.2.10"), 1).unwrap_err();
    assert_eq!(
        err,
        IpamError::AddressOutsideSubnets {
            network: "n".into(),
            address: ip("192.168.2.10"),
            subnets: vec![net("192.168.1.0/24"), net("10.0.0.0/24")],
        }
    );
    assert_names(&err, "192.168.2.10");
    let err = ipam.request(ip("fd11::5"), 1).unwrap_err();
    assert_names(&err, "fd11::5");
    assert!(matches!(&err, IpamError::AddressOutsideSubnets { subnets, .. } if subnets.is_empty()));
    assert_eq!(snapshot(&ipam), before);
    assert_eq!(ipam.len(), 0);
}

#[test]
fn failed_allocation_changes_nothing() {
    let mut ipam = docker_network("tiny", &["10.0.0.0/30"], &[], &[], &[]);
    let only = ipam.allocate(Ipv4, 1).unwrap();
    assert_eq!(only.ip(), ip("10.0.0.2"));
    let before = snapshot(&ipam);
    let err = ipam.allocate(Ipv4, 2).unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }));
    assert_names(&err, "tiny");
    assert_names(&err, "10.0.0.0/30");
    let err = ipam.allocate(Ipv6, 2).unwrap_err();
    assert_eq!(
        err,
        IpamError::NoSubnet {
            network: "tiny".into(),
            family: Ipv6
        }
    );
    assert_names(&err, "IPv6");
    assert_eq!(snapshot(&ipam), before);
    assert_eq!(ipam.serial_cursor(Ipv4), Some(ip("10.0.0.2")));
}

#[test]
fn exhaustion_names_every_range_of_the_family() {
    let mut ipam = docker_network(
        "two",
        &["10.0.0.0/30", "10.0.1.0/24", "fd11::/64"],
        &[],
        &["10.0.1.4/31"],
        &[],
    );
    let got: Vec<IpAddr> = (0..3)
        .map(|h| ipam.allocate(Ipv4, h).unwrap().ip())
        .collect();
    assert_eq!(got, [ip("10.0.0.2"), ip("10.0.1.4"), ip("10.0.1.5")]);
    let err = ipam.allocate(Ipv4, 9).unwrap_err();
    assert_eq!(
        err,
        IpamError::Exhausted {
            network: "two".into(),
            family: Ipv4,
            pools: vec![net("10.0.0.0/30"), net("10.0.1.4/31")],
        }
    );
    // Releasing makes room again, in the first subnet first.
    assert_eq!(ipam.release(ip("10.0.1.4")), Some(1));
    assert_eq!(ipam.allocate(Ipv4, 10).unwrap().ip(), ip("10.0.1.4"));
}

#[test]
fn release_is_exact_and_idempotent() {
    let mut ipam = docker_network("n", &["192.168.1.0/24"], &[], &[], &[]);
    let a = ipam.allocate(Ipv4, 1).unwrap().ip();
    let b = ipam.allocate(Ipv4, 2).unwrap().ip();
    assert_eq!(ipam.release(a), Some(1));
    assert_eq!(ipam.release(a), None);
    assert_eq!(ipam.release(ip("192.168.1.200")), None);
    assert_eq!(ipam.release(ip("10.0.0.1")), None);
    assert_eq!(ipam.holder(b), Some(2));
    assert_eq!(ipam.len(), 1);
    // Lowest free comes back.
    assert_eq!(ipam.allocate(Ipv4, 3).unwrap().ip(), a);
}

#[test]
fn released_ipv6_address_can_be_requested_at_once() {
    // libnetwork#988: "Address already in use" after removing a container
    // with a requested IPv6 address.
    let mut ipam = docker_network("ipnet110", &["2001:db8:abc6::/64"], &[], &[], &[]);
    for holder in 0..3 {
        ipam.request(ip("2001:db8:abc6::10"), holder).unwrap();
        assert_eq!(ipam.release(ip("2001:db8:abc6::10")), Some(holder));
    }
    let dynamic = ipam.allocate(Ipv6, 5).unwrap().ip();
    assert_eq!(ipam.release(dynamic), Some(5));
    ipam.request(dynamic, 6).unwrap();
}

#[test]
fn point_to_point_and_host_subnets_use_every_address() {
    let mut ipam = docker_network(
        "p2p",
        &["10.0.0.0/31", "10.0.0.8/32", "fd11::/127"],
        &[],
        &[],
        &[],
    );
    // Point-to-point subnets get no inferred gateway (RFC 3021, as
    // today's Docker): both addresses of the /31, the /32's one, both of
    // the /127.
    assert_eq!(ipam.allocate(Ipv4, 1).unwrap().ip(), ip("10.0.0.0"));
    assert_eq!(ipam.allocate(Ipv4, 2).unwrap().ip(), ip("10.0.0.1"));
    let host = ipam.allocate(Ipv4, 3).unwrap();
    assert_eq!(host.address(), net("10.0.0.8/32"));
    assert_eq!(host.gateway(), None);
    assert!(ipam.allocate(Ipv4, 4).is_err());
    assert_eq!(ipam.allocate(Ipv6, 1).unwrap().ip(), ip("fd11::"));
    assert_eq!(ipam.allocate(Ipv6, 2).unwrap().ip(), ip("fd11::1"));

    let config = NetworkIpamConfig::from_docker_lists(&["10.0.0.0/31"], &[], &[], &[]).unwrap();
    let mut ipam = Ipam::new("p2p", &config, AllocationPolicy::LowestFree);
    assert_eq!(ipam.allocate(Ipv4, 1).unwrap().ip(), ip("10.0.0.0"));
    assert_eq!(ipam.allocate(Ipv4, 1).unwrap().ip(), ip("10.0.0.1"));
}

#[test]
fn huge_ipv6_pools() {
    let mut ipam = docker_network("big", &["fd00:1::/48", "2001:db8::/64"], &[], &[], &[]);
    assert_eq!(
        ipam.allocate(Ipv6, 1).unwrap().address(),
        net("fd00:1::2/48")
    );
    let far = ip("fd00:1:0:ffff:ffff:ffff:ffff:ffff");
    assert_eq!(
        ipam.request(far, 2).unwrap().address(),
        net("fd00:1:0:ffff:ffff:ffff:ffff:ffff/48")
    );
    let top = ip("2001:db8::ffff:ffff:ffff:ffff");
    ipam.request(top, 3).unwrap();
    assert_eq!(ipam.holder(far), Some(2));
    assert_eq!(ipam.release(far), Some(2));
    assert_eq!(ipam.len(), 2);
    let order: Vec<IpAddr> = ipam.allocations().map(|a| a.ip()).collect();
    assert_eq!(order, [ip("fd00:1::2"), top]);
}

#[test]
fn ip_range_of_a_huge_pool() {
    // libnetwork#2296: a /64 ip-range inside a /48.
    let mut ipam = docker_network("big", &["fd00:1::/48"], &[], &["fd00:1:0:ff::/64"], &[]);
    let first = ipam.allocate(Ipv6, 1).unwrap();
    assert_eq!(first.address(), net("fd00:1:0:ff::/48"));
    assert_eq!(first.gateway(), Some(ip("fd00:1::1")));
    assert_eq!(ipam.allocate(Ipv6, 2).unwrap().ip(), ip("fd00:1:0:ff::1"));
}

#[test]
fn lookups_and_iteration() {
    let mut ipam = docker_network("n", &["10.0.0.0/24", "fd11::/64"], &[], &[], &[]);
    ipam.allocate(Ipv6, 10).unwrap();
    ipam.request(ip("10.0.0.50"), 11).unwrap();
    ipam.allocate(Ipv4, 12).unwrap();
    let all: Vec<(IpNet, u64, Option<IpAddr>)> = ipam
        .allocations()
        .map(|a| (a.address(), a.holder(), a.gateway()))
        .collect();
    assert_eq!(
        all,
        [
            (net("10.0.0.2/24"), 12, Some(ip("10.0.0.1"))),
            (net("10.0.0.50/24"), 11, Some(ip("10.0.0.1"))),
            (net("fd11::2/64"), 10, Some(ip("fd11::1"))),
        ]
    );
    assert_eq!(ipam.holder(ip("10.0.0.50")), Some(11));
    assert_eq!(ipam.holder(ip("10.0.0.51")), None);
    assert_eq!(
        ipam.allocations().next().unwrap().subnet(),
        net("10.0.0.0/24")
    );
    assert_eq!(ipam.len(), 3);
    assert!(format!("{ipam:?}").contains("allocated: 3"));
}

#[test]
fn serial_policy_goes_round_and_wraps() {
    let mut config =
        NetworkIpamConfig::from_docker_lists(&["10.0.0.0/29", "10.0.1.0/30"], &[], &[], &[])
            .unwrap();
    config.infer_gateways();
    let mut ipam = Ipam::new("rr", &config, AllocationPolicy::Serial);
    // 10.0.0.2-6 then 10.0.1.2.
    let a = ipam.allocate(Ipv4, 1).unwrap().ip();
    let b = ipam.allocate(Ipv4, 2).unwrap().ip();
    assert_eq!((a, b), (ip("10.0.0.2"), ip("10.0.0.3")));
    assert_eq!(ipam.release(a), Some(1));
    // Not reused at once: the cursor moves on.
    assert_eq!(ipam.allocate(Ipv4, 3).unwrap().ip(), ip("10.0.0.4"));
    assert_eq!(ipam.serial_cursor(Ipv4), Some(ip("10.0.0.4")));
    assert_eq!(ipam.allocate(Ipv4, 4).unwrap().ip(), ip("10.0.0.5"));
    assert_eq!(ipam.allocate(Ipv4, 5).unwrap().ip(), ip("10.0.0.6"));
    // On to the next subnet, then wrap to the freed 10.0.0.2.
    assert_eq!(ipam.allocate(Ipv4, 6).unwrap().ip(), ip("10.0.1.2"));
    assert_eq!(ipam.allocate(Ipv4, 7).unwrap().ip(), ip("10.0.0.2"));
    assert!(matches!(
        ipam.allocate(Ipv4, 8),
        Err(IpamError::Exhausted { .. })
    ));
    // A released address right behind the cursor comes back last.
    assert_eq!(ipam.release(ip("10.0.0.2")), Some(7));
    assert_eq!(ipam.allocate(Ipv4, 9).unwrap().ip(), ip("10.0.0.2"));
}

#[test]
fn serial_cursor_persists() {
    let config = NetworkIpamConfig::from_docker_lists(&["10.0.0.0/24"], &[], &[], &[]).unwrap();
    let mut ipam = Ipam::new("rr", &config, AllocationPolicy::Serial);
    ipam.allocate(Ipv4, 1).unwrap();
    ipam.allocate(Ipv4, 2).unwrap();
    let cursor = ipam.serial_cursor(Ipv4).unwrap();
    let records: Vec<(IpAddr, u64)> = ipam.allocations().map(|a| (a.ip(), a.holder())).collect();

    let mut reloaded = Ipam::new("rr", &config, AllocationPolicy::Serial);
    for (address, holder) in records {
        reloaded.request(address, holder).unwrap();
    }
    reloaded.set_serial_cursor(cursor).unwrap();
    assert_eq!(reloaded.release(ip("10.0.0.1")), Some(1));
    assert_eq!(reloaded.allocate(Ipv4, 3).unwrap().ip(), ip("10.0.0.3"));

    let err = reloaded.set_serial_cursor(ip("10.0.1.1")).unwrap_err();
    assert!(matches!(err, IpamError::AddressOutsideSubnets { .. }));
    assert_eq!(reloaded.serial_cursor(Ipv4), Some(ip("10.0.0.3")));
    // A cursor set below the ip-range starts at the range.
    let config =
        NetworkIpamConfig::from_docker_lists(&["10.0.0.0/24"], &[], &["10.0.0.128/25"], &[])
            .unwrap();
    let mut ipam = Ipam::new("rr", &config, AllocationPolicy::Serial);
    ipam.set_serial_cursor(ip("10.0.0.5")).unwrap();
    assert_eq!(ipam.allocate(Ipv4, 1).unwrap().ip(), ip("10.0.0.128"));
}

// ---- Properties ----------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Allocate(IpFamily),
    Request(u8),
    Release(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![Just(Ipv4), Just(Ipv6)].prop_map(Op::Allocate),
        2 => any::<u8>().prop_map(Op::Request),
        2 => any::<u8>().prop_map(Op::Release),
    ]
}

/// A small network: two IPv4 subnets (the first with an ip-range), one IPv6
/// subnet, gateways and aux addresses. Request/Release indices map onto
/// `candidates`, which covers every address of the subnets plus a few
/// outside.
struct Model {
    held: BTreeMap<IpAddr, u64>,
    reserved: BTreeSet<IpAddr>,
    /// Per family, the dynamic ranges in order, as address lists.
    ranges: [Vec<Vec<IpAddr>>; 2],
    subnets: Vec<IpNet>,
    cursor: [Option<IpAddr>; 2],
}

/// Every address of a prefix, network and broadcast included.
fn addresses(prefix: &str) -> Vec<IpAddr> {
    let prefix = net(prefix);
    let (first, last) = super::prefix::prefix_bounds(&prefix);
    let family = IpFamily::of_prefix(&prefix);
    (first..=last)
        .map(|value| super::prefix::u128_to_address(value, family))
        .collect()
}

fn model_network() -> (NetworkIpamConfig, Model, Vec<IpAddr>) {
    let mut config = NetworkIpamConfig::from_docker_lists(
        &["10.0.0.0/27", "10.0.1.0/29", "fd11::/123"],
        &["10.0.1.6"],
        &["10.0.0.8/29"],
        &["a=10.0.0.9", "b=fd11::3", "c=10.0.0.20"],
    )
    .unwrap();
    config.infer_gateways();
    let reserved: BTreeSet<IpAddr> = [
        "10.0.0.0",
        "10.0.0.31",
        "10.0.0.1",
        "10.0.0.9",
        "10.0.0.20",
        "10.0.1.0",
        "10.0.1.7",
        "10.0.1.6",
        "fd11::",
        "fd11::1",
        "fd11::3",
    ]
    .into_iter()
    .map(ip)
    .collect();
    let ranges = [
        vec![addresses("10.0.0.8/29"), addresses("10.0.1.0/29")],
        vec![addresses("fd11::/123")],
    ];
    let mut candidates: Vec<IpAddr> = ["10.0.0.0/27", "10.0.1.0/29", "fd11::/123"]
        .iter()
        .flat_map(|p| addresses(p))
        .collect();
    candidates.extend(["10.0.2.1", "fd12::1", "10.0.0.32"].map(ip));
    let model = Model {
        held: BTreeMap::new(),
        reserved,
        ranges,
        subnets: config.prefixes().collect(),
        cursor: [None, None],
    };
    (config, model, candidates)
}

impl Model {
    fn free(&self, address: &IpAddr) -> bool {
        !self.reserved.contains(address) && !self.held.contains_key(address)
    }

    fn allocate(&self, family: IpFamily, policy: AllocationPolicy) -> Option<IpAddr> {
        let order: Vec<IpAddr> = self.ranges[family.index()]
            .iter()
            .flatten()
            .copied()
            .collect();
        match (policy, self.cursor[family.index()]) {
            (AllocationPolicy::Serial, Some(cursor)) => {
                // Everything after the cursor in range order, then wrap.
                let after = match order.iter().position(|a| *a == cursor) {
                    Some(i) => i + 1,
                    None => order
                        .iter()
                        .position(|a| *a > cursor)
                        .unwrap_or(order.len()),
                };
                order[after..]
                    .iter()
                    .chain(&order[..after])
                    .find(|a| self.free(a))
                    .copied()
            }
            _ => order.iter().find(|a| self.free(a)).copied(),
        }
    }
}

fn run_against_model(ops: Vec<(Op, u64)>, policy: AllocationPolicy) -> Result<(), TestCaseError> {
    let (config, mut model, candidates) = model_network();
    let mut ipam = Ipam::new("model", &config, policy);
    for (op, holder) in ops {
        let before = snapshot(&ipam);
        match op {
            Op::Allocate(family) => {
                let expected = model.allocate(family, policy);
                match ipam.allocate(family, holder) {
                    Ok(a) => {
                        prop_assert_eq!(Some(a.ip()), expected);
                        prop_assert!(!model.reserved.contains(&a.ip()));
                        prop_assert_eq!(a.holder(), holder);
                        prop_assert!(model.held.insert(a.ip(), holder).is_none());
                        model.cursor[family.index()] = Some(a.ip());
                    }
                    Err(e) => {
                        prop_assert_eq!(expected, None);
                        prop_assert!(matches!(e, IpamError::Exhausted { .. }), "{:?}", e);
                        prop_assert_eq!(snapshot(&ipam), before);
                    }
                }
            }
            Op::Request(index) => {
                let address = candidates[usize::from(index) % candidates.len()];
                let inside = model.subnets.iter().any(|s| s.contains(&address));
                match ipam.request(address, holder) {
                    Ok(a) => {
                        prop_assert!(inside && model.free(&address));
                        prop_assert_eq!(a.ip(), address);
                        model.held.insert(address, holder);
                    }
                    Err(e) => {
                        match &e {
                            IpamError::AddressOutsideSubnets { .. } => prop_assert!(!inside),
                            IpamError::AddressReserved { .. } => {
                                prop_assert!(model.reserved.contains(&address))
                            }
                            IpamError::AddressInUse { holder: h, .. } => {
                                prop_assert_eq!(model.held.get(&address), Some(h))
                            }
                            other => prop_assert!(false, "unexpected {:?}", other),
                        }
                        prop_assert_eq!(snapshot(&ipam), before);
                    }
                }
            }
            Op::Release(index) => {
                let address = candidates[usize::from(index) % candidates.len()];
                prop_assert_eq!(ipam.release(address), model.held.remove(&address));
            }
        }
        let held: BTreeMap<IpAddr, u64> =
            ipam.allocations().map(|a| (a.ip(), a.holder())).collect();
        prop_assert_eq!(&held, &model.held);
        prop_assert_eq!(ipam.len(), model.held.len());
        for address in &candidates {
            prop_assert_eq!(ipam.holder(*address), model.held.get(address).copied());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lowest_free_matches_the_model(ops in proptest::collection::vec((op(), 0u64..1000), 1..120)) {
        run_against_model(ops, AllocationPolicy::LowestFree)?;
    }

    #[test]
    fn serial_matches_the_model(ops in proptest::collection::vec((op(), 0u64..1000), 1..120)) {
        run_against_model(ops, AllocationPolicy::Serial)?;
    }
}

#[test]
fn policy_serializes_in_kebab_case() {
    let json = serde_json::to_string(&AllocationPolicy::LowestFree).unwrap();
    assert_eq!(json, r#""lowest-free""#);
    let back: AllocationPolicy = serde_json::from_str(r#""serial""#).unwrap();
    assert_eq!(back, AllocationPolicy::Serial);
}
