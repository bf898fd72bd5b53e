//! The `underlay-cni` plugin driven by real container runtimes: podman 4.3
//! with its CNI backend, and containerd 1.6's `ctr run --cni`. Nothing is
//! mocked: the runtimes create the containers and their namespaces and call
//! the plugin as they call any CNI plugin.
//!
//! Nothing of the machine's is used or changed: podman gets a
//! `containers.conf` of the test's own (`CONTAINERS_CONF`: CNI backend, the
//! test's network config and plugin directories, runc, cgroupfs) and its
//! own storage (vfs); containerd is started by the test with its own
//! config, root, state and socket; `ctr run --cni`, which reads only
//! `/etc/cni/net.d` and `/opt/cni/bin`, runs in a private mount namespace
//! with the test's directories mounted over those (and over
//! `/var/lib/cni`, libcni's cache). The parent of each network is a veth
//! pair the test makes in the machine's namespace (`ulrt...`, deleted by a
//! guard). Images are made offline from busybox-static. (podman itself
//! still writes libcni's result cache in /var/lib/cni/results, each entry
//! gone with its DEL, and c/image's blob cache in /var/lib/containers/cache.)
//!
//! The plugin runs behind a wrapper that logs each call (its CNI_*
//! variables, stdin, stdout, exit code), so the tests also check what the
//! runtimes sent, and a failing test prints the calls.
//!
//! Needs root, podman + runc + conmon (Debian's podman 4.3.1), containerd's
//! binaries (`UNDERLAY_CONTAINERD_BIN` or PATH), busybox-static. When one is
//! missing the test says so and passes, unless `UNDERLAY_REQUIRE_RUNTIMES=1`
//! (set by `scripts/test.sh`'s host tier), which makes it fail. The
//! real-kernel tier does not run this file.
//!
//! `UNDERLAY_CNI_TEST_PLUGIN=stock` runs the same tests with the stock
//! `macvlan` + `host-local` plugins instead (a check of the harness);
//! `UNDERLAY_CNI_TEST_SHOW_CALLS=1` (with `--nocapture`) prints every call
//! of the plugin, as a failing test does.

#[path = "cni_runtimes/harness.rs"]
mod harness;

use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use harness::{
    install_plugin, ipv4_of, require, unique, CallLog, Containerd, Plugin, Podman, Scratch, Subnet,
    Veth, CTR_IMAGE, PODMAN_IMAGE,
};

/// A unique name for a network or a container.
fn name() -> String {
    format!("ulrt-{}-{}", std::process::id(), unique())
}

/// Whether `text` (busybox's `ip route`) has `default via GATEWAY dev IFNAME`.
fn has_default_route(text: &str, gateway: &str, ifname: &str) -> bool {
    text.lines().any(|l| {
        l.split_whitespace().collect::<Vec<_>>()[..]
            .starts_with(&["default", "via", gateway, "dev", ifname])
    })
}

/// Checks an ADD's result: `address/24` on an interface with a MAC.
fn check_add_result(call: &harness::Call, address: &str) {
    assert_eq!(call.rc, Some(0), "ADD failed: {call:?}");
    let result = call.result();
    let ips = result["ips"].as_array().cloned().unwrap_or_default();
    assert!(
        ips.iter()
            .any(|ip| ip["address"] == format!("{address}/24")),
        "the ADD result lacks {address}/24: {result}"
    );
    let interfaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    assert!(
        interfaces
            .iter()
            .any(|i| i["mac"].as_str().is_some_and(|m| !m.is_empty())),
        "the ADD result has no interface with a MAC (podman rejects that): {result}"
    );
}

// ------------------------------------------------------------ podman

/// One podman test's world: a podman of its own, the plugin (logged) and
/// the parents of its networks. Dropped in this order: the containers go
/// first (the plugin's DEL while the parents exist), the scratch directory
/// last.
struct PodmanTest {
    podman: Podman,
    log: CallLog,
    parents: Vec<Veth>,
    plugin: Plugin,
    dir: Scratch,
}

impl PodmanTest {
    /// `None`: skipped (something is missing; see `harness::require`).
    fn new(test: &str) -> Option<Self> {
        let plugin = Plugin::from_env();
        let mut missing = Podman::missing();
        missing.extend(plugin.missing());
        require(test, &missing).ok()?;
        let dir = Scratch::new();
        let log = CallLog::new(dir.join("calls"));
        install_plugin(plugin, &dir.join("cni-bin"), &dir.join("plugin"), &log);
        let podman = Podman::new(&dir.path, &dir.join("cni-bin"));
        Some(PodmanTest {
            podman,
            log,
            parents: Vec::new(),
            plugin,
            dir,
        })
    }

