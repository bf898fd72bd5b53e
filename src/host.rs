//! The host: a state directory and the network namespace networks live in.
//!
//! [`Host`] is the entry point. By default it keeps network definitions in
//! a state directory ([`FileNetworkStore`])
//! and endpoints in a runtime directory (`/run/underlay/STATE_ID`, on
//! tmpfs, which a reboot empties together with the containers:
//! [`FileEndpointStore`]); other stores
//! plug in through [`HostOptions::network_store`] and
//! [`HostOptions::endpoint_store`].
//!
//! Network definitions must survive a reboot, so the state directory belongs
//! on persistent storage (`/var/lib/underlay` by default). Every record is
//! replaced atomically (temporary file, `fsync`, rename), and every
//! multi-step change is recorded before it starts, so a crash leaves either
//! the old state or the new one; [`Host::recover`], which [`Host::open`]
//! runs, finishes or undoes what a crash interrupted.
//!
//! ```no_run
//! use underlay::{Host, Network};
//!
//! let host = Host::open("/var/lib/underlay")?;
//! host.create_network(Network::builder("macvlan50").macvlan().parent("eth0.50").subnet("192.168.50.0/24"))?;
//! for net in host.networks()? {
//!     println!("{} {} {}", net.name(), net.driver(), net.parent().name);
//! }
//! host.remove_network("macvlan50")?;
//! # Ok::<(), underlay::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::capability::KernelCapabilities;
use crate::engine::{Engine, EngineParts};
use crate::ipam::DefaultPools;
use crate::netns::NetNs;
use crate::network::{Network, NetworkBuilder};
use crate::store::{
    ClaimingEndpointStore, EndpointStore, FileEndpointStore, FileNetworkStore, NetworkStore,
    SharedStore,
};
use crate::Result;

pub use crate::engine::RecoveryReport;
pub use crate::store::{DEFAULT_RUNTIME_DIR, DEFAULT_STATE_DIR};

/// A host: the namespace that holds the parent interfaces, and the stores
/// that keep its networks and endpoints. Cheap to clone, `Send + Sync`.
///
/// ```no_run
/// use underlay::Host;
///
/// let host = Host::options()
///     .state_dir("/var/lib/underlay")
///     .netns(underlay::netns::NetNs::open("/run/netns/host-sim")?)
///     .open()?;
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Host {
    engine: Arc<Engine>,
    state_dir: Option<PathBuf>,
}

/// Options for [`Host::options`].
///
/// ```no_run
/// use underlay::Host;
///
/// let host = Host::options()
///     .state_dir("/var/lib/underlay")
///     .runtime_dir("/run/underlay/main")
///     .reserved_prefixes(["10.8.0.0/16".parse().unwrap()]) // the VPN's
///     .open()?;
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "options do nothing until open() is called"]
pub struct HostOptions {
    state_dir: Option<PathBuf>,
    runtime_dir: Option<PathBuf>,
    network_store: Option<Box<dyn NetworkStore>>,
    endpoint_store: Option<Box<dyn EndpointStore>>,
    shared_store: Option<Arc<dyn SharedStore>>,
    netns: Option<NetNs>,
    default_pools: Option<DefaultPools>,
    reserved_prefixes: Vec<IpNet>,
    lock_timeout: Option<Duration>,
}

