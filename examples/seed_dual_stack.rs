//! Seed: Docker's macvlan guide, "Dual Stack IPv4 IPv6 Macvlan Bridge Mode"
//! (`macvlan216`: 192.168.216.0/24, 192.168.218.0/24 and
//! 2001:db8:abc8::/64 with gateway 2001:db8:abc8::10, on `eth0.218`).
//!
//! Asserts: every container gets one address of each family; the first
//! IPv6 address handed out is 2001:db8:abc8::1 (the gateway ::10 is not),
//! as the guide's container shows; a container at 192.168.216.11 has the
//! guide's routes `default via 192.168.216.1 dev eth0`,
//! `192.168.216.0/24 dev eth0` and `default via 2001:db8:abc8::10 dev eth0
//! metric 1024`; one on 192.168.218.0/24 routes via 192.168.218.1;
//! containers on the same subnet ping each other, over IPv6 too, at once
//! (no duplicate address detection delay); `--ip` and `--ip6` together give
//! exactly those two addresses; removing the network removes `eth0.218`.
//!
//! On a kernel without 802.1q VLAN support, `eth0` takes the place of
//! `eth0.218`, as the guide allows; the example says so.
//!
//! `cargo run --example seed_dual_stack` as root.

#[path = "common/mod.rs"]
mod common;

use common::{
    ensure, expect_addresses, expect_endpoint, expect_ping, expect_routes, section, show, Context,
    Outcome, Sandbox,
};
use underlay::route::IpFamily;

fn main() {
    common::main_with("seed: dual-stack macvlan (macvlan216)", &[], scenario)
}

fn scenario(sb: &Sandbox) -> Outcome {
    let parent = sb.vlan_or_eth0("eth0.218");
    section("create macvlan216: two IPv4 subnets and one IPv6 subnet");
    let net = sb.create(&format!(
        "-d macvlan --subnet=192.168.216.0/24 --subnet=192.168.218.0/24 --gateway=192.168.216.1 \
         --gateway=192.168.218.1 --ipv6 --subnet=2001:db8:abc8::/64 --gateway=2001:db8:abc8::10 \
         -o parent={parent} -o macvlan_mode=bridge macvlan216"
    ))?;
    ensure!(net.ipv6(), "IPv6 is off");
    if parent == "eth0.218" {
        ensure!(
            sb.host_link("eth0.218").is_some_and(|l| l.up),
            "eth0.218 was not created up"
        );
        ensure!(net.parent().owned(), "eth0.218 is not owned by underlay");
    }

    section("a container on each IPv4 subnet");
    let t216 = sb.container()?;
    let t218 = sb.container()?;
    let e216 = sb.run(&net, &t216, "macnet216_test", &["192.168.216.10"])?;
    let e218 = sb.run(&net, &t218, "macnet218_test", &["192.168.218.10"])?;
    expect_endpoint(&e216, &["192.168.216.10/24", "2001:db8:abc8::1/64"])?;
    expect_endpoint(&e218, &["192.168.218.10/24", "2001:db8:abc8::2/64"])?;

    section("ping the first container from 192.168.216.11, and view its details");
    let p = sb.container()?;
    sb.run(&net, &p, "ping216", &["192.168.216.11"])?;
    expect_ping("ping216", &p, "192.168.216.10")?;
    show("ping216", &p, "eth0")?;
    // The guide:
    //   default via 192.168.216.1 dev eth0
    //   192.168.216.0/24 dev eth0 src 192.168.216.11
    //   2001:db8:abc8::/64 dev eth0 proto kernel metric 256
    //   default via 2001:db8:abc8::10 dev eth0 metric 1024
    expect_routes(
        "ping216",
        &p,
        IpFamily::V4,
        &[
            "default via 192.168.216.1 dev eth0",
            "192.168.216.0/24 dev eth0",
        ],
    )?;
    let v6 = expect_routes(
        "ping216",
        &p,
        IpFamily::V6,
        &[
            "2001:db8:abc8::/64 dev eth0",
            "default via 2001:db8:abc8::10 dev eth0",
        ],
    )?;
    common::expect_ipv6_default_metric(&v6)?;
    net.detach(&p).context("--rm ping216")?;

    section("ping the container on 192.168.218.0/24 from 192.168.218.11");
    sb.run(&net, &p, "ping218", &["192.168.218.11"])?;
    expect_routes(
        "ping218",
        &p,
        IpFamily::V4,
        &[
            "default via 192.168.218.1 dev eth0",
            "192.168.218.0/24 dev eth0",
        ],
    )?;
    expect_ping("ping218", &p, "192.168.218.10")?;
    net.detach(&p).context("--rm ping218")?;

    section("--ip6=2001:db8:abc8::20, pinged over IPv6 at once");
    let v6c = sb.container()?;
    let e20 = sb.run(&net, &v6c, "v6", &["2001:db8:abc8::20"])?;
    ensure!(
        e20.addresses()
            .iter()
            .any(|a| a.to_string() == "2001:db8:abc8::20/64"),
        "v6: {:?}",
        e20.addresses()
    );
    sb.run(&net, &p, "ping6", &[])?;
    expect_ping("ping6", &p, "2001:db8:abc8::20")?;
    net.detach(&p).context("--rm ping6")?;

    section("both families requested: --ip=192.168.216.50 --ip6=2001:db8:abc8::50");
    sb.run(&net, &p, "dual", &["192.168.216.50", "2001:db8:abc8::50"])?;
    // inet 192.168.216.50/24, inet6 2001:db8:abc8::50/64
    expect_addresses(
        "dual",
        &p,
        "eth0",
        &["192.168.216.50/24", "2001:db8:abc8::50/64"],
    )?;
    show("dual", &p, "eth0")?;
    expect_ping("dual", &p, "2001:db8:abc8::1")?;

    section("teardown");
    ensure!(
        sb.host.remove_network("macvlan216").is_err(),
        "network rm must refuse a network with containers"
    );
    sb.host
        .force_remove_network("macvlan216")
        .context("remove macvlan216 with its containers (docker rm -f, docker network rm)")?;
    // The containers are off the network; their links are deleted in the
    // background, and this waits for that.
    sb.host.settle();
    println!("$ docker rm -f ...; docker network rm macvlan216");
    for (label, ns) in [
        ("macnet216_test", &t216),
        ("macnet218_test", &t218),
        ("v6", &v6c),
        ("dual", &p),
    ] {
        ensure!(common::link_names(ns)? == ["lo"], "{label} kept its link");
    }
    let links = sb.host_links()?;
    ensure!(
        links == ["eth0", "lo", "uplink0"],
        "links left on the host: {links:?}"
    );
    Ok(())
}
