//! The host: a state directory and the network namespace networks live in.
//!
//! [`Host`] is the entry point. It owns a state directory, whose layout is
//!
//! ```text
//! STATE_DIR/lock                 flock: network create, remove and recovery
//! STATE_DIR/id                   this state directory's random id
//! STATE_DIR/networks/NAME.json   one record per network (fsync'd)
//! ```
//!
//! Endpoints are runtime state and live in the runtime directory
//! (`/run/underlay/STATE_ID` by default, on tmpfs), which a reboot empties
//! together with the containers; see [`crate::endpoint`].
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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ipnet::IpNet;

use crate::capability::{KernelCapabilities, KernelFeature};
use crate::ipam::{check_overlap, DefaultPools};
use crate::link::fill_random;
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::network::{Network, NetworkBuilder, NetworkRecord, NetworkState};
use crate::parent;
use crate::registry::{EndpointState, Registry};
use crate::route::IpFamily;
use crate::store::{self, Durability};
use crate::{Error, Result};

/// The default state directory.
///
/// ```
/// use std::path::Path;
/// use underlay::host::DEFAULT_STATE_DIR;
///
/// // Where `Host::open(DEFAULT_STATE_DIR)` keeps network pub_net's record.
/// let record = Path::new(DEFAULT_STATE_DIR).join("networks/pub_net.json");
/// assert_eq!(record, Path::new("/var/lib/underlay/networks/pub_net.json"));
/// ```
pub const DEFAULT_STATE_DIR: &str = "/var/lib/underlay";

/// The parent of the default runtime directories.
///
/// ```
/// use std::path::Path;
/// use underlay::host::DEFAULT_RUNTIME_DIR;
///
/// // Each state directory's endpoints live under its random id.
/// let runtime = Path::new(DEFAULT_RUNTIME_DIR).join("3f2a9c61d0b4e857");
/// assert_eq!(runtime, Path::new("/run/underlay/3f2a9c61d0b4e857"));
/// ```
pub const DEFAULT_RUNTIME_DIR: &str = "/run/underlay";

/// The prefix of the alias that marks links underlay owns.
const ALIAS_PREFIX: &str = "underlay:";

/// A state directory and the host namespace it manages. Cheap to clone,
/// `Send + Sync`.
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
    pub(crate) inner: Arc<HostInner>,
}

#[derive(Debug)]
pub(crate) struct HostInner {
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub registries: Mutex<HashMap<String, Arc<Registry>>>,
    pub id: String,
    pub netns: NetNs,
    pub nl: Netlink,
    pub default_pools: DefaultPools,
    pub reserved_prefixes: Vec<IpNet>,
    pub capabilities: OnceLock<KernelCapabilities>,
}

impl HostInner {
    /// The alias that marks a link as owned by network `network_id` of this
    /// state directory (endpoint links add `:ENDPOINT_ID`).
    pub(crate) fn alias(&self, network_id: &str) -> String {
        format!("{ALIAS_PREFIX}{}:{network_id}", self.id)
    }

    /// The endpoint registry of a network, shared by every handle on it in
    /// this process.
    pub(crate) fn registry(&self, network: &NetworkRecord) -> Arc<Registry> {
        let mut registries = self.registries.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            registries
                .entry(network.id.clone())
                .or_insert_with(|| Arc::new(Registry::new(&self.runtime_dir, network))),
        )
    }
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
    netns: Option<NetNs>,
    default_pools: Option<DefaultPools>,
    reserved_prefixes: Vec<IpNet>,
}