impl HostOptions {
    /// A store of address claims this host shares with others on the same
    /// segment (etcd: [`EtcdStore`](crate::store::EtcdStore), feature
    /// `etcd`): every address an endpoint gets is claimed there first, and
    /// given back only by its holder. A host is its state directory's id.
    ///
    /// ```
    /// use underlay::Host;
    /// # #[derive(Debug)]
    /// # struct Shared;
    /// # impl underlay::store::SharedStore for Shared {
    /// #     fn claim(&self, _: &str, _: std::net::IpAddr, _: &underlay::store::Claim) -> underlay::Result<Option<underlay::store::Claim>> { Ok(None) }
    /// #     fn release(&self, _: &str, _: std::net::IpAddr, _: &underlay::store::Claim) -> underlay::Result<bool> { Ok(true) }
    /// #     fn claims(&self, _: &str) -> underlay::Result<Vec<(std::net::IpAddr, underlay::store::Claim)>> { Ok(vec![]) }
    /// #     fn define(&self, _: &str, _: &str) -> underlay::Result<Option<String>> { Ok(None) }
    /// #     fn definition(&self, _: &str) -> underlay::Result<Option<String>> { Ok(None) }
    /// #     fn join(&self, _: &str, _: &str, _: &str) -> underlay::Result<bool> { Ok(true) }
    /// #     fn leave(&self, _: &str, _: &str) -> underlay::Result<bool> { Ok(true) }
    /// #     fn undefine(&self, _: &str, _: bool) -> underlay::Result<bool> { Ok(true) }
    /// #     fn forget_host(&self, _: &str) -> underlay::Result<usize> { Ok(0) }
    /// # }
    /// let options = Host::options().shared_store(Shared);
    /// assert!(format!("{options:?}").contains("Shared"));
    /// ```
    pub fn shared_store(mut self, claims: impl SharedStore + 'static) -> Self {
        self.shared_store = Some(Arc::new(claims));
        self
    }

    /// The state directory ([`DEFAULT_STATE_DIR`] by default).
    ///
    /// ```
    /// use underlay::Host;
    ///
    /// let options = Host::options().state_dir("/srv/underlay");
    /// assert!(format!("{options:?}").contains("/srv/underlay"));
    /// ```
    pub fn state_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.state_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// The directory for runtime state, the endpoint records
    /// (`/run/underlay/STATE_ID` by default). It should be on tmpfs, so that
    /// a reboot empties it along with the containers.
    ///
    /// ```
    /// use underlay::Host;
    ///
    /// let options = Host::options().runtime_dir("/run/underlay/test");
    /// assert!(format!("{options:?}").contains("/run/underlay/test"));
    /// ```
    pub fn runtime_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.runtime_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// How long the default stores wait for a lock another process holds
    /// before failing with [`Error::LockTimeout`](crate::Error::LockTimeout)
    /// ([`DEFAULT_LOCK_TIMEOUT`](crate::store::DEFAULT_LOCK_TIMEOUT), 30 s,
    /// by default).
    ///
    /// ```
    /// use std::time::Duration;
    /// use underlay::Host;
    ///
    /// let options = Host::options().lock_timeout(Duration::from_secs(5));
    /// assert!(format!("{options:?}").contains("5s"));
    /// ```
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// Keeps network definitions in `store` instead of the state
    /// directory's files ([`state_dir`](Self::state_dir) is then unused).
    ///
    /// ```
    /// use underlay::store::MemoryStore;
    /// use underlay::Host;
    ///
    /// let store = MemoryStore::new();
    /// let options = Host::options().network_store(store.clone()).endpoint_store(store);
    /// assert!(format!("{options:?}").contains("MemoryStore"));
    /// ```
    pub fn network_store(mut self, store: impl NetworkStore + 'static) -> Self {
        self.network_store = Some(Box::new(store));
        self
    }

    /// Keeps endpoints in `store` instead of the runtime directory's
    /// journals ([`runtime_dir`](Self::runtime_dir) is then unused).
    ///
    /// ```
    /// use underlay::store::FileEndpointStore;
    /// use underlay::Host;
    ///
    /// let options = Host::options().endpoint_store(FileEndpointStore::new("/run/underlay/a"));
    /// assert!(format!("{options:?}").contains("/run/underlay/a"));
    /// ```
    pub fn endpoint_store(mut self, store: impl EndpointStore + 'static) -> Self {
        self.endpoint_store = Some(Box::new(store));
        self
    }

