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

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::link::MacAddress;
use crate::netns::NetNs;
use crate::store::EndpointRecord;

/// How to attach a container. Everything is optional.
///
/// The options are data too: they serialise to and from JSON (or any
/// serde format), as `{"ipv4": "192.168.32.10", "name": "web1",
/// "dns_names": ["www"]}`.
///
/// ```
/// use underlay::endpoint::AttachOptions;
///
/// let options = AttachOptions::new()
///     .ip("192.168.32.10".parse().unwrap())
///     .ip("2001:db8:abc8::10".parse().unwrap())
///     .mac("02:42:c0:a8:20:0a".parse()?)
///     .name("web1")
///     .dns_name("www")
///     .ifname("eth1");
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttachOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ipv4: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ipv6: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mac: Option<MacAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ifname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) dns_names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mtu: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) no_default_route: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metric: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) assigned: Vec<IpNet>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) gateways: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) routes: Vec<RouteRequest>,
}

/// A route asked for with [`AttachOptions::route`], or one an attach
/// installed ([`Endpoint::routes`]): to `destination` (`0.0.0.0/0` or `::/0`
/// for a default route) through `gateway`, or straight out of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRequest {
    /// Where the route leads.
    pub destination: IpNet,
    /// The next hop; `None`: out of the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
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

    /// Gives the endpoint an address chosen by the caller's own address
    /// management (a CNI IPAM plugin, DHCP), with its prefix length: only
    /// on a network with no address family of its own
    /// ([`NetworkBuilder::ipv4(false)`](crate::network::NetworkBuilder::ipv4)
    /// and no IPv6), which then records the address but does not manage it.
    /// One per family; an address another endpoint of the network holds is
    /// refused.
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// let options = AttachOptions::new()
    ///     .assigned("10.1.2.7/24".parse().unwrap())
    ///     .gateway("10.1.2.1".parse().unwrap());
    /// assert!(format!("{options:?}").contains("assigned: [10.1.2.7/24]"));
    /// ```
    pub fn assigned(mut self, address: IpNet) -> Self {
        self.assigned.push(address);
        self
    }

    /// The gateway of an [`assigned`](Self::assigned) address of the same
    /// family: the endpoint's default route goes through it (unless the
    /// network is internal or [`no_default_route`](Self::no_default_route)).
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// let options = AttachOptions::new().gateway("10.1.2.1".parse().unwrap());
    /// assert!(format!("{options:?}").contains("gateways: [10.1.2.1]"));
    /// ```
    pub fn gateway(mut self, gateway: IpAddr) -> Self {
        self.gateways.push(gateway);
        self
    }

    /// Adds a route in the container, after the default routes: to
    /// `destination` through `gateway`, or straight out of the link. With
    /// [`no_default_route`](Self::no_default_route), the routes asked for
    /// are the only ones (a CNI IPAM plugin's `routes`, a default route
    /// included).
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// let options = AttachOptions::new()
    ///     .route("192.168.50.0/24".parse().unwrap(), Some("10.1.2.254".parse().unwrap()));
    /// assert!(format!("{options:?}").contains("192.168.50.0/24"));
    /// ```
    pub fn route(mut self, destination: IpNet, gateway: Option<IpAddr>) -> Self {
        self.routes.push(RouteRequest {
            destination,
            gateway,
        });
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

    /// Adds another DNS name the container answers to on this network
    /// (Docker's `--alias`).
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// // docker network connect --alias www --alias web pub_net web1
    /// let options = AttachOptions::new().dns_name("www").dns_name("web");
    /// assert!(format!("{options:?}").contains(r#"dns_names: ["www", "web"]"#));
    /// ```
    pub fn dns_name(mut self, name: &str) -> Self {
        self.dns_names.push(name.to_owned());
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

    /// The metric of the default routes (the kernel's default, 0 for IPv4
    /// and 1024 for IPv6, otherwise): a container on several networks
    /// prefers the route with the lowest.
    ///
    /// ```
    /// use underlay::endpoint::AttachOptions;
    ///
    /// // A backup uplink, used only when the preferred network's route is gone.
    /// let options = AttachOptions::new().metric(200);
    /// assert!(format!("{options:?}").contains("metric: Some(200)"));
    /// ```
    pub fn metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }
}

