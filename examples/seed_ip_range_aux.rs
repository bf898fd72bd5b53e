//! Seed: Docker's macvlan guide, `--ip-range` and `--aux-address`
//! (`macnet32` and `mcv0`, both on `eth0`).
//!
//! Asserts: on `macnet32` (ip-range 192.168.32.128/25, gateway
//! 192.168.32.254) the first container gets 192.168.32.128 and the next
//! one "n+1", 192.168.32.129, with `default via 192.168.32.254`; on `mcv0`
//! the gateways are inferred (192.168.136.1, 192.168.138.1, fd11::1), the
//! first container gets 192.168.136.3/24 and fd11::3/64 (the aux addresses
//! 192.168.136.2 and fd11::2 are skipped) with the seed's routes
//! `default via 192.168.136.1 dev eth0`, `192.168.136.0/24 dev eth0`,
//! `fd11::/64 dev eth0` and `default via fd11::1 dev eth0 metric 1024`,
//! containers ping each other over IPv4 and IPv6, and an aux address is
//! refused when asked for.
//!
//! `cargo run --example seed_ip_range_aux` as root. Needs only macvlan.

#[path = "common/mod.rs"]
mod common;

use common::{
    ensure, expect_addresses, expect_endpoint, expect_ping, expect_routes, section, show, Context,
    Outcome, Sandbox,
};
use underlay::endpoint::AttachOptions;
use underlay::route::IpFamily;

fn main() {
    common::main_with(
        "seed: --ip-range and --aux-address (macnet32, mcv0)",
        &[],
        scenario,
    )
}

fn scenario(sb: &Sandbox) -> Outcome {
    section("macnet32: addresses from 192.168.32.128 up");
    let net = sb.create(
        "-d macvlan --subnet=192.168.32.0/24 --ip-range=192.168.32.128/25 --gateway=192.168.32.254 -o parent=eth0 macnet32",
    )?;
    let a = sb.container()?;
    let b = sb.container()?;
    // "Start a container and verify the address is 192.168.32.128"
    let ea = sb.run(&net, &a, "first", &[])?;
    let eb = sb.run(&net, &b, "second", &[])?;
    expect_endpoint(&ea, &["192.168.32.128/24"])?;
    expect_endpoint(&eb, &["192.168.32.129/24"])?;
    expect_addresses("first", &a, "eth0", &["192.168.32.128/24"])?;
    show("first", &a, "eth0")?;
    expect_routes(
        "first",
        &a,
        IpFamily::V4,
        &[
            "default via 192.168.32.254 dev eth0",
            "192.168.32.0/24 dev eth0",
        ],
    )?;
    expect_ping("first", &a, "192.168.32.129")?;
    // `docker network rm <network_name or id>` (the containers were --rm).
    net.detach(&a).context("detach first")?;
    net.detach(&b).context("detach second")?;
    sb.remove("macnet32")?;
    ensure!(
        sb.host.network("macnet32").is_err(),
        "macnet32 still exists"
    );

    section("mcv0: two IPv4 subnets and fd11::/64, inferred gateways, aux addresses");
    let net = sb.create(
        "-d macvlan --subnet=192.168.136.0/24 --subnet=192.168.138.0/24 --ipv6 --subnet=fd11::/64 \
         --ip-range=192.168.136.0/25 --ip-range=192.168.138.0/25 --aux-address=reserved1=fd11::2 \
         --aux-address=reserved2=192.168.136.2 --aux-address=reserved3=192.168.138.2 -o parent=eth0 mcv0",
    )?;
    let gateways: Vec<String> = net.gateways().iter().map(|g| g.to_string()).collect();
    ensure!(
        gateways == ["192.168.136.1", "192.168.138.1", "fd11::1"],
        "inferred gateways: {gateways:?}"
    );
    let c = sb.container()?;
    let d = sb.container()?;
    let e = sb.container()?;
    let ec = sb.run(&net, &c, "first", &[])?;
    expect_endpoint(&ec, &["192.168.136.3/24", "fd11::3/64"])?;
    show("first", &c, "eth0")?;
    // The guide's container:
    //   inet 192.168.136.3/24 scope global eth0
    //   inet6 fd11::3/64 scope global flags 02
    //   default via 192.168.136.1 dev eth0
    //   192.168.136.0/24 dev eth0 src 192.168.136.3
    //   fd11::/64 dev eth0 metric 256
    //   default via fd11::1 dev eth0 metric 1024
    expect_addresses("first", &c, "eth0", &["192.168.136.3/24", "fd11::3/64"])?;
    expect_routes(
        "first",
        &c,
        IpFamily::V4,
        &[
            "default via 192.168.136.1 dev eth0",
            "192.168.136.0/24 dev eth0",
        ],
    )?;
    let v6 = expect_routes(
        "first",
        &c,
        IpFamily::V6,
        &["fd11::/64 dev eth0", "default via fd11::1 dev eth0"],
    )?;
    common::expect_ipv6_default_metric(&v6)?;

    let ed = sb.run(&net, &d, "second", &[])?;
    expect_endpoint(&ed, &["192.168.136.4/24", "fd11::4/64"])?;
    expect_ping("second", &d, "192.168.136.3")?;
    expect_ping("second", &d, "fd11::3")?;
    // A container on the second IPv4 subnet routes via its own gateway.
    let ee = sb.run(&net, &e, "third", &["192.168.138.10"])?;
    expect_endpoint(&ee, &["192.168.138.10/24", "fd11::5/64"])?;
    expect_routes(
        "third",
        &e,
        IpFamily::V4,
        &[
            "default via 192.168.138.1 dev eth0",
            "192.168.138.0/24 dev eth0",
        ],
    )?;

    section("aux addresses are never handed out, not even when asked for");
    let f = sb.container()?;
    for reserved in ["192.168.136.2", "fd11::2", "192.168.138.2"] {
        match net.attach(&f, &AttachOptions::new().ip(reserved.parse().unwrap())) {
            Ok(_) => return Err(format!("the aux address {reserved} was handed out")),
            Err(err) => {
                println!("  --ip {reserved}: refused: {err}");
                ensure!(
                    err.to_string().contains(reserved),
                    "the error does not name {reserved}: {err}"
                );
            }
        }
    }
    ensure!(
        common::link_names(&f)? == ["lo"],
        "a refused attach left links behind"
    );

    section("teardown");
    for (label, ns) in [("first", &c), ("second", &d), ("third", &e)] {
        ensure!(
            net.detach(ns).context(format!("detach {label}"))?,
            "{label} was not attached"
        );
    }
    sb.remove("mcv0")?;
    let links = sb.host_links()?;
    ensure!(
        links == ["eth0", "lo", "uplink0"],
        "links left on the host: {links:?}"
    );
    Ok(())
}