    /// The namespace that holds the parent interfaces (the calling thread's
    /// by default).
    ///
    /// ```no_run
    /// use underlay::{netns::NetNs, Host};
    ///
    /// // Manage the parents of a simulated host in its own namespace.
    /// let host = Host::options()
    ///     .netns(NetNs::open("/run/netns/host-sim")?)
    ///     .open()?;
    /// assert_eq!(host.netns().path(), std::path::Path::new("/run/netns/host-sim"));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn netns(mut self, netns: NetNs) -> Self {
        self.netns = Some(netns);
        self
    }

    /// The pools that networks without an IPv4 (or IPv6) subnet draw from.
    ///
    /// ```
    /// use underlay::ipam::DefaultPools;
    /// use underlay::Host;
    ///
    /// // Like Docker's default-address-pools: /24s out of 10.10.0.0/16.
    /// let pools = DefaultPools::new([("10.10.0.0/16".parse().unwrap(), 24)])?;
    /// let options = Host::options().default_pools(pools);
    /// assert!(format!("{options:?}").contains("10.10.0.0/16"));
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn default_pools(mut self, pools: DefaultPools) -> Self {
        self.default_pools = Some(pools);
        self
    }

    /// Prefixes in use elsewhere that default pools must avoid, besides
    /// those of existing networks and of the host's addresses and routes.
    ///
    /// ```
    /// use underlay::Host;
    ///
    /// // A VPN's prefix, which no default subnet may overlap.
    /// let options = Host::options().reserved_prefixes(["10.8.0.0/16".parse().unwrap()]);
    /// assert!(format!("{options:?}").contains("10.8.0.0/16"));
    /// ```
    pub fn reserved_prefixes(mut self, prefixes: impl IntoIterator<Item = IpNet>) -> Self {
        self.reserved_prefixes.extend(prefixes);
        self
    }

    /// Opens (creating if needed) the state directory, and brings the
    /// networks back in line: owned parents missing after a reboot are
    /// created again, network creations and removals a crash interrupted are
    /// undone or finished. (Endpoints are checked by [`Host::recover`].)
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let host = Host::options().state_dir("/var/lib/underlay").open()?;
    /// // Recovery has run: every network's owned parent is back.
    /// for net in host.networks()? {
    ///     println!("{} on {}", net.name(), net.parent().name);
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// When the stores cannot be opened (for the default ones, the state or
    /// runtime directory cannot be created or read), the namespace cannot
    /// be entered, or recovery fails.
    pub fn open(self) -> Result<Host> {
        let netns = match self.netns {
            Some(ns) => ns,
            None => NetNs::current()?,
        };
        let mut state_dir = None;
        let networks: Box<dyn NetworkStore> = match self.network_store {
            Some(store) => store,
            None => {
                let dir = self.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into());
                let mut store = FileNetworkStore::open(&dir)?;
                if let Some(runtime_dir) = &self.runtime_dir {
                    store = store.with_runtime_dir(runtime_dir);
                }
                if let Some(timeout) = self.lock_timeout {
                    store = store.with_lock_timeout(timeout);
                }
                state_dir = Some(dir);
                Box::new(store)
            }
        };
        let endpoints: Box<dyn EndpointStore> = match self.endpoint_store {
            Some(store) => store,
            None => {
                let dir = self
                    .runtime_dir
                    .unwrap_or_else(|| Path::new(DEFAULT_RUNTIME_DIR).join(networks.host_id()));
                let mut store = FileEndpointStore::new(dir);
                if let Some(timeout) = self.lock_timeout {
                    store = store.with_lock_timeout(timeout);
                }
                Box::new(store)
            }
        };
        let endpoints: Box<dyn EndpointStore> = match &self.shared_store {
            Some(shared) => Box::new(ClaimingEndpointStore::new(
                endpoints,
                shared.clone(),
                networks.host_id(),
            )),
            None => endpoints,
        };
        let engine = Engine::open(EngineParts {
            netns,
            networks,
            endpoints,
            default_pools: self.default_pools.unwrap_or_default(),
            reserved_prefixes: self.reserved_prefixes,
            shared: self.shared_store,
        })?;
        Ok(Host {
            engine: Arc::new(engine),
            state_dir,
        })
    }
}