    /// A new network on a new veth parent: its name and subnet.
    fn network(&mut self) -> (String, Subnet) {
        let parent = Veth::new();
        let subnet = Subnet::new();
        let name = name();
        let conf = self.plugin.conf(&parent.name, &subnet, &self.dir.path);
        self.parents.push(parent);
        self.podman.add_network(&name, conf);
        (name, subnet)
    }

    /// Starts `sleep` in a new container on `network` (extra options
    /// `opts`): its name.
    fn start(&self, network: &str, opts: &[&str]) -> String {
        let container = name();
        let mut args = vec![
            "run",
            "--detach",
            "--name",
            &container,
            "--network",
            network,
        ];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[PODMAN_IMAGE, "sleep", "600"]);
        self.podman.ok(&args);
        container
    }

    /// The id podman gave container `name` (the plugin's CNI_CONTAINERID).
    fn id(&self, name: &str) -> String {
        self.podman
            .ok(&["inspect", "--format", "{{.Id}}", name])
            .trim()
            .to_owned()
    }

    /// Waits until the plugin got a DEL for `id` on `ifname` (podman may tear
    /// down in its cleanup process, just after the command returns).
    fn wait_del(&self, id: &str, ifname: &str) -> harness::Call {
        harness::wait_for(Duration::from_secs(30), || {
            self.log.of("DEL").into_iter().find(|c| {
                c.var("CNI_CONTAINERID") == id && c.var("CNI_IFNAME") == ifname && c.rc.is_some()
            })
        })
        .unwrap_or_else(|| panic!("no DEL for container {id} {ifname} within 30 s"))
    }
}

#[test]
fn podman_run_gets_the_first_address_and_the_default_route() {
    let Some(mut t) = PodmanTest::new("podman_run_gets_the_first_address_and_the_default_route")
    else {
        return;
    };
    let (net, subnet) = t.network();
    let out = t.podman.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        PODMAN_IMAGE,
        "sh",
        "-c",
        "ip -o -4 addr show dev eth0; ip route",
    ]);
    let (address, len) = ipv4_of(&out, "eth0").unwrap_or_else(|| panic!("no address: {out}"));
    assert!(
        subnet.contains(&address),
        "{address} is not in {}",
        subnet.cidr()
    );
    assert_eq!(
        (address.as_str(), len),
        (subnet.host(2).as_str(), 24),
        "the first container of a network gets the lowest free address"
    );
    assert!(
        has_default_route(&out, &subnet.gateway(), "eth0"),
        "no default route via {}: {out}",
        subnet.gateway()
    );

    let adds = t.log.of("ADD");
    assert_eq!(adds.len(), 1, "one ADD: {}", t.log.report());
    let add = &adds[0];
    assert_eq!(add.var("CNI_IFNAME"), "eth0");
    assert!(add.var("CNI_NETNS").starts_with("/run/netns/"), "{add:?}");
    check_add_result(add, &address);
    // --rm: the container is gone, and the plugin was told.
    let del = t.wait_del(add.var("CNI_CONTAINERID"), "eth0");
    assert_eq!(del.rc, Some(0), "DEL failed: {del:?}");
}

#[test]
fn podman_run_with_ip_gets_that_address() {
    let Some(mut t) = PodmanTest::new("podman_run_with_ip_gets_that_address") else {
        return;
    };
    let (net, subnet) = t.network();
    let wanted = subnet.host(50);
    let out = t.podman.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "--ip",
        &wanted,
        PODMAN_IMAGE,
        "sh",
        "-c",
        "ip -o -4 addr show dev eth0; ip route",
    ]);
    assert_eq!(ipv4_of(&out, "eth0"), Some((wanted.clone(), 24)), "{out}");
    assert!(has_default_route(&out, &subnet.gateway(), "eth0"), "{out}");
    let adds = t.log.of("ADD");
    assert_eq!(adds.len(), 1, "one ADD: {}", t.log.report());
    check_add_result(&adds[0], &wanted);
}

