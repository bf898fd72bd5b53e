//! The sandbox every example builds, so that none of them touches the
//! machine's own interfaces: a throw-away "host" network namespace with a
//! veth pair standing in for the NIC (`eth0`, whose peer `uplink0` plays the
//! switch), container namespaces, and a temporary state and runtime
//! directory. Namespaces are held only by file descriptors, so they vanish
//! with everything in them when the example ends, however it ends; the
//! directory is removed when the [`Sandbox`] is dropped.
//!
//! Included by each example with `#[path = "common/mod.rs"] mod common;`
//! (cargo does not build `examples/common/mod.rs` as an example of its own).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use underlay::capability::{KernelCapabilities, KernelFeature};
use underlay::docker::network_create_args;
use underlay::endpoint::{AttachOptions, Endpoint};
use underlay::link::{LinkKind, NewLink};
use underlay::netlink::Netlink;
use underlay::netns::NetNs;
use underlay::parent::ParentKind;
use underlay::route::{IpFamily, Route};
use underlay::{Host, Network};

/// The exit status of an example whose kernel lacks a feature it needs
/// (the automake convention for "skipped").
pub const SKIPPED: i32 = 77;

/// The stand-in NIC in the sandbox's host namespace.
pub const PARENT: &str = "eth0";

/// What an example returns: `Err` carries the message of the first
/// assertion that did not hold.
pub type Outcome = Result<(), String>;

/// Returns `Err(message)` from the enclosing function unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}
pub(crate) use ensure;

/// Turns any displayable error into the examples' `String` error, with
/// what was being done.
pub trait Context<T> {
    /// Prefixes the error with `what`.
    fn context(self, what: impl std::fmt::Display) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: impl std::fmt::Display) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Runs an example: prints its title, checks the kernel features it needs
/// (exiting with [`SKIPPED`] and the reason when one is missing), builds the
/// sandbox, runs `scenario`, removes the sandbox and exits 0 when every
/// assertion held, 1 otherwise.
pub fn main_with(title: &str, needs: &[KernelFeature], scenario: fn(&Sandbox) -> Outcome) -> ! {
    println!("# {title}");
    let caps = match KernelCapabilities::probe() {
        Ok(caps) => caps,
        Err(e) => {
            eprintln!("FAILED: {title}: cannot probe the kernel (run as root): {e}");
            std::process::exit(1);
        }
    };
    for feature in needs {
        if !caps.supports(*feature) {
            println!(
                "skipped: kernel lacks {} ({}); this example runs on a kernel that has it \
                 (scripts/test.sh --vm-only)",
                feature.name(),
                feature.config_option()
            );
            std::process::exit(SKIPPED);
        }
    }
    let started = std::time::Instant::now();
    let result = Sandbox::new(caps).and_then(|sb| {
        let result = scenario(&sb);
        // Every network must be gone again, and with the sandbox dropped
        // its namespaces and directory are too.
        let left = sb.host.networks().map(|n| n.len()).unwrap_or(0);
        drop(sb);
        result.and_then(|()| {
            if left == 0 {
                Ok(())
            } else {
                Err(format!("{left} network(s) left in the state directory"))
            }
        })
    });
    match result {
        Ok(()) => {
            println!("\nok: {title} ({} ms)", started.elapsed().as_millis());
            std::process::exit(0)
        }
        Err(message) => {
            eprintln!("\nFAILED: {title}: {message}");
            std::process::exit(1)
        }
    }
}

/// A host namespace with `eth0`, a state directory opened on it, and the
/// kernel's capabilities.
pub struct Sandbox {
    /// The "host" namespace.
    pub host_ns: NetNs,
    /// A netlink socket in it.
    pub nl: Netlink,
    /// The state directory, opened for the host namespace.
    pub host: Host,
    /// What the kernel can make.
    pub caps: KernelCapabilities,
    dir: PathBuf,
}