impl Host {
    /// Opens `state_dir` for the calling thread's network namespace, with
    /// default options.
    ///
    /// ```no_run
    /// use underlay::host::{Host, DEFAULT_STATE_DIR};
    ///
    /// let host = Host::open(DEFAULT_STATE_DIR)?;
    /// assert_eq!(host.state_dir(), Some(std::path::Path::new("/var/lib/underlay")));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`HostOptions::open`].
    pub fn open(state_dir: impl AsRef<Path>) -> Result<Host> {
        Host::options().state_dir(state_dir).open()
    }

    /// Options for opening a host.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let host = Host::options()
    ///     .state_dir("/var/lib/underlay")
    ///     .runtime_dir("/run/underlay/main")
    ///     .open()?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn options() -> HostOptions {
        HostOptions::default()
    }

    /// The state directory, when network definitions are kept in one (the
    /// default store).
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let host = Host::open("/var/lib/underlay")?;
    /// assert!(host.state_dir().unwrap().join("networks").is_dir());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// Directories whose changes may mean that networks or endpoints
    /// changed, in this process or another (with the default stores: the
    /// state directory's `networks/`, the runtime directory and each
    /// network's directory in it). A follower of endpoints (such as the
    /// resolver) watches them with file notifications, and reads again on
    /// a change; with stores that name none, it polls.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let host = Host::open("/var/lib/underlay")?;
    /// assert!(host.watch_paths().iter().any(|p| p.ends_with("networks")));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn watch_paths(&self) -> Vec<std::path::PathBuf> {
        self.engine.watch_paths()
    }

    /// The host namespace.
    ///
    /// ```no_run
    /// use underlay::{netns::NetNs, Host};
    ///
    /// // Opened without HostOptions::netns: the calling thread's namespace.
    /// let host = Host::open("/var/lib/underlay")?;
    /// assert_eq!(host.netns().id(), NetNs::current()?.id());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn netns(&self) -> &NetNs {
        self.engine.netns()
    }

    /// What the kernel can make, probed once per host handle.
    ///
    /// ```no_run
    /// use underlay::capability::KernelFeature;
    /// use underlay::Host;
    ///
    /// let host = Host::open("/var/lib/underlay")?;
    /// if !host.capabilities()?.supports(KernelFeature::Ipvlan) {
    ///     eprintln!("no ipvlan here: use macvlan networks");
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// When the probe cannot make its throw-away namespace.
    pub fn capabilities(&self) -> Result<KernelCapabilities> {
        self.engine.capabilities()
    }

    /// Creates a network: checks the description and that the kernel has the
    /// driver ([`Error::Unsupported`](crate::Error::Unsupported) otherwise), resolves (or creates) the
    /// parent interface, fills in default subnets and gateways, and records
    /// it. On any error nothing is created and the state directory is
    /// unchanged.
    ///
    /// ```no_run
    /// use underlay::{Host, Network};
    ///
    /// let host = Host::open("/var/lib/underlay")?;
    /// // docker network create -d macvlan --subnet=192.168.50.0/24
    /// //   --gateway=192.168.50.1 -o parent=eth0.50 macvlan50
    /// let builder = Network::builder("macvlan50").macvlan().parent("eth0.50");
    /// let net = host.create_network(builder.subnet("192.168.50.0/24").gateway("192.168.50.1"))?;
    /// assert!(net.parent().owned()); // underlay made eth0.50, and removes it with the network
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// An invalid description ([`Error::InvalidArgument`](crate::Error::InvalidArgument),
    /// [`Error::Ipam`](crate::Error::Ipam)); a conflict
    /// ([`Error::NetworkExists`](crate::Error::NetworkExists),
    /// [`Error::ParentInUse`](crate::Error::ParentInUse), an overlapping
    /// subnet); a missing parent or kernel feature; a store or kernel error.
    pub fn create_network(&self, builder: NetworkBuilder) -> Result<Network> {
        let record = self.engine.create_network(builder.build()?)?;
        Ok(Network::new(Arc::clone(&self.engine), record))
    }

    /// The network called `name`, or whose id is or starts with `name` (a
    /// unique prefix), as Docker looks networks up.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let host = Host::open("/var/lib/underlay")?;
    /// let net = host.network("pub_net")?;
    /// // A unique prefix of the id finds it too, as `docker network inspect` does.
    /// assert_eq!(host.network(&net.id()[..12])?.name(), "pub_net");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NetworkNotFound`](crate::Error::NetworkNotFound), or a
    /// store error.
    pub fn network(&self, name: &str) -> Result<Network> {
        let record = self.engine.network(name)?;
        Ok(Network::new(Arc::clone(&self.engine), record))
    }

    /// Every network, by name.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// // docker network ls
    /// for net in Host::open("/var/lib/underlay")?.networks()? {
    ///     println!("{:.12} {} {}", net.id(), net.name(), net.driver());
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// When the network store cannot be read.
    pub fn networks(&self) -> Result<Vec<Network>> {
        Ok(self
            .engine
            .networks()?
            .into_iter()
            .map(|record| Network::new(Arc::clone(&self.engine), record))
            .collect())
    }

    /// Removes a network (by name or id, as [`Host::network`] finds it):
    /// deletes the parent link if underlay created it
    /// (a VLAN sub-interface or a dummy), and nothing else (links that
    /// detaches left for deletion go on a thread of the library's own, as
    /// in [`force_remove_network`](Self::force_remove_network)). A network that
    /// still has endpoints is refused ([`Error::NetworkHasEndpoints`](crate::Error::NetworkHasEndpoints)); see
    /// [`force_remove_network`](Self::force_remove_network).
    ///
    /// ```no_run
    /// use underlay::{Error, Host};
    ///
    /// let host = Host::open("/var/lib/underlay")?;
    /// match host.remove_network("macvlan50") {
    ///     Err(Error::NetworkHasEndpoints { count, .. }) => eprintln!("{count} containers attached"),
    ///     other => other?,
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NetworkNotFound`](crate::Error::NetworkNotFound),
    /// [`Error::NetworkHasEndpoints`](crate::Error::NetworkHasEndpoints), or
    /// [`Error::RemovalIncomplete`](crate::Error::RemovalIncomplete) listing
    /// every step that failed (the removal can be tried again).
    pub fn remove_network(&self, name: &str) -> Result<()> {
        self.engine.remove_network(name, false)
    }

    /// Removes a network and detaches its endpoints first.
    ///
    /// It returns once every container is off the network and the name is
    /// free: each endpoint is taken off as a [detach](crate::Network::detach)
    /// does (its addresses deleted, its link marked detached, and a macvlan
    /// link set protocol-down; many containers at once), its addresses
    /// released, the records gone. Deleting the links waits for the kernel
    /// (an RCU grace period, some 20 ms), so it is left to a thread of the
    /// library's own, up to 128 of them in flight at once;
    /// [`settle`](Self::settle) waits for it. A crash before they are
    /// deleted leaves a note that makes the next opening of the host look
    /// for them in every namespace (as [`recover`](Self::recover) does), and
    /// the end of a container's namespace takes its link with it.
    ///
    /// Until they are deleted, the links stay on the parent, where the
    /// kernel would refuse a link of another driver, a macvlan passthru
    /// link or one of their MAC addresses beside them: a network created
    /// meanwhile (in this process) waits for them first, as
    /// [`settle`](Self::settle) does.
    ///
    /// When the parent is owned, deleting it takes every endpoint link with
    /// it in one kernel operation, before this returns.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let host = Host::open("/var/lib/underlay")?;
    /// host.force_remove_network("macvlan50")?;
    /// assert!(host.network("macvlan50").is_err());
    /// host.settle(); // the links are deleted too
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`remove_network`](Self::remove_network), without
    /// `NetworkHasEndpoints`.
    pub fn force_remove_network(&self, name: &str) -> Result<()> {
        self.engine.remove_network(name, true)
    }

    /// Waits until the link deletions this host handle (and the networks
    /// from it) left to threads of their own are done: the sweeps after
    /// [detaches](crate::Network::detach) and the deletions after forced
    /// removals. A process about to exit calls it, so that no link waits
    /// for [`recover`](Self::recover) or its namespace's end. Bounded: it
    /// gives up (with a warning in the log) after 30 s.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let host = Host::open("/var/lib/underlay")?;
    /// host.force_remove_network("macvlan50")?;
    /// host.settle();
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn settle(&self) {
        self.engine.settle()
    }

    /// Removes a network on every host that shares it: this host's half
    /// with its endpoints (as [`force_remove_network`](Self::force_remove_network)),
    /// then the shared definition and every host's part in it, so that a
    /// later `create_network` of the name starts afresh. For a network that
    /// is not shared, the same as `force_remove_network`.
    ///
    /// When this host has no half of it (a removal that stopped after it,
    /// or a network this host never joined), the shared definition alone is
    /// removed, if there is one.
    ///
    /// While other hosts hold addresses of the network, it is refused
    /// before anything changes, unless `force`. Their addresses stay
    /// claimed either way (no address is freed while a container may hold
    /// it): their containers keep working, and each claim goes when its
    /// host detaches the container or removes its own half.
    ///
    /// ```no_run
    /// use underlay::{Error, Host};
    ///
    /// # let host = Host::open("/var/lib/underlay")?;
    /// match host.remove_network_everywhere("lan", false) {
    ///     Err(Error::NetworkInUseElsewhere { hosts, .. }) => eprintln!("still used on {hosts:?}"),
    ///     other => other?,
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NetworkInUseElsewhere`](crate::Error::NetworkInUseElsewhere)
    /// naming the hosts (without `force`), as `force_remove_network`, and
    /// [`Error::SharedStoreUnavailable`](crate::Error::SharedStoreUnavailable).
    pub fn remove_network_everywhere(&self, name: &str, force: bool) -> Result<()> {
        self.engine.remove_network_everywhere(name, force)
    }

    /// Forgets a host that is gone for good, from the shared store this
    /// host uses ([`HostOptions::shared_store`]): every address it claimed
    /// is released and its part in every shared network is dropped. No host
    /// ever frees another's addresses on a guess (a crash or a partition is
    /// not a departure): this is the explicit call. Returns how many
    /// addresses were released.
    ///
    /// ```no_run
    /// # let host = underlay::Host::open("/var/lib/underlay")?;
    /// let released = host.forget_host("3f2a9c61d0b4e5a7")?; // the dead host's id
    /// println!("{released} addresses free again");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an id
    /// that is not one, this host's own, or a host with no shared store;
    /// [`Error::SharedStoreUnavailable`](crate::Error::SharedStoreUnavailable).
    pub fn forget_host(&self, host: &str) -> Result<usize> {
        self.engine.forget_host(host)
    }

    /// Brings the host back in line with the state directory, after a crash
    /// or a reboot:
    ///
    /// - networks: as on [`Host::open`], and links carrying underlay's mark
    ///   on the host that no network explains are deleted;
    /// - endpoints whose namespace is gone (or whose link is) have their
    ///   addresses released; attaches a crash interrupted are undone;
    /// - links carrying underlay's mark in any namespace the machine knows
    ///   (`/run/netns/*`, `/proc/*/ns/net`) that no endpoint explains are
    ///   deleted.
    ///
    /// Links underlay did not create are never touched. This visits every
    /// endpoint's namespace, so it costs more than opening.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let host = Host::open("/var/lib/underlay")?;
    /// let report = host.recover()?;
    /// if !report.is_clean() {
    ///     println!("recovered: {report:?}");
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// When a store cannot be read or written, or the kernel refuses a
    /// deletion.
    pub fn recover(&self) -> Result<RecoveryReport> {
        self.engine.recover()
    }
}
