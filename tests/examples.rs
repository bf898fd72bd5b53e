//! The examples, run as their users run them: each seed example and the
//! quick start must exit 0 (every assertion it makes about Docker's guides
//! held), and the `underlay` command-line example is driven through a
//! scripted session in a sandbox, error paths included.
//!
//! The example binaries are `target/<profile>/examples/NAME`, next to the
//! `deps` directory this test binary lives in. `cargo test` builds them;
//! `cargo test --test examples` does not, so under cargo this test first
//! runs `cargo build --examples` (a no-op when they are current). Without
//! cargo (the real-kernel tier runs the built binaries directly) they must
//! exist already.
//!
//! Examples that need ipvlan, 802.1q VLAN or dummy links are in the modules
//! `needs_ipvlan`, `needs_vlan` and `needs_dummy`, ignored on the host tier
//! and run by `scripts/test.sh` in the real-kernel tier, after a guard that
//! fails when the kernel lacks the feature.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{link_names, netns_path_for_child, ping, require, Sandbox, StateDir};
use underlay::capability::KernelFeature;

/// The exit status of an example whose kernel lacks a feature it needs.
const SKIPPED: i32 = 77;

/// `target/<profile>`: this binary is `target/<profile>/deps/examples-HASH`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_owned()
}

/// Under cargo, builds the examples once (so `cargo test --test examples`
/// never runs stale or missing binaries).
fn build_examples() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let Ok(cargo) = std::env::var("CARGO") else {
            return; // not under cargo: the real-kernel tier runs prebuilt binaries
        };
        let profile = profile_dir();
        let mut command = Command::new(cargo);
        command.args(["build", "--examples", "--quiet"]);
        // The examples get the features these tests were built with.
        let features: Vec<&str> = [
            ("dns", cfg!(feature = "dns")),
            ("etcd", cfg!(feature = "etcd")),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        if !features.is_empty() {
            command.args(["--features", &features.join(",")]);
        }
        match profile.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some(other) => {
                command.args(["--profile", other]);
            }
        }
        if let Some(target) = profile.parent() {
            command.env("CARGO_TARGET_DIR", target);
        }
        if let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") {
            command.current_dir(dir);
        }
        let out = command.output().expect("run cargo build --examples");
        assert!(
            out.status.success(),
            "cargo build --examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The path of example `name`'s binary.
fn example(name: &str) -> PathBuf {
    build_examples();
    let path = profile_dir().join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the examples first (cargo build --examples, or cargo test)",
        path.display()
    );
    path
}

/// Runs example `name` and returns its output, after checking that it left
/// no temporary directory behind.
fn run_example(name: &str) -> Output {
    let child = Command::new(example(name))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let dir = std::env::temp_dir().join(format!("underlay-example-{}", child.id()));
    let out = child.wait_with_output().expect("wait for the example");
    assert!(!dir.exists(), "{name} left {} behind", dir.display());
    out
}

/// Runs example `name` and asserts it exited 0.
fn example_passes(name: &str) {
    let out = run_example(name);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "example {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("\nok: "),
        "{name} did not report success:\n{stdout}"
    );
}

#[test]
fn quickstart() {
    let started = std::time::Instant::now();
    example_passes("quickstart");
    eprintln!("quickstart took {:?}", started.elapsed());
}

#[test]
fn seed_macvlan_bridge() {
    example_passes("seed_macvlan_bridge");
}

#[test]
fn seed_multi_subnet() {
    example_passes("seed_multi_subnet");
}

#[test]
fn seed_dual_stack() {
    example_passes("seed_dual_stack");
}

#[test]
fn seed_ip_range_aux() {
    example_passes("seed_ip_range_aux");
}

/// Examples whose kernel lacks a feature say so and exit 77: never 0
/// without running. (On a kernel with every feature there is nothing to
/// check here; the needs_* tests run them.)
#[test]
fn examples_skip_with_77_and_the_reason_when_the_kernel_lacks_a_feature() {
    let gated: &[(&str, &[KernelFeature])] = &[
        ("seed_8021q_trunk", &[KernelFeature::Vlan]),
        ("seed_hand_made_vlan", &[KernelFeature::Vlan]),
        ("seed_ipvlan_l2", &[KernelFeature::Ipvlan]),
        (
            "seed_ipvlan_l3",
            &[KernelFeature::Ipvlan, KernelFeature::Dummy],
        ),
        ("seed_ipvlan_dual_stack_l3", &[KernelFeature::Ipvlan]),
        (
            "seed_internal",
            &[KernelFeature::Ipvlan, KernelFeature::Dummy],
        ),
    ];
    let caps = common::capabilities();
    for (name, needs) in gated {
        let Some(missing) = needs.iter().find(|f| !caps.supports(**f)) else {
            continue;
        };
        let out = run_example(name);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(SKIPPED), "{name}: {stdout}");
        assert!(
            stdout.contains(&format!("skipped: kernel lacks {}", missing.name())),
            "{name}: {stdout}"
        );
    }
}

