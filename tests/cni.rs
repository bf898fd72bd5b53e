//! `underlay-cni` driven as a runtime drives it: the binary executed with
//! `CNI_*` variables and a configuration on stdin, in a sandbox "host"
//! namespace, against container namespaces of the test's own. Every
//! command, every bad input, chained `prevResult` (handed to the stock
//! `tuning` plugin), delegated IPAM (`host-local`, `static`), and kill -9
//! during `ADD`. (podman and containerd drive it in tests/cni_runtimes.rs.)

mod common;

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::{fd_of, ip_json, ping, run_in, Sandbox, StateDir};
use serde_json::{json, Value};
use underlay::netns::NetNs;
use underlay::Host;

/// The plugin under test: this build's, or `UNDERLAY_CNI_BIN` (the test
/// command runs these tests again with the statically linked release-style
/// build the README installs).
fn plugin() -> &'static str {
    static PLUGIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PLUGIN.get_or_init(|| {
        std::env::var("UNDERLAY_CNI_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_underlay-cni").to_owned())
    })
}
/// The stock plugins (containernetworking-plugins).
const STOCK: &str = "/usr/lib/cni";

/// What a plugin run gave: its exit status and its stdout as JSON (or
/// `Null` when it printed nothing).
#[derive(Debug)]
struct Reply {
    ok: bool,
    json: Value,
    stderr: String,
}

impl Reply {
    fn code(&self) -> u64 {
        assert!(!self.ok, "expected an error, got {}", self.json);
        self.json["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code in {}", self.json))
    }

    fn msg(&self) -> &str {
        self.json["msg"].as_str().unwrap_or_default()
    }

    fn result(&self) -> &Value {
        assert!(self.ok, "plugin failed: {} {}", self.json, self.stderr);
        &self.json
    }
}

/// Runs `program` in the sandbox's host namespace with a clean environment
/// (PATH and the given variables), `stdin` on its stdin.
fn exec(sb: &Sandbox, program: &str, vars: &[(&str, String)], stdin: &Value) -> Reply {
    let fd = sb.host.as_fd().as_raw_fd();
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setns is async-signal-safe and only affects the forked child.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("run the plugin");
    let input = match stdin {
        Value::String(raw) => raw.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    };
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
    };
    Reply {
        ok: out.status.success(),
        json,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A test's world: a sandbox host, a state directory, a network config.
struct Cni {
    sb: Sandbox,
    dir: StateDir,
    conf: Value,
}

impl Cni {
    fn new(version: &str, subnet: &str) -> Cni {
        let sb = Sandbox::new();
        let dir = StateDir::new();
        let conf = json!({
            "cniVersion": version,
            "name": "cninet",
            "type": "underlay-cni",
            "driver": "macvlan",
            "options": {"parent": "eth0"},
            "subnets": [{"subnet": subnet}],
            "stateDir": dir.0.join("state"),
            "runtimeDir": dir.0.join("run"),
        });
        Cni { sb, dir, conf }
    }

    fn vars(command: &str, id: &str, netns: &str, ifname: &str) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", command.to_owned()),
            ("CNI_CONTAINERID", id.to_owned()),
            ("CNI_NETNS", netns.to_owned()),
            ("CNI_IFNAME", ifname.to_owned()),
            ("CNI_PATH", STOCK.to_owned()),
        ]
    }

    fn run(&self, command: &str, id: &str, netns: &str, conf: &Value) -> Reply {
        exec(
            &self.sb,
            plugin(),
            &Self::vars(command, id, netns, "eth0"),
            conf,
        )
    }

    fn add(&self, id: &str, container: &NetNs) -> Reply {
        self.run("ADD", id, &path(container), &self.conf)
    }

    fn with_prev(&self, prev: &Value) -> Value {
        let mut conf = self.conf.clone();
        conf["prevResult"] = prev.clone();
        conf
    }

    fn host(&self) -> Host {
        Host::options()
            .state_dir(self.dir.0.join("state"))
            .runtime_dir(self.dir.0.join("run"))
            .netns(NetNs::open(format!("/proc/self/fd/{}", fd_of(&self.sb.host))).unwrap())
            .open()
            .unwrap()
    }

    fn endpoints(&self) -> usize {
        match self.host().network("cninet") {
            Ok(net) => net.endpoints().unwrap().len(),
            Err(_) => 0,
        }
    }
}

fn path(ns: &NetNs) -> String {
    common::netns_path_for_child(ns)
}