#[test]
fn podman_containers_on_one_network_ping_each_other() {
    let Some(mut t) = PodmanTest::new("podman_containers_on_one_network_ping_each_other") else {
        return;
    };
    let (net, subnet) = t.network();
    let a = t.start(&net, &[]);
    let b_address = subnet.host(60);
    let b = t.start(&net, &["--ip", &b_address]);
    let a_address = t.podman.address(&a, "eth0").expect("a's address");
    assert_eq!(a_address, subnet.host(2));
    assert_eq!(
        t.podman.address(&b, "eth0").as_deref(),
        Some(b_address.as_str())
    );
    // Bridge-mode macvlan siblings on one parent reach each other.
    t.podman
        .ok(&["exec", &b, "ping", "-c", "2", "-w", "10", &a_address]);
    t.podman
        .ok(&["exec", &a, "ping", "-c", "2", "-w", "10", &b_address]);
}

#[test]
fn podman_network_connect_and_disconnect_add_and_remove_eth1() {
    let Some(mut t) = PodmanTest::new("podman_network_connect_and_disconnect_add_and_remove_eth1")
    else {
        return;
    };
    let (net1, subnet1) = t.network();
    let (net2, subnet2) = t.network();
    let a = t.start(&net1, &[]);
    let id = t.id(&a);
    assert_eq!(t.podman.address(&a, "eth0"), Some(subnet1.host(2)));

    t.podman.ok(&["network", "connect", &net2, &a]);
    assert_eq!(t.podman.address(&a, "eth1"), Some(subnet2.host(2)));
    assert_eq!(t.podman.address(&a, "eth0"), Some(subnet1.host(2)));
    let add = t
        .log
        .of("ADD")
        .into_iter()
        .find(|c| c.var("CNI_IFNAME") == "eth1")
        .expect("an ADD for eth1");
    assert_eq!(add.var("CNI_CONTAINERID"), id);
    check_add_result(&add, &subnet2.host(2));

    t.podman.ok(&["network", "disconnect", &net2, &a]);
    let del = t.wait_del(&id, "eth1");
    assert_eq!(del.rc, Some(0), "DEL failed: {del:?}");
    // DEL takes eth1 off the network at once; its deletion follows (the
    // sweeper DEL starts).
    let gone = harness::wait_for(Duration::from_secs(10), || {
        let links = t.podman.ok(&["exec", &a, "ip", "-o", "link", "show"]);
        (!links.contains(": eth1")).then_some(())
    });
    assert!(gone.is_some(), "eth1 is still there");
    assert_eq!(t.podman.address(&a, "eth0"), Some(subnet1.host(2)));
    assert!(
        !t.log
            .of("DEL")
            .iter()
            .any(|c| c.var("CNI_IFNAME") == "eth0"),
        "disconnecting eth1 sent a DEL for eth0: {}",
        t.log.report()
    );
}