mod needs_vlan {
    use super::*;

    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn seed_8021q_trunk() {
        require(KernelFeature::Vlan);
        example_passes("seed_8021q_trunk");
    }

    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn seed_hand_made_vlan() {
        require(KernelFeature::Vlan);
        example_passes("seed_hand_made_vlan");
    }

    #[test]
    #[ignore = "needs 802.1q VLAN: runs in the real-kernel tier"]
    fn cli_creates_and_removes_an_owned_vlan_parent() {
        require(KernelFeature::Vlan);
        let s = CliSandbox::new();
        s.ok(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            "192.168.50.0/24",
            "-o",
            "parent=eth0.50",
            "macvlan50",
        ]);
        let json = s.inspect("macvlan50");
        assert_eq!(json["parent"]["name"], "eth0.50");
        assert_eq!(json["parent"]["owned"], true);
        assert!(link_names(&s.sb.host).contains(&"eth0.50".to_owned()));
        s.ok(&["network", "rm", "macvlan50"]);
        assert_eq!(link_names(&s.sb.host), ["eth0", "lo", "uplink0"]);
    }
}

mod needs_ipvlan {
    use super::*;

    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn seed_ipvlan_l2() {
        require(KernelFeature::Ipvlan);
        example_passes("seed_ipvlan_l2");
    }

    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn seed_ipvlan_l3() {
        require(KernelFeature::Ipvlan);
        require(KernelFeature::Dummy);
        example_passes("seed_ipvlan_l3");
    }

    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn seed_ipvlan_dual_stack_l3() {
        require(KernelFeature::Ipvlan);
        example_passes("seed_ipvlan_dual_stack_l3");
    }

    #[test]
    #[ignore = "needs ipvlan: runs in the real-kernel tier"]
    fn cli_ipvlan_l3_network() {
        require(KernelFeature::Ipvlan);
        let s = CliSandbox::new();
        s.ok(&[
            "network",
            "create",
            "-d",
            "ipvlan",
            "--subnet=192.168.214.0/24",
            "--subnet=10.1.214.0/24",
            "-o",
            "parent=eth0",
            "-o",
            "ipvlan_mode=l3",
            "ipnet210",
        ]);
        let a = s.sb.container();
        let b = s.sb.container();
        let out = s.ok(&[
            "network",
            "connect",
            "--ip",
            "192.168.214.10",
            "ipnet210",
            &netns_path_for_child(&a),
        ]);
        assert_eq!(out.trim(), "eth0 192.168.214.10/24");
        let out = s.ok(&[
            "network",
            "connect",
            "--ip=10.1.214.10",
            "ipnet210",
            &netns_path_for_child(&b),
        ]);
        assert_eq!(out.trim(), "eth0 10.1.214.10/24");
        assert!(ping(&a, "10.1.214.10"));
        let err = s.fails(&[
            "network",
            "connect",
            "--mac-address",
            "02:42:c0:a8:01:02",
            "ipnet210",
            &netns_path_for_child(&s.sb.container()),
        ]);
        assert!(err.contains("02:42:c0:a8:01:02"), "{err}");
        s.ok(&["network", "rm", "-f", "ipnet210"]);
        assert_eq!(link_names(&a), ["lo"]);
    }
}

mod needs_dummy {
    use super::*;

    #[test]
    #[ignore = "needs dummy: runs in the real-kernel tier"]
    fn seed_internal() {
        require(KernelFeature::Dummy);
        require(KernelFeature::Ipvlan);
        example_passes("seed_internal");
    }
}

/// A sandbox host namespace and state directory for the CLI, which runs
/// in the host namespace (entered by the child before it executes).
struct CliSandbox {
    sb: Sandbox,
    dir: StateDir,
}

impl CliSandbox {
    fn new() -> Self {
        CliSandbox {
            sb: Sandbox::new(),
            dir: StateDir::new(),
        }
    }