impl HostOptions {
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
    pub fn open(self) -> Result<Host> {
        let state_dir = self.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into());
        store::create_dir(&state_dir.join("networks"))?;
        store::create_dir(&state_dir.join("pending"))?;
        let netns = match self.netns {
            Some(ns) => ns,
            None => NetNs::current()?,
        };
        let nl = netns.netlink()?;
        let id = {
            let _lock = store::lock(&state_dir.join("lock"), true)?;
            state_id(&state_dir)?
        };
        let runtime_dir = self
            .runtime_dir
            .unwrap_or_else(|| Path::new(DEFAULT_RUNTIME_DIR).join(&id));
        store::create_dir(&runtime_dir)?;
        let host = Host {
            inner: Arc::new(HostInner {
                state_dir,
                runtime_dir,
                registries: Mutex::new(HashMap::new()),
                id,
                netns,
                nl,
                default_pools: self.default_pools.unwrap_or_default(),
                reserved_prefixes: self.reserved_prefixes,
                capabilities: OnceLock::new(),
            }),
        };
        // Recovery costs a look at every network and the host's links: do it
        // once per boot, and again only when an operation was interrupted.
        if host.needs_recovery()? {
            let report = host.recover_networks()?;
            if !report.is_clean() {
                log::info!("recovery on open: {report:?}");
            }
        }
        Ok(host)
    }
}

/// The namespace files a machine knows: named ones and every process's.
fn namespace_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.extend(
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .map(|e| e.path().join("ns/net")),
    );
    paths
}

/// Reads the state directory's id, creating it on first use.
fn state_id(state_dir: &Path) -> Result<String> {
    let path = state_dir.join("id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    }
    let id = random_hex(8)?;
    store::write_atomic(&path, id.as_bytes(), Durability::Durable)?;
    Ok(id)
}

pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    fill_random(&mut buffer)?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// What [`Host::recover`] found and did.
///
/// ```no_run
/// use underlay::Host;
///
/// let report = Host::open("/var/lib/underlay")?.recover()?;
/// for endpoint in &report.released_endpoints {
///     println!("released the addresses of {endpoint}");
/// }
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Owned parent links that were missing (after a reboot) and were
    /// created again.
    pub recreated_parents: Vec<String>,
    /// Networks whose creation a crash interrupted, undone.
    pub undone_creations: Vec<String>,
    /// Networks whose removal a crash interrupted, finished.
    pub finished_removals: Vec<String>,
    /// Links marked as underlay's (by their alias) that no network record
    /// explains; they were deleted.
    pub removed_links: Vec<String>,
    /// Networks whose owned parent could not be created again (for example
    /// because the VLAN's master interface is missing), with the reason.
    pub broken_networks: Vec<(String, String)>,
    /// Endpoints (`network/endpoint`) whose namespace or link is gone; their
    /// addresses were released.
    pub released_endpoints: Vec<String>,
    /// Endpoints (`network/endpoint`) whose attach a crash interrupted;
    /// their link was deleted and their addresses released.
    pub undone_attaches: Vec<String>,
}

impl RecoveryReport {
    /// Whether there was nothing to do.
    ///
    /// ```
    /// use underlay::host::RecoveryReport;
    ///
    /// let mut report = RecoveryReport::default();
    /// assert!(report.is_clean());
    /// report.recreated_parents.push("eth0.50".into());
    /// assert!(!report.is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        *self == RecoveryReport::default()
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
    /// assert_eq!(host.state_dir(), std::path::Path::new("/var/lib/underlay"));
    /// # Ok::<(), underlay::Error>(())
    /// ```
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

    /// The state directory.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let host = Host::open("/var/lib/underlay")?;
    /// assert!(host.state_dir().join("networks").is_dir());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
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
        &self.inner.netns
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
    pub fn capabilities(&self) -> Result<KernelCapabilities> {
        if let Some(caps) = self.inner.capabilities.get() {
            return Ok(*caps);
        }
        let caps = KernelCapabilities::probe()?;
        Ok(*self.inner.capabilities.get_or_init(|| caps))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.inner
            .state_dir
            .join("networks")
            .join(format!("{name}.json"))
    }

    fn lock(&self) -> Result<store::Lock> {
        store::lock(&self.inner.state_dir.join("lock"), true)
    }

