//! Seed: Docker's ipvlan guide, "Dual Stack IPv4 IPv6 Ipvlan L3 Mode"
//! (`ipnet110`: 192.168.110.0/24, 192.168.112.0/24 and 2001:db8:abc6::/64
//! on `eth0`, `-o ipvlan_mode=l3`).
//!
//! Asserts: containers get one address of each family (requested or the
//! lowest free after the inferred gateways), and the guide's routes for
//! both families: `default dev eth0 scope link` and `default dev eth0
//! metric 1024`, next to the connected `192.168.112.0/24 dev eth0` and
//! `2001:db8:abc6::/64 dev eth0`, with no gateway anywhere; containers in
//! different IPv4 subnets ping each other (L3 routes between subnets on one
//! parent), and over IPv6; the guide's four containers in "separate
//! terminals" cannot all run, as the fourth asks for 192.168.112.50 that the
//! third holds: refused with an error naming the address and its holder,
//! then granted once the third is gone; the `--ip6` address of a removed
//! container can be taken again at once (the guide's note on "Address
//! already in use"); `docker network rm` leaves `eth0`.
//!
//! `cargo run --example seed_ipvlan_dual_stack_l3` as root; needs ipvlan
//! (exits 77, "skipped", on a kernel without it).

#[path = "common/mod.rs"]
mod common;

use common::{
    ensure, expect_endpoint, expect_ping, expect_routes, section, show, Context, Outcome, Sandbox,
};
use underlay::capability::KernelFeature;
use underlay::endpoint::AttachOptions;
use underlay::netns::NetNs;
use underlay::route::IpFamily;

fn main() {
    common::main_with(
        "seed: dual-stack ipvlan L3 (ipnet110)",
        &[KernelFeature::Ipvlan],
        scenario,
    )
}

/// Checks the L3 routes of both families, as the guide prints them.
fn check_l3_routes(label: &str, ns: &NetNs, v4_subnet: &str) -> Outcome {
    let v4 = expect_routes(
        label,
        ns,
        IpFamily::V4,
        &["default dev eth0", &format!("{v4_subnet} dev eth0")],
    )?;
    let v6 = expect_routes(
        label,
        ns,
        IpFamily::V6,
        &["default dev eth0", "2001:db8:abc6::/64 dev eth0"],
    )?;
    let default4 = v4
        .iter()
        .find(|(_, r)| r.is_default())
        .map(|(_, r)| r)
        .ok_or("no IPv4 default")?;
    ensure!(
        default4.link_scope,
        "{label}: the IPv4 default route is not `scope link`"
    );
    let default6 = v6
        .iter()
        .find(|(_, r)| r.is_default())
        .map(|(_, r)| r)
        .ok_or("no IPv6 default")?;
    ensure!(
        default6.metric == Some(1024),
        "{label}: IPv6 default metric {:?}, the guide shows 1024",
        default6.metric
    );
    for (text, route) in v4.iter().chain(v6.iter()) {
        ensure!(
            route.gateway.is_none(),
            "{label}: L3 routes have no gateway: {text}"
        );
    }
    Ok(())
}

fn scenario(sb: &Sandbox) -> Outcome {
    section("the host's eth0 is on another subnet (inet 192.168.1.250/24)");
    let eth0 = sb.host_link("eth0").ok_or("no eth0")?;
    sb.nl
        .add_address(eth0.index, "192.168.1.250/24".parse().unwrap())
        .context("add 192.168.1.250/24 to eth0")?;

    section("create ipnet110: IPv4 + IPv6, L3, gateways set to the device");
    let net = sb.create(
        "-d ipvlan --subnet=192.168.110.0/24 --subnet=192.168.112.0/24 --subnet=2001:db8:abc6::/64 -o parent=eth0 -o ipvlan_mode=l3 ipnet110",
    )?;
    ensure!(
        common::mode_of(&net) == "l3" && !net.internal(),
        "mode {} internal {}",
        common::mode_of(&net),
        net.internal()
    );

    section("four containers, as in the guide's separate terminals");
    let c1 = sb.container()?;
    let c2 = sb.container()?;
    let c3 = sb.container()?;
    let c4 = sb.container()?;
    let e1 = sb.run(&net, &c1, "first", &[])?;
    expect_endpoint(&e1, &["192.168.110.2/24", "2001:db8:abc6::2/64"])?;
    let e2 = sb.run(&net, &c2, "second", &["2001:db8:abc6::10"])?;
    expect_endpoint(&e2, &["192.168.110.3/24", "2001:db8:abc6::10/64"])?;
    let e3 = sb.run(&net, &c3, "third", &["192.168.112.50"])?;
    expect_endpoint(&e3, &["192.168.112.50/24", "2001:db8:abc6::3/64"])?;
    println!(
        "$ docker run --net=ipnet110 --ip6=2001:db8:abc6::50 --ip=192.168.112.50 --name=fourth"
    );
    let both = AttachOptions::new()
        .name("fourth")
        .ip("2001:db8:abc6::50".parse().unwrap())
        .ip("192.168.112.50".parse().unwrap());
    match net.attach(&c4, &both) {
        Ok(_) => return Err("192.168.112.50 was handed out twice".into()),
        Err(e) => {
            println!("  refused while third runs: {e}");
            ensure!(
                e.to_string().contains("192.168.112.50") && e.to_string().contains("third"),
                "the error does not name the address and its holder: {e}"
            );
        }
    }
    ensure!(
        common::link_names(&c4)? == ["lo"],
        "the refused attach left a link"
    );
    net.detach(&c3).context("stop third")?;
    let e4 = net
        .attach(&c4, &both)
        .context("attach fourth after third stopped")?;
    println!("  fourth: {} {:?}", e4.ifname(), e4.addresses());
    expect_endpoint(&e4, &["192.168.112.50/24", "2001:db8:abc6::50/64"])?;

    section("interfaces and routing tables");
    show("fourth", &c4, "eth0")?;
    check_l3_routes("fourth", &c4, "192.168.112.0/24")?;
    check_l3_routes("first", &c1, "192.168.110.0/24")?;

    section("connectivity across subnets and families");
    expect_ping("first", &c1, "192.168.112.50")?;
    expect_ping("fourth", &c4, "192.168.110.2")?;
    expect_ping("fourth", &c4, "2001:db8:abc6::10")?;
    expect_ping("second", &c2, "2001:db8:abc6::50")?;

    section("a removed container's --ip6 address is free again at once");
    net.detach(&c2).context("stop second")?;
    let again = sb.run(&net, &c2, "second_again", &["2001:db8:abc6::10"])?;
    ensure!(
        again
            .addresses()
            .iter()
            .any(|a| a.to_string() == "2001:db8:abc6::10/64"),
        "second_again: {:?}",
        again.addresses()
    );
    expect_ping("fourth", &c4, "2001:db8:abc6::10")?;

    section("teardown");
    for ns in [&c1, &c2, &c4] {
        net.detach(ns).context("detach")?;
    }
    sb.remove("ipnet110")?;
    ensure!(sb.host_link("eth0").is_some(), "eth0 was deleted");
    Ok(())
}