    /// Runs `underlay --state-dir DIR --runtime-dir DIR/run ARGS` in the
    /// sandbox's host namespace.
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    /// [`cli`](Self::cli) with extra environment variables.
    fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let fd = common::fd_of(&self.sb.host);
        let mut command = Command::new(example("underlay"));
        command
            .arg("--state-dir")
            .arg(&self.dir.0)
            .arg(format!(
                "--runtime-dir={}",
                self.dir.0.join("run").display()
            ))
            .args(args)
            .env_remove("UNDERLAY_LOG")
            .envs(env.iter().copied());
        // SAFETY: setns is async-signal-safe and only affects the child.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.output().expect("run the underlay example")
    }

    /// Runs the CLI, asserts exit 0 and no stderr, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "underlay {args:?} failed ({}): {stderr}",
            out.status
        );
        assert!(
            stderr.is_empty(),
            "underlay {args:?} wrote to stderr: {stderr}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI, asserts exit 1 with `underlay: ...` on stderr, returns
    /// stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "underlay {args:?}: {stderr}");
        assert!(
            stderr.starts_with("underlay: "),
            "underlay {args:?}: {stderr}"
        );
        stderr
    }

    /// `network inspect NAME`: the one network's JSON object.
    fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["network", "inspect", name]);
        let json: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
        json[0].clone()
    }
}

