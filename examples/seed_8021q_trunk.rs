//! Seed: Docker's macvlan guide, "Macvlan 802.1q Trunk Bridge Mode
//! Example Usage" (`macvlan50` on `eth0.50`, `macvlan60` on `eth0.60`).
//!
//! Asserts: creating each network creates its 802.1q sub-interface (VLAN
//! id 50 / 60 on `eth0`, up, owned by underlay, recorded as such);
//! `macvlan_mode=bridge` given explicitly is the default; the two
//! containers of each network ping each other; a container on VLAN 50
//! cannot reach one on VLAN 60; the guide's literal `-o parent=eth0.60 -o
//! -o macvlan_mode=bridge` (a typo) is refused naming `-o` and creates
//! nothing; `docker network rm` refuses while containers are attached and
//! then deletes `eth0.50` and `eth0.60` (it created them), never `eth0`.
//!
//! `cargo run --example seed_8021q_trunk` as root; needs 802.1q VLAN
//! support (exits 77, "skipped", on a kernel without it).

#[path = "common/mod.rs"]
mod common;

use common::{
    ensure, expect_endpoint, expect_no_ping, expect_ping, expect_routes, section, show, Context,
    Outcome, Sandbox,
};
use underlay::capability::KernelFeature;
use underlay::docker::network_create_args;
use underlay::route::IpFamily;

fn main() {
    common::main_with(
        "seed: macvlan 802.1q trunk (macvlan50, macvlan60)",
        &[KernelFeature::Vlan],
        scenario,
    )
}

fn scenario(sb: &Sandbox) -> Outcome {
    section("VLAN ID 50");
    let net50 = sb.create(
        "-d macvlan --subnet=192.168.50.0/24 --gateway=192.168.50.1 -o parent=eth0.50 macvlan50",
    )?;
    common::expect_owned_vlan_parent(sb, &net50, "eth0.50", 50)?;
    let t5 = sb.container()?;
    let t6 = sb.container()?;
    let e5 = sb.run(&net50, &t5, "macvlan_test5", &[])?;
    let e6 = sb.run(&net50, &t6, "macvlan_test6", &[])?;
    expect_endpoint(&e5, &["192.168.50.2/24"])?;
    expect_endpoint(&e6, &["192.168.50.3/24"])?;
    show("macvlan_test5", &t5, "eth0")?;
    expect_routes(
        "macvlan_test5",
        &t5,
        IpFamily::V4,
        &[
            "default via 192.168.50.1 dev eth0",
            "192.168.50.0/24 dev eth0",
        ],
    )?;
    expect_ping("macvlan_test5", &t5, "192.168.50.3")?;
    expect_ping("macvlan_test6", &t6, "192.168.50.2")?;

    section("VLAN ID 60");
    // The guide's command has a stray `-o`: refused, naming it, and nothing made.
    let typo = [
        "-d",
        "macvlan",
        "--subnet=192.168.60.0/24",
        "--gateway=192.168.60.1",
        "-o",
        "parent=eth0.60",
        "-o",
        "-o",
        "macvlan_mode=bridge",
        "macvlan60",
    ];
    println!(
        "$ docker network create {} (as printed in the guide)",
        typo.join(" ")
    );
    match network_create_args(typo).and_then(|b| sb.host.create_network(b)) {
        Ok(_) => return Err("the guide's `-o -o` typo was accepted".into()),
        Err(e) => {
            println!("  refused: {e}");
            ensure!(
                e.to_string().contains("-o"),
                "the error does not name -o: {e}"
            );
        }
    }
    ensure!(
        sb.host_link("eth0.60").is_none(),
        "the refused command created eth0.60"
    );
    let net60 = sb.create(
        "-d macvlan --subnet=192.168.60.0/24 --gateway=192.168.60.1 -o parent=eth0.60 -o macvlan_mode=bridge macvlan60",
    )?;
    ensure!(
        common::mode_of(&net60) == "bridge",
        "macvlan60 mode {}",
        common::mode_of(&net60)
    );
    common::expect_owned_vlan_parent(sb, &net60, "eth0.60", 60)?;
    let t7 = sb.container()?;
    let t8 = sb.container()?;
    let e7 = sb.run(&net60, &t7, "macvlan_test7", &[])?;
    sb.run(&net60, &t8, "macvlan_test8", &[])?;
    expect_endpoint(&e7, &["192.168.60.2/24"])?;
    expect_routes(
        "macvlan_test7",
        &t7,
        IpFamily::V4,
        &["default via 192.168.60.1 dev eth0"],
    )?;
    expect_ping("macvlan_test7", &t7, "192.168.60.3")?;
    expect_ping("macvlan_test8", &t8, "192.168.60.2")?;

    section("VLANs are isolated from each other");
    expect_no_ping(
        "macvlan_test5",
        &t5,
        "192.168.60.2",
        "VLAN 50 and VLAN 60 need a router between them",
    )?;
    expect_no_ping(
        "macvlan_test7",
        &t7,
        "192.168.50.2",
        "VLAN 60 and VLAN 50 need a router between them",
    )?;

    section("docker network rm deletes the sub-interfaces it created");
    match sb.host.remove_network("macvlan50") {
        Ok(()) => return Err("macvlan50 was removed with containers attached".into()),
        Err(e) => println!("  docker network rm macvlan50 with containers attached: refused: {e}"),
    }
    for (net, label, ns) in [
        (&net50, "macvlan_test5", &t5),
        (&net50, "macvlan_test6", &t6),
        (&net60, "macvlan_test7", &t7),
        (&net60, "macvlan_test8", &t8),
    ] {
        net.detach(ns).context(format!("docker rm -f {label}"))?;
    }
    sb.remove("macvlan50")?;
    ensure!(
        sb.host_link("eth0.50").is_none(),
        "eth0.50 survived docker network rm macvlan50"
    );
    ensure!(
        sb.host_link("eth0.60").is_some(),
        "eth0.60 went with macvlan50"
    );
    sb.remove("macvlan60")?;
    let links = sb.host_links()?;
    println!("  ip link: {}", links.join(" "));
    ensure!(
        links == ["eth0", "lo", "uplink0"],
        "links left on the host: {links:?}"
    );
    Ok(())
}