/// The container's global addresses on `ifname`.
fn addresses(ns: &NetNs, ifname: &str) -> Vec<String> {
    let links = ip_json(ns, &["addr", "show"]);
    links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"] == ifname)
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn links(ns: &NetNs) -> Vec<String> {
    common::link_names(ns)
}

#[test]
fn version_lists_the_supported_versions() {
    let sb = Sandbox::new();
    let reply = exec(
        &sb,
        plugin(),
        &[("CNI_COMMAND", "VERSION".into())],
        &json!({"cniVersion": "1.0.0"}),
    );
    let v = reply.result();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
}

#[test]
fn add_check_del_in_every_version_with_the_kernel_state_to_match() {
    for (i, version) in ["0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let cni = Cni::new(version, &format!("10.91.{i}.0/24"));
        let c1 = cni.sb.container();
        let result = cni.add("c1", &c1).result().clone();
        assert_eq!(result["cniVersion"], version);
        assert_eq!(result["interfaces"][0]["name"], "eth0");
        assert_eq!(result["interfaces"][0]["sandbox"], path(&c1));
        let mac = result["interfaces"][0]["mac"].as_str().unwrap().to_owned();
        assert_eq!(mac.len(), 17, "{result}");
        let ip = &result["ips"][0];
        assert_eq!(ip["address"], format!("10.91.{i}.2/24"));
        assert_eq!(ip["gateway"], format!("10.91.{i}.1"));
        assert_eq!(ip["interface"], 0);
        // 0.4.0 results carry the family in each IP entry; 1.x do not.
        assert_eq!(ip.get("version").is_some(), version == "0.4.0", "{result}");
        assert_eq!(
            result["routes"],
            json!([{"dst": "0.0.0.0/0", "gw": format!("10.91.{i}.1")}])
        );
        // The kernel agrees.
        assert_eq!(addresses(&c1, "eth0"), vec![format!("10.91.{i}.2/24")]);
        let link = common::ip_link(&c1, "eth0");
        assert_eq!(link["address"], mac.as_str());
        assert!(
            common::ip_routes(&c1, false).contains(&format!("default via 10.91.{i}.1 dev eth0"))
        );

        let with_prev = cni.with_prev(&result);
        assert!(cni.run("CHECK", "c1", &path(&c1), &with_prev).ok);
        let del = cni.run("DEL", "c1", &path(&c1), &with_prev);
        assert!(del.ok && del.json.is_null(), "{del:?}");
        // Off the network at once: no address; the link is deleted just
        // after, by the sweeper DEL started.
        assert!(addresses(&c1, "eth0").is_empty());
        common::wait_for_links(&c1, &["lo"]);
        assert_eq!(cni.endpoints(), 0);
        // Again: nothing to do, still success.
        assert!(cni.run("DEL", "c1", &path(&c1), &with_prev).ok);
    }
}

#[test]
fn two_attachments_talk_and_the_interface_name_is_the_runtimes() {
    let cni = Cni::new("1.0.0", "10.92.0.0/24");
    let (c1, c2) = (cni.sb.container(), cni.sb.container());
    cni.add("c1", &c1).result();
    let r2 = exec(
        &cni.sb,
        plugin(),
        &Cni::vars("ADD", "c2", &path(&c2), "net1"),
        &cni.conf,
    );
    assert_eq!(r2.result()["interfaces"][0]["name"], "net1");
    run_in(&c1, "ip", &["link", "set", "lo", "up"]);
    assert!(ping(&c2, "10.92.0.2"), "c2 reaches c1");
    // A namespace is on a network once (as with Docker): a second
    // interface of the same container on the same network is a conflict.
    let c1b = exec(
        &cni.sb,
        plugin(),
        &Cni::vars("ADD", "c1", &path(&c1), "eth1"),
        &cni.conf,
    );
    assert_eq!(c1b.code(), 101, "{c1b:?}");
    assert!(c1b.msg().contains("attached to network"), "{}", c1b.msg());
    assert_eq!(cni.endpoints(), 2);
    // The same ADD again (a runtime's retry) is the same attachment.
    let again = cni.add("c1", &c1);
    assert_eq!(again.result()["ips"][0]["address"], "10.92.0.2/24");
    assert_eq!(cni.endpoints(), 2);
}

#[test]
fn ip_and_mac_from_cni_args_and_runtime_config() {
    let cni = Cni::new("1.0.0", "10.93.0.0/24");
    let c1 = cni.sb.container();
    let mut vars = Cni::vars("ADD", "c1", &path(&c1), "eth0");
    vars.push((
        "CNI_ARGS",
        "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.93.0.50;MAC=02:00:0a:5d:00:32".into(),
    ));
    let r = exec(&cni.sb, plugin(), &vars, &cni.conf);
    assert_eq!(r.result()["ips"][0]["address"], "10.93.0.50/24");
    assert_eq!(r.result()["interfaces"][0]["mac"], "02:00:0a:5d:00:32");
    assert_eq!(addresses(&c1, "eth0"), vec!["10.93.0.50/24".to_owned()]);

    let c2 = cni.sb.container();
    let mut conf = cni.conf.clone();
    conf["runtimeConfig"] = json!({"ips": ["10.93.0.60/24"], "mac": "02:00:0a:5d:00:3c"});
    let r = cni.run("ADD", "c2", &path(&c2), &conf);
    assert_eq!(r.result()["ips"][0]["address"], "10.93.0.60/24");
    assert_eq!(common::ip_link(&c2, "eth0")["address"], "02:00:0a:5d:00:3c");
}

#[test]
fn del_succeeds_and_releases_when_the_namespace_is_gone_or_not_given() {
    let cni = Cni::new("1.1.0", "10.94.0.0/24");
    for netns_at_del in ["empty", "stale"] {
        let c1 = cni.sb.container();
        let stale = path(&c1);
        let first = cni.add("c1", &c1).result()["ips"][0]["address"].clone();
        drop(c1); // the container is gone, its namespace with it
        let given = if netns_at_del == "empty" {
            ""
        } else {
            stale.as_str()
        };
        let del = cni.run("DEL", "c1", given, &cni.conf);
        assert!(del.ok, "{netns_at_del}: {del:?}");
        assert_eq!(cni.endpoints(), 0, "{netns_at_del}");
        // The address is free again: the next container can have it.
        let c2 = cni.sb.container();
        let mut vars = Cni::vars("ADD", "c2", &path(&c2), "eth0");
        let ip = first.as_str().unwrap().split('/').next().unwrap();
        vars.push(("CNI_ARGS", format!("IP={ip}")));
        let again = exec(&cni.sb, plugin(), &vars, &cni.conf);
        assert_eq!(again.result()["ips"][0]["address"], first, "{netns_at_del}");
        assert!(cni.run("DEL", "c2", &path(&c2), &cni.conf).ok);
    }
    // A DEL for a network that never existed succeeds too.
    let mut other = cni.conf.clone();
    other["name"] = json!("never");
    assert!(cni.run("DEL", "c9", "", &other).ok);
}

#[test]
fn check_fails_naming_what_differs() {
    let cni = Cni::new("1.0.0", "10.95.0.0/24");
    let c1 = cni.sb.container();
    let result = cni.add("c1", &c1).result().clone();
    let prev = cni.with_prev(&result);
    assert!(cni.run("CHECK", "c1", &path(&c1), &prev).ok);

    run_in(&c1, "ip", &["route", "del", "default"]);
    let r = cni.run("CHECK", "c1", &path(&c1), &prev);
    assert_eq!(r.code(), 102);
    assert!(
        r.msg().contains("route to 0.0.0.0/0 via 10.95.0.1"),
        "{}",
        r.msg()
    );

    run_in(&c1, "ip", &["addr", "del", "10.95.0.2/24", "dev", "eth0"]);
    let r = cni.run("CHECK", "c1", &path(&c1), &prev);
    assert!(
        r.msg().contains("lacks address 10.95.0.2/24"),
        "{}",
        r.msg()
    );

    let r = cni.run("CHECK", "c9", &path(&c1), &prev);
    assert_eq!(r.code(), 3, "{}", r.msg());
    let r = cni.run("CHECK", "c1", &path(&c1), &cni.conf);
    assert_eq!(r.code(), 4, "CHECK without prevResult: {}", r.msg());
}

#[test]
fn gc_releases_every_attachment_not_listed() {
    let cni = Cni::new("1.1.0", "10.96.0.0/24");
    let containers: Vec<NetNs> = (0..3).map(|_| cni.sb.container()).collect();
    for (i, c) in containers.iter().enumerate() {
        cni.add(&format!("c{i}"), c).result();
    }
    // An endpoint another front end made on the same network is not GC's.
    let other = cni.sb.container();
    let net = cni.host().network("cninet").unwrap();
    net.attach(
        &other,
        &underlay::endpoint::AttachOptions::new().name("by-hand"),
    )
    .unwrap();
    let mut conf = cni.conf.clone();
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    let r = exec(&cni.sb, plugin(), &[("CNI_COMMAND", "GC".into())], &conf);
    assert!(r.ok, "{r:?}");
    common::wait_for_links(&containers[0], &["lo"]);
    common::wait_for_links(&containers[2], &["lo"]);
    assert!(links(&containers[1]).contains(&"eth0".to_owned()));
    let names: Vec<String> = cni
        .host()
        .network("cninet")
        .unwrap()
        .endpoints()
        .unwrap()
        .iter()
        .map(|e| e.name().to_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"by-hand".to_owned()));
}

