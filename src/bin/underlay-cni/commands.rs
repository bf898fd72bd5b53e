//! The commands: `ADD`, `DEL`, `CHECK`, `STATUS`, `GC`, on the library's
//! public API.

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde_json::{json, Value};
use underlay::endpoint::{AttachOptions, DetachOptions, Endpoint};
use underlay::netns::NetNs;
use underlay::parent::{parse_vlan_name, ParentKind};
use underlay::{Error, Host, IpFamily, Network};

use crate::config::{Env, NetConf};
use crate::delegate;
use crate::reply::{AddResult, CniError, Code, Interface, IpConfig, RouteConfig};

/// The name of the endpoint of attachment `(container_id, ifname)`: `cni-`
/// and 16 hex digits of a hash of both. Attachments are found by it, never
/// by namespace path (containerd's `DEL` has none).
pub fn endpoint_name(container_id: &str, ifname: &str) -> String {
    // FNV-1a, 64 bits: stable across builds and Rust versions.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in container_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(ifname.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{ENDPOINT_PREFIX}{hash:016x}")
}

/// What every endpoint this plugin makes is named with.
const ENDPOINT_PREFIX: &str = "cni-";

/// The host of the configuration's state and runtime directories.
fn open_host(conf: &NetConf) -> Result<Host, CniError> {
    let mut options = Host::options();
    if let Some(dir) = &conf.state_dir {
        options = options.state_dir(dir);
    }
    if let Some(dir) = &conf.runtime_dir {
        options = options.runtime_dir(dir);
    }
    options.open().map_err(CniError::from)
}