    fn records(&self) -> Result<Vec<NetworkRecord>> {
        let mut out = Vec::new();
        for path in store::list_records(&self.inner.state_dir.join("networks"))? {
            if let Some(record) = store::read_record::<NetworkRecord>(&path)? {
                out.push(record);
            }
        }
        Ok(out)
    }

    fn network_from(&self, record: NetworkRecord) -> Network {
        Network {
            host: Arc::clone(&self.inner),
            record,
        }
    }

    fn alias(&self, network_id: &str) -> String {
        self.inner.alias(network_id)
    }

    /// Creates a network: checks the description and that the kernel has the
    /// driver ([`Error::Unsupported`] otherwise), resolves (or creates) the
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
    pub fn create_network(&self, builder: NetworkBuilder) -> Result<Network> {
        let spec = builder.build()?;
        // Say now, not at the first attach, that the kernel lacks the driver.
        let feature = match spec.driver() {
            crate::network::Driver::Ipvlan { .. } => KernelFeature::Ipvlan,
            _ => KernelFeature::Macvlan,
        };
        self.capabilities()?.require(feature)?;
        let _lock = self.lock()?;
        let records = self.records()?;
        if records.iter().any(|r| r.name == spec.name()) {
            return Err(Error::NetworkExists {
                name: spec.name().to_owned(),
            });
        }
        // Subnets: the given ones must not overlap other networks'; missing
        // families come from the default pools.
        let existing: Vec<(String, Vec<IpNet>)> = records
            .iter()
            .map(|r| (r.name.clone(), r.ipam.prefixes().collect()))
            .collect();
        check_overlap(
            spec.ipam().prefixes(),
            existing.iter().map(|(n, p)| (n, p.iter().copied())),
        )?;
        let mut ipam = spec.ipam().clone();
        let (ipv4, ipv6) = spec.families();
        let has = |ipam: &crate::ipam::NetworkIpamConfig, v4: bool| {
            ipam.prefixes().any(|p| p.addr().is_ipv4() == v4)
        };
        if (ipv4 && !has(&ipam, true)) || (ipv6 && !has(&ipam, false)) {
            let mut in_use: Vec<IpNet> = existing
                .iter()
                .flat_map(|(_, p)| p.iter().copied())
                .collect();
            in_use.extend(self.host_prefixes()?);
            in_use.extend(self.inner.reserved_prefixes.iter().copied());
            if ipv4 && !has(&ipam, true) {
                let subnet = self.inner.default_pools.pick_ipv4(in_use.iter().copied())?;
                ipam.add_subnet(crate::ipam::SubnetConfig::new(subnet)?)?;
                in_use.push(subnet);
            }
            if ipv6 && !has(&ipam, false) {
                let mut global_id = [0u8; 5];
                fill_random(&mut global_id)?;
                let subnet = self.inner.default_pools.pick_ipv6(global_id, in_use)?;
                ipam.add_subnet(crate::ipam::SubnetConfig::new(subnet)?)?;
            }
        }
        ipam.infer_gateways();

        let id = random_hex(32)?;
        let dummy = spec
            .parent()
            .is_none()
            .then(|| parent::dummy_name(spec.driver().name() == "ipvlan", &id));
        let plan = parent::plan(&self.inner.nl, spec.parent(), dummy)?;
        if let Some(holder) = records.iter().find(|r| r.parent.name == plan.parent.name) {
            return Err(Error::ParentInUse {
                parent: plan.parent.name.clone(),
                network: holder.name.clone(),
            });
        }
        let mut record = spec.into_record(id, plan.parent.clone(), ipam);
        let path = self.record_path(&record.name);
        // Record the intent first: if we die after creating the parent,
        // recovery finds the record and undoes the creation.
        let pending = self.begin(&record.name)?;
        store::write_record(&path, &record, Durability::Durable)?;
        log::debug!("network {}: recorded as creating", record.name);
        if let Err(e) = plan.realize(&self.inner.nl, &self.alias(&record.id)) {
            store::remove_record(&path, Durability::Durable)?;
            end(&pending);
            return Err(e);
        }
        record.state = NetworkState::Ready;
        if let Err(e) = store::write_record(&path, &record, Durability::Durable) {
            let _ = parent::remove(
                &self.inner.nl,
                &record.parent,
                &self.alias(&record.id),
                false,
            );
            let _ = store::remove_record(&path, Durability::Durable);
            end(&pending);
            return Err(e);
        }
        end(&pending);
        self.inner.registry(&record).prepare()?;
        log::info!(
            "created network {} ({} on {})",
            record.name,
            record.driver,
            record.parent.name
        );
        Ok(self.network_from(record))
    }