#[test]
fn cli_session_create_ls_inspect_connect_disconnect_rm() {
    let s = CliSandbox::new();
    // create: both flag forms, repeated -o.
    let id = s.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "172.16.86.0/24",
        "--gateway=172.16.86.1",
        "--aux-address",
        "exclude_host=172.16.86.250",
        "-o",
        "parent=eth0",
        "-o",
        "macvlan_mode=bridge",
        "pub_net",
    ]);
    let id = id.trim();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    // Internal networks need a dummy parent; on a kernel without dummy
    // links that fails, and the session goes on with one network.
    let other = s.cli(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet=10.9.0.0/24",
        "--internal",
        "other",
    ]);
    let has_other = other.status.success();
    if !has_other {
        let stderr = String::from_utf8_lossy(&other.stderr);
        assert!(
            !common::capabilities().supports(KernelFeature::Dummy),
            "{stderr}"
        );
        assert!(
            stderr.starts_with("underlay: ") && stderr.contains("dummy"),
            "{stderr}"
        );
    }

    // ls: a table NAME DRIVER PARENT SUBNETS.
    let ls = s.ok(&["network", "ls"]);
    let lines: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "DRIVER", "PARENT", "SUBNETS"], "{ls}");
    assert!(
        lines.contains(&vec!["pub_net", "macvlan", "eth0", "172.16.86.0/24"]),
        "{ls}"
    );
    assert_eq!(lines.len(), if has_other { 3 } else { 2 }, "{ls}");
    let quiet = s.ok(&["network", "ls", "-q"]);
    assert!(quiet.lines().any(|l| l == "pub_net"), "{quiet}");

    // inspect: driver, options, parent and ownership, subnets, no endpoints.
    let json = s.inspect("pub_net");
    assert_eq!(json["name"], "pub_net");
    assert_eq!(json["id"], id);
    assert_eq!(json["driver"], "macvlan");
    assert_eq!(json["options"]["parent"], "eth0");
    assert_eq!(json["options"]["macvlan_mode"], "bridge");
    assert_eq!(json["parent"]["name"], "eth0");
    assert_eq!(json["parent"]["owned"], false);
    let subnet = &json["ipam"]["subnets"][0];
    assert_eq!(subnet["subnet"], "172.16.86.0/24");
    assert_eq!(subnet["gateway"], "172.16.86.1");
    assert_eq!(subnet["aux_addresses"]["exclude_host"], "172.16.86.250");
    assert_eq!(json["endpoints"], serde_json::json!([]));
    // By id prefix too.
    assert_eq!(s.inspect(&id[..12])["name"], "pub_net");

    // connect: prints the interface and its addresses.
    let a = s.sb.container();
    let b = s.sb.container();
    let c = s.sb.container();
    let (pa, pb) = (netns_path_for_child(&a), netns_path_for_child(&b));
    let out = s.ok(&[
        "network",
        "connect",
        "--ip",
        "172.16.86.10",
        "--alias",
        "web",
        "pub_net",
        &pa,
    ]);
    assert_eq!(out.trim(), "eth0 172.16.86.10/24");
    let out = s.ok(&[
        "network",
        "connect",
        "--ifname=net0",
        "--name",
        "db",
        "pub_net",
        &pb,
    ]);
    assert_eq!(out.trim(), "net0 172.16.86.2/24");
    let out = s.ok(&[
        "network",
        "connect",
        "--mac-address",
        "02:42:ac:10:56:0b",
        "pub_net",
        &netns_path_for_child(&c),
    ]);
    assert_eq!(out.trim(), "eth0 172.16.86.3/24");
    assert_eq!(common::ip_link(&c, "eth0")["address"], "02:42:ac:10:56:0b");
    assert!(ping(&a, "172.16.86.2"));
    assert!(ping(&b, "172.16.86.10"));
    let json = s.inspect("pub_net");
    let endpoints = json["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 3, "{json}");
    let db = endpoints
        .iter()
        .find(|e| e["name"] == "db")
        .expect("db endpoint");
    assert_eq!(db["addresses"], serde_json::json!(["172.16.86.2/24"]));
    assert_eq!(db["ifname"], "net0");
    assert_eq!(db["netns"], pb.as_str());
    assert!(db["mac"].as_str().is_some_and(|m| m.len() == 17), "{db}");
    let web = endpoints
        .iter()
        .find(|e| e["netns"] == pa.as_str())
        .expect("a's endpoint");
    assert_eq!(web["aliases"], serde_json::json!(["web"]));

    // rm refuses a network with endpoints, naming it.
    let err = s.fails(&["network", "rm", "pub_net"]);
    assert!(err.contains("pub_net"), "{err}");

    // disconnect while the namespace exists...
    s.ok(&["network", "disconnect", "pub_net", &pa]);
    // Off the network at once; the link, marked detached, is deleted by
    // the next command that sweeps (or with the namespace).
    assert!(common::global_addresses(&a).is_empty());
    let eth0 = common::ip_link(&a, "eth0");
    assert_ne!(eth0["operstate"], "UP", "{eth0}");
    assert_eq!(eth0["proto_down"], true, "{eth0}");
    assert!(
        eth0["ifalias"].as_str().unwrap().ends_with(":detached"),
        "{eth0}"
    );
    s.ok(&["recover"]);
    assert_eq!(link_names(&a), ["lo"]);
    // ...and after it is gone: found by the path it was connected with.
    drop(b);
    s.ok(&["network", "disconnect", "pub_net", &pb]);
    let json = s.inspect("pub_net");
    assert_eq!(
        json["endpoints"].as_array().map(Vec::len),
        Some(1),
        "{json}"
    );
    let err = s.fails(&["network", "disconnect", "pub_net", &pb]);
    assert!(err.contains(&pb), "{err}");
    // The freed addresses are handed out again.
    let out = s.ok(&["network", "connect", "pub_net", &pa]);
    assert_eq!(out.trim(), "eth0 172.16.86.2/24");

    // rm -f detaches the rest; rm of several names.
    s.ok(&["network", "rm", "--force", "pub_net"]);
    assert_eq!(link_names(&a), ["lo"]);
    assert_eq!(link_names(&c), ["lo"]);
    if has_other {
        assert_eq!(s.ok(&["network", "rm", "other"]).trim(), "other");
    }
    assert_eq!(s.ok(&["network", "ls", "-q"]), "");
    assert_eq!(link_names(&s.sb.host), ["eth0", "lo", "uplink0"]);
    // inspect of a missing network: an empty array, the error, exit 1.
    let out = s.cli(&["network", "inspect", "pub_net"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json, serde_json::json!([]));
}

#[test]
fn cli_errors_exit_1_and_name_the_bad_value() {
    let s = CliSandbox::new();
    s.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet=172.16.86.0/24",
        "-o",
        "parent=eth0",
        "pub_net",
    ]);
    let ns = s.sb.container();
    let path = netns_path_for_child(&ns);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["frobnicate"], "frobnicate"),
        (vec!["network", "frobnicate"], "frobnicate"),
        (vec!["--colour", "network", "ls"], "--colour"),
        (vec!["--state-dir"], "--state-dir"),
        (vec![], "missing command"),
        (vec!["network"], "missing command"),
        (
            vec!["network", "create", "-d", "macvlan", "--colour=red", "n"],
            "--colour",
        ),
        (
            vec![
                "network",
                "create",
                "-d",
                "macvlan",
                "--subnet=10.1.0.0/33",
                "-o",
                "parent=eth0",
                "n",
            ],
            "10.1.0.0/33",
        ),
        (
            vec![
                "network", "create", "-d", "macvlan", "--subnet", "bogus", "n",
            ],
            "bogus",
        ),
        (vec!["network", "create", "-d", "bridge", "n"], "bridge"),
        (
            vec!["network", "create", "--subnet=10.1.0.0/24", "n"],
            "--driver",
        ),
        (
            vec![
                "network",
                "create",
                "-d",
                "macvlan",
                "-o",
                "colour=red",
                "n",
            ],
            "colour",
        ),
        (
            vec![
                "network",
                "create",
                "-d",
                "macvlan",
                "-o",
                "parent=nosuch0",
                "n",
            ],
            "nosuch0",
        ),
        (
            vec![
                "network",
                "create",
                "-d",
                "macvlan",
                "-o",
                "parent=eth0",
                "pub_net",
            ],
            "pub_net",
        ),
        (vec!["network", "inspect", "nope"], "nope"),
        (vec!["network", "rm", "nope"], "nope"),
        (vec!["network", "rm", "--colour", "pub_net"], "--colour"),
        (vec!["network", "ls", "extra"], "extra"),
        (vec!["network", "connect", "nope", &path], "nope"),
        (
            vec!["network", "connect", "pub_net", "/nonexistent/netns"],
            "/nonexistent/netns",
        ),
        (
            vec!["network", "connect", "pub_net", "no-such-name"],
            "/run/netns/no-such-name",
        ),
        (
            vec!["network", "connect", "pub_net", "/etc/hostname"],
            "/etc/hostname",
        ),
        (
            vec!["network", "connect", "--colour", "x", "pub_net", &path],
            "--colour",
        ),
        (
            vec!["network", "connect", "--ip", "10.0.0.300", "pub_net", &path],
            "10.0.0.300",
        ),
        (
            vec!["network", "connect", "--ip", "fd00::1", "pub_net", &path],
            "fd00::1",
        ),
        (
            vec!["network", "connect", "--ip=10.9.9.9", "pub_net", &path],
            "10.9.9.9",
        ),
        (
            vec![
                "network",
                "connect",
                "--mac-address",
                "zz:zz",
                "pub_net",
                &path,
            ],
            "zz:zz",
        ),
        (vec!["network", "connect", "--ip"], "--ip"),
        (vec!["network", "connect", "pub_net"], "NETNS"),
        (
            vec!["network", "disconnect", "pub_net", "/nonexistent/netns"],
            "/nonexistent/netns",
        ),
        (vec!["network", "disconnect", "nope", &path], "nope"),
    ];
    for (args, needle) in &cases {
        let err = s.fails(args);
        assert!(
            err.contains(needle),
            "underlay {args:?}: expected {needle:?} in: {err}"
        );
    }
    // Nothing was created or attached by the failures.
    assert_eq!(link_names(&ns), ["lo"]);
    assert_eq!(s.ok(&["network", "ls", "-q"]).trim(), "pub_net");
    s.ok(&["network", "rm", "pub_net"]);
}

