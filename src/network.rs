//! Networks: what `docker network create` describes, as a typed builder.
//!
//! ```no_run
//! use underlay::{Host, Network};
//!
//! let host = Host::open("/var/lib/underlay")?;
//! // docker network create -d macvlan --subnet=172.16.86.0/24
//! //   --gateway=172.16.86.1 -o parent=eth0 pub_net
//! let net = host.create_network(
//!     Network::builder("pub_net")
//!         .macvlan()
//!         .parent("eth0")
//!         .subnet("172.16.86.0/24")
//!         .gateway("172.16.86.1"),
//! )?;
//! assert_eq!(net.parent().name, "eth0");
//! # Ok::<(), underlay::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::driver::Driver;
use crate::endpoint::{AttachOptions, DetachOptions, Endpoint};
use crate::engine::Engine;
use crate::ipam::NetworkIpamConfig;
use crate::netns::NetNs;
use crate::parent::{ParentKind, ParentLink};
use crate::shim::HostShim;
use crate::store::NetworkRecord;
use crate::Result;

pub use crate::spec::{NetworkBuilder, NetworkSpec};

/// A network of a [`Host`](crate::Host): what `docker network inspect` shows,
/// and the handle containers are attached through.
///
/// It holds a snapshot of the network's definition (fetch it again with
/// [`Host::network`](crate::Host::network) to see changes) and is
/// `Send + Sync`.
///
/// ```no_run
/// use underlay::endpoint::AttachOptions;
/// use underlay::netns::NetNs;
/// use underlay::Host;
///
/// let host = Host::open("/var/lib/underlay")?;
/// let net = host.network("macnet32")?;
/// println!("{} on {} ({})", net.name(), net.parent().name, net.driver());
/// let ep = net.attach(&NetNs::open("/run/netns/web1")?, &AttachOptions::new())?;
/// println!("{:?}", ep.addresses());
/// # Ok::<(), underlay::Error>(())
/// ```
pub struct Network {
    engine: Arc<Engine>,
    record: NetworkRecord,
}

