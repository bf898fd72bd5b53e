//! Seed: Docker's macvlan guide, "MacVlan Bridge Mode Example Usage"
//! (`pub_net` on `eth0`, 172.16.86.0/24, gateway 172.16.86.1).
//!
//! Asserts what the guide says happens: the container started with
//! `--ip=172.16.86.10` gets it, the next one gets 172.16.86.2/24 with the
//! routes `default via 172.16.86.1 dev eth0` and `172.16.86.0/24 dev eth0`,
//! they ping each other, neither can ping the host's own `eth0` address
//! (172.16.86.250, "filtered by Linux"), the `--aux-address` variant never
//! hands out the excluded address, and `docker network rm` leaves `eth0`
//! alone.
//!
//! `cargo run --example seed_macvlan_bridge` as root; exits 0 when every
//! assertion held, 1 otherwise. Needs only macvlan.

#[path = "common/mod.rs"]
mod common;

use common::{
    ensure, expect_addresses, expect_endpoint, expect_no_ping, expect_ping, expect_routes, section,
    show, Context, Outcome, Sandbox,
};
use underlay::link::{LinkKind, MacvlanMode};
use underlay::parent::ParentKind;
use underlay::route::IpFamily;

fn main() {
    common::main_with("seed: macvlan bridge mode (pub_net)", &[], scenario)
}

fn scenario(sb: &Sandbox) -> Outcome {
    section("the host: eth0 on 172.16.86.0/24 (ip addr show eth0: inet 172.16.86.250/24)");
    let eth0 = sb.host_link("eth0").ok_or("no eth0 in the sandbox")?;
    sb.nl
        .add_address(eth0.index, "172.16.86.250/24".parse().unwrap())
        .context("add 172.16.86.250/24 to eth0")?;
    println!("  eth0: 172.16.86.250/24");

    section("create the macvlan network (macvlan_mode defaults to bridge)");
    let net = sb.create(
        "-d macvlan --subnet=172.16.86.0/24 --gateway=172.16.86.1 -o parent=eth0 pub_net",
    )?;
    ensure!(net.driver().name() == "macvlan", "driver: {}", net.driver());
    ensure!(
        common::mode_of(&net) == "bridge",
        "mode: {}",
        common::mode_of(&net)
    );
    ensure!(
        net.parent().name == "eth0" && net.parent().kind == ParentKind::Existing,
        "parent: {:?}",
        net.parent()
    );
    ensure!(
        net.gateways() == ["172.16.86.1".parse::<std::net::IpAddr>().unwrap()],
        "gateways: {:?}",
        net.gateways()
    );

    section("docker run --net=pub_net --ip=172.16.86.10; a second container pings the first");
    let first = sb.container()?;
    let second = sb.container()?;
    let e1 = sb.run(&net, &first, "first", &["172.16.86.10"])?;
    let e2 = sb.run(&net, &second, "second", &[])?;
    expect_endpoint(&e1, &["172.16.86.10/24"])?;
    expect_endpoint(&e2, &["172.16.86.2/24"])?;
    show("second", &second, "eth0")?;
    // The guide: `inet 172.16.86.2/24 scope global eth0`, and
    //   default via 172.16.86.1 dev eth0
    //   172.16.86.0/24 dev eth0 src 172.16.86.2
    expect_addresses("second", &second, "eth0", &["172.16.86.2/24"])?;
    expect_routes(
        "second",
        &second,
        IpFamily::V4,
        &[
            "default via 172.16.86.1 dev eth0",
            "172.16.86.0/24 dev eth0",
        ],
    )?;
    let link = second
        .netlink()
        .and_then(|nl| nl.link_by_name("eth0"))
        .context("read the container's eth0")?;
    ensure!(
        link.kind
            == Some(LinkKind::Macvlan {
                mode: MacvlanMode::Bridge
            }),
        "the container's eth0 is {:?}, expected a bridge-mode macvlan",
        link.kind
    );
    ensure!(
        link.mac.is_some() && link.mac == e2.mac() && link.mac != eth0.mac,
        "a macvlan endpoint has its own MAC address: link {:?}, recorded {:?}, parent {:?}",
        link.mac,
        e2.mac(),
        eth0.mac
    );
    expect_ping("second", &second, "172.16.86.10")?;
    expect_ping("first", &first, "172.16.86.2")?;
    expect_no_ping(
        "first",
        &first,
        "172.16.86.250",
        "macvlan containers cannot reach the parent's own address",
    )?;

    section("docker network rm pub_net (after the containers are gone)");
    ensure!(
        sb.host.remove_network("pub_net").is_err(),
        "removing a network with endpoints must be refused"
    );
    net.detach(&first).context("detach first")?;
    net.detach(&second).context("detach second")?;
    sb.remove("pub_net")?;
    ensure!(
        sb.host_link("eth0").is_some(),
        "eth0 was deleted with the network"
    );

    section("the same network with --aux-address=exclude_host=172.16.86.250");
    let net = sb.create(
        "-d macvlan --subnet=172.16.86.0/24 --gateway=172.16.86.1 --aux-address=exclude_host=172.16.86.250 -o parent=eth0 pub_net",
    )?;
    let aux: Vec<String> = net.ipam().subnets()[0]
        .aux_addresses()
        .map(|(name, ip)| format!("{name}={ip}"))
        .collect();
    ensure!(
        aux == ["exclude_host=172.16.86.250"],
        "aux addresses: {aux:?}"
    );
    let third = sb.container()?;
    let refused = net.attach(
        &third,
        &underlay::endpoint::AttachOptions::new().ip("172.16.86.250".parse().unwrap()),
    );
    match &refused {
        Ok(_) => return Err("the excluded address 172.16.86.250 was handed out".into()),
        Err(e) => {
            println!("  --ip=172.16.86.250 refused: {e}");
            ensure!(
                e.to_string().contains("172.16.86.250"),
                "the error does not name the address: {e}"
            );
        }
    }
    let e3 = sb.run(&net, &third, "third", &[])?;
    expect_endpoint(&e3, &["172.16.86.2/24"])?;
    net.detach(&third).context("detach third")?;
    sb.remove("pub_net")?;
    let links = sb.host_links()?;
    ensure!(
        links == ["eth0", "lo", "uplink0"],
        "links left on the host: {links:?}"
    );
    Ok(())
}
