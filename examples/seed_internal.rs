//! Seed: Docker's ipvlan guide, `--internal` and networks without a parent
//! (`isolated1`, `isolated2`, `isolated3`).
//!
//! Asserts: leaving out `-o parent` (isolated1) and `--internal`
//! (isolated2) give identical networks: internal, on a dummy parent that
//! underlay creates and owns (`di-` and 12 characters of the network id);
//! `isolated3`, with no subnet either, gets Docker's next default pool,
//! 172.18.0.0/16 on the guide's host whose `docker0` holds 172.17.0.0/16 (the
//! sandbox puts 172.17.0.1/16 on its `uplink0` to stand in for it); the
//! containers `cid1`, `cid2`, `cid3` get the first address of their subnet
//! and no default route; two containers on one isolated network reach each
//! other, containers on different isolated networks do not; `docker network
//! rm` deletes the dummy parents.
//!
//! `cargo run --example seed_internal` as root; needs ipvlan and dummy
//! links (exits 77, "skipped", on a kernel without them).

#[path = "common/mod.rs"]
mod common;

use common::{
    ensure, expect_endpoint, expect_no_default_route, expect_no_ping, expect_ping, section, show,
    Context, Outcome, Sandbox,
};
use underlay::capability::KernelFeature;
use underlay::link::LinkKind;
use underlay::parent::ParentKind;
use underlay::route::IpFamily;
use underlay::Network;

fn main() {
    common::main_with(
        "seed: internal networks (isolated1, isolated2, isolated3)",
        &[KernelFeature::Ipvlan, KernelFeature::Dummy],
        scenario,
    )
}

/// Checks that `net` is internal on an owned, up dummy parent.
fn check_isolated(sb: &Sandbox, net: &Network) -> Outcome {
    let parent = net.parent();
    ensure!(
        parent.kind == ParentKind::Dummy
            && parent.name == format!("di-{}", &net.id()[..12])
            && parent.owned(),
        "{}: parent {parent:?}",
        net.name()
    );
    ensure!(net.internal(), "{} is not internal", net.name());
    let link = sb
        .host_link(&parent.name)
        .ok_or(format!("{} was not created", parent.name))?;
    ensure!(
        link.kind == Some(LinkKind::Dummy) && link.up,
        "{}: {:?} up={}",
        parent.name,
        link.kind,
        link.up
    );
    println!(
        "  {}: internal, on the dummy {} (created and owned by underlay)",
        net.name(),
        parent.name
    );
    Ok(())
}

fn scenario(sb: &Sandbox) -> Outcome {
    section("three isolated networks");
    let uplink = sb.host_link("uplink0").ok_or("no uplink0")?;
    sb.nl
        .add_address(uplink.index, "172.17.0.1/16".parse().unwrap())
        .context("add 172.17.0.1/16 (docker0's) to uplink0")?;
    println!("  (172.17.0.1/16 on the sandbox's uplink0 stands in for the guide's docker0)");
    let n1 = sb.create("-d ipvlan --subnet=192.168.10.0/24 isolated1")?;
    let n2 = sb.create("-d ipvlan --subnet=192.168.11.0/24 --internal isolated2")?;
    let n3 = sb.create("-d ipvlan isolated3")?;
    for net in [&n1, &n2, &n3] {
        check_isolated(sb, net)?;
    }
    ensure!(
        n1.driver() == n2.driver()
            && n1.options().get("ipvlan_mode") == n2.options().get("ipvlan_mode"),
        "isolated1 and isolated2 differ: {:?} / {:?}",
        n1.options(),
        n2.options()
    );
    ensure!(
        common::has_subnet(&n3, "172.18.0.0/16"),
        "isolated3 did not get 172.18.0.0/16"
    );

    section("docker run --net=isolatedN --name=cidN");
    let cid1 = sb.container()?;
    let cid2 = sb.container()?;
    let cid3 = sb.container()?;
    let peer = sb.container()?;
    expect_endpoint(&sb.run(&n1, &cid1, "cid1", &[])?, &["192.168.10.2/24"])?;
    expect_endpoint(&sb.run(&n2, &cid2, "cid2", &[])?, &["192.168.11.2/24"])?;
    expect_endpoint(&sb.run(&n3, &cid3, "cid3", &[])?, &["172.18.0.2/16"])?;
    expect_endpoint(&sb.run(&n1, &peer, "peer1", &[])?, &["192.168.10.3/24"])?;
    show("cid1", &cid1, "eth0")?;
    for (label, ns) in [("cid1", &cid1), ("cid2", &cid2), ("cid3", &cid3)] {
        expect_no_default_route(label, ns, IpFamily::V4)?;
    }

    section("isolation");
    expect_ping("peer1", &peer, "192.168.10.2")?;
    expect_no_ping(
        "cid1",
        &cid1,
        "192.168.11.2",
        "isolated networks have no way out",
    )?;
    expect_no_ping(
        "cid2",
        &cid2,
        "172.18.0.2",
        "isolated networks have no way out",
    )?;

    section("teardown");
    let parents: Vec<String> = [&n1, &n2, &n3]
        .iter()
        .map(|n| n.parent().name.clone())
        .collect();
    for (net, ns) in [(&n1, &cid1), (&n2, &cid2), (&n3, &cid3), (&n1, &peer)] {
        net.detach(ns).context("detach")?;
    }
    for name in ["isolated1", "isolated2", "isolated3"] {
        sb.remove(name)?;
    }
    for parent in &parents {
        ensure!(
            sb.host_link(parent).is_none(),
            "{parent} survived docker network rm"
        );
    }
    let links = sb.host_links()?;
    ensure!(
        links == ["eth0", "lo", "uplink0"],
        "links left on the host: {links:?}"
    );
    Ok(())
}