#[test]
fn status_fails_when_the_parent_is_missing_or_the_state_unusable() {
    let cni = Cni::new("1.1.0", "10.97.0.0/24");
    let status = |conf: &Value| exec(&cni.sb, plugin(), &[("CNI_COMMAND", "STATUS".into())], conf);
    assert!(status(&cni.conf).ok);
    let mut missing = cni.conf.clone();
    missing["options"]["parent"] = json!("nosuch0");
    let r = status(&missing);
    assert_eq!(r.code(), 50);
    assert!(r.msg().contains("nosuch0"), "{}", r.msg());
    // NAME.VLAN: underlay makes the sub-interface; its base must exist.
    missing["options"]["parent"] = json!("nosuch0.50");
    assert!(status(&missing).msg().contains("nosuch0"));
    missing["options"]["parent"] = json!("eth0.50");
    assert!(status(&missing).ok);
    // A state directory that is a file.
    let file = cni.dir.0.join("a-file");
    std::fs::create_dir_all(&cni.dir.0).unwrap();
    std::fs::write(&file, b"x").unwrap();
    let mut unusable = cni.conf.clone();
    unusable["stateDir"] = json!(file);
    let r = status(&unusable);
    assert_eq!(r.code(), 50, "{}", r.msg());
    // The network exists, then its parent goes: STATUS says so.
    let c1 = cni.sb.container();
    cni.add("c1", &c1).result();
    let eth0 = cni.sb.nl.link_by_name("eth0").unwrap().index;
    cni.sb.nl.delete_link(eth0).unwrap();
    assert_eq!(status(&cni.conf).code(), 50);
}