impl Sandbox {
    /// Builds the sandbox: host namespace, `eth0`/`uplink0` up, temporary
    /// state and runtime directories.
    pub fn new(caps: KernelCapabilities) -> Result<Sandbox, String> {
        let host_ns = NetNs::create().context("create the host namespace")?;
        let nl = host_ns
            .netlink()
            .context("open netlink in the host namespace")?;
        nl.create_link(&NewLink::veth(PARENT, "uplink0").up())
            .context("create the veth pair eth0/uplink0")?;
        let uplink = nl.link_by_name("uplink0").context("find uplink0")?;
        nl.set_link_up_by_index(uplink.index, true)
            .context("bring uplink0 up")?;
        let dir = std::env::temp_dir().join(format!("underlay-example-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let guard = DirGuard(dir.clone());
        let host = Host::options()
            .state_dir(dir.join("state"))
            .runtime_dir(dir.join("run"))
            .netns(NetNs::open(host_ns.path()).context("reopen the host namespace")?)
            .open()
            .context("open the state directory")?;
        std::mem::forget(guard);
        Ok(Sandbox {
            host_ns,
            nl,
            host,
            caps,
            dir,
        })
    }

    /// The temporary directory (state in `state/`, runtime in `run/`).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Whether the kernel has `feature`.
    pub fn has(&self, feature: KernelFeature) -> bool {
        self.caps.supports(feature)
    }

    /// A fresh, empty container namespace.
    pub fn container(&self) -> Result<NetNs, String> {
        NetNs::create().context("create a container namespace")
    }

    /// `docker network create ARGS`: the arguments, split on whitespace, go
    /// through `underlay::docker::network_create_args` unchanged.
    pub fn create(&self, args: &str) -> Result<Network, String> {
        println!("$ docker network create {args}");
        let builder = network_create_args(args.split_whitespace())
            .context(format!("parse `docker network create {args}`"))?;
        let net = self
            .host
            .create_network(builder)
            .context(format!("docker network create {args}"))?;
        let subnets: Vec<String> = net
            .ipam()
            .subnets()
            .iter()
            .map(|s| match s.gateway() {
                Some(gw) => format!("{} gw {gw}", s.subnet()),
                None => s.subnet().to_string(),
            })
            .collect();
        println!(
            "  network {} ({} {}) on parent {}{}: {}",
            net.name(),
            net.driver(),
            mode_of(&net),
            net.parent().name,
            if net.parent().owned() {
                " (created by underlay)"
            } else {
                ""
            },
            subnets.join(", ")
        );
        Ok(net)
    }

    /// `docker network rm NAME`.
    pub fn remove(&self, name: &str) -> Outcome {
        println!("$ docker network rm {name}");
        self.host
            .remove_network(name)
            .context(format!("docker network rm {name}"))
    }

    /// `docker run --net=NET [--ip=..] [--ip6=..] --name=NAME`: attaches
    /// `ns` and prints what it got.
    pub fn run(
        &self,
        net: &Network,
        ns: &NetNs,
        name: &str,
        ips: &[&str],
    ) -> Result<Endpoint, String> {
        let mut options = AttachOptions::new().name(name);
        let mut flags = String::new();
        for ip in ips {
            let address: IpAddr = ip.parse().context(format!("address {ip}"))?;
            options = options.ip(address);
            flags.push_str(if address.is_ipv4() {
                " --ip="
            } else {
                " --ip6="
            });
            flags.push_str(ip);
        }
        println!("$ docker run --net={}{flags} --name={name}", net.name());
        let ep = net
            .attach(ns, &options)
            .context(format!("attach {name} to {}", net.name()))?;
        let addresses: Vec<String> = ep.addresses().iter().map(|a| a.to_string()).collect();
        println!("  {name}: {} {}", ep.ifname(), addresses.join(" "));
        Ok(ep)
    }

    /// The link `name` in the host namespace, if it exists.
    pub fn host_link(&self, name: &str) -> Option<underlay::link::Link> {
        self.nl.link_by_name(name).ok()
    }

    /// The names of the links in the host namespace, sorted.
    pub fn host_links(&self) -> Result<Vec<String>, String> {
        link_names(&self.host_ns)
    }

    /// `parent` when the kernel has 802.1q VLANs, else `eth0`, as the seeds
    /// allow: "Any examples using a sub-interface like `eth0.10` can be
    /// replaced with `eth0` or any other valid parent interface".
    pub fn vlan_or_eth0(&self, parent: &'static str) -> &'static str {
        if self.has(KernelFeature::Vlan) {
            parent
        } else {
            println!(
                "note: this kernel lacks 802.1q VLAN (CONFIG_VLAN_8021Q): using {PARENT} in place of \
                 {parent}, as the seed allows (\"a sub-interface like eth0.10 can be replaced with eth0\")"
            );
            PARENT
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a directory when dropped (until forgotten).
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The network's mode in Docker's words (`bridge`, `l2`, `l3`...).
pub fn mode_of(net: &Network) -> String {
    let options = net.options();
    options
        .get("macvlan_mode")
        .or_else(|| options.get("ipvlan_mode"))
        .cloned()
        .unwrap_or_default()
}

/// Prints a section heading.
pub fn section(title: &str) {
    println!("\n== {title} ==");
}

/// The names of the links in `ns`, sorted.
pub fn link_names(ns: &NetNs) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = ns
        .netlink()
        .context("open netlink")?
        .links()
        .context("list links")?
        .into_iter()
        .map(|l| l.name)
        .collect();
    names.sort();
    Ok(names)
}

/// The global (not link-local) addresses on `ifname` in `ns`, as
/// `addr/len`, read back from the kernel.
pub fn addresses(ns: &NetNs, ifname: &str) -> Result<Vec<String>, String> {
    let nl = ns.netlink().context("open netlink")?;
    let link = nl.link_by_name(ifname).context(format!("find {ifname}"))?;
    Ok(nl
        .addresses(Some(link.index))
        .context("list addresses")?
        .into_iter()
        .filter(|a| !a.link_scope)
        .map(|a| a.address.to_string())
        .collect())
}

/// The routes of one family in `ns`, read back from the kernel, in `ip
/// route`'s words without the `proto`, `scope`, `src` and `metric` parts:
/// `default via 172.16.86.1 dev eth0`, `172.16.86.0/24 dev eth0`.
pub fn routes(ns: &NetNs, family: IpFamily) -> Result<Vec<(String, Route)>, String> {
    let nl = ns.netlink().context("open netlink")?;
    let names: BTreeMap<u32, String> = nl
        .links()
        .context("list links")?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    Ok(nl
        .routes(family)
        .context("list routes")?
        .into_iter()
        .map(|r| {
            let mut text = r
                .destination
                .map_or_else(|| "default".to_owned(), |d| d.to_string());
            if let Some(gw) = r.gateway {
                text.push_str(&format!(" via {gw}"));
            }
            if let Some(oif) = r.oif {
                let name = names
                    .get(&oif)
                    .cloned()
                    .unwrap_or_else(|| format!("#{oif}"));
                text.push_str(&format!(" dev {name}"));
            }
            (text, r)
        })
        .collect())
}

/// Prints a container's addresses and routes, as `ip a` / `ip route` would
/// show the parts that matter.
pub fn show(label: &str, ns: &NetNs, ifname: &str) -> Outcome {
    println!("  {label}: addresses {}", addresses(ns, ifname)?.join(" "));
    for family in [IpFamily::V4, IpFamily::V6] {
        for (text, route) in routes(ns, family)? {
            if family == IpFamily::V6 && text.starts_with("fe80::") {
                continue;
            }
            let mut extra = String::new();
            if route.link_scope && route.destination.is_none() {
                extra.push_str(" scope link");
            }
            if let (IpFamily::V6, Some(metric)) = (family, route.metric) {
                extra.push_str(&format!(" metric {metric}"));
            }
            println!(
                "  {label}: {} {text}{extra}",
                if family == IpFamily::V4 {
                    "route"
                } else {
                    "route6"
                }
            );
        }
    }
    Ok(())
}

/// Checks that `ns` has every route in `expected` (in [`routes`]' words),
/// and returns them all.
pub fn expect_routes(
    label: &str,
    ns: &NetNs,
    family: IpFamily,
    expected: &[&str],
) -> Result<Vec<(String, Route)>, String> {
    let all = routes(ns, family)?;
    for want in expected {
        ensure!(
            all.iter().any(|(text, _)| text == want),
            "{label}: expected the route `{want}`, found {:?}",
            all.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>()
        );
    }
    Ok(all)
}

/// Checks that the IPv6 default route among `routes` has metric 1024, as
/// the guides print it.
pub fn expect_ipv6_default_metric(routes: &[(String, Route)]) -> Outcome {
    let metric = routes
        .iter()
        .find(|(_, r)| r.is_default())
        .and_then(|(_, r)| r.metric);
    ensure!(
        metric == Some(1024),
        "the IPv6 default route's metric is {metric:?}, the guides show 1024"
    );
    Ok(())
}

/// Checks that `name` is an up 802.1q link with `id` on eth0, recorded as
/// `net`'s parent and owned by underlay.
pub fn expect_owned_vlan_parent(sb: &Sandbox, net: &Network, name: &str, id: u16) -> Outcome {
    let link = sb
        .host_link(name)
        .ok_or(format!("{name} was not created"))?;
    let eth0 = sb.host_link("eth0").ok_or("eth0 is gone")?;
    ensure!(
        link.kind == Some(LinkKind::Vlan { id }),
        "{name} is {:?}",
        link.kind
    );
    ensure!(
        link.parent_index == Some(eth0.index),
        "{name} is not on eth0"
    );
    ensure!(link.up, "{name} is down");
    ensure!(
        net.parent().name == name
            && net.parent().kind
                == (ParentKind::Vlan {
                    master: "eth0".into(),
                    id
                }),
        "{}: parent recorded as {:?}",
        net.name(),
        net.parent()
    );
    ensure!(net.parent().owned(), "{name} is not owned by underlay");
    println!("  {name}: 802.1q VLAN {id} on eth0, up, created (and owned) by underlay");
    Ok(())
}

/// Checks that `ns` has no default route of `family`.
pub fn expect_no_default_route(label: &str, ns: &NetNs, family: IpFamily) -> Outcome {
    let all = routes(ns, family)?;
    ensure!(
        !all.iter().any(|(_, r)| r.is_default()),
        "{label}: expected no default route, found {:?}",
        all.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>()
    );
    Ok(())
}

/// Checks `ns`'s global addresses on `ifname` are exactly `expected`.
pub fn expect_addresses(label: &str, ns: &NetNs, ifname: &str, expected: &[&str]) -> Outcome {
    let mut have = addresses(ns, ifname)?;
    have.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    ensure!(
        have == want,
        "{label}: expected the addresses {want:?} on {ifname}, found {have:?}"
    );
    Ok(())
}

/// Checks an endpoint got exactly these addresses (`addr/len`).
pub fn expect_endpoint(ep: &Endpoint, expected: &[&str]) -> Outcome {
    let have: Vec<String> = ep.addresses().iter().map(|a| a.to_string()).collect();
    ensure!(
        have == expected,
        "{}: expected the addresses {expected:?}, the library gave {have:?}",
        ep.name()
    );
    Ok(())
}

/// Runs `program ARGS` inside `ns`: the child process enters the
/// namespace before it executes; this process's threads stay where they are.
pub fn run_in(ns: &NetNs, program: &str, args: &[&str]) -> Result<Output, String> {
    let fd = ns.as_fd().as_raw_fd();
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: setns is async-signal-safe and only affects the forked child.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .output()
        .context(format!("run {program} (is it installed?)"))
}

/// Whether `ns` gets an answer from `address` (one ping, one second).
pub fn ping(ns: &NetNs, address: &str) -> Result<bool, String> {
    let out = run_in(ns, "ping", &["-n", "-q", "-c", "1", "-W", "1", address])?;
    Ok(out.status.success())
}

/// Checks that `from` reaches `address`, printing the result.
pub fn expect_ping(label: &str, from: &NetNs, address: &str) -> Outcome {
    // Two tries: the first packet may wait for neighbour resolution.
    let ok = ping(from, address)? || ping(from, address)?;
    println!(
        "  ping from {label} to {address}: {}",
        if ok { "ok" } else { "FAILED" }
    );
    ensure!(ok, "{label} cannot ping {address}");
    Ok(())
}

/// Checks that `from` does not reach `address`, printing the result.
pub fn expect_no_ping(label: &str, from: &NetNs, address: &str, why: &str) -> Outcome {
    let ok = ping(from, address)?;
    println!(
        "  ping from {label} to {address}: {} ({why})",
        if ok {
            "ANSWERED"
        } else {
            "no answer, as expected"
        }
    );
    ensure!(!ok, "{label} reached {address}, which it must not ({why})");
    Ok(())
}

/// Whether `prefix` (text) is one of the network's subnets.
pub fn has_subnet(net: &Network, prefix: &str) -> bool {
    net.ipam()
        .subnets()
        .iter()
        .any(|s| s.subnet().to_string() == prefix)
}

/// Waits (up to 10 s) until `ns` holds only `lo`: a detach takes a
/// container off the network at once and deletes its link just after, in
/// a sweep.
#[allow(dead_code)]
pub fn wait_for_no_links(ns: &NetNs) -> Result<(), String> {
    let start = std::time::Instant::now();
    loop {
        let names = link_names(ns)?;
        if names == ["lo"] {
            return Ok(());
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            return Err(format!("links {names:?} still there after 10 s"));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
