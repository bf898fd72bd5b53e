//! The engine: networks, endpoints and recovery, written once over the
//! store traits, the drivers and the link layer.
//!
//! [`Host`](crate::Host) and [`Network`](crate::Network) are thin handles
//! on an `Arc<Engine>`; every operation lives here, one file per kind:
//!
//! - `create.rs` and `remove.rs`: networks;
//! - `attach.rs` and `detach.rs`: endpoints;
//! - `recover.rs`: finishing or undoing what a crash interrupted.
//!
//! Every multi-step change records its intent in a store before it touches
//! the kernel (a network `creating` or `removing`, an endpoint
//! `attaching`), undoes what it did when a step fails, and leaves whatever
//! a crash interrupts for recovery, which reads the same records through
//! the same traits. Links it makes carry the ownership mark (`mark.rs`).

/// How many endpoint links are deleted at once.
const PARALLEL_DELETIONS: usize = 128;

mod attach;
mod create;
mod detach;
mod recover;
mod remove;
mod shim;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ipnet::IpNet;

pub use recover::RecoveryReport;

use crate::capability::KernelCapabilities;
use crate::ipam::DefaultPools;
use crate::mark::{self, Mark};
use crate::names::validate_network_name;
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::process::ThisProcess;
use crate::store::{
    EndpointRecord, EndpointSession, EndpointStore, NetworkRecord, NetworkState, NetworkStore,
    Owner, SharedStore,
};
use crate::{Error, Result};

/// What an engine is made of; see [`HostOptions`](crate::host::HostOptions).
pub(crate) struct EngineParts {
    pub netns: NetNs,
    pub networks: Box<dyn NetworkStore>,
    pub endpoints: Box<dyn EndpointStore>,
    pub default_pools: DefaultPools,
    pub reserved_prefixes: Vec<IpNet>,
    pub shared: Option<Arc<dyn SharedStore>>,
}

/// The state of one host: its namespace, its stores and what it has
/// learnt of the kernel.
#[derive(Debug)]
pub(crate) struct Engine {
    netns: NetNs,
    /// A socket in the host namespace.
    nl: Netlink,
    networks: Arc<dyn NetworkStore>,
    endpoints: Box<dyn EndpointStore>,
    default_pools: DefaultPools,
    reserved_prefixes: Vec<IpNet>,
    /// Definitions and claims shared with other hosts, if any.
    shared: Option<Arc<dyn SharedStore>>,
    capabilities: OnceLock<KernelCapabilities>,
    /// Each network's parent interface index, once looked up, by network
    /// id. A deleted parent's index is not handed to another link at once
    /// (the kernel allocates them cyclically), so a stale one fails with
    /// `ENODEV`, never points elsewhere.
    parent_indexes: Mutex<HashMap<String, u32>>,
    /// This process, as unfinished records name it (looked up again after
    /// a fork).
    owner: Mutex<Option<(ThisProcess, Owner)>>,
    /// Sweeps of detached links under way (see `detach.rs`).
    sweeps: detach::Sweeps,
    /// Link deletions left to threads of the library's own (see
    /// `detach.rs`).
    deletions: Arc<detach::Deletions>,
    /// The thread that opens sockets inside containers for attaches.
    worker: crate::netns::Worker,
    /// Containers' kernel settings, opened through a procfs of the
    /// library's own (shared with the worker's jobs).
    sysctl: Arc<crate::sysctl::ProcSys>,
}

impl Engine {
    /// Makes an engine and brings the networks back in line if a reboot or
    /// an interrupted operation calls for it.
    pub fn open(parts: EngineParts) -> Result<Engine> {
        let nl = parts.netns.netlink()?;
        let engine = Engine {
            netns: parts.netns,
            nl,
            networks: Arc::from(parts.networks),
            endpoints: parts.endpoints,
            default_pools: parts.default_pools,
            reserved_prefixes: parts.reserved_prefixes,
            shared: parts.shared,
            capabilities: OnceLock::new(),
            parent_indexes: Mutex::new(HashMap::new()),
            owner: Mutex::new(None),
            sweeps: Default::default(),
            deletions: Default::default(),
            worker: Default::default(),
            sysctl: Default::default(),
        };
        // Recovery costs a look at every network and the host's links: do it
        // once per boot, and again only when an operation was interrupted.
        if engine.networks.needs_recovery()? {
            let report = engine.recover_networks(true)?;
            if !report.is_clean() {
                log::info!("recovery on open: {report:?}");
            }
        }
        Ok(engine)
    }

    /// A network shared with other hosts is worked on only with the shared
    /// store: without it, addresses would be handed out unclaimed.
    pub(crate) fn require_shared(&self, network: &NetworkRecord) -> Result<()> {
        if network.shared && self.shared.is_none() {
            return Err(Error::invalid(
                "network",
                network.name.clone(),
                "it is shared with other hosts through a shared store (etcd): open the host with it (HostOptions::shared_store, the CLI's --etcd or UNDERLAY_ETCD)",
            ));
        }
        Ok(())
    }

    /// The host namespace.
    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// Where the stores' changes show (see `Host::watch_paths`).
    pub fn watch_paths(&self) -> Vec<std::path::PathBuf> {
        let mut paths = self.networks.watch_paths();
        paths.extend(self.endpoints.watch_paths());
        paths
    }

    /// What the kernel can make, probed once.
    pub fn capabilities(&self) -> Result<KernelCapabilities> {
        if let Some(caps) = self.capabilities.get() {
            return Ok(*caps);
        }
        let caps = KernelCapabilities::probe()?;
        Ok(*self.capabilities.get_or_init(|| caps))
    }