/// How to detach (see [`Network::detach_with`](crate::Network::detach_with)).
///
/// By default a detach returns as soon as the container is off the network:
/// the addresses are off its link (and released), the link is taken down
/// as far as the kernel allows without waiting (`protodown` for macvlan)
/// and marked detached; deleting the link, which makes the kernel wait for
/// an RCU grace period (about 20 ms), happens after, in a batch, or with
/// the container's namespace.
///
/// ```
/// use underlay::endpoint::DetachOptions;
///
/// // The link deleted before detach returns.
/// let options = DetachOptions::new().delete_link(true);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DetachOptions {
    pub(crate) delete_link: bool,
    pub(crate) sweep: bool,
}

impl Default for DetachOptions {
    fn default() -> Self {
        DetachOptions {
            delete_link: false,
            sweep: true,
        }
    }
}

impl DetachOptions {
    /// The default: off the network at once, the link deleted after.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a sweep starts right after the detach, on a thread of the
    /// library's own (the default). A process about to exit has no time
    /// for it (it would be cut short); the link then waits for the next
    /// attach on the network, `recover`, or the namespace's end.
    pub fn sweep(mut self, sweep: bool) -> Self {
        self.sweep = sweep;
        self
    }

    /// Deletes the link before returning (about 20 ms more).
    pub fn delete_link(mut self, delete: bool) -> Self {
        self.delete_link = delete;
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
    routes: Vec<RouteRequest>,
}

impl Endpoint {
    pub(crate) fn new(network: &str, record: EndpointRecord) -> Self {
        Endpoint {
            network: network.to_owned(),
            record,
            routes: Vec::new(),
        }
    }

    pub(crate) fn with_routes(mut self, routes: Vec<RouteRequest>) -> Self {
        self.routes = routes;
        self
    }

    /// The routes the attach that returned this handle installed in the
    /// container: its default routes (`0.0.0.0/0`, `::/0`; none where the
    /// container had one already, from another network) and those asked
    /// for with [`AttachOptions::route`]. Empty for a handle read back from
    /// the store ([`Network::endpoints`](crate::Network::endpoints)).
    ///
    /// ```no_run
    /// # use underlay::{endpoint::AttachOptions, netns::NetNs, Host};
    /// # let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &AttachOptions::new())?;
    /// let default = &ep.routes()[0];
    /// assert_eq!(default.destination.prefix_len(), 0);
    /// assert_eq!(default.gateway, Some("172.16.86.1".parse().unwrap()));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn routes(&self) -> &[RouteRequest] {
        &self.routes
    }

    /// The record behind the handle.
    pub(crate) fn record(&self) -> &EndpointRecord {
        &self.record
    }

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

    /// The container's namespace, if it is still the one the endpoint was
    /// attached in (its recorded path may now name another, or nothing).
    ///
    /// ```no_run
    /// # use underlay::Host;
    /// # let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// for ep in net.endpoints()? {
    ///     if ep.netns().is_none() {
    ///         println!("{}: its container is gone", ep.name());
    ///     }
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn netns(&self) -> Option<NetNs> {
        self.record.netns()
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

    /// The endpoint's other DNS names (Docker's aliases).
    ///
    /// ```no_run
    /// # use underlay::{endpoint::AttachOptions, netns::NetNs, Host};
    /// # let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let options = AttachOptions::new().dns_name("www");
    /// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &options)?;
    /// assert_eq!(ep.dns_names(), ["www"]);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn dns_names(&self) -> &[String] {
        &self.record.dns_names
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
        s.serialize_field("aliases", &self.record.dns_names)?;
        s.serialize_field("netns", &self.record.netns_path)?;
        s.serialize_field("ifname", &self.record.ifname)?;
        s.serialize_field("mac", &self.record.mac)?;
        s.serialize_field("addresses", &self.record.addresses)?;
        s.end()
    }
}
