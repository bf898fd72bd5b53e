//! Seed: Docker's ipvlan guide, "IPVlan L3 Mode Example" (`ipnet210`:
//! 192.168.214.0/24 and 10.1.214.0/24, `-o ipvlan_mode=l3`, no parent).
//!
//! Asserts: with no `-o parent`, the network gets a dummy parent made (and
//! owned) by underlay and is isolated; the containers get the requested
//! addresses in both subnets and an ipvlan L3 link; a container in
//! 192.168.214.0/24 pings one in 10.1.214.0/24 and back (L3 routes between
//! subnets on the same parent); `docker network rm` deletes the dummy
//! parent. The guide's route, `default dev eth0` (no gateway: ARP and
//! broadcasts are filtered in L3), is asserted on the same network given
//! `-o parent=eth0`: underlay gives internal networks no default route, and
//! an internal L3 network's containers a route to each other subnet instead
//! (the example accepts either and says which it found).
//!
//! `cargo run --example seed_ipvlan_l3` as root; needs ipvlan and dummy
//! links (exits 77, "skipped", on a kernel without them).

#[path = "common/mod.rs"]
mod common;

use common::{
    ensure, expect_endpoint, expect_ping, expect_routes, section, show, Context, Outcome, Sandbox,
};
use underlay::capability::KernelFeature;
use underlay::link::{IpvlanFlag, IpvlanMode, LinkKind};
use underlay::parent::ParentKind;
use underlay::route::IpFamily;

fn main() {
    common::main_with(
        "seed: ipvlan L3 mode (ipnet210)",
        &[KernelFeature::Ipvlan, KernelFeature::Dummy],
        scenario,
    )
}

fn scenario(sb: &Sandbox) -> Outcome {
    section("create the ipvlan L3 network, with no parent");
    let net = sb.create(
        "-d ipvlan --subnet=192.168.214.0/24 --subnet=10.1.214.0/24 -o ipvlan_mode=l3 ipnet210",
    )?;
    let parent = net.parent().clone();
    ensure!(
        parent.kind == ParentKind::Dummy && parent.name == format!("di-{}", &net.id()[..12]),
        "parent {:?}, expected an owned dummy di-{}",
        parent,
        &net.id()[..12]
    );
    let dummy = sb
        .host_link(&parent.name)
        .ok_or(format!("{} was not created", parent.name))?;
    ensure!(
        dummy.kind == Some(LinkKind::Dummy) && dummy.up,
        "{}: {:?} up={}",
        parent.name,
        dummy.kind,
        dummy.up
    );
    ensure!(net.internal(), "a network without a parent is internal");
    ensure!(
        common::mode_of(&net) == "l3",
        "mode {}",
        common::mode_of(&net)
    );

    section("containers in both subnets");
    let a = sb.container()?;
    let b = sb.container()?;
    let ea = sb.run(&net, &a, "c214_10", &["192.168.214.10"])?;
    let eb = sb.run(&net, &b, "c10_10", &["10.1.214.10"])?;
    expect_endpoint(&ea, &["192.168.214.10/24"])?;
    expect_endpoint(&eb, &["10.1.214.10/24"])?;
    let link = a
        .netlink()
        .and_then(|nl| nl.link_by_name("eth0"))
        .context("read eth0")?;
    ensure!(
        link.kind
            == Some(LinkKind::Ipvlan {
                mode: IpvlanMode::L3,
                flag: IpvlanFlag::Bridge
            }),
        "the container's eth0 is {:?}",
        link.kind
    );
    show("c214_10", &a, "eth0")?;
    // Inside an L3 mode container, the guide shows:
    //   default dev eth0
    //   192.168.120.0/24 dev eth0  src 192.168.120.2
    // underlay keeps internal networks free of default routes and gives an
    // internal L3 network's containers a route to each of its other subnets
    // instead: the same reach inside the network, no way out of it.
    for (label, ns, own, other) in [
        ("c214_10", &a, "192.168.214.0/24", "10.1.214.0/24"),
        ("c10_10", &b, "10.1.214.0/24", "192.168.214.0/24"),
    ] {
        let routes = expect_routes(label, ns, IpFamily::V4, &[&format!("{own} dev eth0")])?;
        let has = |want: &str| routes.iter().any(|(text, _)| text == want);
        if has("default dev eth0") {
            println!("  {label}: default dev eth0, as in the guide");
        } else {
            ensure!(
                has(&format!("{other} dev eth0")),
                "{label}: neither the guide's `default dev eth0` nor a route to {other}: {:?}",
                routes.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>()
            );
            println!(
                "  note: {label} has `{other} dev eth0` where the guide prints `default dev eth0`: \
                 underlay gives internal networks no default route (see the routed variant below)"
            );
        }
    }

    section("L3 connectivity between the subnets");
    let c = sb.container()?;
    let d = sb.container()?;
    sb.run(&net, &c, "c214_9", &["192.168.214.9"])?;
    expect_ping("c214_9", &c, "10.1.214.10")?;
    sb.run(&net, &d, "c10_9", &["10.1.214.9"])?;
    expect_ping("c10_9", &d, "192.168.214.10")?;

    section("teardown");
    for ns in [&a, &b, &c, &d] {
        net.detach(ns).context("detach")?;
    }
    sb.remove("ipnet210")?;
    ensure!(
        sb.host_link(&parent.name).is_none(),
        "{} survived docker network rm",
        parent.name
    );

    section("the same network on a parent (\"the sub-interfaces can be swapped with eth0\")");
    let net = sb.create("-d ipvlan --subnet=192.168.214.0/24 --subnet=10.1.214.0/24 -o parent=eth0 -o ipvlan_mode=l3 ipnet210")?;
    ensure!(!net.internal(), "ipnet210 on eth0 is internal");
    sb.run(&net, &a, "c214_10", &["192.168.214.10"])?;
    sb.run(&net, &b, "c10_10", &["10.1.214.10"])?;
    show("c214_10", &a, "eth0")?;
    for (label, ns, own) in [
        ("c214_10", &a, "192.168.214.0/24"),
        ("c10_10", &b, "10.1.214.0/24"),
    ] {
        let routes = expect_routes(
            label,
            ns,
            IpFamily::V4,
            &["default dev eth0", &format!("{own} dev eth0")],
        )?;
        ensure!(
            routes.iter().all(|(_, r)| r.gateway.is_none()),
            "{label}: an L3 route with a gateway: {:?}",
            routes.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>()
        );
    }
    expect_ping("c214_10", &a, "10.1.214.10")?;
    expect_ping("c10_10", &b, "192.168.214.10")?;
    for ns in [&a, &b] {
        net.detach(ns).context("detach")?;
    }
    sb.remove("ipnet210")?;
    let links = sb.host_links()?;
    ensure!(
        links == ["eth0", "lo", "uplink0"],
        "links left on the host: {links:?}"
    );
    Ok(())
}
