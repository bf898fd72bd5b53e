//! Quick start: two containers on a macvlan network, and on an ipvlan L3
//! network where the kernel has ipvlan, all in a sandbox.
//!
//! ```sh
//! cargo run --example quickstart     # as root
//! ```
//!
//! Nothing on the machine is touched: the example makes its own "host"
//! network namespace with a veth pair standing in for the NIC (`eth0`, its
//! peer `uplink0` playing the switch), two container namespaces and a
//! temporary state directory, and removes them all at the end. The
//! namespaces are held only by file descriptors, so even a crash leaves
//! nothing behind.

#[path = "common/mod.rs"]
mod common;

use std::net::IpAddr;

use common::{ensure, expect_ping, section, show, Context, Outcome, Sandbox};
use underlay::capability::KernelFeature;
use underlay::docker::network_create_args;
use underlay::endpoint::AttachOptions;
use underlay::Network;

fn main() {
    common::main_with("underlay quick start", &[], scenario)
}

fn scenario(sb: &Sandbox) -> Outcome {
    section("sandbox");
    println!("  host namespace with eth0 (veth, peer uplink0), two container namespaces");
    println!("  state directory {}", sb.dir().join("state").display());
    let web = sb.container()?;
    let db = sb.container()?;

    section("macvlan: docker network create -d macvlan --subnet=172.16.86.0/24 --gateway=172.16.86.1 -o parent=eth0 pub_net");
    // Docker's own arguments, passed through unchanged...
    let args = [
        "-d",
        "macvlan",
        "--subnet=172.16.86.0/24",
        "--gateway=172.16.86.1",
        "-o",
        "parent=eth0",
        "pub_net",
    ];
    let net = sb
        .host
        .create_network(network_create_args(args).context("parse the arguments")?)
        .context("create pub_net")?;
    println!(
        "  created {} ({} on {})",
        net.name(),
        net.driver(),
        net.parent().name
    );

    // ...and containers attached as `docker run --net=pub_net [--ip=...]`.
    let ip: IpAddr = "172.16.86.10".parse().unwrap();
    let a = net
        .attach(&web, &AttachOptions::new().name("web").ip(ip))
        .context("attach web")?;
    let b = net
        .attach(&db, &AttachOptions::new().name("db"))
        .context("attach db")?;
    for ep in [&a, &b] {
        println!(
            "  {} {} {:?} mac {}",
            ep.name(),
            ep.ifname(),
            ep.addresses(),
            ep.mac().map(|m| m.to_string()).unwrap_or_default()
        );
    }
    section("macvlan: what the containers see (read back from the kernel)");
    show("web", &web, "eth0")?;
    show("db", &db, "eth0")?;
    section("macvlan: ping");
    expect_ping("web", &web, &b.addresses()[0].addr().to_string())?;
    expect_ping("db", &db, &a.addresses()[0].addr().to_string())?;
    let hosts = net.hosts_entries().context("hosts entries")?;
    println!(
        "  /etc/hosts lines: {}",
        hosts.trim_end().replace('\n', "; ").replace('\t', " ")
    );

    section("macvlan: teardown");
    net.detach(&web).context("detach web")?;
    net.detach(&db).context("detach db")?;
    sb.host
        .remove_network("pub_net")
        .context("remove pub_net")?;
    println!("  detached web and db, removed pub_net");

    section("ipvlan L3");
    if !sb.has(KernelFeature::Ipvlan) {
        println!(
            "  skipped: this kernel lacks ipvlan (CONFIG_IPVLAN); macvlan works the same way \
             (boot a kernel with ipvlan to see L3 routing between subnets)"
        );
        return finish(sb);
    }
    // docker network create -d ipvlan --subnet=192.168.110.0/24
    //   --subnet=192.168.112.0/24 -o parent=eth0 -o ipvlan_mode=l3 ipnet110
    let net = sb
        .host
        .create_network(
            Network::builder("ipnet110")
                .ipvlan()
                .parent("eth0")
                .subnet("192.168.110.0/24")
                .subnet("192.168.112.0/24")
                .option("ipvlan_mode", "l3"),
        )
        .context("create ipnet110")?;
    println!(
        "  created {} (ipvlan l3 on {})",
        net.name(),
        net.parent().name
    );
    let a = net
        .attach(
            &web,
            &AttachOptions::new()
                .name("web")
                .ip("192.168.110.10".parse().unwrap()),
        )
        .context("attach web")?;
    let b = net
        .attach(
            &db,
            &AttachOptions::new()
                .name("db")
                .ip("192.168.112.10".parse().unwrap()),
        )
        .context("attach db")?;
    show("web", &web, "eth0")?;
    show("db", &db, "eth0")?;
    for (label, ns) in [("web", &web), ("db", &db)] {
        common::expect_routes(
            label,
            ns,
            underlay::route::IpFamily::V4,
            &["default dev eth0"],
        )?;
    }
    expect_ping("web", &web, &b.addresses()[0].addr().to_string())?;
    expect_ping("db", &db, &a.addresses()[0].addr().to_string())?;
    net.detach(&web).context("detach web")?;
    net.detach(&db).context("detach db")?;
    sb.host
        .remove_network("ipnet110")
        .context("remove ipnet110")?;
    println!("  detached web and db, removed ipnet110");
    finish(sb)
}

fn finish(sb: &Sandbox) -> Outcome {
    section("done");
    let left = sb.host.networks().context("list networks")?;
    ensure!(left.is_empty(), "networks left: {}", left.len());
    println!(
        "  no networks left; the sandbox namespaces and {} go next",
        sb.dir().display()
    );
    Ok(())
}