/// A bad input: what it is, the variables, stdin, the expected code.
type Case = (&'static str, Vars, Value, u64);
type Vars = Vec<(&'static str, String)>;

#[test]
fn bad_input_gets_the_specs_error_and_leaves_nothing() {
    let cni = Cni::new("1.0.0", "10.98.0.0/24");
    let c1 = cni.sb.container();
    // The network exists and has one attachment: what must not change.
    cni.add("held", &c1).result();
    let c2 = cni.sb.container();
    let before = cni.dir.snapshot();
    let (links1, links2) = (links(&c1), links(&c2));

    // Outside the state directory (its snapshot reads every file).
    let odd = StateDir::new();
    std::fs::create_dir_all(&odd.0).unwrap();
    let not_netns = odd.0.join("plain-file");
    std::fs::write(&not_netns, b"").unwrap();
    let fifo = odd.0.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());

    let c2p = path(&c2);
    let with = |key: &str, value: Value| {
        let mut conf = cni.conf.clone();
        conf[key] = value;
        conf
    };
    let mut cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Cni::vars("ADD", "c2", &c2p, "eth0"),
            json!("{\"cniVersion\":"),
            6,
        ),
        (
            "unknown cniVersion",
            Cni::vars("ADD", "c2", &c2p, "eth0"),
            with("cniVersion", json!("2.0.0")),
            1,
        ),
        (
            "unknown driver",
            Cni::vars("ADD", "c2", &c2p, "eth0"),
            with("driver", json!("bridge")),
            4,
        ),
        (
            "unknown option",
            Cni::vars("ADD", "c2", &c2p, "eth0"),
            with("options", json!({"parent": "eth0", "colour": "red"})),
            4,
        ),
        (
            "misspelt key",
            Cni::vars("ADD", "c2", &c2p, "eth0"),
            with("subnet", json!("10.98.0.0/24")),
            4,
        ),
        (
            "differing definition",
            Cni::vars("ADD", "c2", &c2p, "eth0"),
            with("subnets", json!([{"subnet": "10.99.0.0/24"}])),
            4,
        ),
        (
            "CNI_NETNS a plain file",
            Cni::vars("ADD", "c2", not_netns.to_str().unwrap(), "eth0"),
            cni.conf.clone(),
            7,
        ),
        (
            "CNI_NETNS a FIFO",
            Cni::vars("ADD", "c2", fifo.to_str().unwrap(), "eth0"),
            cni.conf.clone(),
            7,
        ),
        (
            "CNI_NETNS missing",
            Cni::vars("ADD", "c2", "/run/netns/no-such-ns-underlay", "eth0"),
            cni.conf.clone(),
            7,
        ),
        (
            "CNI_IFNAME traversal",
            Cni::vars("ADD", "c2", &c2p, "../x"),
            cni.conf.clone(),
            7,
        ),
        (
            "CNI_NETNS the plugin's own",
            Cni::vars("ADD", "c2", &path(&cni.sb.host), "eth0"),
            cni.conf.clone(),
            7,
        ),
        (
            "relative stateDir",
            Cni::vars("ADD", "c2", &c2p, "eth0"),
            with("stateDir", json!("rel/state")),
            4,
        ),
        (
            "empty runtimeDir",
            Cni::vars("ADD", "c2", &c2p, "eth0"),
            with("runtimeDir", json!("")),
            4,
        ),
        (
            "CNI_CONTAINERID traversal",
            Cni::vars("ADD", "../../x", &c2p, "eth0"),
            cni.conf.clone(),
            7,
        ),
        (
            "ipam type traversal",
            Cni::vars("ADD", "c2", &c2p, "eth0"),
            {
                let mut c = cni.conf.clone();
                c.as_object_mut().unwrap().remove("subnets");
                c["ipam"] = json!({"type": "../../bin/sh"});
                c
            },
            4,
        ),
    ];
    for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_COMMAND"] {
        let vars: Vec<_> = Cni::vars("ADD", "c2", &c2p, "eth0")
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        cases.push(("a missing variable", vars, cni.conf.clone(), 7));
    }
    let args = |value: &str| {
        let mut vars = Cni::vars("ADD", "c2", &c2p, "eth0");
        vars.push(("CNI_ARGS", value.to_owned()));
        vars
    };
    cases.push((
        "IP= outside every subnet",
        args("IP=10.200.0.5"),
        cni.conf.clone(),
        7,
    ));
    cases.push(("IP= in use", args("IP=10.98.0.2"), cni.conf.clone(), 101));
    cases.push((
        "IP= not an address",
        args("IP=10.98.0"),
        cni.conf.clone(),
        7,
    ));
    cases.push(("MAC= not a MAC", args("MAC=zz"), cni.conf.clone(), 7));
    cases.push(("unknown CNI_ARGS key", args("FOO=1"), cni.conf.clone(), 7));
    cases.push(("CNI_ARGS empty key", args("=1"), cni.conf.clone(), 7));
    cases.push((
        "IP= with a bad prefix",
        args("IP=10.98.0.9/x"),
        cni.conf.clone(),
        7,
    ));
    let mut eth1 = Cni::vars("ADD", "held", &path(&c1), "eth1");
    eth1.truncate(5);
    cases.push((
        "another interface on the same network",
        eth1,
        cni.conf.clone(),
        101,
    ));
    let gc = vec![("CNI_COMMAND", "GC".to_owned())];
    let v11 = with("cniVersion", json!("1.1.0"));
    cases.push(("GC without valid-attachments", gc.clone(), v11.clone(), 4));
    let mut null = v11.clone();
    null["cni.dev/valid-attachments"] = Value::Null;
    cases.push(("GC with valid-attachments null", gc.clone(), null, 4));
    let old = with("cni.dev/valid-attachments", json!([]));
    cases.push(("GC of a 1.0.0 configuration", gc, old, 1));

    for (what, vars, conf, code) in cases {
        let r = exec(&cni.sb, plugin(), &vars, &conf);
        assert!(!r.ok, "{what}: accepted");
        assert_eq!(r.code(), code, "{what}: {}", r.json);
        assert!(!r.msg().is_empty(), "{what}: no msg");
        assert!(r.json["cniVersion"].is_string(), "{what}: {}", r.json);
        assert_eq!(cni.dir.snapshot(), before, "{what}: the state changed");
        assert_eq!(links(&c1), links1, "{what}");
        assert_eq!(links(&c2), links2, "{what}: a link was left");
    }
}

