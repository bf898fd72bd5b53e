//! Seed: Docker's ipvlan guide, L2 mode (`db_net`, `db_net_ipv`,
//! `ipvlan20`/`ipvlan30` on 802.1q trunks, the multi-subnet `ipvlan114`,
//! and the dual-stack `v6ipvlan139` and `ipvlan140`).
//!
//! Asserts: `db_net` (mode l2 on `eth0`, whose own address is
//! 192.168.1.250) gives its first container 192.168.1.2/24 with `default
//! via 192.168.1.1 dev eth0`, an ipvlan L2 link that shares `eth0`'s MAC
//! address, and no way to the host's own address; `db_net_ipv`, created
//! without gateway and mode, is the same network (gateway 192.168.1.1 and
//! l2 inferred) and its containers `ipv1`/`ipv2` ping each other and find
//! each other by name in the network's hosts entries; `ipvlan20` and
//! `ipvlan30` create `eth0.20`/`eth0.30`, their containers ping within the
//! VLAN and not across, with the guide's `default via 192.168.30.1 dev eth0`
//! and `192.168.30.0/24 dev eth0` (src 192.168.30.2); on `ipvlan114`
//! 192.168.114.10 and .11 ping each other and not 192.168.116.0/24 (L2
//! needs a router between subnets); on `v6ipvlan139` (IPv6 subnet only)
//! IPv4 comes from the default pool, 172.18.0.0/16 on the guide's host,
//! whose `docker0` holds 172.17.0.0/16 (the sandbox puts 172.17.0.1/16 on
//! its `uplink0` to stand in for it), the containers get 172.18.0.2/16 with
//! 2001:db8:abc2::1/64 and 172.18.0.3/16 with ::2, the second pings the first
//! over IPv6, and the IPv6 default route is `default via 2001:db8:abc2::22
//! dev eth0 metric 1024`; on `ipvlan140` a container gets 192.168.140.2/24
//! and 2001:db8:abc9::1/64 with `default via 192.168.140.1` and `default
//! via 2001:db8:abc9::22`, and one at 192.168.140.10 pings it. Every
//! sub-interface underlay created is gone after `docker network rm`.
//!
//! On a kernel without 802.1q VLAN support, `eth0` takes the place of the
//! `eth0.N` sub-interfaces, as the guide allows, and the VLAN isolation
//! check is left out; the example says so.
//!
//! `cargo run --example seed_ipvlan_l2` as root; needs ipvlan (exits 77,
//! "skipped", on a kernel without it).

#[path = "common/mod.rs"]
mod common;

use common::{
    ensure, expect_addresses, expect_endpoint, expect_no_ping, expect_ping, expect_routes, section,
    show, Context, Outcome, Sandbox,
};
use underlay::capability::KernelFeature;
use underlay::link::{IpvlanFlag, IpvlanMode, LinkKind};
use underlay::netns::NetNs;
use underlay::route::IpFamily;
use underlay::Network;

fn main() {
    common::main_with(
        "seed: ipvlan L2 mode (db_net, ipvlan20/30, ipvlan114, v6ipvlan139, ipvlan140)",
        &[KernelFeature::Ipvlan],
        scenario,
    )
}

/// Detaches the containers and removes the network; an owned parent must
/// go with it.
fn teardown(sb: &Sandbox, net: &Network, containers: &[&NetNs]) -> Outcome {
    for ns in containers {
        net.detach(ns).context("detach")?;
    }
    let parent = net.parent().clone();
    sb.remove(net.name())?;
    if parent.owned() {
        ensure!(
            sb.host_link(&parent.name).is_none(),
            "{} survived docker network rm",
            parent.name
        );
    } else {
        ensure!(
            sb.host_link(&parent.name).is_some(),
            "{} was deleted",
            parent.name
        );
    }
    Ok(())
}

