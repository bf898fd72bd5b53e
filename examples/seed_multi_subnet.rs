//! Seed: Docker's macvlan guide, "Multi-Subnet Macvlan 802.1q Trunking"
//! (`mcv101`: 10.1.20.0/24 and 10.1.10.0/24 on `eth0.101`).
//!
//! Asserts: `eth0.101` appears in `ip link` after the network is created
//! (an 802.1q link with id 101, up, owned by underlay); containers started
//! with `--ip` in either subnet get those addresses and a default route via
//! their own subnet's gateway (10.1.20.1 or 10.1.10.1); containers on the
//! same subnet ping each other, and containers on different subnets do not
//! (that takes an external router); after the containers and the network
//! are removed, `ip link` shows the links cleaned up.
//!
//! On a kernel without 802.1q VLAN support, `eth0` takes the place of
//! `eth0.101`, as the guide allows ("Any examples using a sub-interface like
//! `eth0.10` can be replaced with `eth0`"); the example says so.
//!
//! `cargo run --example seed_multi_subnet` as root.

#[path = "common/mod.rs"]
mod common;

use common::{
    ensure, expect_endpoint, expect_no_ping, expect_ping, expect_routes, section, show, Context,
    Outcome, Sandbox,
};
use underlay::route::IpFamily;

fn main() {
    common::main_with(
        "seed: multi-subnet macvlan 802.1q trunk (mcv101)",
        &[],
        scenario,
    )
}

fn scenario(sb: &Sandbox) -> Outcome {
    let parent = sb.vlan_or_eth0("eth0.101");
    section("create mcv101 with two subnets");
    let net = sb.create(&format!(
        "-d macvlan --subnet=10.1.20.0/24 --subnet=10.1.10.0/24 --gateway=10.1.20.1 --gateway=10.1.10.1 -o parent={parent} mcv101"
    ))?;
    // "View Links after to network create `ip link`"
    println!("  ip link: {}", sb.host_links()?.join(" "));
    if parent == "eth0.101" {
        common::expect_owned_vlan_parent(sb, &net, "eth0.101", 101)?;
    }

    section("test 10.1.20.0/24 connectivity");
    let c9 = sb.container()?;
    let c10 = sb.container()?;
    let e9 = sb.run(&net, &c9, "c20_9", &["10.1.20.9"])?;
    let e10 = sb.run(&net, &c10, "c20_10", &["10.1.20.10"])?;
    expect_endpoint(&e9, &["10.1.20.9/24"])?;
    expect_endpoint(&e10, &["10.1.20.10/24"])?;
    show("c20_10", &c10, "eth0")?;
    expect_routes(
        "c20_10",
        &c10,
        IpFamily::V4,
        &["default via 10.1.20.1 dev eth0", "10.1.20.0/24 dev eth0"],
    )?;
    // The guide's second container pings its own address (10.1.20.10), a
    // slip; it means the first one.
    expect_ping("c20_10", &c10, "10.1.20.9")?;

    section("test 10.1.10.0/24 connectivity");
    let d10 = sb.container()?;
    let d9 = sb.container()?;
    let f10 = sb.run(&net, &d10, "c10_10", &["10.1.10.10"])?;
    let f9 = sb.run(&net, &d9, "c10_9", &["10.1.10.9"])?;
    expect_endpoint(&f10, &["10.1.10.10/24"])?;
    expect_endpoint(&f9, &["10.1.10.9/24"])?;
    show("c10_9", &d9, "eth0")?;
    expect_routes(
        "c10_9",
        &d9,
        IpFamily::V4,
        &["default via 10.1.10.1 dev eth0", "10.1.10.0/24 dev eth0"],
    )?;
    expect_ping("c10_9", &d9, "10.1.10.10")?;

    section("different subnets need an external router");
    expect_no_ping(
        "c20_9",
        &c9,
        "10.1.10.10",
        "no router between 10.1.20.0/24 and 10.1.10.0/24",
    )?;

    section("delete all containers, then all networks; ip link is clean again");
    for (label, ns) in [
        ("c20_9", &c9),
        ("c20_10", &c10),
        ("c10_10", &d10),
        ("c10_9", &d9),
    ] {
        ensure!(
            net.detach(ns).context(format!("docker rm -f {label}"))?,
            "{label} was not attached"
        );
        // Off the network at once; the link is deleted just after.
        common::wait_for_no_links(ns).context(format!("{label} kept its link"))?;
    }
    sb.remove("mcv101")?;
    let links = sb.host_links()?;
    println!("  ip link: {}", links.join(" "));
    ensure!(
        links == ["eth0", "lo", "uplink0"],
        "links left on the host: {links:?}"
    );
    Ok(())
}