#[test]
fn chained_the_result_is_a_correct_prev_result_for_the_next_plugin() {
    let cni = Cni::new("1.0.0", "10.99.0.0/24");
    let c1 = cni.sb.container();
    let ours = cni.add("c1", &c1).result().clone();
    // The stock tuning plugin, next in a conflist, reads our result as its
    // prevResult, works on the interface it names, and passes it on.
    let tuning = json!({
        "cniVersion": "1.0.0",
        "name": "cninet",
        "type": "tuning",
        "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"},
        "prevResult": ours,
    });
    let r = exec(
        &cni.sb,
        &format!("{STOCK}/tuning"),
        &Cni::vars("ADD", "c1", &path(&c1), "eth0"),
        &tuning,
    );
    let passed_on = r.result();
    assert_eq!(passed_on["ips"], ours["ips"]);
    assert_eq!(
        passed_on["interfaces"][0]["mac"],
        ours["interfaces"][0]["mac"]
    );
    let sysctl = run_in(&c1, "cat", &["/proc/sys/net/ipv4/conf/eth0/arp_filter"]);
    assert_eq!(String::from_utf8_lossy(&sysctl.stdout).trim(), "1");

    // Not first in the chain: the previous plugins' interfaces are kept and
    // ours is appended, its IPs pointing at it.
    let c2 = cni.sb.container();
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "lo0", "mac": "00:00:00:00:00:00"}], "ips": []});
    let r = cni.run("ADD", "c2", &path(&c2), &cni.with_prev(&prev));
    let chained = r.result();
    assert_eq!(chained["interfaces"][0]["name"], "lo0");
    assert_eq!(chained["interfaces"][1]["name"], "eth0");
    assert_eq!(chained["ips"][0]["interface"], 1);
}

#[test]
fn delegated_ipam_host_local_and_static_give_the_addresses() {
    let cni = Cni::new("1.0.0", "10.100.0.0/24");
    let data = cni.dir.0.join("host-local");
    let mut conf = cni.conf.clone();
    conf.as_object_mut().unwrap().remove("subnets");
    conf["ipam"] = json!({
        "type": "host-local",
        "dataDir": data,
        "ranges": [[{"subnet": "10.100.0.0/24", "rangeStart": "10.100.0.40", "gateway": "10.100.0.1"}]],
        // The IPAM plugin's routes are the routes: a default one through
        // the gateway (no gw given), and one through another router.
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.50.0/24", "gw": "10.100.0.254"}],
    });
    let c1 = cni.sb.container();
    let r = cni.run("ADD", "c1", &path(&c1), &conf);
    let result = r.result().clone();
    assert_eq!(result["ips"][0]["address"], "10.100.0.40/24");
    assert_eq!(result["ips"][0]["gateway"], "10.100.0.1");
    assert_eq!(addresses(&c1, "eth0"), vec!["10.100.0.40/24".to_owned()]);
    let routes = common::ip_routes(&c1, false);
    assert!(
        routes.contains("default via 10.100.0.1 dev eth0"),
        "{routes}"
    );
    assert!(
        routes.contains("192.168.50.0/24 via 10.100.0.254 dev eth0"),
        "{routes}"
    );
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.100.0.1"}, {"dst": "192.168.50.0/24", "gw": "10.100.0.254"}])
    );
    let held = data.join("cninet").join("10.100.0.40");
    assert!(held.exists(), "host-local holds the address");
    let mut prev = conf.clone();
    prev["prevResult"] = result;
    assert!(cni.run("CHECK", "c1", &path(&c1), &prev).ok);
    assert!(cni.run("DEL", "c1", &path(&c1), &prev).ok);
    assert!(!held.exists(), "DEL released it in host-local");
    common::wait_for_links(&c1, &["lo"]);

    // static: the address is the configuration's.
    let mut conf = cni.conf.clone();
    conf["name"] = json!("cnistatic");
    conf["options"] = json!({"parent": "eth0"});
    conf.as_object_mut().unwrap().remove("subnets");
    // One parent, one network: a second network needs another parent.
    cni.sb
        .nl
        .create_link(&underlay::link::NewLink::veth("eth1", "uplink1").up())
        .unwrap();
    conf["options"] = json!({"parent": "eth1"});
    conf["ipam"] = json!({"type": "static", "addresses": [{"address": "10.101.0.7/24", "gateway": "10.101.0.1"}]});
    let c2 = cni.sb.container();
    let r = cni.run("ADD", "c2", &path(&c2), &conf);
    assert_eq!(r.result()["ips"][0]["address"], "10.101.0.7/24");
    assert_eq!(addresses(&c2, "eth0"), vec!["10.101.0.7/24".to_owned()]);
    // No routes from the IPAM plugin: none beyond the subnet's own.
    assert!(r.result().get("routes").is_none(), "{}", r.json);
    assert!(!common::ip_routes(&c2, false).contains("default"));
    // A failing IPAM plugin: its error, and nothing left.
    conf["ipam"] = json!({"type": "static", "addresses": [{"address": "not-an-address"}]});
    let c3 = cni.sb.container();
    let r = cni.run("ADD", "c3", &path(&c3), &conf);
    assert!(!r.ok);
    assert!(r.msg().contains("static"), "{}", r.msg());
    assert_eq!(links(&c3), vec!["lo".to_owned()]);
}