    /// The networks that are ready, by name.
    pub fn networks(&self) -> Result<Vec<NetworkRecord>> {
        Ok(self
            .networks
            .networks()?
            .into_iter()
            .filter(|r| r.state == NetworkState::Ready)
            .collect())
    }

    /// The ready network called `name`, or whose id is or starts with
    /// `name` (a unique prefix), as Docker looks networks up.
    pub fn network(&self, name: &str) -> Result<NetworkRecord> {
        let ready = |r: &NetworkRecord| r.state == NetworkState::Ready;
        let not_found = || Error::NetworkNotFound {
            name: name.to_owned(),
        };
        // A name that cannot be a network's is looked up nowhere.
        if validate_network_name(name).is_err() {
            return Err(not_found());
        }
        if let Some(record) = self.networks.network(name)? {
            if ready(&record) {
                return Ok(record);
            }
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let mut matches = self
            .networks
            .networks()?
            .into_iter()
            .filter(|r| ready(r) && r.id.starts_with(name));
        match (matches.next(), matches.next()) {
            (Some(record), None) => Ok(record),
            _ => Err(not_found()),
        }
    }

    /// Exclusive access to a network's endpoints, for a handle that may be
    /// stale: a network removed since the handle was made (by this process
    /// or another) is [`Error::NetworkNotFound`], never brought back to
    /// life. A ready network whose endpoint state is gone (a reboot emptied
    /// the runtime directory) gets it made again.
    ///
    /// Every change to a network's endpoints records its intent with its
    /// process before its kernel work, so an endpoint still `attaching` or
    /// `detaching` whose process is gone when a session begins is an attach
    /// or detach a crash interrupted: it is undone or finished here, before
    /// the caller's own work. (Those of live processes are under way.)
    fn session(&self, network: &NetworkRecord) -> Result<Box<dyn EndpointSession + '_>> {
        let mut session = self.open_session(network)?;
        let me = self.owner().ok();
        for endpoint in session.unfinished() {
            // Under way in a live process (this one's, known without a
            // look at /proc).
            if (me.is_some() && endpoint.owner == me) || !endpoint.is_abandoned() {
                continue;
            }
            log::info!(
                "network {}: finishing what a crash interrupted: {} was {:?}",
                network.name,
                endpoint.name,
                endpoint.state
            );
            self.remove_endpoint_link(network, endpoint.netns().as_ref(), &endpoint)?;
            session.forget(endpoint.id)?;
        }
        Ok(session)
    }

    fn open_session(&self, network: &NetworkRecord) -> Result<Box<dyn EndpointSession + '_>> {
        match self.endpoints.session(network) {
            Err(Error::NetworkNotFound { .. }) => {
                let current = self.networks.network(&network.name)?;
                match current {
                    Some(record)
                        if record.id == network.id && record.state == NetworkState::Ready =>
                    {
                        // The runtime state is gone while the network is not
                        // (a reboot, or a runtime directory removed by
                        // hand): made anew, and filled from the links that
                        // carry the network's mark, so that no live
                        // container's address is handed out again.
                        self.endpoints.add_network(&record)?;
                        let rebuilt = self.rebuild_endpoints(&record)?;
                        if !rebuilt.is_empty() {
                            log::warn!(
                                "network {}: its endpoint state was lost; rebuilt {} endpoint(s) from their links",
                                record.name,
                                rebuilt.len()
                            );
                        }
                        self.endpoints.session(&record)
                    }
                    _ => Err(Error::NetworkNotFound {
                        name: network.name.clone(),
                    }),
                }
            }
            other => other,
        }
    }

    /// The ready endpoints of a network.
    pub fn endpoints(&self, network: &NetworkRecord) -> Result<Vec<EndpointRecord>> {
        let session = self.session(network)?;
        Ok(session
            .endpoints()
            .filter(|e| e.state == crate::store::EndpointState::Ready)
            .cloned()
            .collect())
    }

    /// This process, to name in the records of its attaches and detaches.
    fn owner(&self) -> Result<Owner> {
        let mut cached = self.owner.lock().unwrap_or_else(|p| p.into_inner());
        match &*cached {
            Some((process, owner)) if process.still() => Ok(*owner),
            _ => {
                // The pid other processes find this one by in `/proc`.
                let pid = crate::process::pid()?;
                let owner = Owner::of(pid).ok_or_else(|| {
                    Error::Internal(format!("cannot read /proc/{pid}/stat for this process"))
                })?;
                *cached = Some((ThisProcess::new(), owner));
                Ok(owner)
            }
        }
    }

    /// The mark of a network's owned parent.
    fn parent_mark(&self, network: &NetworkRecord) -> Mark {
        Mark::parent(self.networks.host_id(), &network.id)
    }

    /// The mark of an endpoint's link.
    fn endpoint_mark(&self, network: &NetworkRecord, endpoint: u64) -> Mark {
        Mark::endpoint(self.networks.host_id(), &network.id, endpoint)
    }

    /// Every endpoint record of a network, as a session sees them.
    fn endpoint_records(session: &dyn EndpointSession) -> Vec<EndpointRecord> {
        session.endpoints().cloned().collect()
    }
}

/// Whether the link carrying `mark` is in `netns`.
fn link_present(netns: &NetNs, mark: &Mark) -> Result<bool> {
    netns.run(|| Ok(mark::find(&Netlink::open()?, mark)?.is_some()))
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