#[test]
fn cli_recover_route_options_and_freeing_a_dead_containers_endpoint_by_name() {
    let s = CliSandbox::new();
    s.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet=10.77.0.0/24",
        "-o",
        "parent=eth0",
        "n",
    ]);
    let a = s.sb.container();
    let b = s.sb.container();
    let path = |ns: &underlay::netns::NetNs| common::netns_path_for_child(ns);
    s.ok(&["network", "connect", "--no-default-route", "n", &path(&a)]);
    assert!(!common::ip_routes(&a, false).contains("default"));
    s.ok(&[
        "network",
        "connect",
        "--metric=300",
        "--name",
        "b",
        "n",
        &path(&b),
    ]);
    assert!(
        common::ip_routes(&b, false).contains("default via 10.77.0.1 dev eth0 metric 300"),
        "{}",
        common::ip_routes(&b, false)
    );
    let err = s.fails(&["network", "connect", "--metric", "x", "n", &path(&b)]);
    assert!(err.contains("--metric"), "{err}");
    // Nothing to recover: an empty report.
    assert_eq!(s.ok(&["recover"]), "");
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["recover", "--json"])).unwrap();
    assert_eq!(json["released_endpoints"], serde_json::json!([]));
    // b's container dies without a disconnect; its endpoint is freed by name.
    drop(b);
    s.ok(&["network", "disconnect", "n", "b"]);
    let names: Vec<String> = s.inspect("n")["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let err = s.fails(&["network", "disconnect", "n", "nobody"]);
    assert!(err.contains("neither a namespace nor an endpoint"), "{err}");
    // a's container dies too: recover releases it and says so.
    drop(a);
    let out = s.ok(&["recover"]);
    assert!(out.starts_with("released endpoint n/"), "{out}");
    s.ok(&["network", "rm", "n"]);
}