#[test]
fn kill_9_during_add_then_gc_or_the_next_add_leaks_nothing() {
    let cni = Cni::new("1.1.0", "10.102.0.0/24");
    for (i, step) in ["recorded as attaching", "created link", "attached"]
        .into_iter()
        .enumerate()
    {
        let c = cni.sb.container();
        let id = format!("k{i}");
        let mut vars = Cni::vars("ADD", &id, &path(&c), "eth0");
        vars.push(("UNDERLAY_CRASH_AT", step.to_owned()));
        let r = exec(&cni.sb, plugin(), &vars, &cni.conf);
        assert!(
            !r.ok && r.json.is_null(),
            "{step}: the plugin was not killed: {r:?}"
        );
        if i % 2 == 0 {
            // The runtime retries the ADD: it succeeds, with one link.
            let again = cni.add(&id, &c);
            assert!(again.ok, "{step}: {again:?}");
            assert_eq!(
                links(&c),
                vec!["eth0".to_owned(), "lo".to_owned()],
                "{step}"
            );
            assert!(cni.run("DEL", &id, &path(&c), &cni.conf).ok);
        } else {
            // The runtime gives up and collects garbage.
            let r = exec(
                &cni.sb,
                plugin(),
                &[("CNI_COMMAND", "GC".into())],
                &with_valid(&cni.conf, &[]),
            );
            assert!(r.ok, "{step}: {r:?}");
        }
        common::wait_for_links(&c, &["lo"]);
        assert_eq!(cni.endpoints(), 0, "{step}: a record leaked");
    }
    // Every address is free: the first one can be had (a detached link
    // the sweeper has not deleted yet would be deleted first).
    let c = cni.sb.container();
    let mut vars = Cni::vars("ADD", "z", &path(&c), "eth0");
    vars.push(("CNI_ARGS", "IP=10.102.0.2".into()));
    assert_eq!(
        exec(&cni.sb, plugin(), &vars, &cni.conf).result()["ips"][0]["address"],
        "10.102.0.2/24"
    );
}