#[test]
fn podman_rm_releases_the_address() {
    let Some(mut t) = PodmanTest::new("podman_rm_releases_the_address") else {
        return;
    };
    let (net, subnet) = t.network();
    let wanted = subnet.host(50);
    let a = t.start(&net, &["--ip", &wanted]);
    let id = t.id(&a);
    assert_eq!(t.podman.address(&a, "eth0"), Some(wanted.clone()));

    // Taken: a second container cannot have it, and its failed attempt
    // (with whatever DEL podman sends after it) leaves it with `a`.
    let try_wanted = || {
        t.podman.run(&[
            "run",
            "--rm",
            "--network",
            &net,
            "--ip",
            &wanted,
            PODMAN_IMAGE,
            "sh",
            "-c",
            "ip -o -4 addr show dev eth0",
        ])
    };
    for attempt in 1..=2 {
        let out = try_wanted();
        assert!(
            !out.status.success(),
            "attempt {attempt}: a second container got {wanted}, which {a} holds: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(t.podman.address(&a, "eth0"), Some(wanted.clone()));

    t.podman.ok(&["rm", "--force", "--time", "0", &a]);
    let del = t.wait_del(&id, "eth0");
    assert_eq!(del.rc, Some(0), "DEL failed: {del:?}");
    let out = harness::success(try_wanted(), "podman run --ip after podman rm");
    assert_eq!(ipv4_of(&out, "eth0"), Some((wanted, 24)), "{out}");
}

// ------------------------------------------------------------ containerd

/// A background `ctr run`, killed when dropped if it still runs: its
/// process group, which `timeout` made (ctr would pass a gentler signal on
/// to the task, which ignores it as a PID 1). The containerd guard then
/// removes the task and the container.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            // SAFETY: a plain kill(2) of our own child's process group.
            unsafe { libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }
}

#[test]
fn ctr_run_cni_adds_and_its_del_with_no_netns_frees_the_address() {
    let test = "ctr_run_cni_adds_and_its_del_with_no_netns_frees_the_address";
    let plugin = Plugin::from_env();
    let mut missing = Containerd::missing();
    missing.extend(plugin.missing());
    if require(test, &missing).is_err() {
        return;
    }
    let dir = Scratch::new();
    let log = CallLog::new(dir.join("calls"));
    let parent = Veth::new();
    let subnet = Subnet::new();
    let plugins = dir.join("cni-bin");
    install_plugin(plugin, &plugins, &dir.join("plugin"), &log);
    let (net_dir, cache) = (dir.join("cni-net"), dir.join("cni-cache"));
    fs::create_dir_all(&net_dir).unwrap();
    fs::create_dir_all(&cache).unwrap();
    let mut conf = plugin.conf(&parent.name, &subnet, &dir.path);
    if plugin == Plugin::Stock {
        // host-local hands addresses out round-robin; with a one-address
        // range, getting it again means it was freed (underlay's allocator
        // hands out the lowest free address anyway).
        conf["ipam"]["ranges"][0][0]["rangeEnd"] = subnet.host(2).into();
    }
    let network = name();
    fs::write(
        net_dir.join(format!("10-{network}.conflist")),
        harness::conflist(&network, conf),
    )
    .unwrap();
    let rootfs = harness::rootfs_tar(&dir.path);
    let image = harness::docker_archive(&dir.path, &rootfs, CTR_IMAGE);
    let ctrd = Containerd::start(&dir.path);
    ctrd.import(&image);

    // A long-running container: ADD, then killed.
    let first = name();
    let out_path = dir.join("first.out");
    let mut background = Background(ctrd.cni_spawn(
        &net_dir,
        &plugins,
        &cache,
        &first,
        "ip -o -4 addr show dev eth0; ip route; exec sleep 600",
        &out_path,
    ));
    let read = |path: &Path| fs::read_to_string(path).unwrap_or_default();
    let out = harness::wait_for(Duration::from_secs(30), || {
        let text = read(&out_path);
        let ended = background.0.try_wait().ok().flatten().is_some();
        (text.contains("default") || ended).then_some(text)
    })
    .unwrap_or_else(|| panic!("ctr run printed no route within 30 s: {}", read(&out_path)));
    let (address, _) = ipv4_of(&out, "eth0").unwrap_or_else(|| panic!("no address: {out}"));
    assert_eq!(address, subnet.host(2), "{out}");
    assert!(has_default_route(&out, &subnet.gateway(), "eth0"), "{out}");
    let adds = log.of("ADD");
    assert_eq!(adds.len(), 1, "one ADD: {}", log.report());
    let add = &adds[0];
    assert_eq!(add.var("CNI_CONTAINERID"), format!("default-{first}"));
    assert_eq!(add.var("CNI_IFNAME"), "eth0");
    let netns = add.var("CNI_NETNS");
    assert!(
        netns.starts_with("/proc/") && netns.ends_with("/ns/net"),
        "ctr's netns: {netns}"
    );
    check_add_result(add, &address);

    ctrd.ctr_ok(&["tasks", "kill", "--signal", "KILL", &first]);
    harness::wait_for(Duration::from_secs(30), || {
        background.0.try_wait().ok().flatten()
    })
    .expect("ctr run did not end within 30 s of its task's kill");
    assert!(
        !ctrd.containers().contains(&first),
        "ctr run --rm left its container"
    );
    // ctr tears down after the task died: DEL with no netns at all.
    let dels = log.of("DEL");
    assert_eq!(dels.len(), 1, "one DEL: {}", log.report());
    assert_eq!(dels[0].var("CNI_CONTAINERID"), format!("default-{first}"));
    assert_eq!(dels[0].var("CNI_IFNAME"), "eth0");
    assert_eq!(
        dels[0].var("CNI_NETNS"),
        "",
        "ctr's DEL comes after the task"
    );
    assert_eq!(dels[0].rc, Some(0), "DEL failed: {}", log.report());

    // The address is free again: the next container gets it.
    let second = name();
    let out = harness::success(
        ctrd.cni_run(
            &net_dir,
            &plugins,
            &cache,
            &second,
            "ip -o -4 addr show dev eth0",
        ),
        "the second ctr run",
    );
    assert_eq!(ipv4_of(&out, "eth0"), Some((address, 24)), "{out}");
    let dels = log.of("DEL");
    assert_eq!(dels.len(), 2, "a DEL for each container: {}", log.report());
    assert_eq!(dels[1].rc, Some(0), "DEL failed: {}", log.report());
    assert!(ctrd.containers().is_empty());
}