impl Network {
    /// Starts describing a network called `name`.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let spec = Network::builder("pub_net").macvlan().parent("eth0").build()?;
    /// assert_eq!(spec.name(), "pub_net");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn builder(name: &str) -> NetworkBuilder {
        NetworkBuilder::new(name)
    }

    pub(crate) fn new(engine: Arc<Engine>, record: NetworkRecord) -> Self {
        Network { engine, record }
    }

    /// Checks that this network is what `builder` describes: the same
    /// driver and mode, parent, families, MTU, subnets, ranges and aux
    /// addresses. What the description leaves open (no subnet, no gateway)
    /// matches what the network has. A front end that creates a network on
    /// first use (the CNI plugin) calls this when the network exists.
    ///
    /// ```no_run
    /// use underlay::{Error, Network};
    ///
    /// # let host = underlay::Host::open("/var/lib/underlay")?;
    /// let net = host.network("pub_net")?; // 172.16.86.0/24 on eth0
    /// let other = Network::builder("pub_net").macvlan().parent("eth0").subnet("10.9.0.0/24");
    /// match net.check_definition(&other) {
    ///     Err(Error::DefinitionDiffers { field, .. }) => assert_eq!(field, "subnet"),
    ///     _ => unreachable!(),
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// The builder's own errors (see [`NetworkBuilder::build`]), and
    /// [`Error::DefinitionDiffers`](crate::Error::DefinitionDiffers)
    /// naming the first field that differs.
    pub fn check_definition(&self, builder: &NetworkBuilder) -> Result<()> {
        let spec = builder.build()?;
        match spec.difference(&self.record) {
            None => Ok(()),
            Some((field, stored, requested)) => Err(crate::Error::DefinitionDiffers {
                network: self.record.name.clone(),
                field,
                stored,
                requested,
            }),
        }
    }

    /// The network's id: 64 hexadecimal characters, as Docker's.
    ///
    /// ```no_run
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// assert_eq!(net.id().len(), 64);
    /// assert!(net.id().bytes().all(|b| b.is_ascii_hexdigit()));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The network's name.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// assert_eq!(net.name(), "pub_net");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The driver and its mode.
    ///
    /// ```no_run
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// assert_eq!(net.driver().name(), "macvlan");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn driver(&self) -> Driver {
        self.record.driver
    }

    /// The parent interface, and whether underlay owns it.
    ///
    /// ```no_run
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// // pub_net was created with -o parent=eth0, which existed.
    /// assert_eq!(net.parent().name, "eth0");
    /// assert!(!net.parent().owned());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn parent(&self) -> &ParentLink {
        &self.record.parent
    }

    /// The subnets with their gateways (given or inferred), ranges and aux
    /// addresses.
    ///
    /// ```no_run
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// for subnet in net.ipam().subnets() {
    ///     println!("{} gateway {:?}", subnet.subnet(), subnet.gateway());
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn ipam(&self) -> &NetworkIpamConfig {
        &self.record.ipam
    }

    /// The gateway of each subnet, in subnet order.
    ///
    /// ```no_run
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let gateway: std::net::IpAddr = "172.16.86.1".parse().unwrap();
    /// assert_eq!(net.gateways(), [gateway]);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn gateways(&self) -> Vec<IpAddr> {
        self.record
            .ipam
            .subnets()
            .iter()
            .filter_map(|s| s.gateway())
            .collect()
    }

    /// Whether the network has IPv6.
    ///
    /// ```no_run
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// if net.ipv6() {
    ///     println!("{} is dual-stack", net.name());
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn ipv6(&self) -> bool {
        self.record.ipv6
    }

    /// Whether the network is internal (isolated, no default route).
    ///
    /// ```no_run
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// assert!(!net.internal()); // pub_net reaches the LAN through eth0
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn internal(&self) -> bool {
        self.record.internal
    }

    /// The network's host shim (`-o host_shim=`), if it has one: the link
    /// in the host namespace through which the host and the containers
    /// reach each other, and its addresses.
    ///
    /// ```no_run
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// if let Some(shim) = net.host_shim() {
    ///     println!("the host is {:?} on {} through {}", shim.addresses, net.name(), shim.link);
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn host_shim(&self) -> Option<&HostShim> {
        self.record.host_shim.as_ref()
    }

    /// The endpoints' MTU, if set.
    ///
    /// ```no_run
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// // Set with -o mtu=...; None means the endpoints take eth0's MTU.
    /// if let Some(mtu) = net.mtu() {
    ///     println!("endpoints use MTU {mtu}");
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn mtu(&self) -> Option<u32> {
        self.record.mtu
    }

    /// The labels.
    ///
    /// ```no_run
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// for (key, value) in net.labels() {
    ///     println!("{key}={value}");
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.record.labels
    }

    /// The driver options in Docker's words, `parent` included, as
    /// `docker network inspect` shows them.
    ///
    /// ```no_run
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let options = net.options();
    /// assert_eq!(options["parent"], "eth0");
    /// assert_eq!(options["macvlan_mode"], "bridge");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn options(&self) -> BTreeMap<String, String> {
        let mut options = self.record.driver.docker_options();
        options.insert("parent".into(), self.record.parent.name.clone());
        if let Some(mtu) = self.record.mtu {
            options.insert("mtu".into(), mtu.to_string());
        }
        if let Some(shim) = &self.record.host_shim {
            let addresses: Vec<String> = shim.addresses.iter().map(|a| a.to_string()).collect();
            options.insert("host_shim".into(), addresses.join(","));
        }
        options
    }

    /// When the network was created (seconds since the Unix epoch).
    ///
    /// ```no_run
    /// use std::time::{Duration, UNIX_EPOCH};
    ///
    /// # let net = underlay::Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let created = UNIX_EPOCH + Duration::from_secs(net.created());
    /// println!("created {:?} ago", created.elapsed().unwrap_or_default());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn created(&self) -> u64 {
        self.record.created
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
    ///
    /// # Errors
    /// [`Error::AlreadyAttached`](crate::Error::AlreadyAttached) when the container is on this network
    /// already; a conflict (name, interface, address in use) or an invalid
    /// option; an [`Error::AttachFailed`](crate::Error::AttachFailed) naming the step the kernel
    /// refused.
    pub fn attach(&self, netns: &NetNs, options: &AttachOptions) -> Result<Endpoint> {
        let (record, detached, routes) = self.engine.attach(&self.record, netns, options)?;
        if detached {
            // Links earlier detaches left: deleted in a batch, meanwhile.
            Engine::sweep_later(&self.engine, &self.record);
        }
        Ok(Endpoint::new(&self.record.name, record).with_routes(routes))
    }

    /// Detaches the container whose namespace is `netns`: takes it off the
    /// network (its addresses off its link, and released) and returns;
    /// deleting the link, which makes the kernel wait about 20 ms, happens
    /// after, on a thread of the library's own, in a batch with others (see
    /// [`DetachOptions`]; [`detach_with`](Self::detach_with) can wait for
    /// it). Returns whether it was attached; a second detach does nothing.
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
    ///
    /// # Errors
    /// When the endpoint state cannot be read or written, or the kernel
    /// refuses to delete the link.
    pub fn detach(&self, netns: &NetNs) -> Result<bool> {
        self.detach_with(netns, &DetachOptions::new())
    }

    /// [`detach`](Self::detach), with options: with
    /// [`DetachOptions::delete_link`] the link is gone when it returns.
    ///
    /// ```no_run
    /// use underlay::{endpoint::DetachOptions, netns::NetNs, Host};
    ///
    /// let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// let web1 = NetNs::open("/run/netns/web1")?;
    /// net.detach_with(&web1, &DetachOptions::new().delete_link(true))?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`detach`](Self::detach).
    pub fn detach_with(&self, netns: &NetNs, options: &DetachOptions) -> Result<bool> {
        let detached = self.engine.detach(&self.record, netns, options)?;
        if detached && !options.delete_link && options.sweep {
            Engine::sweep_later(&self.engine, &self.record);
        }
        Ok(detached)
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
    ///
    /// # Errors
    /// As [`detach`](Self::detach).
    pub fn detach_endpoint(&self, name: &str) -> Result<bool> {
        self.detach_endpoint_with(name, &DetachOptions::new())
    }

    /// [`detach_endpoint`](Self::detach_endpoint), with options: with
    /// [`DetachOptions::delete_link`] the link is gone when it returns (a
    /// short-lived process, such as a CNI plugin, wants that).
    ///
    /// ```no_run
    /// use underlay::{endpoint::DetachOptions, Host};
    ///
    /// let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// net.detach_endpoint_with("web1", &DetachOptions::new().delete_link(true))?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`detach`](Self::detach).
    pub fn detach_endpoint_with(&self, name: &str, options: &DetachOptions) -> Result<bool> {
        let detached = self.engine.detach_endpoint(&self.record, name, options)?;
        if detached && !options.delete_link && options.sweep {
            Engine::sweep_later(&self.engine, &self.record);
        }
        Ok(detached)
    }

    /// Whether `endpoint` is still attached for real: its recorded
    /// namespace is the one it was attached in and holds its link. (The
    /// kernel gives a dead namespace's identity to new ones, so a path and
    /// an inode number alone do not tell.)
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// for ep in net.endpoints()? {
    ///     if !net.is_attached(&ep) {
    ///         println!("{}: its container is gone", ep.name());
    ///     }
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn is_attached(&self, endpoint: &Endpoint) -> bool {
        self.engine.is_live(&self.record, endpoint.record())
    }

    /// Deletes the links detaches left on this network now, many at once,
    /// and returns how many went. A long-lived process need not call it
    /// (a sweep follows detaches on a thread of the library's own); a
    /// process about to exit may.
    ///
    /// ```no_run
    /// use underlay::Host;
    ///
    /// let net = Host::open("/var/lib/underlay")?.network("pub_net")?;
    /// println!("deleted {} detached link(s)", net.sweep()?);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    ///
    /// # Errors
    /// When the endpoint state cannot be read or written.
    pub fn sweep(&self) -> Result<usize> {
        self.engine.sweep(&self.record)
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
    ///
    /// # Errors
    /// When the endpoint state cannot be read.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>> {
        Ok(self
            .engine
            .endpoints(&self.record)?
            .into_iter()
            .map(|record| Endpoint::new(&self.record.name, record))
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
    ///
    /// # Errors
    /// When the endpoint state cannot be read.
    pub fn hosts_entries(&self) -> Result<String> {
        let mut out = String::new();
        for endpoint in self.endpoints()? {
            for address in endpoint.addresses() {
                out.push_str(&address.addr().to_string());
                out.push('\t');
                out.push_str(endpoint.name());
                for name in endpoint.dns_names() {
                    out.push(' ');
                    out.push_str(name);
                }
                out.push('\n');
            }
        }
        Ok(out)
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("name", &self.record.name)
            .field("id", &self.record.id)
            .field("driver", &self.record.driver)
            .field("parent", &self.record.parent)
            .finish_non_exhaustive()
    }
}

impl Serialize for Network {
    /// The network as `inspect` shows it: name, id, driver and options,
    /// parent with ownership, IPAM configuration, flags and labels.
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let r = &self.record;
        let mut s = serializer.serialize_struct("Network", 12)?;
        s.serialize_field("name", &r.name)?;
        s.serialize_field("id", &r.id)?;
        s.serialize_field("driver", r.driver.name())?;
        s.serialize_field("options", &self.options())?;
        s.serialize_field(
            "parent",
            &ParentView {
                name: &r.parent.name,
                owned: r.parent.owned(),
                kind: &r.parent.kind,
            },
        )?;
        s.serialize_field("ipam", &r.ipam)?;
        s.serialize_field("ipv4", &r.ipv4)?;
        s.serialize_field("ipv6", &r.ipv6)?;
        s.serialize_field("internal", &r.internal)?;
        if let Some(shim) = &r.host_shim {
            s.serialize_field("host_shim", shim)?;
        } else {
            s.skip_field("host_shim")?;
        }
        s.serialize_field("labels", &r.labels)?;
        s.serialize_field("created", &r.created)?;
        s.end()
    }
}

#[derive(Serialize)]
struct ParentView<'a> {
    name: &'a str,
    owned: bool,
    #[serde(flatten)]
    kind: &'a ParentKind,
}