/// The configuration's network: made on first use, checked against the
/// stored definition after. Creation takes the state lock, so parallel
/// `ADD`s make it once.
fn network(host: &Host, conf: &NetConf) -> Result<Network, CniError> {
    let builder = conf.builder()?;
    let existing = match host.network(&conf.name) {
        Ok(network) => network,
        Err(Error::NetworkNotFound { .. }) => match host.create_network(builder.clone()) {
            Ok(network) => return Ok(network),
            Err(Error::NetworkExists { .. }) => host.network(&conf.name)?,
            Err(e @ (Error::InvalidArgument { .. } | Error::Ipam(_))) => {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    format!("invalid network configuration: {e}"),
                ))
            }
            Err(e) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    match existing.check_definition(&builder) {
        Ok(()) => Ok(existing),
        // The configuration changed while the network had no attachment:
        // the new one takes its place (an edited conflist takes effect).
        Err(differs @ Error::DefinitionDiffers { .. }) => {
            if !existing.endpoints()?.is_empty() {
                return Err(differs.into());
            }
            log::info!(
                "network {:?}: {differs}; it has no attachment: made anew",
                conf.name
            );
            match host.remove_network(&conf.name) {
                Ok(()) | Err(Error::NetworkNotFound { .. }) => {}
                Err(_) => return Err(differs.into()),
            }
            // Links detaches left go on threads that this short-lived
            // process would end: waited for (rare: an edited conflist).
            host.settle();
            match host.create_network(builder.clone()) {
                Ok(network) => Ok(network),
                Err(Error::NetworkExists { .. }) => {
                    // Another ADD made it meanwhile.
                    let network = host.network(&conf.name)?;
                    network.check_definition(&builder)?;
                    Ok(network)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The network, if it exists (`DEL`, `CHECK`, `GC` never create one).
fn existing_network(host: &Host, name: &str) -> Result<Option<Network>, CniError> {
    match host.network(name) {
        Ok(network) => Ok(Some(network)),
        Err(Error::NetworkNotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn find_endpoint(network: &Network, name: &str) -> Result<Option<Endpoint>, CniError> {
    Ok(network.endpoints()?.into_iter().find(|e| e.name() == name))
}

/// `ADD`.
pub fn add(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<Value, CniError> {
    let prev = conf.prev_result()?;
    let ipam = conf.ipam_type()?;
    let requested_ips = conf.requested_ips(env)?;
    let mac = conf
        .requested_mac(env)
        .map(|m| {
            m.parse().map_err(|_| {
                CniError::new(
                    Code::InvalidEnvironment,
                    format!("MAC {m:?} is not a MAC address (such as 02:42:ac:10:56:0a)"),
                )
            })
        })
        .transpose()?;
    let netns = open_netns(&env.netns)?;
    let host = open_host(conf)?;
    let network = network(&host, conf)?;
    let name = endpoint_name(&env.container_id, &env.ifname);

    // With a delegated IPAM plugin, an attachment that exists already is
    // decided on before the plugin is asked for anything (asking, then
    // giving back, could free the address the live attachment holds).
    // Without one, the attach finds out itself, at no extra cost.
    let existing_attachment = || {
        existing(
            &network,
            &netns,
            env,
            conf,
            stdin,
            &requested_ips,
            prev.clone(),
        )
    };
    if ipam.is_some() {
        if let Some(done) = existing_attachment()? {
            return Ok(done);
        }
    }

    let mut options = AttachOptions::new().name(&name).ifname(&env.ifname);
    if let Some(mac) = mac {
        options = options.mac(mac);
    }
    // Delegated IPAM: the plugin decides the addresses and the routes;
    // underlay records and installs what it is given.
    let delegated = match &ipam {
        Some(plugin) => {
            let result = delegate::add(plugin, env, stdin)?;
            options = options.no_default_route();
            for ip in &result.ips {
                options = options.assigned(ip.address);
                if let Some(gateway) = ip.gateway {
                    options = options.gateway(gateway);
                }
            }
            for route in &result.routes {
                // A route without a next hop goes through the gateway of its
                // family, as the reference plugins do, or out of the link.
                let gateway = route.gw.or_else(|| {
                    result
                        .ips
                        .iter()
                        .filter(|ip| {
                            IpFamily::of(ip.address.addr()) == IpFamily::of(route.dst.addr())
                        })
                        .find_map(|ip| ip.gateway)
                });
                options = options.route(route.dst, gateway);
            }
            Some((plugin.clone(), result))
        }
        None => {
            for ip in &requested_ips {
                options = options.ip(*ip);
            }
            None
        }
    };
    let mut attached = network.attach(&netns, &options);
    if ipam.is_none()
        && matches!(
            attached,
            Err(Error::NameInUse { .. } | Error::AlreadyAttached { .. })
        )
    {
        if let Some(done) = existing_attachment()? {
            return Ok(done);
        }
        attached = network.attach(&netns, &options);
    }
    let endpoint = match attached {
        Ok(endpoint) => endpoint,
        Err(e) => {
            let e = attach_error(e, &name, delegated.is_some());
            if let Some((plugin, _)) = &delegated {
                // Nothing may be left: give the plugin's addresses back.
                if let Err(undo) = delegate::run(plugin, "DEL", env, stdin) {
                    log::warn!("releasing the IPAM plugin's addresses failed: {}", undo.msg);
                }
            }
            return Err(e);
        }
    };
    let result = describe(
        &network,
        &endpoint,
        &netns,
        env,
        prev,
        delegated.map(|d| d.1),
    )?;
    Ok(result.to_json(&conf.cni_version))
}

/// An `ADD` of an attachment that exists: a retry (same namespace,
/// interface and addresses) gets its result; a live one elsewhere is a
/// conflict; one whose namespace is gone (a crash, then a new container
/// under the same id) is released, and `None` says to attach anew.
fn existing(
    network: &Network,
    netns: &NetNs,
    env: &Env,
    conf: &NetConf,
    stdin: &[u8],
    requested: &[std::net::IpAddr],
    prev: Option<AddResult>,
) -> Result<Option<Value>, CniError> {
    let name = &endpoint_name(&env.container_id, &env.ifname);
    let Some(old) = find_endpoint(network, name)? else {
        return Ok(None);
    };
    if network.is_attached(&old) {
        let same_netns = old.netns().is_some_and(|ns| ns.id() == netns.id());
        let same_addresses = requested
            .iter()
            .all(|ip| old.addresses().iter().any(|a| a.addr() == *ip));
        if same_netns && old.ifname() == env.ifname && same_addresses {
            // A retried ADD (the first was cut short after it was done).
            log::info!("ADD of {name} again: it is attached already");
            let result = describe(network, &old, netns, env, prev, None)?;
            return Ok(Some(result.to_json(&conf.cni_version)));
        }
        return Err(CniError::new(
            Code::Conflict,
            format!(
                "this container already has interface {} on network {:?} (endpoint {name}): DEL it first",
                old.ifname(),
                network.name()
            ),
        ));
    }
    network.detach_endpoint_with(name, &DetachOptions::new().delete_link(true))?;
    if let Some(plugin) = conf.ipam_type()? {
        delegate::run(&plugin, "DEL", env, stdin)?;
    }
    Ok(None)
}

/// The result of an `ADD`: `prev` (a chain's earlier plugins) with this
/// interface, its addresses and gateways, and the routes the attach
/// installed (all default routes of the network's kind for an attachment
/// that existed already).
fn describe(
    network: &Network,
    endpoint: &Endpoint,
    netns: &NetNs,
    env: &Env,
    prev: Option<AddResult>,
    delegated: Option<AddResult>,
) -> Result<AddResult, CniError> {
    let mut result = prev.unwrap_or_default();
    let index = result.interfaces.len();
    result.interfaces.push(Interface {
        name: endpoint.ifname().to_owned(),
        mac: mac_of(endpoint, netns)?,
        sandbox: env.netns.clone(),
    });
    // ipvlan L3 and L3S route through the link itself: no gateway.
    let l3 = network.driver().is_l3();
    let gateways = network.gateways();
    for address in endpoint.addresses() {
        let gateway = match &delegated {
            Some(r) => r
                .ips
                .iter()
                .find(|ip| ip.address == *address)
                .and_then(|ip| ip.gateway),
            None if l3 => None,
            None => gateways
                .iter()
                .copied()
                .find(|g| address.trunc().contains(g)),
        };
        result.ips.push(IpConfig {
            address: *address,
            gateway,
            interface: Some(index),
        });
    }
    for route in endpoint.routes() {
        result.routes.push(RouteConfig {
            dst: route.destination,
            gw: route.gateway,
        });
    }
    if let Some(r) = delegated {
        if result.dns.is_none() {
            result.dns = r.dns;
        }
    }
    Ok(result)
}

/// `CNI_NETNS`, opened: a network namespace, and not the plugin's own (a
/// runtime's mistake that would put the link on the host).
fn open_netns(path: &str) -> Result<NetNs, CniError> {
    let bad = |msg: String| {
        CniError::new(
            Code::InvalidEnvironment,
            format!("CNI_NETNS={path:?}: {msg}"),
        )
    };
    let netns = NetNs::open(path).map_err(|e| bad(e.to_string()))?;
    if NetNs::current().is_ok_and(|own| own.id() == netns.id()) {
        return Err(bad(
            "this is the plugin's own network namespace (the host's), not a container's".into(),
        ));
    }
    Ok(netns)
}

/// An attach's refusal of what the runtime asked for (`IP=`, `MAC=`,
/// `CNI_IFNAME`) is an invalid-environment error, of what a delegated IPAM
/// plugin gave a plugin failure; an attachment being made by another `ADD`
/// at this moment is "try again later"; the rest as usual.
fn attach_error(error: Error, ours: &str, delegated: bool) -> CniError {
    match error {
        Error::InvalidArgument { .. } | Error::Ipam(_) if !error.is_conflict() => {
            let code = if delegated {
                Code::Failed
            } else {
                Code::InvalidEnvironment
            };
            CniError::new(code, error.to_string())
        }
        Error::NameInUse { ref name, .. }
        | Error::AlreadyAttached {
            endpoint: ref name, ..
        } if name == ours => CniError::new(
            Code::TryAgainLater,
            format!("{error} (another ADD of this attachment is under way: try again)"),
        ),
        error => error.into(),
    }
}

fn default_route(family: IpFamily) -> IpNet {
    match family {
        IpFamily::V4 => "0.0.0.0/0".parse().expect("a prefix"),
        IpFamily::V6 => "::/0".parse().expect("a prefix"),
    }
}

/// The interface's MAC address: the endpoint's (macvlan), or read from the
/// link (ipvlan shares its parent's). Runtimes refuse an empty one.
fn mac_of(endpoint: &Endpoint, netns: &NetNs) -> Result<String, CniError> {
    if let Some(mac) = endpoint.mac() {
        return Ok(mac.to_string());
    }
    let link = netns.netlink()?.link_by_name(endpoint.ifname())?;
    Ok(link.mac.map(|m| m.to_string()).unwrap_or_default())
}

/// `DEL`: idempotent. A missing network or attachment, an empty
/// `CNI_NETNS` or a namespace that is gone all end in success, with the
/// addresses released.
pub fn del(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<(), CniError> {
    let ipam = conf.ipam_type()?;
    let host = open_host(conf)?;
    if let Some(network) = existing_network(&host, &conf.name)? {
        let name = endpoint_name(&env.container_id, &env.ifname);
        // A sweeper at work on the network takes this link too (it sweeps
        // until nothing is left): no second one.
        if detach_fast(&network, &name)? && sweep_lock(&host, &network).is_some() {
            start_sweeper(conf);
        }
    }
    if let Some(plugin) = ipam {
        delegate::run(&plugin, "DEL", env, stdin)?;
    }
    Ok(())
}

/// Takes the attachment off the network at once: its addresses off the
/// link, the link down and marked detached, the record released. The link's
/// deletion, which waits for an RCU grace period in the kernel (~20 ms),
/// is left to the sweeper (or to the namespace's end). Returns whether the
/// attachment existed.
fn detach_fast(network: &Network, name: &str) -> Result<bool, CniError> {
    let options = DetachOptions::new().sweep(false);
    Ok(network.detach_endpoint_with(name, &options)?)
}

/// The variable that makes this binary the sweeper of a network: the
/// network's name, with its directories in the two that follow.
pub const SWEEP_VAR: &str = "UNDERLAY_CNI_SWEEP";
const SWEEP_STATE_VAR: &str = "UNDERLAY_CNI_SWEEP_STATE_DIR";
const SWEEP_RUNTIME_VAR: &str = "UNDERLAY_CNI_SWEEP_RUNTIME_DIR";

/// Starts this binary again, in the background, to delete the network's
/// detached links in one batch once this process has answered. A sweeper
/// that never runs leaves nothing wrong: the links are down, without
/// addresses, marked detached, and go with their namespace, at the next
/// sweep, or when an attach needs their address.
fn start_sweeper(conf: &NetConf) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut command = std::process::Command::new(exe);
    command
        .env_clear()
        .env(SWEEP_VAR, &conf.name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(dir) = &conf.state_dir {
        command.env(SWEEP_STATE_VAR, dir);
    }
    if let Some(dir) = &conf.runtime_dir {
        command.env(SWEEP_RUNTIME_VAR, dir);
    }
    for var in ["UNDERLAY_LOG", "PATH"] {
        if let Some(value) = std::env::var_os(var) {
            command.env(var, value);
        }
    }
    match command.spawn() {
        // Not waited for: it outlives this process, and is reaped by
        // whoever inherits it.
        Ok(child) => log::debug!("sweeper {} started", child.id()),
        Err(e) => log::info!("cannot start a sweeper ({e}): the links go later"),
    }
}

/// The sweeper: deletes the detached links of the network named in
/// `UNDERLAY_CNI_SWEEP`, in its own session (a runtime that ends the
/// plugin's process group does not end it).
pub fn sweep(name: &str) -> Result<(), CniError> {
    let _ = rustix::process::setsid();
    let conf = NetConf {
        state_dir: std::env::var_os(SWEEP_STATE_VAR).map(Into::into),
        runtime_dir: std::env::var_os(SWEEP_RUNTIME_VAR).map(Into::into),
        ..NetConf::named(name)
    };
    let host = open_host(&conf)?;
    let Some(network) = existing_network(&host, name)? else {
        return Ok(());
    };
    // One sweeper per network at a time; it sweeps until nothing is left,
    // so the detaches made meanwhile are its too.
    let Some(_lock) = sweep_lock(&host, &network) else {
        return Ok(());
    };
    for _ in 0..16 {
        let swept = network.sweep()?;
        log::debug!("sweeper: deleted {swept} detached link(s) of {name}");
        if swept == 0 {
            break;
        }
    }
    Ok(())
}

/// The network's sweeper lock (`sweep-ID.lock` in the state directory),
/// taken without waiting: `None` when another sweeper holds it. A lock that
/// cannot be made at all does not stop a sweep (`Some` of nothing).
fn sweep_lock(host: &Host, network: &Network) -> Option<Option<std::os::fd::OwnedFd>> {
    use rustix::fs::{flock, open, FlockOperation, Mode, OFlags};
    let dir = host.state_dir()?;
    let path = dir.join(format!("sweep-{}.lock", network.id()));
    let flags =
        OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let Ok(fd) = open(&path, flags, Mode::RUSR | Mode::WUSR) else {
        return Some(None);
    };
    match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Some(Some(fd)),
        Err(rustix::io::Errno::WOULDBLOCK) => None,
        Err(_) => Some(None),
    }
}

/// `CHECK`: the interface in the namespace is what `prevResult` says.
pub fn check(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<(), CniError> {
    let prev = conf.prev_result()?.ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "CHECK needs prevResult: the result of the ADD to check",
        )
    })?;
    let differs = |what: String| CniError::new(Code::CheckFailed, what);
    let host = open_host(conf)?;
    let network = existing_network(&host, &conf.name)?
        .ok_or_else(|| differs(format!("network {:?} does not exist", conf.name)))?;
    network.check_definition(&conf.builder()?)?;
    let name = endpoint_name(&env.container_id, &env.ifname);
    let endpoint = find_endpoint(&network, &name)?.ok_or_else(|| {
        CniError::new(
            Code::UnknownContainer,
            format!(
                "container {} has no interface {} on network {:?}",
                env.container_id, env.ifname, conf.name
            ),
        )
    })?;
    if !network.is_attached(&endpoint) {
        return Err(differs(format!(
            "the container's link {} is gone from its namespace",
            env.ifname
        )));
    }
    if let Some(plugin) = conf.ipam_type()? {
        delegate::run(&plugin, "CHECK", env, stdin)?;
    }
    let netns = open_netns(&env.netns)?;
    if endpoint.netns().is_none_or(|ns| ns.id() != netns.id()) {
        return Err(differs(format!(
            "the attachment is in another namespace than CNI_NETNS {}",
            env.netns
        )));
    }
    let nl = netns.netlink()?;
    let link = nl
        .link_by_name(&env.ifname)
        .map_err(|_| differs(format!("interface {} is missing", env.ifname)))?;
    let Some(index) = prev.interfaces.iter().position(|i| i.name == env.ifname) else {
        return Err(differs(format!(
            "prevResult has no interface {}",
            env.ifname
        )));
    };
    let expected_mac = &prev.interfaces[index].mac;
    let mac = link.mac.map(|m| m.to_string()).unwrap_or_default();
    if !expected_mac.is_empty() && !expected_mac.eq_ignore_ascii_case(&mac) {
        return Err(differs(format!(
            "interface {} has MAC {mac}, prevResult says {expected_mac}",
            env.ifname
        )));
    }
    if !link.up {
        return Err(differs(format!("interface {} is down", env.ifname)));
    }
    let present: Vec<IpNet> = nl
        .addresses(Some(link.index))?
        .into_iter()
        .map(|a| a.address)
        .collect();
    // prevResult's addresses of this interface (or of none in particular)
    // are the attachment's, and on the link.
    let expected: Vec<IpNet> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none_or(|i| i == index))
        .map(|ip| ip.address)
        .collect();
    for address in &expected {
        if !endpoint.addresses().contains(address) {
            return Err(differs(format!(
                "prevResult's address {address} is not the attachment's ({})",
                show(endpoint.addresses())
            )));
        }
        if !present.contains(address) {
            return Err(differs(format!(
                "interface {} lacks address {address}",
                env.ifname
            )));
        }
    }
    if let Some(missing) = endpoint.addresses().iter().find(|a| !expected.contains(a)) {
        return Err(differs(format!(
            "prevResult lacks the attachment's address {missing}"
        )));
    }
    for family in [IpFamily::V4, IpFamily::V6] {
        let routes = nl.routes(family)?;
        for expected in prev
            .routes
            .iter()
            .filter(|r| IpFamily::of(r.dst.addr()) == family)
        {
            let found = routes.iter().any(|r| {
                let dst = r.destination.unwrap_or_else(|| default_route(family));
                dst == expected.dst && (expected.gw.is_none() || r.gateway == expected.gw)
            });
            if !found {
                let via = expected.gw.map(|g| format!(" via {g}")).unwrap_or_default();
                return Err(differs(format!(
                    "the route to {}{via} is missing",
                    expected.dst
                )));
            }
        }
    }
    Ok(())
}

fn show(addresses: &[IpNet]) -> String {
    let shown: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    shown.join(", ")
}

/// `GC`: every attachment of this network not in
/// `cni.dev/valid-attachments` is detached (addresses, record, and the link
/// if its namespace still exists). Endpoints other front ends made on the
/// same network are left alone.
pub fn gc(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<(), CniError> {
    // Without the list, everything would look invalid: refused, never
    // taken as "nothing is valid" (only an empty list says that).
    let Some(valid) = &conf.valid_attachments else {
        return Err(CniError::new(
            Code::InvalidConfig,
            "GC needs cni.dev/valid-attachments: the attachments to keep ([] to keep none)",
        ));
    };
    let valid: BTreeSet<String> = valid
        .iter()
        .map(|a| endpoint_name(&a.container_id, &a.ifname))
        .collect();
    let host = open_host(conf)?;
    if let Some(network) = existing_network(&host, &conf.name)? {
        let mut failures = Vec::new();
        let mut swept = false;
        for endpoint in network.endpoints()? {
            let name = endpoint.name();
            if !name.starts_with(ENDPOINT_PREFIX) || valid.contains(name) {
                continue;
            }
            log::info!("GC: detaching {name} from {}", conf.name);
            match detach_fast(&network, name) {
                Ok(detached) => swept |= detached,
                Err(e) => failures.push(format!("{name}: {}", e.msg)),
            }
        }
        if swept && sweep_lock(&host, &network).is_some() {
            start_sweeper(conf);
        }
        if !failures.is_empty() {
            return Err(CniError::new(
                Code::Failed,
                format!("GC could not release {}", failures.join("; ")),
            ));
        }
    }
    if let Some(plugin) = conf.ipam_type()? {
        delegate::run(&plugin, "GC", env, stdin)?;
    }
    Ok(())
}

/// `STATUS`: can an `ADD` succeed? The state directory must be usable and
/// the parent present (or one underlay makes: a dummy, or `NAME.VLAN` on a
/// present `NAME`).
pub fn status(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<(), CniError> {
    let unavailable = |msg: String| CniError::new(Code::NotAvailable, msg);
    let host = open_host(conf)
        .map_err(|e| unavailable(format!("the state directory is unusable: {}", e.msg)))?;
    let builder = conf.builder()?;
    // The link that must exist: the parent, or the interface underlay tags
    // a VLAN sub-interface on (it makes the sub-interface, and a dummy
    // parent, itself).
    let parent = match existing_network(&host, &conf.name).map_err(|e| unavailable(e.msg))? {
        Some(network) => match &network.parent().kind {
            ParentKind::Dummy => None,
            ParentKind::Vlan { master, .. } => Some(master.clone()),
            _ => Some(network.parent().name.clone()),
        },
        None => match builder.build()?.parent() {
            None => None,
            Some(name) => match parse_vlan_name(name)? {
                Some((master, _)) => Some(master),
                None => Some(name.to_owned()),
            },
        },
    };
    if let Some(parent) = parent {
        host.netns()
            .netlink()
            .and_then(|nl| nl.link_by_name(&parent))
            .map_err(|e| {
                unavailable(format!(
                    "parent interface {parent} is missing ({e}): ADD would fail"
                ))
            })?;
    }
    // A stored network this configuration would be refused by.
    if let Some(network) = existing_network(&host, &conf.name).map_err(|e| unavailable(e.msg))? {
        if !network.endpoints()?.is_empty() {
            network.check_definition(&builder)?;
        }
    }
    // The kernel must be able to make the links.
    let feature = builder.build()?.driver().feature();
    host.capabilities()
        .and_then(|caps| caps.require(feature))
        .map_err(|e| unavailable(e.to_string()))?;
    // A delegated IPAM plugin must be there, and ready.
    if let Some(plugin) = conf.ipam_type()? {
        let unready = |e: CniError| unavailable(format!("the IPAM plugin {plugin}: {}", e.msg));
        // Asked for its STATUS when it speaks 1.1.0 (older plugins have none).
        let versions = delegate::run(&plugin, "VERSION", env, stdin).map_err(unready)?;
        let speaks = versions
            .as_ref()
            .and_then(|v| v.get("supportedVersions")?.as_array().cloned())
            .is_some_and(|list| list.iter().any(|v| v == crate::reply::LATEST));
        if speaks {
            delegate::run(&plugin, "STATUS", env, stdin).map_err(unready)?;
        }
    }
    Ok(())
}

/// The answer to `VERSION`.
pub fn version(requested: &str) -> Value {
    json!({
        "cniVersion": requested,
        "supportedVersions": crate::reply::SUPPORTED_VERSIONS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_stable_distinct_and_valid() {
        let a = endpoint_name("abc", "eth0");
        assert_eq!(a, endpoint_name("abc", "eth0"));
        assert_ne!(a, endpoint_name("abc", "eth1"));
        assert_ne!(a, endpoint_name("abce", "th0"));
        assert!(
            underlay::names::validate_dns_name("endpoint name", &a).is_ok(),
            "{a}"
        );
        assert_eq!(a.len(), 20);
    }
}