/// The kill-9 matrix: every recorded step of every CLI command that
/// changes something, killed with SIGKILL there; then one ordinary command
/// (`inspect`), after which the invariants hold: no endpoint link without
/// a record, no record without its link, no address held twice, the parent
/// untouched, every network removable.
#[test]
fn cli_kill_9_at_every_step_then_one_ordinary_command_leaves_consistent_state() {
    let matrix: &[(&str, &[&str])] = &[
        ("create", &["recorded as creating", "created network"]),
        (
            "connect",
            &["recorded as attaching", "created link", "attached"],
        ),
        (
            "disconnect",
            &["recorded as detaching", "off the network", "detached"],
        ),
        (
            "rm",
            &[
                "recorded as removing",
                "endpoint state removed",
                "removed network",
            ],
        ),
        (
            "rm -f",
            &[
                "recorded as removing",
                "endpoint links deleted",
                "endpoint state removed",
                "removed network",
            ],
        ),
    ];
    let mut kills = 0;
    for (command, steps) in matrix {
        for step in *steps {
            let s = CliSandbox::new();
            let create = [
                "network",
                "create",
                "-d",
                "macvlan",
                "--subnet=10.78.0.0/24",
                "-o",
                "parent=eth0",
                "n",
            ];
            let containers: Vec<underlay::netns::NetNs> =
                (0..3).map(|_| s.sb.container()).collect();
            let paths: Vec<String> = containers
                .iter()
                .map(common::netns_path_for_child)
                .collect();
            let args: Vec<&str> = match *command {
                "create" => create.to_vec(),
                "connect" => {
                    s.ok(&create);
                    s.ok(&["network", "connect", "n", &paths[0]]);
                    vec!["network", "connect", "n", &paths[1]]
                }
                "disconnect" => {
                    s.ok(&create);
                    s.ok(&["network", "connect", "n", &paths[0]]);
                    vec!["network", "disconnect", "n", &paths[0]]
                }
                "rm" => {
                    s.ok(&create);
                    vec!["network", "rm", "n"]
                }
                _ => {
                    s.ok(&create);
                    for path in &paths {
                        s.ok(&["network", "connect", "n", path]);
                    }
                    vec!["network", "rm", "-f", "n"]
                }
            };
            let out = s.cli_env(&args, &[("UNDERLAY_CRASH_AT", step)]);
            assert!(
                common::killed(&out),
                "{command} at {step:?}: not killed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            kills += 1;
            // One ordinary command.
            let listed = s.ok(&["network", "ls", "-q"]);
            let endpoints: Vec<serde_json::Value> = if listed.trim().is_empty() {
                Vec::new()
            } else {
                s.inspect("n")["endpoints"].as_array().unwrap().clone()
            };
            let context = format!("{command} killed at {step:?}");
            // No record without its link, no link without a record.
            let recorded: Vec<&str> = endpoints
                .iter()
                .map(|e| e["netns"].as_str().unwrap())
                .collect();
            for (path, ns) in paths.iter().zip(&containers) {
                // On the network: a link with an address (a detached link
                // has none, and waits for a sweep).
                let has_link = !common::global_addresses(ns).is_empty();
                let has_record = recorded.contains(&path.as_str());
                assert_eq!(has_link, has_record, "{context}: {path}");
            }
            // No address held twice.
            let mut addresses: Vec<&str> = endpoints
                .iter()
                .flat_map(|e| e["addresses"].as_array().unwrap())
                .map(|a| a.as_str().unwrap())
                .collect();
            let count = addresses.len();
            addresses.sort_unstable();
            addresses.dedup();
            assert_eq!(addresses.len(), count, "{context}: {addresses:?}");
            // The parent is never deleted.
            assert!(
                link_names(&s.sb.host).contains(&"eth0".to_owned()),
                "{context}"
            );
            // Every network is removable, and then nothing is left.
            if !listed.trim().is_empty() {
                s.ok(&["network", "rm", "-f", "n"]);
            }
            for ns in &containers {
                assert_eq!(link_names(ns), ["lo"], "{context}");
            }
            assert_eq!(s.ok(&["recover"]), "", "{context}");
        }
    }
    assert_eq!(kills, 15);
}

#[test]
fn cli_help_for_every_command() {
    let s = CliSandbox::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--help"], "--state-dir DIR"),
        (&["-h"], "/var/lib/underlay"),
        (&["help"], "network connect"),
        (&["network", "--help"], "disconnect"),
        (&["network", "create", "--help"], "The driver is required"),
        (&["network", "create", "-h"], "--aux-address NAME=IP"),
        (&["network", "rm", "--help"], "--force"),
        (&["network", "ls", "--help"], "NAME DRIVER PARENT SUBNETS"),
        (&["network", "inspect", "--help"], "JSON"),
        (&["network", "connect", "--help"], "--mac-address"),
        (&["network", "disconnect", "--help"], "namespace is gone"),
        (&["recover", "--help"], "--json"),
    ];
    for (args, needle) in cases {
        let out = s.ok(args);
        assert!(out.starts_with("Usage: underlay"), "{args:?}: {out}");
        assert!(
            out.contains(needle),
            "{args:?}: expected {needle:?} in:\n{out}"
        );
    }
}

