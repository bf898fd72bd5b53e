//! Endpoints: containers attached to networks (`docker run --net`, `docker
//! network connect` and `disconnect`).
//!
//! Attaching creates the macvlan or ipvlan link on the network's parent
//! straight inside the container's namespace, gives it addresses from the
//! network's allocator (IPv6 without the DAD delay), brings it up, adds the
//! default routes (via the subnet's gateway; `default dev` for ipvlan L3;
//! none on internal networks) and has the kernel announce the addresses
//! with a gratuitous ARP / unsolicited neighbour advertisement. If any step
//! fails, everything done so far is undone and the error names the step.
//!
//! ```no_run
//! use underlay::endpoint::AttachOptions;
//! use underlay::netns::NetNs;
//! use underlay::Host;
//!
//! let host = Host::open("/var/lib/underlay")?;
//! let net = host.network("pub_net")?;
//! let container = NetNs::open("/run/netns/web1")?;
//! // docker run --net=pub_net --ip=172.16.86.10 ...
//! let ep = net.attach(&container, &AttachOptions::new().ip("172.16.86.10".parse().unwrap()))?;
//! println!("{} {:?}", ep.ifname(), ep.addresses());
//! net.detach(&container)?;
//! # Ok::<(), underlay::Error>(())
//! ```

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use netlink_packet_route::RouteNetlinkMessage;

use crate::address::address_message;
use crate::ipam::Allocation;
use crate::link::{validate_name, MacAddress, NewLink};
use crate::netlink::{Netlink, Request};
use crate::netns::NetNs;
use crate::network::{Driver, Network};
use crate::registry::{EndpointRecord, EndpointState, Registry, Session};
use crate::route::{IpFamily, NewRoute};
use crate::{Error, Result};

/// How to attach a container. Everything is optional.
///
/// ```
/// use underlay::endpoint::AttachOptions;
///
/// let options = AttachOptions::new()
///     .ip("192.168.32.10".parse().unwrap())
///     .ip("2001:db8:abc8::10".parse().unwrap())
///     .mac("02:42:c0:a8:20:0a".parse()?)
///     .name("web1")
///     .alias("www")
///     .ifname("eth1");
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    ipv4: Option<IpAddr>,
    ipv6: Option<IpAddr>,
    mac: Option<MacAddress>,
    ifname: Option<String>,
    name: Option<String>,
    aliases: Vec<String>,
    mtu: Option<u32>,
    no_default_route: bool,
}

impl AttachOptions {
    /// No requests: addresses from the allocator, `eth0` (or the next free
    /// `ethN`), a random MAC address.
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// // Nothing requested: the allocator, eth0 and a random MAC address decide.
    /// let options = AttachOptions::new();
    /// assert!(format!("{options:?}").contains("ipv4: None, ipv6: None, mac: None"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests an address (`--ip` or `--ip6`, by its family). It must lie
    /// in one of the network's subnets, and may lie outside the ip-range.
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// // docker run --ip=172.16.86.10 --ip6=2001:db8:abc8::10: one per family.
    /// let options = AttachOptions::new()
    ///     .ip("172.16.86.10".parse().unwrap())
    ///     .ip("2001:db8:abc8::10".parse().unwrap());
    /// let debug = format!("{options:?}");
    /// assert!(debug.contains("ipv4: Some(172.16.86.10), ipv6: Some(2001:db8:abc8::10)"));
    /// ```
    pub fn ip(mut self, address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => self.ipv4 = Some(address),
            IpAddr::V6(_) => self.ipv6 = Some(address),
        }
        self
    }

    /// Sets the MAC address (macvlan only: ipvlan links share the parent's).
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// let options = AttachOptions::new().mac("02:42:ac:10:56:0a".parse()?);
    /// assert!(format!("{options:?}").contains("mac: Some(02:42:ac:10:56:0a)"));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn mac(mut self, mac: MacAddress) -> Self {
        self.mac = Some(mac);
        self
    }

    /// The interface name inside the container.
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// // A second network's interface, next to the container's eth0.
    /// let options = AttachOptions::new().ifname("eth1");
    /// assert!(format!("{options:?}").contains(r#"ifname: Some("eth1")"#));
    /// ```
    pub fn ifname(mut self, name: &str) -> Self {
        self.ifname = Some(name.to_owned());
        self
    }

    /// The endpoint's name (the container's name, for `/etc/hosts`).
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// let options = AttachOptions::new().name("web1");
    /// assert!(format!("{options:?}").contains(r#"name: Some("web1")"#));
    /// ```
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Adds a network alias, another name the container answers to.
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// // docker network connect --alias www --alias web pub_net web1
    /// let options = AttachOptions::new().alias("www").alias("web");
    /// assert!(format!("{options:?}").contains(r#"aliases: ["www", "web"]"#));
    /// ```
    pub fn alias(mut self, alias: &str) -> Self {
        self.aliases.push(alias.to_owned());
        self
    }

    /// The interface's MTU (the network's, else the parent's, by default).
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// let options = AttachOptions::new().mtu(1400);
    /// assert!(format!("{options:?}").contains("mtu: Some(1400)"));
    /// ```
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Adds no default route (for a container that routes elsewhere).
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// let options = AttachOptions::new().no_default_route();
    /// assert!(format!("{options:?}").contains("no_default_route: true"));
    /// ```
    pub fn no_default_route(mut self) -> Self {
        self.no_default_route = true;
        self
    }
}

