//! Networks: the builder, the Docker vocabulary, parents and their
//! ownership, persistence, locking and crash safety, against a real kernel.

mod common;

use common::{ip_link, link_names, open_host, Sandbox, StateDir, PARENT};
use underlay::capability::KernelFeature;
use underlay::docker::network_create_args;
use underlay::driver::Driver;
use underlay::link::{LinkKind, MacvlanMode, NewLink};
use underlay::network::NetworkBuilder;
use underlay::parent::ParentKind;
use underlay::{Error, Host, Network};

/// Splits a shell command line as the seeds write them (quotes, no
/// escapes) and drops `docker network create`.
fn seed_args(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    assert_eq!(&words[..3], ["docker", "network", "create"]);
    words.split_off(3)
}

/// Every `docker network create` of the seeds, verbatim (the one typo,
/// `-o -o macvlan_mode=bridge` in macvlan60, corrected), with the same
/// network written with the builder.
fn seeds() -> Vec<(&'static str, NetworkBuilder)> {
    vec![
        (
            "docker network create -d ipvlan --subnet=192.168.1.0/24 --gateway=192.168.1.1 -o ipvlan_mode=l2 -o parent=eth0 db_net",
            Network::builder("db_net").ipvlan().subnet("192.168.1.0/24").gateway("192.168.1.1").ipvlan_mode(underlay::link::IpvlanMode::L2).parent("eth0"),
        ),
        (
            "docker network create -d ipvlan --subnet=192.168.1.0/24 -o parent=eth0 db_net_ipv",
            Network::builder("db_net_ipv").ipvlan().subnet("192.168.1.0/24").parent("eth0"),
        ),
        (
            "docker network create -d ipvlan --subnet=192.168.10.0/24 isolated1",
            Network::builder("isolated1").ipvlan().subnet("192.168.10.0/24"),
        ),
        (
            "docker network create -d ipvlan --subnet=192.168.11.0/24 --internal isolated2",
            Network::builder("isolated2").ipvlan().subnet("192.168.11.0/24").internal(true),
        ),
        ("docker network create -d ipvlan isolated3", Network::builder("isolated3").ipvlan()),
        (
            "docker network create -d ipvlan --subnet=192.168.20.0/24 --gateway=192.168.20.1 -o parent=eth0.20 ipvlan20",
            Network::builder("ipvlan20").ipvlan().subnet("192.168.20.0/24").gateway("192.168.20.1").parent("eth0.20"),
        ),
        (
            "docker network create -d ipvlan --subnet=192.168.30.0/24 --gateway=192.168.30.1 -o parent=eth0.30 -o ipvlan_mode=l2 ipvlan30",
            Network::builder("ipvlan30").ipvlan().subnet("192.168.30.0/24").gateway("192.168.30.1").parent("eth0.30"),
        ),
        (
            "docker network create -d ipvlan --subnet=192.168.114.0/24 --subnet=192.168.116.0/24 --gateway=192.168.114.254 --gateway=192.168.116.254 -o parent=eth0.114 -o ipvlan_mode=l2 ipvlan114",
            Network::builder("ipvlan114").ipvlan().subnet("192.168.114.0/24").subnet("192.168.116.0/24").gateway("192.168.114.254").gateway("192.168.116.254").parent("eth0.114"),
        ),
        (
            "docker network create -d ipvlan --subnet=192.168.214.0/24 --subnet=10.1.214.0/24 -o ipvlan_mode=l3 ipnet210",
            Network::builder("ipnet210").ipvlan().subnet("192.168.214.0/24").subnet("10.1.214.0/24").ipvlan_mode(underlay::link::IpvlanMode::L3),
        ),
        (
            "docker network create -d ipvlan --subnet=2001:db8:abc2::/64 --gateway=2001:db8:abc2::22 -o parent=eth0.139 v6ipvlan139",
            Network::builder("v6ipvlan139").ipvlan().subnet("2001:db8:abc2::/64").gateway("2001:db8:abc2::22").parent("eth0.139"),
        ),
        (
            "docker network create -d ipvlan --subnet=192.168.140.0/24 --subnet=192.168.142.0/24 --gateway=192.168.140.1 --gateway=192.168.142.1 --subnet=2001:db8:abc9::/64 --gateway=2001:db8:abc9::22 -o parent=eth0.140 -o ipvlan_mode=l2 ipvlan140",
            Network::builder("ipvlan140").ipvlan().subnet("192.168.140.0/24").subnet("192.168.142.0/24").subnet("2001:db8:abc9::/64").gateway("192.168.140.1").gateway("192.168.142.1").gateway("2001:db8:abc9::22").parent("eth0.140"),
        ),
        (
            "docker network create -d ipvlan --subnet=192.168.110.0/24 --subnet=192.168.112.0/24 --subnet=2001:db8:abc6::/64 -o parent=eth0 -o ipvlan_mode=l3 ipnet110",
            Network::builder("ipnet110").ipvlan().subnet("192.168.110.0/24").subnet("192.168.112.0/24").subnet("2001:db8:abc6::/64").parent("eth0").ipvlan_mode(underlay::link::IpvlanMode::L3),
        ),
        (
            "docker network create -d ipvlan --subnet=192.168.40.0/24 --gateway=192.168.40.1 -o parent=eth0.40 ipvlan40",
            Network::builder("ipvlan40").ipvlan().subnet("192.168.40.0/24").gateway("192.168.40.1").parent("eth0.40"),
        ),
        (
            "docker network create -d macvlan --subnet=172.16.86.0/24 --gateway=172.16.86.1 -o parent=eth0 pub_net",
            Network::builder("pub_net").macvlan().subnet("172.16.86.0/24").gateway("172.16.86.1").parent("eth0"),
        ),
        (
            "docker network create -d macvlan --subnet=172.16.86.0/24 --gateway=172.16.86.1 --aux-address=\"exclude_host=172.16.86.250\" -o parent=eth0 pub_net",
            Network::builder("pub_net").macvlan().subnet("172.16.86.0/24").gateway("172.16.86.1").aux_address("exclude_host", "172.16.86.250").parent("eth0"),
        ),
        (
            "docker network create -d macvlan --subnet=192.168.32.0/24 --ip-range=192.168.32.128/25 --gateway=192.168.32.254 -o parent=eth0 macnet32",
            Network::builder("macnet32").macvlan().subnet("192.168.32.0/24").ip_range("192.168.32.128/25").gateway("192.168.32.254").parent("eth0"),
        ),
        (
            "docker network create -d macvlan --subnet=192.168.50.0/24 --gateway=192.168.50.1 -o parent=eth0.50 macvlan50",
            Network::builder("macvlan50").macvlan().subnet("192.168.50.0/24").gateway("192.168.50.1").parent("eth0.50"),
        ),
        (
            "docker network create -d macvlan --subnet=192.168.60.0/24 --gateway=192.168.60.1 -o parent=eth0.60 -o macvlan_mode=bridge macvlan60",
            Network::builder("macvlan60").macvlan().subnet("192.168.60.0/24").gateway("192.168.60.1").parent("eth0.60").macvlan_mode(MacvlanMode::Bridge),
        ),
        (
            "docker network create -d macvlan --subnet=10.1.20.0/24 --subnet=10.1.10.0/24 --gateway=10.1.20.1 --gateway=10.1.10.1 -o parent=eth0.101 mcv101",
            Network::builder("mcv101").macvlan().subnet("10.1.20.0/24").subnet("10.1.10.0/24").gateway("10.1.20.1").gateway("10.1.10.1").parent("eth0.101"),
        ),
        (
            "docker network create -d macvlan --subnet=192.168.216.0/24 --subnet=192.168.218.0/24 --gateway=192.168.216.1 --gateway=192.168.218.1 --ipv6 --subnet=2001:db8:abc8::/64 --gateway=2001:db8:abc8::10 -o parent=eth0.218 -o macvlan_mode=bridge macvlan216",
            Network::builder("macvlan216").macvlan().subnet("192.168.216.0/24").subnet("192.168.218.0/24").subnet("2001:db8:abc8::/64").gateway("192.168.216.1").gateway("192.168.218.1").gateway("2001:db8:abc8::10").ipv6(true).parent("eth0.218"),
        ),
        (
            "docker network create -d macvlan --subnet=192.168.136.0/24 --subnet=192.168.138.0/24 --ipv6 --subnet=fd11::/64 --ip-range=192.168.136.0/25 --ip-range=192.168.138.0/25 --aux-address=\"reserved1=fd11::2\" --aux-address=\"reserved2=192.168.136.2\" --aux-address=\"reserved3=192.168.138.2\" -o parent=eth0 mcv0",
            Network::builder("mcv0").macvlan().subnet("192.168.136.0/24").subnet("192.168.138.0/24").subnet("fd11::/64").ip_range("192.168.136.0/25").ip_range("192.168.138.0/25").aux_address("reserved1", "fd11::2").aux_address("reserved2", "192.168.136.2").aux_address("reserved3", "192.168.138.2").ipv6(true).parent("eth0"),
        ),
        (
            "docker network create -d macvlan --subnet=192.168.40.0/24 --gateway=192.168.40.1 -o parent=foo macvlan40",
            Network::builder("macvlan40").macvlan().subnet("192.168.40.0/24").gateway("192.168.40.1").parent("foo"),
        ),
    ]
}