#[test]
fn cli_host_shim_create_inspect_connect_ping_rm() {
    let s = CliSandbox::new();
    s.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet=10.7.70.0/24",
        "--ip-range=10.7.70.0/25",
        "-o",
        "parent=eth0",
        "-o",
        "host_shim=auto",
        "lan",
    ]);
    let json = s.inspect("lan");
    let link = json["host_shim"]["link"].as_str().unwrap().to_owned();
    assert_eq!(json["host_shim"]["addresses"][0], "10.7.70.254", "{json}");
    assert_eq!(json["options"]["host_shim"], "10.7.70.254", "{json}");
    assert!(link_names(&s.sb.host).contains(&link));
    let c = s.sb.container();
    let netns = format!("/proc/{}/fd/{}", std::process::id(), common::fd_of(&c));
    let out = s.ok(&["network", "connect", "lan", &netns]);
    let address = out
        .split_whitespace()
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(common::ping(&s.sb.host, &address), "{out}");
    assert!(common::ping(&c, "10.7.70.254"));
    // The shim's address is never a container's.
    let c2 = s.sb.container();
    let netns2 = format!("/proc/{}/fd/{}", std::process::id(), common::fd_of(&c2));
    let err = s.fails(&["network", "connect", "--ip", "10.7.70.254", "lan", &netns2]);
    assert!(err.contains("host_shim"), "{err}");
    let err = s.fails(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=eth0",
        "-o",
        "host_shim=nope",
        "bad",
    ]);
    assert!(err.contains("invalid host_shim \"nope\""), "{err}");
    s.ok(&["network", "rm", "-f", "lan"]);
    assert_eq!(link_names(&s.sb.host), ["eth0", "lo", "uplink0"]);
}

/// `underlay dns`: runs in the foreground, answers in the containers, and
/// exits 0 on SIGTERM.
#[cfg(feature = "dns")]
#[test]
fn cli_dns_serves_names_and_stops_on_sigterm() {
    let s = CliSandbox::new();
    s.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet=10.7.71.0/24",
        "-o",
        "parent=eth0",
        "lan",
    ]);
    let (c1, c2) = (s.sb.container(), s.sb.container());
    let path = |c: &underlay::netns::NetNs| {
        format!("/proc/{}/fd/{}", std::process::id(), common::fd_of(c))
    };
    s.ok(&[
        "network",
        "connect",
        "--name",
        "ipv1",
        "--alias",
        "db",
        "lan",
        &path(&c1),
    ]);
    s.ok(&["network", "connect", "--name", "ipv2", "lan", &path(&c2)]);
    let empty = s.dir.0.join("empty.conf");
    std::fs::write(&empty, "").unwrap();
    let fd = common::fd_of(&s.sb.host);
    let mut command = Command::new(example("underlay"));
    command
        .arg("--state-dir")
        .arg(&s.dir.0)
        .arg(format!("--runtime-dir={}", s.dir.0.join("run").display()))
        .args([
            "dns",
            "--upstream",
            "10.7.71.250",
            "--domain",
            "lan.example",
        ])
        .env_remove("UNDERLAY_LOG")
        .stderr(std::process::Stdio::piped());
    // SAFETY: setns is async-signal-safe and only affects the child.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    // Asked from inside c2, by a plain UDP query.
    let ask = |name: &str| -> Option<Vec<u8>> {
        let name = name.to_owned();
        c2.run(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(std::time::Duration::from_millis(200)))
                .unwrap();
            socket.connect("127.0.0.11:53").unwrap();
            let mut query = vec![0x42, 0x42, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            for label in name.split('.') {
                query.push(label.len() as u8);
                query.extend(label.as_bytes());
            }
            query.extend([0, 0, 1, 0, 1]);
            if socket.send(&query).is_err() {
                return Ok(None);
            }
            let mut buf = [0u8; 512];
            Ok(socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec()))
        })
        .unwrap()
    };
    let start = std::time::Instant::now();
    let reply = loop {
        if let Some(reply) = ask("db.lan.example") {
            break reply;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "never answered"
        );
    };
    // NOERROR, one answer: ipv1's address (10.7.71.2) at the end.
    assert_eq!(reply[3] & 0x0f, 0, "{reply:?}");
    assert_eq!(&reply[6..8], &[0, 1], "{reply:?}");
    assert_eq!(&reply[reply.len() - 4..], &[10, 7, 71, 2], "{reply:?}");
    // SIGTERM: a clean exit.
    // SAFETY: kill on the child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(stderr.contains("serving names at 127.0.0.11"), "{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    s.ok(&["network", "rm", "-f", "lan"]);
}