    /// Prefixes on the host's links and in its main routing tables, which
    /// default pools avoid.
    fn host_prefixes(&self) -> Result<Vec<IpNet>> {
        let nl = &self.inner.nl;
        let mut out: Vec<IpNet> = nl
            .addresses(None)?
            .into_iter()
            .map(|a| a.address.trunc())
            .filter(|p| !p.addr().is_loopback())
            .collect();
        for family in [IpFamily::V4, IpFamily::V6] {
            out.extend(nl.routes(family)?.into_iter().filter_map(|r| r.destination));
        }
        Ok(out)
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
    pub fn network(&self, name: &str) -> Result<Network> {
        self.find(name).map(|record| self.network_from(record))
    }

    fn find(&self, name: &str) -> Result<NetworkRecord> {
        let ready = |r: &NetworkRecord| r.state == NetworkState::Ready;
        if let Some(record) = store::read_record::<NetworkRecord>(&self.record_path(name))? {
            if ready(&record) {
                return Ok(record);
            }
        }
        let not_found = || Error::NetworkNotFound {
            name: name.to_owned(),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let mut matches = self
            .records()?
            .into_iter()
            .filter(|r| ready(r) && r.id.starts_with(name));
        match (matches.next(), matches.next()) {
            (Some(record), None) => Ok(record),
            _ => Err(not_found()),
        }
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
    pub fn networks(&self) -> Result<Vec<Network>> {
        Ok(self
            .records()?
            .into_iter()
            .filter(|r| r.state == NetworkState::Ready)
            .map(|r| self.network_from(r))
            .collect())
    }

    /// Removes a network (by name or id, as [`Host::network`] finds it):
    /// deletes the parent link if underlay created it
    /// (a VLAN sub-interface or a dummy), and nothing else. A network that
    /// still has endpoints is refused ([`Error::NetworkHasEndpoints`]); see
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
    pub fn remove_network(&self, name: &str) -> Result<()> {
        self.remove(name, false)
    }

    /// Removes a network and detaches its endpoints first. When the parent
    /// is owned, deleting it takes every endpoint link with it in one kernel
    /// operation.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let host = Host::open("/var/lib/underlay")?;
    /// host.force_remove_network("macvlan50")?;
    /// assert!(host.network("macvlan50").is_err());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn force_remove_network(&self, name: &str) -> Result<()> {
        self.remove(name, true)
    }

    fn remove(&self, name: &str, force: bool) -> Result<()> {
        let _lock = self.lock()?;
        let mut record = self.find(name)?;
        let name = record.name.clone();
        let name = name.as_str();
        let path = self.record_path(name);
        let network = self.network_from(record.clone());
        let registry = self.inner.registry(&record);
        let mut session = registry.session()?;
        let endpoints: Vec<_> = session.endpoints().cloned().collect();
        if !endpoints.is_empty() && !force {
            return Err(Error::NetworkHasEndpoints {
                network: name.to_owned(),
                count: endpoints.len(),
            });
        }
        record.state = NetworkState::Removing;
        self.begin(name)?;
        store::write_record(&path, &record, Durability::Durable)?;
        log::debug!("network {name}: recorded as removing");
        // Endpoint links go first. With an owned parent, deleting the parent
        // takes them all in one kernel operation. Otherwise each goes on its
        // own, in parallel: a deletion waits for an RCU grace period, and
        // concurrent deletions share their waits.
        if !record.parent.owned() {
            remove_links_in_parallel(&network, &endpoints)?;
        }
        parent::remove(
            &self.inner.nl,
            &record.parent,
            &self.alias(&record.id),
            false,
        )?;
        for endpoint in &endpoints {
            session.forget(endpoint.id)?;
        }
        drop(session);
        self.finish_removal(&record)?;
        log::info!("removed network {name}");
        Ok(())
    }

    fn finish_removal(&self, record: &NetworkRecord) -> Result<()> {
        let unfinished = record.state == NetworkState::Creating;
        parent::remove(
            &self.inner.nl,
            &record.parent,
            &self.alias(&record.id),
            unfinished,
        )?;
        let registry = self.inner.registry(record);
        let _ = std::fs::remove_dir_all(registry.dir());
        self.inner
            .registries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&record.id);
        store::remove_record(&self.record_path(&record.name), Durability::Durable)?;
        end(&self.pending_path(&record.name));
        Ok(())
    }

    fn pending_path(&self, name: &str) -> PathBuf {
        self.inner.state_dir.join("pending").join(name)
    }

    /// Marks a network operation as under way, for [`Host::open`] to notice
    /// if it never finishes. (No fsync: a power cut changes the boot id,
    /// which makes opening recover anyway.)
    fn begin(&self, name: &str) -> Result<PathBuf> {
        let path = self.pending_path(name);
        std::fs::write(&path, b"")
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Ok(path)
    }

    /// Whether opening must recover: not yet this boot, or an operation was
    /// interrupted.
    fn needs_recovery(&self) -> Result<bool> {
        let marker =
            std::fs::read_to_string(self.inner.runtime_dir.join("recovered")).unwrap_or_default();
        if marker.is_empty() || marker != boot_id() {
            return Ok(true);
        }
        let pending = self.inner.state_dir.join("pending");
        let mut entries = std::fs::read_dir(&pending)
            .map_err(|e| Error::io(format!("list {}", pending.display()), e))?;
        Ok(entries.next().is_some())
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
    pub fn recover(&self) -> Result<RecoveryReport> {
        let mut report = self.recover_networks()?;
        let _lock = self.lock()?;
        let mut explained: Vec<String> = Vec::new();
        for record in self
            .records()?
            .into_iter()
            .filter(|r| r.state == NetworkState::Ready)
        {
            let network = self.network_from(record.clone());
            let registry = self.inner.registry(&record);
            let mut session = registry.session()?;
            let endpoints: Vec<_> = session.endpoints().cloned().collect();
            for endpoint in endpoints {
                let label = format!("{}/{}", record.name, endpoint.name);
                let alias = format!("{}:{:016x}", self.alias(&record.id), endpoint.id);
                let netns = endpoint.netns();
                let Some(netns) = netns else {
                    session.forget(endpoint.id)?;
                    report.released_endpoints.push(label);
                    continue;
                };
                if endpoint.state == EndpointState::Attaching {
                    network.remove_link(Some(&netns), &endpoint)?;
                    session.forget(endpoint.id)?;
                    report.undone_attaches.push(label);
                    continue;
                }
                let present = netns.run(|| {
                    let nl = Netlink::open()?;
                    Ok(nl
                        .links()?
                        .iter()
                        .any(|l| l.alias.as_deref() == Some(alias.as_str())))
                })?;
                if present {
                    explained.push(alias);
                } else {
                    session.forget(endpoint.id)?;
                    report.released_endpoints.push(label);
                }
            }
        }
        report
            .removed_links
            .extend(self.remove_unexplained_endpoint_links(&explained)?);
        Ok(report)
    }

    /// Deletes endpoint links with our mark, in every namespace the machine
    /// knows, that no endpoint record explains.
    fn remove_unexplained_endpoint_links(&self, explained: &[String]) -> Result<Vec<String>> {
        let ours = format!("{ALIAS_PREFIX}{}:", self.inner.id);
        let mut removed = Vec::new();
        let mut seen = vec![self.inner.netns.id()];
        for path in namespace_paths() {
            let Ok(netns) = NetNs::open(&path) else {
                continue;
            };
            if seen.contains(&netns.id()) {
                continue;
            }
            seen.push(netns.id());
            let found = netns.run(|| {
                let nl = Netlink::open()?;
                let mut deleted = Vec::new();
                for link in nl.links()? {
                    let Some(alias) = &link.alias else { continue };
                    // Endpoint marks have three parts after the prefix.
                    if alias.starts_with(&ours)
                        && alias[ours.len()..].contains(':')
                        && !explained.contains(alias)
                        && nl.delete_link(link.index).is_ok()
                    {
                        deleted.push(format!("{}:{}", path.display(), link.name));
                    }
                }
                Ok(deleted)
            });
            match found {
                Ok(deleted) => removed.extend(deleted),
                Err(e) => log::debug!("skipping namespace {}: {e}", path.display()),
            }
        }
        Ok(removed)
    }

    /// Checks the networks only: see [`HostOptions::open`].
    fn recover_networks(&self) -> Result<RecoveryReport> {
        let _lock = self.lock()?;
        let mut report = RecoveryReport::default();
        let mut explained = Vec::new();
        for record in self.records()? {
            let alias = self.alias(&record.id);
            match record.state {
                NetworkState::Creating => {
                    self.finish_removal(&record)?;
                    report.undone_creations.push(record.name.clone());
                }
                NetworkState::Removing => {
                    self.finish_removal(&record)?;
                    report.finished_removals.push(record.name.clone());
                }
                NetworkState::Ready => {
                    explained.push(alias.clone());
                    match parent::ensure(&self.inner.nl, &record.parent, &alias) {
                        Ok(true) => report.recreated_parents.push(record.parent.name.clone()),
                        Ok(false) => {}
                        Err(e) => {
                            log::warn!(
                                "network {}: cannot restore parent {}: {e}",
                                record.name,
                                record.parent.name
                            );
                            report
                                .broken_networks
                                .push((record.name.clone(), e.to_string()));
                        }
                    }
                }
            }
        }
        let ours = format!("{ALIAS_PREFIX}{}:", self.inner.id);
        for link in self.inner.nl.links()? {
            let Some(alias) = &link.alias else { continue };
            if alias.starts_with(&ours) && !explained.contains(alias) {
                match self.inner.nl.delete_link(link.index) {
                    Ok(()) | Err(Error::LinkNotFound { .. }) => {
                        report.removed_links.push(link.name)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // Everything interrupted is settled now.
        for entry in std::fs::read_dir(self.inner.state_dir.join("pending"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_file(entry.path());
        }
        store::write_atomic(
            &self.inner.runtime_dir.join("recovered"),
            boot_id().as_bytes(),
            Durability::Atomic,
        )?;
        Ok(report)
    }
}

/// Ends what [`Host::begin`] started.
fn end(pending: &Path) {
    let _ = std::fs::remove_file(pending);
}

/// This boot's id: it changes at every boot.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// How many endpoint links are deleted at once.
const PARALLEL_DELETIONS: usize = 128;

/// Deletes the links of `endpoints`, many at a time; returns the first error
/// after trying them all.
fn remove_links_in_parallel(
    network: &Network,
    endpoints: &[crate::registry::EndpointRecord],
) -> Result<()> {
    let mut first_error = None;
    for chunk in endpoints.chunks(PARALLEL_DELETIONS) {
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|endpoint| {
                    scope.spawn(move || network.remove_link(endpoint.netns().as_ref(), endpoint))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Protocol("a link deletion thread panicked".into()))
                    })
                })
                .collect()
        });
        for result in results {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
