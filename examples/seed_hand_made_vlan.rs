//! Seed: Docker's macvlan and ipvlan guides, "Manually Creating 802.1q
//! Links" (`eth0.40`, then a VLAN 40 link named `foo`, made by hand and used
//! as parents).
//!
//! Asserts: a VLAN link made by hand (here with the library's
//! `NewLink::vlan`, as `ip link add link eth0 name eth0.40 type vlan id 40`
//! would) is used as it is: the network records it as an existing parent
//! that underlay does not own; the containers ping each other; `docker
//! network rm` leaves the link in place, still up; the same holds for a
//! link with any name (`foo`), for macvlan and, where the kernel has it,
//! for ipvlan; the link goes only when deleted by hand (`ip link del foo`).
//!
//! `cargo run --example seed_hand_made_vlan` as root; needs 802.1q VLAN
//! support (exits 77, "skipped", on a kernel without it).

#[path = "common/mod.rs"]
mod common;

use common::{
    ensure, expect_endpoint, expect_ping, expect_routes, section, Context, Outcome, Sandbox,
};
use underlay::capability::KernelFeature;
use underlay::link::{LinkKind, NewLink};
use underlay::parent::ParentKind;
use underlay::route::IpFamily;

fn main() {
    common::main_with(
        "seed: manually created 802.1q links (eth0.40, foo)",
        &[KernelFeature::Vlan],
        scenario,
    )
}

/// `ip link add link eth0 name NAME type vlan id 40; ip link set NAME up`.
fn make_vlan(sb: &Sandbox, name: &str) -> Outcome {
    println!("$ ip link add link eth0 name {name} type vlan id 40 && ip link set {name} up");
    let eth0 = sb.host_link("eth0").ok_or("eth0 is gone")?;
    sb.nl
        .create_link(&NewLink::vlan(name, eth0.index, 40).up())
        .context(format!("create {name}"))?;
    let link = sb
        .host_link(name)
        .ok_or(format!("{name} not found after creating it"))?;
    ensure!(
        link.kind == Some(LinkKind::Vlan { id: 40 }) && link.up,
        "{name}: {:?} up={}",
        link.kind,
        link.up
    );
    Ok(())
}

/// Creates `NAME` on `parent` with `driver`, runs two containers that ping
/// each other, removes it, and checks that `parent` is still there and up.
fn network_on(sb: &Sandbox, driver: &str, name: &str, parent: &str) -> Outcome {
    let net = sb.create(&format!(
        "-d {driver} --subnet=192.168.40.0/24 --gateway=192.168.40.1 -o parent={parent} {name}"
    ))?;
    ensure!(
        net.parent().name == parent
            && net.parent().kind == ParentKind::Existing
            && !net.parent().owned(),
        "{name}: the hand-made {parent} is recorded as {:?}",
        net.parent()
    );
    let prefix = if driver == "macvlan" { "mcv" } else { "ivlan" };
    let a = sb.container()?;
    let b = sb.container()?;
    let ea = sb.run(&net, &a, &format!("{prefix}_test5"), &[])?;
    sb.run(&net, &b, &format!("{prefix}_test6"), &[])?;
    expect_endpoint(&ea, &["192.168.40.2/24"])?;
    expect_routes(
        "test5",
        &a,
        IpFamily::V4,
        &[
            "default via 192.168.40.1 dev eth0",
            "192.168.40.0/24 dev eth0",
        ],
    )?;
    expect_ping("test5", &a, "192.168.40.3")?;
    expect_ping("test6", &b, "192.168.40.2")?;
    net.detach(&a).context("detach test5")?;
    net.detach(&b).context("detach test6")?;
    sb.remove(name)?;
    let link = sb.host_link(parent).ok_or(format!(
        "docker network rm {name} deleted the hand-made {parent}"
    ))?;
    ensure!(link.up, "{parent} was left down");
    println!("  {parent} is still there and up after docker network rm {name}");
    Ok(())
}

fn scenario(sb: &Sandbox) -> Outcome {
    section("VLAN ID 40: eth0.40 made by hand");
    make_vlan(sb, "eth0.40")?;
    network_on(sb, "macvlan", "macvlan40", "eth0.40")?;
    // The kernel allows one VLAN 40 per master: delete it by hand before
    // the next example makes `foo` with the same id.
    println!("$ ip link del eth0.40");
    let link = sb.host_link("eth0.40").ok_or("eth0.40 is gone")?;
    sb.nl.delete_link(link.index).context("delete eth0.40")?;

    section("a VLAN sub-interface made by hand with any name: foo");
    make_vlan(sb, "foo")?;
    network_on(sb, "macvlan", "macvlan40", "foo")?;
    if sb.has(KernelFeature::Ipvlan) {
        section("the ipvlan guide's version: ipvlan40 on foo");
        network_on(sb, "ipvlan", "ipvlan40", "foo")?;
    } else {
        println!("note: this kernel lacks ipvlan: the ipvlan guide's ipvlan40 on foo is not run");
    }

    section("manually created links are cleaned up by hand");
    println!("$ ip link del foo");
    let link = sb.host_link("foo").ok_or("foo is gone")?;
    sb.nl.delete_link(link.index).context("delete foo")?;
    let links = sb.host_links()?;
    ensure!(
        links == ["eth0", "lo", "uplink0"],
        "links left on the host: {links:?}"
    );
    Ok(())
}