/// A container's attachment to a network.
///
/// ```no_run
/// use underlay::Host;
///
/// let host = Host::open("/var/lib/underlay")?;
/// for ep in host.network("pub_net")?.endpoints()? {
///     println!("{} {} {:?}", ep.name(), ep.ifname(), ep.addresses());
/// }
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    network: String,
    record: EndpointRecord,
}

impl Endpoint {
    /// The endpoint's id: 16 hexadecimal characters.
    ///
    /// ```no_run
    /// # use underlay::{endpoint::AttachOptions, netns::NetNs, Host};
    /// # let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &AttachOptions::new())?;
    /// assert_eq!(ep.id().len(), 16);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn id(&self) -> String {
        format!("{:016x}", self.record.id)
    }

    /// The endpoint's name.
    ///
    /// ```no_run
    /// # use underlay::{endpoint::AttachOptions, netns::NetNs, Host};
    /// # let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// // Without AttachOptions::name, it is named after /run/netns/NAME.
    /// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &AttachOptions::new())?;
    /// assert_eq!(ep.name(), "web1");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The endpoint's aliases.
    ///
    /// ```no_run
    /// # use underlay::{endpoint::AttachOptions, netns::NetNs, Host};
    /// # let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let options = AttachOptions::new().alias("www");
    /// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &options)?;
    /// assert_eq!(ep.aliases(), ["www"]);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn aliases(&self) -> &[String] {
        &self.record.aliases
    }

    /// The network it belongs to.
    ///
    /// ```no_run
    /// # use underlay::{endpoint::AttachOptions, netns::NetNs, Host};
    /// # let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &AttachOptions::new())?;
    /// assert_eq!(ep.network(), "pub_net");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The container namespace's path, as given to attach.
    ///
    /// ```no_run
    /// # use underlay::{endpoint::AttachOptions, netns::NetNs, Host};
    /// # let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &AttachOptions::new())?;
    /// assert_eq!(ep.netns_path(), std::path::Path::new("/run/netns/web1"));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn netns_path(&self) -> &Path {
        &self.record.netns_path
    }

    /// The interface name inside the container.
    ///
    /// ```no_run
    /// # use underlay::{endpoint::AttachOptions, netns::NetNs, Host};
    /// # let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let options = AttachOptions::new().ifname("eth1");
    /// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &options)?;
    /// assert_eq!(ep.ifname(), "eth1");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn ifname(&self) -> &str {
        &self.record.ifname
    }

    /// The MAC address (macvlan), if known.
    ///
    /// ```no_run
    /// # use underlay::{endpoint::AttachOptions, netns::NetNs, Host};
    /// # let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let mac = "02:42:ac:10:56:0a".parse()?;
    /// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &AttachOptions::new().mac(mac))?;
    /// assert_eq!(ep.mac(), Some(mac)); // pub_net is a macvlan network
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn mac(&self) -> Option<MacAddress> {
        self.record.mac
    }

    /// The addresses, with their prefix lengths.
    ///
    /// ```no_run
    /// # use underlay::{endpoint::AttachOptions, netns::NetNs, Host};
    /// # let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let options = AttachOptions::new().ip("172.16.86.10".parse().unwrap());
    /// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &options)?;
    /// assert_eq!(ep.addresses()[0].to_string(), "172.16.86.10/24");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn addresses(&self) -> &[IpNet] {
        &self.record.addresses
    }
}

impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Endpoint", 7)?;
        s.serialize_field("id", &self.id())?;
        s.serialize_field("name", &self.record.name)?;
        s.serialize_field("aliases", &self.record.aliases)?;
        s.serialize_field("netns", &self.record.netns_path)?;
        s.serialize_field("ifname", &self.record.ifname)?;
        s.serialize_field("mac", &self.record.mac)?;
        s.serialize_field("addresses", &self.record.addresses)?;
        s.end()
    }
}

impl Network {
    fn registry(&self) -> Arc<Registry> {
        self.host.registry(&self.record)
    }

    fn alias_of(&self, endpoint: u64) -> String {
        format!("{}:{endpoint:016x}", self.host.alias(&self.record.id))
    }

    /// Attaches the container whose namespace is `netns`. On error nothing
    /// is left behind: no link, no address taken, no record.
    ///
    /// ```no_run
    /// use underlay::{endpoint::AttachOptions, netns::NetNs, Host};
    ///
    /// let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// // docker run --net=pub_net --ip=172.16.86.10 --name web1 ...
    /// let options = AttachOptions::new().ip("172.16.86.10".parse().unwrap()).name("web1");
    /// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &options)?;
    /// assert_eq!(ep.ifname(), "eth0");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn attach(&self, netns: &NetNs, options: &AttachOptions) -> Result<Endpoint> {
        self.check(options)?;
        let registry = self.registry();
        let mut session = registry.session()?;
        let previous = session
            .endpoints()
            .find(|e| e.netns_id == netns.id())
            .cloned();
        if let Some(other) = previous {
            if self.is_live(&other) {
                return Err(Error::AlreadyAttached {
                    network: self.record.name.clone(),
                    endpoint: other.name.clone(),
                });
            }
            // A namespace that died without a detach, whose inode number the
            // kernel has given to this new one.
            log::info!(
                "endpoint {}: its namespace is gone; releasing it",
                other.name
            );
            session.forget(other.id)?;
        }
        let id = session.new_id()?;
        let name = match &options.name {
            Some(name) => {
                if session
                    .endpoints()
                    .any(|e| &e.name == name || e.aliases.contains(name))
                {
                    return Err(Error::invalid(
                        "endpoint name",
                        name,
                        format!(
                            "network {:?} has an endpoint of that name already",
                            self.record.name
                        ),
                    ));
                }
                name.clone()
            }
            None => default_name(netns.path(), id),
        };
        let allocations = self.allocate(&mut session, id, options)?;
        let addresses: Vec<IpAddr> = allocations.iter().map(Allocation::ip).collect();