fn scenario(sb: &Sandbox) -> Outcome {
    section("db_net: ipvlan l2 on eth0 (inet 192.168.1.250/24 on the host)");
    let eth0 = sb.host_link("eth0").ok_or("no eth0")?;
    sb.nl
        .add_address(eth0.index, "192.168.1.250/24".parse().unwrap())
        .context("add 192.168.1.250/24 to eth0")?;
    let net = sb.create("-d ipvlan --subnet=192.168.1.0/24 --gateway=192.168.1.1 -o ipvlan_mode=l2 -o parent=eth0 db_net")?;
    let c = sb.container()?;
    let ep = sb.run(&net, &c, "db", &[])?;
    expect_endpoint(&ep, &["192.168.1.2/24"])?;
    show("db", &c, "eth0")?;
    expect_routes(
        "db",
        &c,
        IpFamily::V4,
        &[
            "default via 192.168.1.1 dev eth0",
            "192.168.1.0/24 dev eth0",
        ],
    )?;
    let link = c
        .netlink()
        .and_then(|nl| nl.link_by_name("eth0"))
        .context("read the container's eth0")?;
    ensure!(
        link.kind
            == Some(LinkKind::Ipvlan {
                mode: IpvlanMode::L2,
                flag: IpvlanFlag::Bridge
            }),
        "the container's eth0 is {:?}",
        link.kind
    );
    ensure!(
        link.mac == eth0.mac && ep.mac().is_none(),
        "ipvlan shares the parent's MAC: {:?} vs {:?}",
        link.mac,
        eth0.mac
    );
    println!(
        "  db: eth0 is ipvlan l2 with eth0's MAC address {}",
        link.mac.map(|m| m.to_string()).unwrap_or_default()
    );
    expect_no_ping(
        "db",
        &c,
        "192.168.1.250",
        "ipvlan containers cannot reach the parent's own address",
    )?;
    teardown(sb, &net, &[&c])?;

    section("db_net_ipv: the same network from the defaults");
    let net = sb.create("-d ipvlan --subnet=192.168.1.0/24 -o parent=eth0 db_net_ipv")?;
    ensure!(
        common::mode_of(&net) == "l2",
        "mode {}",
        common::mode_of(&net)
    );
    ensure!(
        net.gateways() == ["192.168.1.1".parse::<std::net::IpAddr>().unwrap()],
        "gateways {:?}",
        net.gateways()
    );
    let ipv1 = sb.container()?;
    let ipv2 = sb.container()?;
    sb.run(&net, &ipv1, "ipv1", &[])?;
    sb.run(&net, &ipv2, "ipv2", &[])?;
    // `ping -c 4 ipv1`: the name comes from the network's hosts entries.
    let hosts = net.hosts_entries().context("hosts entries")?;
    let ipv1_address = hosts
        .lines()
        .find_map(|l| {
            l.split_once('\t')
                .filter(|(_, name)| name.split(' ').any(|n| n == "ipv1"))
                .map(|(a, _)| a.to_owned())
        })
        .ok_or(format!("ipv1 is not in the hosts entries: {hosts:?}"))?;
    ensure!(
        ipv1_address == "192.168.1.2",
        "ipv1 resolves to {ipv1_address}"
    );
    println!("  ipv1 resolves to {ipv1_address} (hosts entries)");
    expect_ping("ipv2", &ipv2, &ipv1_address)?;
    teardown(sb, &net, &[&ipv1, &ipv2])?;

    section("ipvlan20 and ipvlan30 on 802.1q sub-interfaces");
    let vlans = sb.has(KernelFeature::Vlan);
    let net20 = sb.create(&format!(
        "-d ipvlan --subnet=192.168.20.0/24 --gateway=192.168.20.1 -o parent={} ipvlan20",
        sb.vlan_or_eth0("eth0.20")
    ))?;
    let t1 = sb.container()?;
    let t2 = sb.container()?;
    sb.run(&net20, &t1, "ivlan_test1", &[])?;
    sb.run(&net20, &t2, "ivlan_test2", &[])?;
    expect_ping("ivlan_test1", &t1, "192.168.20.3")?;
    expect_ping("ivlan_test2", &t2, "192.168.20.2")?;
    if vlans {
        let link = sb.host_link("eth0.20").ok_or("eth0.20 was not created")?;
        ensure!(
            link.kind == Some(LinkKind::Vlan { id: 20 }) && link.up,
            "eth0.20: {:?}",
            link.kind
        );
    } else {
        teardown(sb, &net20, &[&t1, &t2])?;
    }
    let net30 = sb.create(&format!(
        "-d ipvlan --subnet=192.168.30.0/24 --gateway=192.168.30.1 -o parent={} -o ipvlan_mode=l2 ipvlan30",
        sb.vlan_or_eth0("eth0.30")
    ))?;
    let t3 = sb.container()?;
    let t4 = sb.container()?;
    let e3 = sb.run(&net30, &t3, "ivlan_test3", &[])?;
    sb.run(&net30, &t4, "ivlan_test4", &[])?;
    expect_endpoint(&e3, &["192.168.30.2/24"])?;
    // $ ip route
    //   default via 192.168.30.1 dev eth0
    //   192.168.30.0/24 dev eth0  src 192.168.30.2
    show("ivlan_test3", &t3, "eth0")?;
    expect_routes(
        "ivlan_test3",
        &t3,
        IpFamily::V4,
        &[
            "default via 192.168.30.1 dev eth0",
            "192.168.30.0/24 dev eth0",
        ],
    )?;
    expect_ping("ivlan_test4", &t4, "192.168.30.2")?;
    if vlans {
        expect_no_ping(
            "ivlan_test1",
            &t1,
            "192.168.30.2",
            "different VLANs need a router between them",
        )?;
        teardown(sb, &net20, &[&t1, &t2])?;
    }
    teardown(sb, &net30, &[&t3, &t4])?;

    section("ipvlan114: two subnets in L2 mode");
    let net = sb.create(&format!(
        "-d ipvlan --subnet=192.168.114.0/24 --subnet=192.168.116.0/24 --gateway=192.168.114.254 \
         --gateway=192.168.116.254 -o parent={} -o ipvlan_mode=l2 ipvlan114",
        sb.vlan_or_eth0("eth0.114")
    ))?;
    let a = sb.container()?;
    let b = sb.container()?;
    let o = sb.container()?;
    sb.run(&net, &a, "a114", &["192.168.114.10"])?;
    sb.run(&net, &b, "b114", &["192.168.114.11"])?;
    sb.run(&net, &o, "c116", &["192.168.116.10"])?;
    expect_routes(
        "a114",
        &a,
        IpFamily::V4,
        &["default via 192.168.114.254 dev eth0"],
    )?;
    expect_routes(
        "c116",
        &o,
        IpFamily::V4,
        &["default via 192.168.116.254 dev eth0"],
    )?;
    expect_ping("b114", &b, "192.168.114.10")?;
    expect_no_ping(
        "c116",
        &o,
        "192.168.114.10",
        "in L2 mode another subnet needs an external router",
    )?;
    teardown(sb, &net, &[&a, &b, &o])?;

    section("v6ipvlan139: an IPv6 subnet; IPv4 from the default pool");
    // The guide's host has docker0 on 172.17.0.0/16, so Docker's default
    // pool gives the next one, 172.18.0.0/16.
    let uplink = sb.host_link("uplink0").ok_or("no uplink0")?;
    sb.nl
        .add_address(uplink.index, "172.17.0.1/16".parse().unwrap())
        .context("add 172.17.0.1/16 (docker0's) to uplink0")?;
    println!("  (172.17.0.1/16 on the sandbox's uplink0 stands in for the guide's docker0)");
    let net = sb.create(&format!(
        "-d ipvlan --subnet=2001:db8:abc2::/64 --gateway=2001:db8:abc2::22 -o parent={} v6ipvlan139",
        sb.vlan_or_eth0("eth0.139")
    ))?;
    ensure!(
        common::has_subnet(&net, "172.18.0.0/16"),
        "no 172.18.0.0/16 default subnet"
    );
    let a = sb.container()?;
    let b = sb.container()?;
    let ea = sb.run(&net, &a, "first", &[])?;
    let eb = sb.run(&net, &b, "second", &[])?;
    expect_endpoint(&ea, &["172.18.0.2/16", "2001:db8:abc2::1/64"])?;
    expect_endpoint(&eb, &["172.18.0.3/16", "2001:db8:abc2::2/64"])?;
    show("first", &a, "eth0")?;
    let v6 = expect_routes(
        "first",
        &a,
        IpFamily::V6,
        &[
            "2001:db8:abc2::/64 dev eth0",
            "default via 2001:db8:abc2::22 dev eth0",
        ],
    )?;
    common::expect_ipv6_default_metric(&v6)?;
    expect_ping("second", &b, "2001:db8:abc2::1")?;
    teardown(sb, &net, &[&a, &b])?;

    section("ipvlan140: dual stack, two IPv4 subnets, explicit gateways");
    let net = sb.create(&format!(
        "-d ipvlan --subnet=192.168.140.0/24 --subnet=192.168.142.0/24 --gateway=192.168.140.1 \
         --gateway=192.168.142.1 --subnet=2001:db8:abc9::/64 --gateway=2001:db8:abc9::22 -o parent={} \
         -o ipvlan_mode=l2 ipvlan140",
        sb.vlan_or_eth0("eth0.140")
    ))?;
    let a = sb.container()?;
    let b = sb.container()?;
    sb.run(&net, &a, "first", &[])?;
    expect_addresses(
        "first",
        &a,
        "eth0",
        &["192.168.140.2/24", "2001:db8:abc9::1/64"],
    )?;
    show("first", &a, "eth0")?;
    expect_routes(
        "first",
        &a,
        IpFamily::V4,
        &[
            "default via 192.168.140.1 dev eth0",
            "192.168.140.0/24 dev eth0",
        ],
    )?;
    expect_routes(
        "first",
        &a,
        IpFamily::V6,
        &[
            "2001:db8:abc9::/64 dev eth0",
            "default via 2001:db8:abc9::22 dev eth0",
        ],
    )?;
    sb.run(&net, &b, "second", &["192.168.140.10"])?;
    expect_ping("second", &b, "192.168.140.2")?;
    teardown(sb, &net, &[&a, &b])?;

    let links = sb.host_links()?;
    ensure!(
        links == ["eth0", "lo", "uplink0"],
        "links left on the host: {links:?}"
    );
    Ok(())
}