#[test]
fn parallel_adds_create_the_network_once_and_hand_out_distinct_addresses() {
    let cni = Cni::new("1.0.0", "10.106.0.0/24");
    let containers: Vec<NetNs> = (0..16).map(|_| cni.sb.container()).collect();
    let addresses: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let cni = &cni;
                scope.spawn(move || {
                    let r = cni.add(&format!("p{i}"), c);
                    r.result()["ips"][0]["address"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let distinct: std::collections::BTreeSet<&String> = addresses.iter().collect();
    assert_eq!(distinct.len(), 16, "{addresses:?}");
    assert_eq!(cni.host().networks().unwrap().len(), 1);
    assert_eq!(cni.endpoints(), 16);
    for (i, c) in containers.iter().enumerate() {
        assert_eq!(addresses_of(c), vec![addresses[i].clone()]);
    }
}

fn addresses_of(ns: &NetNs) -> Vec<String> {
    addresses(ns, "eth0")
}

fn with_valid(conf: &Value, valid: &[(&str, &str)]) -> Value {
    let mut conf = conf.clone();
    let list: Vec<Value> = valid
        .iter()
        .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
        .collect();
    conf["cni.dev/valid-attachments"] = Value::Array(list);
    conf
}

/// ipvlan and dummy parents: the real-kernel tier.
mod needs_ipvlan {
    use super::*;
    use underlay::capability::KernelFeature;

    #[test]
    #[ignore = "needs ipvlan: run in the real-kernel tier (scripts/test.sh)"]
    fn ipvlan_results_carry_the_parents_mac_and_l3_routes_through_the_link() {
        common::require(KernelFeature::Ipvlan);
        for (mode, subnet) in [("l2", "10.103.0.0/24"), ("l3", "10.104.0.0/24")] {
            let mut cni = Cni::new("1.0.0", subnet);
            cni.conf["driver"] = json!("ipvlan");
            cni.conf["options"]["ipvlan_mode"] = json!(mode);
            let parent_mac = common::ip_link(&cni.sb.host, "eth0")["address"].clone();
            let c1 = cni.sb.container();
            let result = cni.add("c1", &c1).result().clone();
            // Runtimes refuse an empty MAC; ipvlan links share the parent's.
            assert_eq!(result["interfaces"][0]["mac"], parent_mac, "{mode}");
            assert_eq!(common::ip_link(&c1, "eth0")["address"], parent_mac);
            let routes = common::ip_routes(&c1, false);
            if mode == "l3" {
                assert_eq!(result["routes"], json!([{"dst": "0.0.0.0/0"}]), "{result}");
                assert!(result["ips"][0].get("gateway").is_none(), "{result}");
                assert!(routes.contains("default dev eth0"), "{routes}");
            } else {
                let gw = subnet.replace("0/24", "1");
                assert_eq!(result["routes"][0]["gw"], gw.as_str(), "{result}");
                assert!(
                    routes.contains(&format!("default via {gw} dev eth0")),
                    "{routes}"
                );
            }
            assert!(
                cni.run("CHECK", "c1", &path(&c1), &cni.with_prev(&result))
                    .ok,
                "{mode}"
            );
            assert!(cni.run("DEL", "c1", "", &cni.conf).ok);
            common::wait_for_links(&c1, &["lo"]);
        }
    }
}

mod needs_dummy {
    use super::*;
    use underlay::capability::KernelFeature;

    #[test]
    #[ignore = "needs dummy links: run in the real-kernel tier (scripts/test.sh)"]
    fn no_parent_means_an_owned_dummy_parent_and_an_internal_network() {
        common::require(KernelFeature::Dummy);
        let mut cni = Cni::new("1.1.0", "10.105.0.0/24");
        cni.conf.as_object_mut().unwrap().remove("options");
        let status = exec(
            &cni.sb,
            plugin(),
            &[("CNI_COMMAND", "STATUS".into())],
            &cni.conf,
        );
        assert!(status.ok, "{status:?}");
        let (c1, c2) = (cni.sb.container(), cni.sb.container());
        let r1 = cni.add("c1", &c1).result().clone();
        cni.add("c2", &c2).result();
        // Internal: no default route, in the result or the kernel.
        assert!(r1.get("routes").is_none(), "{r1}");
        assert!(!common::ip_routes(&c1, false).contains("default"));
        run_in(&c1, "ip", &["link", "set", "lo", "up"]);
        assert!(
            ping(&c2, "10.105.0.2"),
            "containers on the dummy parent talk"
        );
        let net = cni.host().network("cninet").unwrap();
        assert!(net.parent().owned() && net.internal());
        assert!(common::link_names(&cni.sb.host).contains(&net.parent().name));
    }
}

#[test]
fn a_second_network_reports_only_the_routes_it_installed() {
    // The container's default route is its first network's; the second
    // network's result says so, and CHECK agrees with it.
    let cni = Cni::new("1.0.0", "10.107.0.0/24");
    cni.sb
        .nl
        .create_link(&underlay::link::NewLink::veth("eth1", "uplink1").up())
        .unwrap();
    let mut second = cni.conf.clone();
    second["name"] = json!("second");
    second["options"] = json!({"parent": "eth1"});
    second["subnets"] = json!([{"subnet": "10.108.0.0/24"}]);
    let c1 = cni.sb.container();
    cni.add("c1", &c1).result();
    let r = exec(
        &cni.sb,
        plugin(),
        &Cni::vars("ADD", "c1", &path(&c1), "net1"),
        &second,
    );
    let result = r.result().clone();
    assert_eq!(result["ips"][0]["address"], "10.108.0.2/24");
    assert!(result.get("routes").is_none(), "{result}");
    let mut prev = second.clone();
    prev["prevResult"] = result;
    let check = exec(
        &cni.sb,
        plugin(),
        &Cni::vars("CHECK", "c1", &path(&c1), "net1"),
        &prev,
    );
    assert!(check.ok, "{check:?}");
}

/// Fake IPAM plugins, in a CNI_PATH of the test's own.
fn fake_ipam(dir: &std::path::Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_misbehaving_ipam_plugin_cannot_hang_or_flood_the_plugin() {
    let cni = Cni::new("1.0.0", "10.109.0.0/24");
    let bin = cni.dir.0.join("ipam-bin");
    let result =
        r#"{"cniVersion":"1.0.0","ips":[{"address":"10.109.0.9/24","gateway":"10.109.0.1"}]}"#;
    // Leaves a child holding its stdout, answers, exits.
    fake_ipam(
        &bin,
        "lingering",
        &format!("cat >/dev/null; sleep 30 & echo '{result}'"),
    );
    // Answers with 2 MiB.
    fake_ipam(
        &bin,
        "flood",
        "cat >/dev/null; head -c 2097152 /dev/zero | tr '\\0' ' '; echo '{}'",
    );
    // Never reads its stdin, never answers within the time a test waits:
    // only DEL (which the runtime repeats) is tried with it.
    let mut conf = cni.conf.clone();
    conf.as_object_mut().unwrap().remove("subnets");
    let mut vars = Cni::vars("ADD", "c1", "", "eth0");
    vars[4] = ("CNI_PATH", bin.display().to_string());

    conf["ipam"] = json!({"type": "lingering"});
    let c1 = cni.sb.container();
    vars[2] = ("CNI_NETNS", path(&c1));
    let start = std::time::Instant::now();
    let r = exec(&cni.sb, plugin(), &vars, &conf);
    assert_eq!(r.result()["ips"][0]["address"], "10.109.0.9/24");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );

    conf["ipam"] = json!({"type": "flood"});
    let c2 = cni.sb.container();
    vars[1] = ("CNI_CONTAINERID", "c2".into());
    vars[2] = ("CNI_NETNS", path(&c2));
    let r = exec(&cni.sb, plugin(), &vars, &conf);
    assert_eq!(r.code(), 100, "{r:?}");
    assert!(r.msg().contains("more than"), "{}", r.msg());
    assert_eq!(links(&c2), vec!["lo".to_owned()]);
}

#[test]
fn an_edited_configuration_takes_effect_once_the_network_is_empty() {
    let cni = Cni::new("1.0.0", "10.110.0.0/24");
    let c1 = cni.sb.container();
    cni.add("c1", &c1).result();
    let mut edited = cni.conf.clone();
    edited["options"]["mtu"] = json!(1400);
    edited["subnets"] = json!([{"subnet": "10.111.0.0/24"}]);
    let c2 = cni.sb.container();
    // In use: refused, naming the field.
    let r = cni.run("ADD", "c2", &path(&c2), &edited);
    assert_eq!(r.code(), 4);
    assert!(r.msg().contains("mtu"), "{}", r.msg());
    // Empty: the new definition replaces the old.
    assert!(cni.run("DEL", "c1", &path(&c1), &cni.conf).ok);
    let r = cni.run("ADD", "c2", &path(&c2), &edited);
    assert_eq!(r.result()["ips"][0]["address"], "10.111.0.2/24");
    assert_eq!(common::ip_link(&c2, "eth0")["mtu"], 1400);
    assert_eq!(cni.host().network("cninet").unwrap().mtu(), Some(1400));
}

#[test]
fn check_compares_prev_result_with_the_attachment() {
    let cni = Cni::new("1.0.0", "10.112.0.0/24");
    let c1 = cni.sb.container();
    let result = cni.add("c1", &c1).result().clone();
    // An address that is not the attachment's, given with no interface.
    let mut forged = result.clone();
    forged["ips"] = json!([{"address": "10.112.0.77/24"}]);
    let r = cni.run("CHECK", "c1", &path(&c1), &cni.with_prev(&forged));
    assert_eq!(r.code(), 102);
    assert!(r.msg().contains("10.112.0.77/24"), "{}", r.msg());
    // No addresses at all: the attachment's is missing from it.
    forged["ips"] = json!([]);
    let r = cni.run("CHECK", "c1", &path(&c1), &cni.with_prev(&forged));
    assert!(
        r.msg().contains("lacks the attachment's address"),
        "{}",
        r.msg()
    );
    // Another namespace under the same attachment.
    let c2 = cni.sb.container();
    let r = cni.run("CHECK", "c1", &path(&c2), &cni.with_prev(&result));
    assert!(r.msg().contains("another namespace"), "{}", r.msg());
}

#[test]
fn status_fails_when_add_would() {
    let cni = Cni::new("1.1.0", "10.113.0.0/24");
    let status = |conf: &Value, path: &str| {
        exec(
            &cni.sb,
            plugin(),
            &[("CNI_COMMAND", "STATUS".into()), ("CNI_PATH", path.into())],
            conf,
        )
    };
    // The IPAM plugin is not in CNI_PATH.
    let mut delegated = cni.conf.clone();
    delegated.as_object_mut().unwrap().remove("subnets");
    delegated["ipam"] = json!({"type": "host-local", "subnet": "10.113.0.0/24"});
    assert_eq!(status(&delegated, "/nonexistent").code(), 50);
    assert!(status(&delegated, STOCK).ok);
    // ipvlan on a kernel without it.
    let mut ipvlan = cni.conf.clone();
    ipvlan["driver"] = json!("ipvlan");
    let has_ipvlan = common::capabilities().supports(underlay::capability::KernelFeature::Ipvlan);
    assert_eq!(status(&ipvlan, STOCK).ok, has_ipvlan);
    // A network in use whose definition differs.
    let c1 = cni.sb.container();
    cni.add("c1", &c1).result();
    let mut edited = cni.conf.clone();
    edited["options"]["mtu"] = json!(1400);
    assert_eq!(status(&edited, STOCK).code(), 4);
}

#[test]
fn a_planted_sweep_lock_is_never_followed_or_waited_on() {
    let cni = Cni::new("1.1.0", "10.97.0.0/24");
    let c1 = cni.sb.container();
    cni.add("c1", &c1).result();
    let id = cni.host().network("cninet").unwrap().id().to_owned();
    let lock = cni.dir.0.join("state").join(format!("sweep-{id}.lock"));
    let target = cni.dir.0.join("target");
    // A symbolic link where the sweeper's lock goes: not followed (nothing
    // appears at its target); DEL succeeds and the link is still swept.
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    assert!(cni.run("DEL", "c1", &path(&c1), &cni.conf).ok);
    common::wait_for_links(&c1, &["lo"]);
    assert!(!target.exists());
    assert!(std::fs::symlink_metadata(&lock)
        .unwrap()
        .file_type()
        .is_symlink());
    // A FIFO: never blocks DEL (or its sweeper).
    std::fs::remove_file(&lock).unwrap();
    let fifo = std::ffi::CString::new(lock.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let c2 = cni.sb.container();
    cni.add("c2", &c2).result();
    let start = std::time::Instant::now();
    assert!(cni.run("DEL", "c2", &path(&c2), &cni.conf).ok);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    common::wait_for_links(&c2, &["lo"]);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&lock)
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(cni.endpoints(), 0);
}