        let mac = match self.record.driver {
            Driver::Macvlan { .. } => Some(match options.mac {
                Some(mac) => mac,
                None => MacAddress::random_local()?,
            }),
            Driver::Ipvlan { .. } => None,
        };
        let mut record = EndpointRecord {
            version: EndpointRecord::VERSION,
            id,
            name,
            aliases: options.aliases.clone(),
            netns_path: netns.path().to_owned(),
            netns_id: netns.id(),
            // Most containers have no eth0 yet: try it, and look for a free
            // name only when the kernel says it is taken.
            ifname: options.ifname.clone().unwrap_or_else(|| "eth0".into()),
            mac,
            addresses: allocations.iter().map(Allocation::address).collect(),
            state: EndpointState::Attaching,
            created: now(),
        };
        // Recorded before the kernel is touched: a crash from here on leaves
        // a record that recovery uses to undo the attach.
        let mark = session.mark();
        if let Err(e) = session.save(&record) {
            session.roll_back(mark, id, &addresses)?;
            return Err(e);
        }
        log::debug!("endpoint {}: recorded as attaching", record.name);
        if let Err(e) = self.configure(netns, &mut session, &mut record, &allocations, options) {
            session.roll_back(mark, id, &addresses)?;
            return Err(e);
        }
        session.mark_ready(&mut record)?;
        log::info!(
            "attached {} to network {} as {} with {:?}",
            record.name,
            self.record.name,
            record.ifname,
            record.addresses
        );
        Ok(Endpoint {
            network: self.record.name.clone(),
            record,
        })
    }

    /// Checks the options against the network, before anything happens.
    fn check(&self, options: &AttachOptions) -> Result<()> {
        if let Some(name) = &options.ifname {
            validate_name(name)?;
        }
        if options.mac.is_some() && matches!(self.record.driver, Driver::Ipvlan { .. }) {
            return Err(Error::invalid(
                "MAC address",
                options.mac.map(|m| m.to_string()).unwrap_or_default(),
                "ipvlan endpoints share the parent's MAC address; use a macvlan network to choose one",
            ));
        }
        if let Some(mac) = options.mac {
            if !mac.is_unicast() || mac.0 == [0; 6] {
                return Err(Error::invalid(
                    "MAC address",
                    mac.to_string(),
                    "expected a unicast address (the first byte even)",
                ));
            }
        }
        if let Some(mtu) = options.mtu {
            if !(68..=65535).contains(&mtu) {
                return Err(Error::invalid(
                    "mtu",
                    mtu.to_string(),
                    "expected 68 to 65535 bytes",
                ));
            }
        }
        Ok(())
    }

    /// Takes one address per family the network has: the requested one, or
    /// the allocator's next. All or nothing.
    fn allocate(
        &self,
        session: &mut Session<'_>,
        id: u64,
        options: &AttachOptions,
    ) -> Result<Vec<Allocation>> {
        let mut out: Vec<Allocation> = Vec::new();
        let families = [
            (IpFamily::V4, self.record.ipv4, options.ipv4),
            (IpFamily::V6, self.record.ipv6, options.ipv6),
        ];
        for (family, enabled, requested) in families {
            let result = match (enabled, requested) {
                (false, Some(address)) => Err(Error::invalid(
                    "address",
                    address.to_string(),
                    format!("network {:?} has no {family} subnet", self.record.name),
                )),
                (false, None) => continue,
                (true, Some(address)) => session
                    .ipam()
                    .request(address, id)
                    .map_err(|e| self.in_use(session, e)),
                (true, None) => session.ipam().allocate(family, id).map_err(Error::from),
            };
            match result {
                Ok(allocation) => out.push(allocation),
                Err(e) => {
                    let taken: Vec<IpAddr> = out.iter().map(Allocation::ip).collect();
                    session.release(&taken);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Names the endpoint holding an address in an "in use" error.
    fn in_use(&self, session: &Session<'_>, error: crate::ipam::IpamError) -> Error {
        if let crate::ipam::IpamError::AddressInUse {
            address, holder, ..
        } = &error
        {
            if let Some(holder) = session.endpoints().find(|e| e.id == *holder) {
                return Error::AddressInUse {
                    address: *address,
                    network: self.record.name.clone(),
                    endpoint: holder.name.clone(),
                };
            }
        }
        error.into()
    }

    /// The kernel side of an attach: the link, made straight in the
    /// container's namespace from the host's socket, then everything else in
    /// one round trip from a socket inside it. On error, what was made is
    /// deleted and the error names the step that failed.
    fn configure(
        &self,
        netns: &NetNs,
        session: &mut Session<'_>,
        record: &mut EndpointRecord,
        allocations: &[Allocation],
        options: &AttachOptions,
    ) -> Result<()> {
        let failed = |step: &str, e: Error| Error::AttachFailed {
            network: self.record.name.clone(),
            step: step.to_owned(),
            source: Box::new(e),
        };
        let cached = session.parent_index();
        let mut parent = match cached {
            0 => self
                .parent_index()
                .map_err(|e| failed("find the parent interface", e))?,
            index => index,
        };
        let mut created = self.create_link(netns, parent, record, options);
        if cached != 0
            && created
                .as_ref()
                .is_err_and(|e| e.errno() == Some(libc::ENODEV))
        {
            // The parent went away (and perhaps came back): look again.
            parent = self
                .parent_index()
                .map_err(|e| failed("find the parent interface", e))?;
            created = self.create_link(netns, parent, record, options);
        }
        session.set_parent_index(parent);
        if created
            .as_ref()
            .is_err_and(|e| e.errno() == Some(libc::EEXIST))
        {
            if let Some(name) = &options.ifname {
                return Err(Error::invalid(
                    "interface name",
                    name,
                    "the container has an interface of that name already",
                ));
            }
            record.ifname = netns
                .run(|| free_ifname(&Netlink::open()?))
                .map_err(|e| failed("list the container's links", e))?;
            session.save(record)?;
            created = self.create_link(netns, parent, record, options);
        }
        created.map_err(|e| failed("create the link", e))?;
        log::debug!("endpoint {}: created link {}", record.name, record.ifname);

        let alias = self.alias_of(record.id);
        let record = &*record;
        netns.run(|| {
            let nl = Netlink::open()?;
            let result = self.configure_inside(&nl, record, &alias, allocations, options);
            if result.is_err() {
                // Undo: the link takes its addresses and routes with it.
                match nl.link_by_name(&record.ifname) {
                    Ok(link) if link.alias.is_none() || link.alias.as_deref() == Some(&alias) => {
                        if let Err(e) = nl.delete_link(link.index) {
                            log::warn!(
                                "could not remove {} after a failed attach: {e}",
                                record.ifname
                            );
                        }
                    }
                    _ => {}
                }
            }
            result.map_err(|(step, e)| failed(&step, e))
        })
    }

    /// Looks the parent up on the host. An owned parent deleted behind our
    /// back comes back, as after a reboot.
    fn parent_index(&self) -> Result<u32> {
        let host = &self.host.nl;
        let parent = &self.record.parent;
        match host.link_by_name(&parent.name) {
            Err(Error::LinkNotFound { .. }) if parent.owned() => {
                crate::parent::ensure(host, parent, &self.host.alias(&self.record.id))?;
                host.link_by_name(&parent.name)
            }
            found => found,
        }
        .map(|link| link.index)
    }

    fn create_link(
        &self,
        netns: &NetNs,
        parent: u32,
        record: &EndpointRecord,
        options: &AttachOptions,
    ) -> Result<()> {
        let spec = match self.record.driver {
            Driver::Macvlan { mode } => NewLink::macvlan(&record.ifname, parent, mode),
            Driver::Ipvlan { mode, flag } => NewLink::ipvlan(&record.ifname, parent, mode, flag),
        };
        let mut spec = spec.netns(netns);
        if let Some(mac) = record.mac {
            spec = spec.mac(mac);
        }
        if let Some(mtu) = options.mtu.or(self.record.mtu) {
            spec = spec.mtu(mtu);
        }
        self.host.nl.create_link(&spec)
    }

    /// Configures a new link from a socket inside its namespace (on a thread
    /// in that namespace): the per-link IPv6 settings, then in one round
    /// trip, in order: the ownership mark, `arp_notify`, the addresses, up,
    /// the routes.
    fn configure_inside(
        &self,
        nl: &Netlink,
        record: &EndpointRecord,
        alias: &str,
        allocations: &[Allocation],
        options: &AttachOptions,
    ) -> std::result::Result<(), (String, Error)> {
        let ifname = &record.ifname;
        // IPv6 endpoints announce their addresses with unsolicited neighbour
        // advertisements; endpoints of IPv4-only networks get no IPv6 at all
        // (no link-local address, router solicitations or MLD), as Docker's.
        let ipv6 = allocations.iter().any(|a| a.ip().is_ipv6());
        let (key, value) = if ipv6 {
            ("ndisc_notify", "1")
        } else {
            ("disable_ipv6", "1")
        };
        let path = format!("/proc/sys/net/ipv6/conf/{ifname}/{key}");
        if let Err(e) = std::fs::write(&path, value) {
            log::debug!("cannot set {path}: {e}");
        }
        let index = nl
            .link_by_name(ifname)
            .map_err(|e| ("find the new link".to_owned(), e))?
            .index;
        let mut requests = vec![
            crate::link::alias_request(index, alias),
            crate::link::arp_notify_request(index),
        ];
        for allocation in allocations {
            let address = allocation.address();
            requests.push(Request {
                message: RouteNetlinkMessage::NewAddress(address_message(
                    index,
                    address,
                    address.addr().is_ipv6(),
                )),
                flags: netlink_packet_core::NLM_F_CREATE | netlink_packet_core::NLM_F_EXCL,
                operation: format!("add address {address}"),
            });
        }
        requests.push(crate::link::up_request(index));
        let first_route = requests.len();
        for route in self.default_routes(index, allocations, options) {
            requests.push(route.request());
        }
        let results = nl
            .batch(requests)
            .map_err(|e| ("configure the link".to_owned(), e))?;
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(()) => {}
                // Another network of this container provides the default
                // route for this family already.
                Err(e) if i >= first_route && e.errno() == Some(libc::EEXIST) => {
                    log::info!(
                        "endpoint {}: a default route exists already; keeping it",
                        record.name
                    );
                }
                Err(e) => {
                    let what = match &e {
                        Error::Kernel { operation, .. } => operation.clone(),
                        _ => "configure the link".into(),
                    };
                    return Err((what, e));
                }
            }
        }
        Ok(())
    }

    /// The routes an endpoint gets, as Docker's drivers give them:
    /// `default via GATEWAY` per family for macvlan and ipvlan L2 (none on
    /// internal networks); `default dev` per family for ipvlan L3, where the
    /// parent routes and there is no gateway, internal networks included (the
    /// seeds' `ipnet210`: on an isolated dummy parent it reaches only the
    /// network's own endpoints). None at all when asked.
    fn default_routes(
        &self,
        index: u32,
        allocations: &[Allocation],
        options: &AttachOptions,
    ) -> Vec<NewRoute> {
        let l3 = self.record.driver.is_l3();
        if options.no_default_route || (self.record.internal && !l3) {
            return Vec::new();
        }
        let mut routes: Vec<NewRoute> = Vec::new();
        for allocation in allocations {
            let family = IpFamily::of(allocation.ip());
            if routes.iter().any(|r| r.family() == family) {
                continue;
            }
            if l3 {
                routes.push(NewRoute::default_dev(family, index));
            } else if let Some(gateway) = allocation.gateway() {
                routes.push(NewRoute::default_via(gateway, index));
            }
        }
        routes
    }

    /// Detaches the container whose namespace is `netns`: deletes its link
    /// and releases its addresses. Returns whether it was attached; a second
    /// detach does nothing.
    ///
    /// ```no_run
    /// use underlay::{netns::NetNs, Host};
    ///
    /// let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let web1 = NetNs::open("/run/netns/web1")?;
    /// // docker network disconnect pub_net web1
    /// assert!(net.detach(&web1)?);
    /// assert!(!net.detach(&web1)?); // nothing left to do
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn detach(&self, netns: &NetNs) -> Result<bool> {
        let registry = self.registry();
        let mut session = registry.session()?;
        let Some(record) = session
            .endpoints()
            .find(|e| e.netns_id == netns.id())
            .cloned()
        else {
            return Ok(false);
        };
        if !self.is_live(&record) {
            // The record is of a dead namespace that had this inode number.
            session.forget(record.id)?;
            return Ok(false);
        }
        self.remove_link(Some(netns), &record)?;
        session.forget(record.id)?;
        log::info!("detached {} from network {}", record.name, self.record.name);
        Ok(true)
    }

    /// Detaches an endpoint by name, also when its namespace is gone (the
    /// addresses are released all the same). Returns whether it existed.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// // web1's namespace is gone: give its address back all the same.
    /// if !net.detach_endpoint("web1")? {
    ///     println!("pub_net has no endpoint web1");
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn detach_endpoint(&self, name: &str) -> Result<bool> {
        let registry = self.registry();
        let mut session = registry.session()?;
        let Some(record) = session.endpoints().find(|e| e.name == name).cloned() else {
            return Ok(false);
        };
        let netns = record.netns();
        self.remove_link(netns.as_ref(), &record)?;
        session.forget(record.id)?;
        log::info!("detached {} from network {}", record.name, self.record.name);
        Ok(true)
    }

    /// Deletes an endpoint's link inside its namespace, if the namespace and
    /// the link (with our mark) are still there. The link of an attach that
    /// did not finish may not carry the mark yet: its name was free when the
    /// attach was recorded, so an unmarked link of that name is taken too.
    pub(crate) fn remove_link(&self, netns: Option<&NetNs>, record: &EndpointRecord) -> Result<()> {
        let Some(netns) = netns else {
            log::debug!(
                "endpoint {}: namespace gone, nothing to delete",
                record.name
            );
            return Ok(());
        };
        let alias = self.alias_of(record.id);
        netns.run(|| {
            let nl = Netlink::open()?;
            match nl.link_by_name(&record.ifname) {
                Ok(link)
                    if link.alias.as_deref() == Some(alias.as_str())
                        || (link.alias.is_none() && record.state == EndpointState::Attaching) =>
                {
                    match nl.delete_link(link.index) {
                        Ok(()) | Err(Error::LinkNotFound { .. }) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Ok(_) | Err(Error::LinkNotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// Whether an endpoint still exists: its recorded path names a namespace
    /// with the recorded identity, holding a link with the endpoint's mark.
    /// (The kernel reuses a dead namespace's inode number, and a path can be
    /// reused for a new namespace, so the identity alone does not tell.)
    fn is_live(&self, record: &EndpointRecord) -> bool {
        let Some(netns) = record.netns() else {
            return false;
        };
        let alias = self.alias_of(record.id);
        netns
            .run(|| {
                Ok(Netlink::open()?
                    .links()?
                    .iter()
                    .any(|l| l.alias.as_deref() == Some(alias.as_str())))
            })
            .unwrap_or(true)
    }

    /// The network's endpoints.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// for ep in net.endpoints()? {
    ///     println!("{} {} {:?}", ep.name(), ep.id(), ep.addresses());
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let registry = self.registry();
        let session = registry.session()?;
        Ok(session
            .endpoints()
            .filter(|e| e.state == EndpointState::Ready)
            .map(|record| Endpoint {
                network: self.record.name.clone(),
                record: record.clone(),
            })
            .collect())
    }

    /// `/etc/hosts` lines for the network's endpoints: each address with the
    /// endpoint's name and aliases, so containers can reach each other by
    /// name.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// // For example "172.16.86.10\tweb1 www\n".
    /// print!("{}", net.hosts_entries()?);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn hosts_entries(&self) -> Result<String> {
        let mut out = String::new();
        for endpoint in self.endpoints()? {
            for address in endpoint.addresses() {
                out.push_str(&address.addr().to_string());
                out.push('\t');
                out.push_str(endpoint.name());
                for alias in endpoint.aliases() {
                    out.push(' ');
                    out.push_str(alias);
                }
                out.push('\n');
            }
        }
        Ok(out)
    }
}

/// The default endpoint name: the namespace's name under `/run/netns`, or
/// one made from the endpoint id.
fn default_name(path: &Path, id: u64) -> String {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if dir == Path::new("/run/netns") => {
            name.to_string_lossy().into_owned()
        }
        _ => format!("ep-{:012x}", id >> 16),
    }
}

/// The first `ethN` the container does not have.
fn free_ifname(nl: &Netlink) -> Result<String> {
    let links = nl.links()?;
    Ok((0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !links.iter().any(|l| &l.name == n))
        .expect("a free ethN"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
