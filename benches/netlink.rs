//! Micro-benchmarks of the CPU-only work around a netlink request: building
//! and encoding `RTM_NEWLINK` (macvlan, ipvlan, vlan, with and without the
//! optional attributes) and `RTM_NEWROUTE` messages, parsing MAC addresses,
//! and turning `docker network create` arguments into a checked network
//! description.
//!
//! Run with `cargo bench --bench netlink`. Each benchmark uses a small
//! sample and a one-second measurement, so the whole target takes well under
//! a minute. None of them needs root or touches the kernel.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::Criterion;
use underlay::docker::network_create_args;
use underlay::link::{IpvlanFlag, IpvlanMode, MacAddress, MacvlanMode, NewLink};
use underlay::route::{IpFamily, NewRoute};

/// Arguments of the seeds' `docker network create` examples (everything
/// after `create`).
const SEED_COMMANDS: &[(&str, &str)] = &[
    (
        "macvlan_v4",
        "-d macvlan --subnet=172.16.86.0/24 --gateway=172.16.86.1 -o parent=eth0 pub_net",
    ),
    (
        "macvlan_dual_vlan",
        "-d macvlan --ipv6 --subnet=192.168.218.0/24 --gateway=192.168.218.1 \
         --subnet=2001:db8:abc8::/64 --gateway=2001:db8:abc8::10 -o parent=eth0.218 \
         -o macvlan_mode=bridge macvlan216",
    ),
    (
        "ipvlan_l3_two_subnets",
        "-d ipvlan --subnet=192.168.214.0/24 --subnet=10.1.214.0/24 -o ipvlan_mode=l3 ipnet210",
    ),
];

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g
}

fn encode_links(c: &mut Criterion) {
    let mac: MacAddress = "02:42:c0:a8:20:0a".parse().unwrap();
    let mut g = group(c, "encode_newlink");
    g.bench_function("macvlan", |b| {
        b.iter(|| {
            NewLink::macvlan(black_box("eth0"), black_box(2), MacvlanMode::Bridge)
                .encode(black_box(1))
        })
    });
    g.bench_function("macvlan_mac_mtu", |b| {
        b.iter(|| {
            NewLink::macvlan(black_box("eth0"), black_box(2), MacvlanMode::Bridge)
                .mac(black_box(mac))
                .mtu(black_box(1500))
                .encode(black_box(1))
        })
    });
    g.bench_function("ipvlan_l3", |b| {
        b.iter(|| {
            NewLink::ipvlan(
                black_box("eth0"),
                black_box(2),
                IpvlanMode::L3,
                IpvlanFlag::Bridge,
            )
            .encode(black_box(1))
        })
    });
    g.bench_function("vlan", |b| {
        b.iter(|| {
            NewLink::vlan(black_box("eth0.50"), black_box(2), black_box(50)).encode(black_box(1))
        })
    });
    g.finish();
}

fn encode_routes(c: &mut Criterion) {
    let v4: IpAddr = "172.16.86.1".parse().unwrap();
    let v6: IpAddr = "2001:db8:abc8::10".parse().unwrap();
    let mut g = group(c, "encode_newroute");
    g.bench_function("default_via_v4", |b| {
        b.iter(|| NewRoute::default_via(black_box(v4), black_box(2)).encode(black_box(1)))
    });
    g.bench_function("default_via_v6", |b| {
        b.iter(|| NewRoute::default_via(black_box(v6), black_box(2)).encode(black_box(1)))
    });
    g.bench_function("default_dev_v4_metric", |b| {
        b.iter(|| {
            NewRoute::default_dev(IpFamily::V4, black_box(2))
                .metric(99)
                .encode(black_box(1))
        })
    });
    g.finish();
}

fn parse_macs(c: &mut Criterion) {
    let mut g = group(c, "mac_parse");
    g.bench_function("valid", |b| {
        b.iter(|| {
            black_box("02:42:c0:a8:20:0a")
                .parse::<MacAddress>()
                .unwrap()
        })
    });
    g.bench_function("invalid", |b| {
        b.iter(|| {
            black_box("02:42:c0:a8:20:zz")
                .parse::<MacAddress>()
                .unwrap_err()
        })
    });
    g.bench_function("display", |b| {
        let mac = MacAddress([0x02, 0x42, 0xc0, 0xa8, 0x20, 0x0a]);
        b.iter(|| black_box(mac).to_string())
    });
    g.finish();
}

fn docker_args(c: &mut Criterion) {
    let mut g = group(c, "network_create_args");
    for (name, command) in SEED_COMMANDS {
        let args: Vec<&str> = command.split_whitespace().collect();
        // A seed command must parse and build, or the benchmark measures an
        // error path.
        network_create_args(&args)
            .and_then(|b| b.build())
            .unwrap_or_else(|e| panic!("{command}: {e}"));
        g.bench_function(format!("{name}_parse_build"), |b| {
            b.iter(|| {
                network_create_args(black_box(&args))
                    .unwrap()
                    .build()
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    encode_links(&mut criterion);
    encode_routes(&mut criterion);
    parse_macs(&mut criterion);
    docker_args(&mut criterion);
    criterion.final_summary();
}