/// What a detach leaves (a link marked detached, until the next connect,
/// recover or rm -f deletes it) never lets two containers hold one address,
/// and never stands in a later connect's way.
#[test]
fn cli_a_detached_link_holds_its_address_and_gives_way() {
    let s = CliSandbox::new();
    s.sb.nl
        .create_link(&underlay::link::NewLink::veth("eth1", "uplink1").up())
        .unwrap();
    let uplink = s.sb.nl.link_by_name("uplink1").unwrap();
    s.sb.nl.set_link_up_by_index(uplink.index, true).unwrap();
    for (name, subnet, parent) in [
        ("n1", "10.7.72.0/24", "eth0"),
        ("n2", "10.7.73.0/24", "eth1"),
    ] {
        s.ok(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            subnet,
            "-o",
            &format!("parent={parent}"),
            name,
        ]);
    }
    let (c1, c2, c3) = (s.sb.container(), s.sb.container(), s.sb.container());
    let path = |c: &underlay::netns::NetNs| common::netns_path_for_child(c);
    s.ok(&[
        "network",
        "connect",
        "--mac-address",
        "02:42:0a:07:48:63",
        "n1",
        &path(&c1),
    ]);
    s.ok(&["network", "disconnect", "n1", &path(&c1)]);
    // The container, root in its namespace, takes its detached link back
    // and puts its old address on it...
    for args in [
        &["link", "set", "eth0", "protodown", "off"][..],
        &["addr", "add", "10.7.72.2/24", "dev", "eth0"],
    ] {
        assert!(common::run_in(&c1, "ip", args).status.success(), "{args:?}");
    }
    // ...but the address is still held for it: nobody else gets it until
    // the link is gone.
    let out = s.ok(&["network", "connect", "n1", &path(&c2)]);
    assert!(out.contains("10.7.72.3/24"), "{out}");
    // That connect swept the detached link (a CLI process sweeps before it
    // exits), so the address is free now, and so is the MAC.
    assert_eq!(link_names(&c1), ["lo"]);
    let out = s.ok(&[
        "network",
        "connect",
        "--ip",
        "10.7.72.2",
        "--mac-address",
        "02:42:0a:07:48:63",
        "n1",
        &path(&c3),
    ]);
    assert!(out.contains("10.7.72.2/24"), "{out}");
    // A detached link of another network does not keep eth0 from a
    // container connected again.
    s.ok(&["network", "connect", "n2", &path(&c1)]);
    s.ok(&["network", "disconnect", "n2", &path(&c1)]);
    assert_eq!(link_names(&c1), ["eth0", "lo"]);
    let out = s.ok(&["network", "connect", "n1", &path(&c1)]);
    assert!(out.starts_with("eth0 "), "{out}");
    // A detached link with a requested address gives way at once.
    s.ok(&["network", "disconnect", "n1", &path(&c3)]);
    assert_eq!(link_names(&c3), ["eth0", "lo"]);
    let c4 = s.sb.container();
    let out = s.ok(&["network", "connect", "--ip", "10.7.72.2", "n1", &path(&c4)]);
    assert!(out.contains("10.7.72.2/24"), "{out}");
    assert_eq!(link_names(&c3), ["lo"]);
    s.ok(&["network", "rm", "-f", "n1"]);
    s.ok(&["network", "rm", "-f", "n2"]);
    for c in [&c1, &c2, &c3, &c4] {
        assert_eq!(link_names(c), ["lo"]);
    }
}