#[test]
fn every_seed_command_parses_to_the_builders_network() {
    for (command, builder) in seeds() {
        let parsed = network_create_args(seed_args(command))
            .and_then(|b| b.build())
            .unwrap_or_else(|e| panic!("{command}: {e}"));
        let built = builder.build().unwrap();
        assert_eq!(parsed, built, "{command}");
    }
}

#[test]
fn the_seeds_typo_is_refused_not_guessed() {
    let err = network_create_args([
        "-d",
        "macvlan",
        "-o",
        "-o",
        "macvlan_mode=bridge",
        "macvlan60",
    ])
    .and_then(|b| b.build())
    .unwrap_err();
    assert_eq!(err.to_string(), "invalid flag \"-o\": needs a value");
}

/// Creates a seed network for real on the sandbox (whose `eth0` stands in
/// for the host's NIC) and checks what the seed says about it.
fn create_seed(host: &Host, name: &str) -> Network {
    let (command, _) = seeds()
        .into_iter()
        .find(|(c, _)| c.ends_with(&format!(" {name}")))
        .unwrap();
    host.create_network(network_create_args(seed_args(command)).unwrap())
        .unwrap_or_else(|e| panic!("{command}: {e}"))
}

#[test]
fn macvlan_seed_networks_on_an_existing_parent() {
    let (sb, dir, host) = common::fixture();

    let net = create_seed(&host, "pub_net");
    assert_eq!(
        net.driver(),
        Driver::Macvlan {
            mode: MacvlanMode::Bridge
        }
    );
    assert_eq!(net.parent().name, "eth0");
    assert_eq!(net.parent().kind, ParentKind::Existing);
    assert!(!net.parent().owned());
    assert_eq!(
        net.gateways(),
        ["172.16.86.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(!net.internal());
    assert_eq!(net.options()["parent"], "eth0");
    assert_eq!(net.options()["macvlan_mode"], "bridge");
    assert_eq!(net.id().len(), 64);
    host.remove_network("pub_net").unwrap();
    // The existing parent survives, untouched.
    let eth0 = sb.nl.link_by_name(PARENT).unwrap();
    assert_eq!(eth0.kind, Some(LinkKind::Veth));
    assert!(eth0.up);

    // Gateways inferred, ranges and aux addresses kept.
    let net = create_seed(&host, "mcv0");
    let subnets = net.ipam().subnets();
    let show: Vec<(String, String, Option<String>)> = subnets
        .iter()
        .map(|s| {
            (
                s.subnet().to_string(),
                s.gateway().unwrap().to_string(),
                s.ip_range().map(|r| r.to_string()),
            )
        })
        .collect();
    assert_eq!(
        show,
        [
            (
                "192.168.136.0/24".into(),
                "192.168.136.1".into(),
                Some("192.168.136.0/25".into())
            ),
            (
                "192.168.138.0/24".into(),
                "192.168.138.1".into(),
                Some("192.168.138.0/25".into())
            ),
            ("fd11::/64".into(), "fd11::1".into(), None),
        ]
    );
    let aux: Vec<(String, String)> = subnets
        .iter()
        .flat_map(|s| {
            s.aux_addresses()
                .map(|(n, a)| (n.to_owned(), a.to_string()))
        })
        .collect();
    assert!(aux.contains(&("reserved2".into(), "192.168.136.2".into())));
    assert!(aux.contains(&("reserved1".into(), "fd11::2".into())));
    assert!(net.ipv6());

    // Persisted: a second handle on the same directory sees it.
    let again = open_host(&sb, &dir);
    let names: Vec<String> = again
        .networks()
        .unwrap()
        .iter()
        .map(|n| n.name().to_owned())
        .collect();
    assert_eq!(names, ["mcv0"]);
    let json = serde_json::to_value(again.network("mcv0").unwrap()).unwrap();
    assert_eq!(json["driver"], "macvlan");
    assert_eq!(json["parent"]["owned"], false);
    assert_eq!(json["ipam"]["subnets"][0]["gateway"], "192.168.136.1");
}

#[test]
fn networks_without_ipv4_subnets_get_default_pools_avoiding_what_is_in_use() {
    let sb = Sandbox::new();
    // The host already uses 172.17.0.0/16 on a link: the pool skips it.
    assert!(sb
        .host_run("ip", &["addr", "add", "172.17.0.5/16", "dev", "uplink0"])
        .status
        .success());
    let dir = StateDir::new();
    let host = open_host(&sb, &dir);
    let net = host
        .create_network(
            Network::builder("v6only")
                .macvlan()
                .parent("eth0")
                .subnet("2001:db8:abc2::/64")
                .gateway("2001:db8:abc2::22"),
        )
        .unwrap();
    let subnets: Vec<String> = net
        .ipam()
        .subnets()
        .iter()
        .map(|s| s.subnet().to_string())
        .collect();
    assert_eq!(subnets, ["2001:db8:abc2::/64", "172.18.0.0/16"]);
    assert_eq!(net.gateways()[1].to_string(), "172.18.0.1");
    host.remove_network("v6only").unwrap();
    // IPv6 without a subnet: a unique-local /64.
    let net = host
        .create_network(
            Network::builder("ula")
                .macvlan()
                .parent("eth0")
                .ipv6(true)
                .ipv4(false),
        )
        .unwrap();
    let subnet = net.ipam().subnets()[0].subnet();
    assert_eq!(subnet.prefix_len(), 64);
    assert!(subnet.to_string().starts_with("fd"), "{subnet}");
}

/// Asserts that `attempt` fails with a message containing `needle` and
/// leaves the state directory and the host's links as they were.
fn refused(
    sb: &Sandbox,
    dir: &StateDir,
    host: &Host,
    builder: NetworkBuilder,
    needle: &str,
) -> Error {
    let before = dir.snapshot();
    let links = link_names(&sb.host);
    let err = host.create_network(builder).unwrap_err();
    assert!(
        err.to_string().contains(needle),
        "expected {needle:?} in: {err}"
    );
    assert_eq!(dir.snapshot(), before, "state changed by: {err}");
    assert_eq!(link_names(&sb.host), links, "links changed by: {err}");
    err
}

#[test]
fn bad_parents_and_options_are_refused_and_leave_no_trace() {
    let (sb, dir, host) = common::fixture();
    let mac = || Network::builder("bad").macvlan().subnet("10.9.0.0/24");
    refused(&sb, &dir, &host, mac().parent("lo"), "loopback");
    let err = refused(
        &sb,
        &dir,
        &host,
        mac().parent("nosuch0"),
        "parent interface nosuch0 not found",
    );
    assert!(matches!(err, Error::ParentNotFound { .. }));
    refused(&sb, &dir, &host, mac().parent("eth0.abc"), "\"eth0.abc\"");
    refused(&sb, &dir, &host, mac().parent("eth0.0"), "1 to 4094");
    refused(&sb, &dir, &host, mac().parent("eth0.4095"), "1 to 4094");
    refused(
        &sb,
        &dir,
        &host,
        mac().parent("nosuch0.50"),
        "parent interface nosuch0 not found",
    );
    refused(
        &sb,
        &dir,
        &host,
        mac().parent("averyveryverylongname"),
        "at most 15",
    );
    refused(
        &sb,
        &dir,
        &host,
        mac().parent("eth0").option("macvlan_flag", "x"),
        "macvlan_flag",
    );
    refused(
        &sb,
        &dir,
        &host,
        mac().parent("eth0").gateway("10.8.0.1"),
        "10.8.0.1",
    );
    refused(
        &sb,
        &dir,
        &host,
        mac().parent("eth0").ip_range("10.7.0.0/25"),
        "10.7.0.0/25",
    );
    refused(
        &sb,
        &dir,
        &host,
        mac().parent("eth0").aux_address("x", "10.6.0.1"),
        "10.6.0.1",
    );
    refused(
        &sb,
        &dir,
        &host,
        mac().parent("eth0").subnet("10.9.0.0/24"),
        "10.9.0.0/24",
    );
    refused(
        &sb,
        &dir,
        &host,
        mac().parent("eth0").subnet("10.9.0.0/16"),
        "10.9.0.0/16",
    );
    refused(
        &sb,
        &dir,
        &host,
        mac().parent("eth0").subnet("0.0.0.0/0"),
        "0.0.0.0/0",
    );
    refused(
        &sb,
        &dir,
        &host,
        mac().parent("eth0").subnet("10.5.0.1/24"),
        "10.5.0.1/24",
    );

    // Conflicts with an existing network.
    host.create_network(mac().parent("eth0")).unwrap();
    sb.nl
        .create_link(&NewLink::veth("eth1", "uplink1").up())
        .unwrap();
    let other = || Network::builder("other").macvlan();
    let err = refused(
        &sb,
        &dir,
        &host,
        Network::builder("bad")
            .macvlan()
            .parent("eth1")
            .subnet("10.1.0.0/24"),
        "already exists",
    );
    assert!(matches!(err, Error::NetworkExists { .. }));
    let err = refused(
        &sb,
        &dir,
        &host,
        other().parent("eth0").subnet("10.2.0.0/24"),
        "already used by network \"bad\"",
    );
    assert!(matches!(err, Error::ParentInUse { .. }));
    // Overlapping or equal subnets on another parent are another L2
    // segment: accepted, as in today's Docker.
    let overlapping = host
        .create_network(other().parent("eth1").subnet("10.9.0.128/25"))
        .unwrap();
    host.remove_network(overlapping.name()).unwrap();
    assert!(host
        .create_network(other().parent("eth1").subnet("10.9.0.0/24"))
        .is_ok());
    assert!(matches!(
        host.remove_network("nope"),
        Err(Error::NetworkNotFound { .. })
    ));
}

#[test]
fn kernels_without_a_driver_give_the_capability_error_and_no_trace() {
    let (sb, dir, host) = common::fixture();
    let caps = common::capabilities();
    let cases = [
        (
            KernelFeature::Vlan,
            Network::builder("v")
                .macvlan()
                .parent("eth0.50")
                .subnet("10.50.0.0/24"),
        ),
        (
            KernelFeature::Dummy,
            Network::builder("d").macvlan().subnet("10.51.0.0/24"),
        ),
    ];
    for (feature, builder) in cases {
        if caps.supports(feature) {
            assert!(host.create_network(builder).is_ok());
        } else {
            let err = refused(&sb, &dir, &host, builder, feature.config_option());
            assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        }
    }
}

#[test]
fn concurrent_creators_on_one_state_directory_never_both_win() {
    let sb = Sandbox::new();
    let dir = StateDir::new();
    for i in 0..6 {
        sb.nl
            .create_link(&NewLink::veth(&format!("p{i}"), &format!("q{i}")).up())
            .unwrap();
    }
    // Six handles (as six processes would have), racing for one name
    // (subnets may overlap across parents; names may not).
    let hosts: Vec<Host> = (0..6).map(|_| open_host(&sb, &dir)).collect();
    let results: Vec<Result<Network, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                s.spawn(move || {
                    host.create_network(
                        Network::builder("contested")
                            .macvlan()
                            .parent(&format!("p{i}"))
                            .subnet("10.77.0.0/24"),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(err, Error::NetworkExists { .. }), "{err}");
    }
    assert_eq!(hosts[0].networks().unwrap().len(), 1);
}

/// The child side of the crash tests: creates (or removes) a network and is
/// killed with SIGKILL by its own logger when the step named in
/// `UNDERLAY_CRASH_AT` is logged.
#[test]
#[ignore = "helper: run by the crash tests in a child process"]
fn crash_child() {
    if !common::install_kill_switch() {
        return;
    }
    let host = common::open_child_host();
    let builder = network_create_args(std::env::var("UNDERLAY_ARGS").unwrap().split(' ')).unwrap();
    if std::env::var("UNDERLAY_REMOVE").is_ok() {
        let name = builder.build().unwrap().name().to_owned();
        host.remove_network(&name).unwrap();
    } else {
        host.create_network(builder).unwrap();
    }
    // Not killed: the step was never reached.
    std::process::exit(3);
}

/// Runs [`crash_child`] and returns whether the child was killed.
fn crash_at(sb: &Sandbox, dir: &StateDir, args: &str, point: &str, remove: bool) -> bool {
    let mut env = vec![
        ("UNDERLAY_CRASH_AT", point.to_owned()),
        ("UNDERLAY_STATE", dir.0.display().to_string()),
        ("UNDERLAY_NETNS", common::netns_path_for_child(&sb.host)),
        ("UNDERLAY_ARGS", args.to_owned()),
    ];
    if remove {
        env.push(("UNDERLAY_REMOVE", "1".to_owned()));
    }
    let output = common::run_child("crash_child", &env);
    if !common::killed(&output) {
        eprintln!(
            "crash child not killed at {point:?} ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&output.stderr).lines())
                .filter(|l| l.contains("panicked") || l.contains("Error") || l.contains("error"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    common::killed(&output)
}

/// Whether the host has a link whose name starts with `prefix`.
fn has_link(sb: &Sandbox, prefix: &str) -> bool {
    link_names(&sb.host).iter().any(|n| n.starts_with(prefix))
}

/// Kills a network creation (or removal) at each step and checks that the
/// state re-opens consistent with no owned link leaked.
fn crash_points(sb: &Sandbox, args: &str, owned_link: Option<&str>) {
    // Each text names one log line of the library (the network is called
    // "crashy" in every caller).
    let steps = [
        "recorded as creating",
        "created parent link",
        "created host shim",
        "created network crashy",
    ];
    let shim = args.contains("host_shim=");
    for step in steps {
        let dir = StateDir::new();
        let killed = crash_at(sb, &dir, args, step, false);
        let skipped = (owned_link.is_none() && step == "created parent link")
            || (!shim && step == "created host shim");
        if skipped {
            assert!(!killed, "nothing to do at {step}, yet killed there");
            // The creation ran to the end: undo it.
            open_host(sb, &dir).remove_network("crashy").unwrap();
            continue;
        }
        assert!(killed, "never reached {step:?}");
        let host = open_host(sb, &dir);
        let networks = host.networks().unwrap();
        match step {
            // Killed before the record said ready: undone.
            "recorded as creating" | "created parent link" | "created host shim" => {
                assert!(networks.is_empty(), "{step}: {networks:?}");
                assert!(!has_link(sb, "hs-"), "{step}: the host shim leaked");
                if let Some(link) = owned_link {
                    assert!(!has_link(sb, link), "{step}: {link} leaked");
                }
            }
            // Killed after: the network is complete.
            _ => {
                assert_eq!(networks.len(), 1, "{step}");
                assert_eq!(has_link(sb, "hs-"), shim, "{step}: host shim");
                if let Some(link) = owned_link {
                    assert!(has_link(sb, link), "{step}: {link} missing");
                }
                // And a removal killed half-way is finished on open.
                assert!(crash_at(sb, &dir, args, "recorded as removing", true));
                let host = open_host(sb, &dir);
                assert!(host.networks().unwrap().is_empty());
                assert!(!has_link(sb, "hs-"), "the host shim leaked after removal");
                if let Some(link) = owned_link {
                    assert!(!has_link(sb, link), "{link} leaked after removal");
                }
            }
        }
        assert!(
            host.recover().unwrap().is_clean(),
            "{step}: a second recovery found more"
        );
    }
}

#[test]
fn a_crash_while_creating_or_removing_leaves_consistent_state() {
    let sb = Sandbox::new();
    crash_points(
        &sb,
        "-d macvlan --subnet=10.88.0.0/24 -o parent=eth0 crashy",
        None,
    );
    assert_eq!(link_names(&sb.host), ["eth0", "lo", "uplink0"]);
}

#[test]
fn a_crash_while_creating_or_removing_leaks_no_host_shim() {
    let sb = Sandbox::new();
    crash_points(
        &sb,
        "-d macvlan --subnet=10.88.1.0/24 -o parent=eth0 -o host_shim=auto crashy",
        None,
    );
    assert_eq!(link_names(&sb.host), ["eth0", "lo", "uplink0"]);
}

mod needs_vlan {
    use super::*;

    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn an_owned_vlan_parent_is_created_up_and_removed_with_its_network() {
        common::require(KernelFeature::Vlan);
        let (sb, _dir, host) = common::fixture();
        let net = create_seed(&host, "macvlan50");
        assert_eq!(
            net.parent().kind,
            ParentKind::Vlan {
                master: "eth0".into(),
                id: 50
            }
        );
        assert!(net.parent().owned());
        let vlan = sb.nl.link_by_name("eth0.50").unwrap();
        assert_eq!(vlan.kind, Some(LinkKind::Vlan { id: 50 }));
        assert!(vlan.up);
        assert_eq!(vlan.parent_index, Some(sb.parent_index()));
        assert_eq!(
            ip_link(&sb.host, "eth0.50")["linkinfo"]["info_data"]["id"],
            50
        );
        // One network per parent.
        let err = host
            .create_network(Network::builder("again").macvlan().parent("eth0.50"))
            .unwrap_err();
        assert!(err.to_string().contains("macvlan50"), "{err}");

        host.remove_network("macvlan50").unwrap();
        assert_eq!(link_names(&sb.host), ["eth0", "lo", "uplink0"]);
        assert!(sb.nl.link_by_name(PARENT).unwrap().up);
    }

    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn hand_made_parents_are_used_and_never_deleted() {
        common::require(KernelFeature::Vlan);
        let sb = Sandbox::new();
        let parent = sb.parent_index();
        sb.nl
            .create_link(&NewLink::vlan("eth0.40", parent, 40).up())
            .unwrap();
        sb.nl
            .create_link(&NewLink::vlan("foo", parent, 41).up())
            .unwrap();
        let dir = StateDir::new();
        let host = open_host(&sb, &dir);
        for name in ["macvlan40", "ipvlan40"] {
            if name == "ipvlan40" && !common::capabilities().supports(KernelFeature::Ipvlan) {
                continue;
            }
            let net = create_seed(&host, name);
            assert_eq!(net.parent().kind, ParentKind::Existing);
            host.remove_network(name).unwrap();
            assert!(link_names(&sb.host).contains(&"eth0.40".to_owned()));
        }
        let (command, _) = seeds()
            .into_iter()
            .find(|(c, _)| c.ends_with("-o parent=foo macvlan40"))
            .unwrap();
        let net = host
            .create_network(network_create_args(seed_args(command)).unwrap())
            .unwrap();
        assert_eq!(net.parent().name, "foo");
        assert!(!net.parent().owned());
        host.remove_network("macvlan40").unwrap();
        assert_eq!(
            link_names(&sb.host),
            ["eth0", "eth0.40", "foo", "lo", "uplink0"]
        );
    }

    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn owned_parents_come_back_after_a_reboot_and_hand_made_ones_do_not() {
        common::require(KernelFeature::Vlan);
        let (sb, dir, host) = common::fixture();
        create_seed(&host, "macvlan50");
        sb.nl
            .create_link(&NewLink::vlan("foo", sb.parent_index(), 41).up())
            .unwrap();
        let (command, _) = seeds()
            .into_iter()
            .find(|(c, _)| c.ends_with("-o parent=foo macvlan40"))
            .unwrap();
        host.create_network(network_create_args(seed_args(command)).unwrap())
            .unwrap();
        drop(host);

        // "Reboot": the links vanish, and so does the runtime directory
        // (tmpfs).
        for name in ["eth0.50", "foo"] {
            let index = sb.nl.link_by_name(name).unwrap().index;
            sb.nl.delete_link(index).unwrap();
        }
        std::fs::remove_dir_all(dir.0.join("run")).unwrap();
        let host = open_host(&sb, &dir);
        let vlan = sb.nl.link_by_name("eth0.50").unwrap();
        assert_eq!(vlan.kind, Some(LinkKind::Vlan { id: 50 }));
        assert!(vlan.up);
        assert!(matches!(
            sb.nl.link_by_name("foo"),
            Err(Error::LinkNotFound { .. })
        ));
        assert_eq!(host.networks().unwrap().len(), 2);
        assert!(host.recover().unwrap().is_clean());
    }

    /// After a reboot the system's network configuration made the owned
    /// parent again before underlay did, just as underlay makes it (VLAN
    /// 50 on eth0), without the mark: the network uses it, never deletes
    /// it. A VLAN of that name with another id is refused.
    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn an_owned_parent_made_again_by_the_system_is_used_and_never_deleted() {
        common::require(KernelFeature::Vlan);
        let (sb, dir, host) = common::fixture();
        create_seed(&host, "macvlan50");
        drop(host);
        for id in [51, 50] {
            // "Reboot": the link vanishes, and so does the runtime
            // directory; the system makes eth0.50 again.
            if let Ok(link) = sb.nl.link_by_name("eth0.50") {
                sb.nl.delete_link(link.index).unwrap();
            }
            let _ = std::fs::remove_dir_all(dir.0.join("run"));
            sb.nl
                .create_link(&NewLink::vlan("eth0.50", sb.parent_index(), id).up())
                .unwrap();
            let host = open_host(&sb, &dir);
            let report = host.recover().unwrap();
            let net = host.network("macvlan50").unwrap();
            let c = sb.container();
            let attached = net.attach(&c, &underlay::endpoint::AttachOptions::new());
            if id == 51 {
                assert_eq!(report.broken_networks.len(), 1, "{report:?}");
                let err = attached.unwrap_err();
                assert!(err.to_string().contains("a VLAN 50 on eth0"), "{err}");
                continue;
            }
            assert!(report.broken_networks.is_empty(), "{report:?}");
            attached.unwrap();
            assert!(net.detach(&c).unwrap());
            host.remove_network("macvlan50").unwrap();
            host.settle();
            let vlan = sb.nl.link_by_name("eth0.50").unwrap();
            assert_eq!(vlan.kind, Some(LinkKind::Vlan { id: 50 }));
            assert!(vlan.alias.is_none(), "{vlan:?}");
        }
    }

    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn a_crash_never_leaks_an_owned_vlan() {
        common::require(KernelFeature::Vlan);
        let sb = Sandbox::new();
        crash_points(
            &sb,
            "-d macvlan --subnet=10.89.0.0/24 -o parent=eth0.89 crashy",
            Some("eth0.89"),
        );
        assert_eq!(link_names(&sb.host), ["eth0", "lo", "uplink0"]);
    }

    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn a_link_of_ours_that_no_record_explains_is_removed_by_recovery() {
        common::require(KernelFeature::Vlan);
        let (sb, dir, host) = common::fixture();
        create_seed(&host, "macvlan50");
        // The record vanishes (a restore from an old backup, say).
        let record = dir.0.join("networks/macvlan50.json");
        std::fs::remove_file(record).unwrap();
        let report = host.recover().unwrap();
        assert_eq!(report.removed_links, ["eth0.50"]);
        assert_eq!(link_names(&sb.host), ["eth0", "lo", "uplink0"]);
    }
}

mod needs_dummy {
    use super::*;

    #[test]
    #[ignore = "needs dummy: runs in the real-kernel tier"]
    fn networks_without_a_parent_or_internal_get_an_owned_dummy() {
        common::require(KernelFeature::Dummy);
        let (sb, _dir, host) = common::fixture();
        let mac = host
            .create_network(Network::builder("iso").macvlan().subnet("192.168.10.0/24"))
            .unwrap();
        assert_eq!(mac.parent().kind, ParentKind::Dummy);
        assert_eq!(mac.parent().name, format!("dm-{}", &mac.id()[..12]));
        assert!(mac.internal());
        let dummy = sb.nl.link_by_name(&mac.parent().name).unwrap();
        assert_eq!(dummy.kind, Some(LinkKind::Dummy));
        assert!(dummy.up);
        let internal = host
            .create_network(
                Network::builder("iso2")
                    .macvlan()
                    .parent("eth0")
                    .internal(true)
                    .subnet("192.168.11.0/24"),
            )
            .unwrap();
        assert_eq!(internal.parent().kind, ParentKind::Dummy);
        host.remove_network("iso").unwrap();
        host.remove_network("iso2").unwrap();
        assert_eq!(link_names(&sb.host), ["eth0", "lo", "uplink0"]);
    }

    #[test]
    #[ignore = "needs dummy: runs in the real-kernel tier"]
    fn a_crash_never_leaks_an_owned_dummy() {
        common::require(KernelFeature::Dummy);
        let sb = Sandbox::new();
        crash_points(&sb, "-d macvlan --subnet=10.90.0.0/24 crashy", Some("dm-"));
        let names = link_names(&sb.host);
        assert!(!names.iter().any(|n| n.starts_with("dm-")), "{names:?}");
    }
}

mod needs_ipvlan {
    use super::*;

    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn ipvlan_seed_networks_are_created_as_the_seeds_say() {
        common::require(KernelFeature::Ipvlan);
        common::require(KernelFeature::Vlan);
        common::require(KernelFeature::Dummy);
        let (sb, _dir, host) = common::fixture();
        let expectations: &[(&str, &str, &str, bool)] = &[
            // name, parent, mode, owned
            ("db_net", "eth0", "l2", false),
            ("ipvlan20", "eth0.20", "l2", true),
            ("ipvlan30", "eth0.30", "l2", true),
            ("ipvlan114", "eth0.114", "l2", true),
            ("ipnet210", "di-", "l3", true),
            ("v6ipvlan139", "eth0.139", "l2", true),
            ("ipvlan140", "eth0.140", "l2", true),
            ("isolated1", "di-", "l2", true),
            ("isolated2", "di-", "l2", true),
            ("isolated3", "di-", "l2", true),
        ];
        for &(name, parent, mode, owned) in expectations {
            let net = create_seed(&host, name);
            assert!(
                net.parent().name.starts_with(parent),
                "{name}: {:?}",
                net.parent()
            );
            assert_eq!(net.options()["ipvlan_mode"], mode, "{name}");
            assert_eq!(net.parent().owned(), owned, "{name}");
            assert!(sb.nl.link_by_name(&net.parent().name).unwrap().up, "{name}");
            if name == "v6ipvlan139" {
                // IPv6 only, so IPv4 comes from the default pool.
                let subnets: Vec<String> = net
                    .ipam()
                    .subnets()
                    .iter()
                    .map(|s| s.subnet().to_string())
                    .collect();
                assert_eq!(subnets, ["2001:db8:abc2::/64", "172.17.0.0/16"]);
            }
            if name == "db_net" {
                host.remove_network("db_net").unwrap();
            }
        }
        for &(name, ..) in &expectations[1..] {
            host.remove_network(name).unwrap();
        }
        assert_eq!(link_names(&sb.host), ["eth0", "lo", "uplink0"]);
    }
}

/// A creation killed before it made its owned parent leaves the name free;
/// someone else's link of that name, made before the next open (an
/// administrator's, after a reboot), is not taken for the parent the
/// creation would have made.
#[test]
fn recovery_never_deletes_a_link_named_like_a_killed_creations_parent() {
    let sb = Sandbox::new();
    let dir = StateDir::new();
    let args = "-d macvlan --subnet=10.93.0.0/24 -o parent=eth0.50 crashy";
    assert!(crash_at(&sb, &dir, args, "recorded as creating", false));
    sb.nl
        .create_link(&underlay::link::NewLink::veth("eth0.50", "peer50").up())
        .unwrap();
    let host = open_host(&sb, &dir);
    assert!(host.networks().unwrap().is_empty());
    assert!(
        has_link(&sb, "eth0.50"),
        "the host's own eth0.50 was deleted: {:?}",
        link_names(&sb.host)
    );
}
