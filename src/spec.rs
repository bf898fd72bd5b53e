//! Network descriptions: what `docker network create` says, as a typed
//! builder ([`NetworkBuilder`]) and its checked result ([`NetworkSpec`]).
//!
//! ```
//! use underlay::Network;
//!
//! // docker network create -d macvlan --subnet=172.16.86.0/24
//! //   --gateway=172.16.86.1 -o parent=eth0 pub_net
//! let spec = Network::builder("pub_net")
//!     .macvlan()
//!     .parent("eth0")
//!     .subnet("172.16.86.0/24")
//!     .gateway("172.16.86.1")
//!     .build()?;
//! assert_eq!(spec.parent(), Some("eth0"));
//! # Ok::<(), underlay::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::driver::{Driver, DriverKind, DriverSettings, IpvlanFlag, IpvlanMode, MacvlanMode};
use crate::ipam::{AllocationPolicy, NetworkIpamConfig};
use crate::link::validate_name;
use crate::parent::ParentLink;
use crate::shim::HostShimRequest;
use crate::store::{NetworkRecord, NetworkState};
use crate::{Error, Result};

/// Builds a network description; [`Host::create_network`](crate::Host::create_network)
/// creates it. Setters never fail: the first bad value is reported by
/// [`build`](Self::build) (or by `create_network`), before anything is made.
///
/// ```
/// use underlay::Network;
///
/// // docker network create -d ipvlan --subnet=192.168.210.0/24 --subnet=192.168.212.0/24
/// //   -o ipvlan_mode=l3 ipnet210
/// let spec = Network::builder("ipnet210")
///     .driver("ipvlan")
///     .subnet("192.168.210.0/24")
///     .subnet("192.168.212.0/24")
///     .option("ipvlan_mode", "l3")
///     .build()?;
/// assert!(spec.driver().is_l3());
/// assert_eq!(spec.ipam().subnets().len(), 2);
///
/// let err = Network::builder("x").macvlan().option("colour", "blue").build().unwrap_err();
/// assert!(err.to_string().contains("colour"));
/// # Ok::<(), underlay::Error>(())
/// ```
///
/// A builder is also the network's description as data: it serialises to
/// and from JSON (or any serde format), so a runtime can keep network
/// definitions in its own configuration files and hand them over as they
/// are. Nothing is checked until [`build`](Self::build).
///
/// ```
/// use underlay::network::NetworkBuilder;
///
/// let json = r#"{"name": "pub_net", "driver": "macvlan", "parent": "eth0",
///                "subnets": ["172.16.86.0/24"], "gateways": ["172.16.86.1"]}"#;
/// let builder: NetworkBuilder = serde_json::from_str(json).unwrap();
/// assert_eq!(builder.build()?.parent(), Some("eth0"));
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[must_use = "a builder does nothing until passed to Host::create_network"]
pub struct NetworkBuilder {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    driver: Option<DriverKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    macvlan_mode: Option<MacvlanMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipvlan_mode: Option<IpvlanMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipvlan_flag: Option<IpvlanFlag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subnets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gateways: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ip_ranges: Vec<String>,
    /// `NAME=ADDRESS`, as Docker's `--aux-address`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aux_addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv4: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv6: Option<bool>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    internal: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_gateway: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_default")]
    allocation_policy: AllocationPolicy,
    /// `-o host_shim=`: `auto`, or addresses (see [`crate::shim`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    host_shim: Option<HostShimRequest>,
    /// The first bad value a setter saw, reported by `build`.
    #[serde(skip)]
    error: Option<Deferred>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// An invalid-argument error kept by a builder until `build` (the builder is
/// `Clone`; [`Error`] is not).
#[derive(Debug, Clone, PartialEq)]
struct Deferred {
    what: &'static str,
    value: String,
    reason: String,
}

impl NetworkBuilder {
    /// Starts describing a network called `name` (the same as
    /// [`Network::builder`](crate::Network::builder)).
    ///
    /// ```
    /// use underlay::network::NetworkBuilder;
    ///
    /// let spec = NetworkBuilder::new("pub_net").macvlan().build()?;
    /// assert_eq!(spec.name(), "pub_net");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn new(name: &str) -> Self {
        NetworkBuilder {
            name: name.to_owned(),
            ..NetworkBuilder::default()
        }
    }

    fn fail(&mut self, error: Error) {
        let deferred = match error {
            Error::InvalidArgument {
                what,
                value,
                reason,
            } => Deferred {
                what,
                value,
                reason,
            },
            other => Deferred {
                what: "network option",
                value: String::new(),
                reason: other.to_string(),
            },
        };
        self.error.get_or_insert(deferred);
    }

    /// Uses the macvlan driver.
    ///
    /// ```
    /// use underlay::link::MacvlanMode;
    /// use underlay::{driver::Driver, Network};
    ///
    /// let spec = Network::builder("pub_net").macvlan().parent("eth0").build()?;
    /// assert_eq!(spec.driver(), Driver::Macvlan { mode: MacvlanMode::Bridge });
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn macvlan(mut self) -> Self {
        self.driver = Some(DriverKind::Macvlan);
        self
    }

    /// Uses the ipvlan driver.
    ///
    /// ```
    /// use underlay::link::{IpvlanFlag, IpvlanMode};
    /// use underlay::{driver::Driver, Network};
    ///
    /// let spec = Network::builder("db_net").ipvlan().parent("eth0").build()?;
    /// let l2 = Driver::Ipvlan { mode: IpvlanMode::L2, flag: IpvlanFlag::Bridge };
    /// assert_eq!(spec.driver(), l2);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn ipvlan(mut self) -> Self {
        self.driver = Some(DriverKind::Ipvlan);
        self
    }

    /// Chooses the driver by name (`macvlan` or `ipvlan`), as `docker
    /// network create -d` does.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let spec = Network::builder("db_net").driver("ipvlan").parent("eth0").build()?;
    /// assert_eq!(spec.driver().name(), "ipvlan");
    /// let err = Network::builder("br_net").driver("bridge").build().unwrap_err();
    /// assert!(err.to_string().contains("macvlan and ipvlan"));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn driver(mut self, name: &str) -> Self {
        match name.parse() {
            Ok(kind) => self.driver = Some(kind),
            Err(e) => self.fail(e),
        }
        self
    }

    /// The macvlan mode (bridge by default).
    ///
    /// ```
    /// use underlay::link::MacvlanMode;
    /// use underlay::{driver::Driver, Network};
    ///
    /// let builder = Network::builder("pub_net").macvlan().parent("eth0");
    /// let spec = builder.macvlan_mode(MacvlanMode::Private).build()?;
    /// assert_eq!(spec.driver(), Driver::Macvlan { mode: MacvlanMode::Private });
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn macvlan_mode(mut self, mode: MacvlanMode) -> Self {
        self.macvlan_mode = Some(mode);
        self
    }

    /// The ipvlan mode (l2 by default).
    ///
    /// ```
    /// use underlay::link::IpvlanMode;
    /// use underlay::Network;
    ///
    /// // docker network create -d ipvlan -o ipvlan_mode=l3 ...
    /// let builder = Network::builder("ipnet210").ipvlan().parent("eth0");
    /// assert!(builder.ipvlan_mode(IpvlanMode::L3).build()?.driver().is_l3());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn ipvlan_mode(mut self, mode: IpvlanMode) -> Self {
        self.ipvlan_mode = Some(mode);
        self
    }

    /// The ipvlan flag (bridge by default).
    ///
    /// ```
    /// use underlay::link::{IpvlanFlag, IpvlanMode};
    /// use underlay::{driver::Driver, Network};
    ///
    /// let builder = Network::builder("db_net").ipvlan().parent("eth0");
    /// let spec = builder.ipvlan_flag(IpvlanFlag::Private).build()?;
    /// let private = Driver::Ipvlan { mode: IpvlanMode::L2, flag: IpvlanFlag::Private };
    /// assert_eq!(spec.driver(), private);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn ipvlan_flag(mut self, flag: IpvlanFlag) -> Self {
        self.ipvlan_flag = Some(flag);
        self
    }

    /// The parent interface: an existing one, or `NAME.VLAN_ID` to have
    /// underlay create (and own) that VLAN sub-interface. Without a parent,
    /// the network gets a dummy one and is internal.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let spec = Network::builder("macvlan50").macvlan().parent("eth0.50").build()?;
    /// assert_eq!(spec.parent(), Some("eth0.50"));
    /// // No parent: a dummy one, and an internal network.
    /// assert!(Network::builder("isolated").macvlan().build()?.internal());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn parent(mut self, parent: &str) -> Self {
        self.parent = Some(parent.to_owned());
        self
    }

    /// Adds a subnet (IPv4 or IPv6, CIDR notation).
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let spec = Network::builder("macnet32")
    ///     .macvlan()
    ///     .subnet("192.168.32.0/24")
    ///     .subnet("2001:db8:abc8::/64")
    ///     .build()?;
    /// assert_eq!(spec.ipam().subnets().len(), 2);
    /// assert_eq!(spec.families(), (true, true));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn subnet(mut self, cidr: &str) -> Self {
        self.subnets.push(cidr.to_owned());
        self
    }

    /// Adds a gateway; it goes with the subnet that contains it.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let spec = Network::builder("pub_net")
    ///     .macvlan()
    ///     .subnet("172.16.86.0/24")
    ///     .gateway("172.16.86.1")
    ///     .build()?;
    /// assert_eq!(spec.ipam().subnets()[0].gateway(), Some("172.16.86.1".parse().unwrap()));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn gateway(mut self, address: &str) -> Self {
        self.gateways.push(address.to_owned());
        self
    }

    /// Adds an ip-range, the part of its subnet that dynamic allocation draws
    /// from.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// // docker network create -d macvlan --subnet=192.168.32.0/24
    /// //   --ip-range=192.168.32.128/25 --gateway=192.168.32.254 ...
    /// let builder = Network::builder("macnet32").macvlan().subnet("192.168.32.0/24");
    /// let spec = builder.ip_range("192.168.32.128/25").gateway("192.168.32.254").build()?;
    /// assert_eq!(spec.ipam().subnets()[0].ip_range(), Some("192.168.32.128/25".parse().unwrap()));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn ip_range(mut self, cidr: &str) -> Self {
        self.ip_ranges.push(cidr.to_owned());
        self
    }

    /// Reserves an address under a name, so it is never handed out.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// // --aux-address="my-router=192.168.32.129"
    /// let builder = Network::builder("macnet32").macvlan().subnet("192.168.32.0/24");
    /// let spec = builder.aux_address("my-router", "192.168.32.129").build()?;
    /// let aux: Vec<_> = spec.ipam().subnets()[0].aux_addresses().collect();
    /// assert_eq!(aux, [("my-router", "192.168.32.129".parse().unwrap())]);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn aux_address(mut self, name: &str, address: &str) -> Self {
        self.aux_addresses.push(format!("{name}={address}"));
        self
    }

    /// Turns IPv6 on or off. An IPv6 subnet turns it on by itself; IPv6
    /// without a subnet gets a unique-local /64.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// // IPv6 without a subnet: a unique-local /64 is picked at creation.
    /// let spec = Network::builder("pub_net").macvlan().ipv6(true).build()?;
    /// assert_eq!(spec.families(), (true, true));
    /// let with_v6_subnet = Network::builder("n").macvlan().subnet("fd11::/64");
    /// assert!(with_v6_subnet.ipv6(false).build().is_err());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn ipv6(mut self, on: bool) -> Self {
        self.ipv6 = Some(on);
        self
    }

    /// Turns IPv4 off (or on, the default). A network with IPv4 and no IPv4
    /// subnet gets one from the default pools, as in Docker.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// // An IPv6-only network.
    /// let builder = Network::builder("v6only").macvlan().subnet("2001:db8:abc8::/64");
    /// assert_eq!(builder.ipv4(false).build()?.families(), (false, true));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn ipv4(mut self, on: bool) -> Self {
        self.ipv4 = Some(on);
        self
    }

    /// Makes the network internal: isolated on a dummy parent, with no
    /// default route in its containers.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let spec = Network::builder("backend").macvlan().parent("eth0").internal(true).build()?;
    /// assert!(spec.internal());
    /// assert_eq!(spec.parent(), None); // a dummy parent instead of eth0
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn internal(mut self, internal: bool) -> Self {
        self.internal = internal;
        self
    }

    /// Infers no gateway: subnets given without `--gateway` have none, so
    /// every address can be handed out and containers get no default route
    /// through them (today's Docker does this; the 2016 guides, and
    /// underlay by default, take the subnet's first address). The Docker
    /// option is `-o no_gateway=true`.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let builder = Network::builder("flat").macvlan().subnet("10.1.2.0/24");
    /// assert!(builder.clone().no_gateway().build()?.no_gateway());
    /// assert!(!builder.build()?.no_gateway());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn no_gateway(mut self) -> Self {
        self.no_gateway = true;
        self
    }

    /// The MTU of the endpoints (the parent's by default).
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let builder = Network::builder("pub_net").macvlan().parent("eth0");
    /// // The same as `-o mtu=1400`.
    /// assert_eq!(builder.clone().mtu(1400).build()?, builder.clone().option("mtu", "1400").build()?);
    /// assert!(builder.mtu(10).build().is_err());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Adds a label.
    ///
    /// ```
    /// use underlay::{docker::network_create_args, Network};
    ///
    /// let spec = Network::builder("pub_net").macvlan().label("team", "net").build()?;
    /// // The same as `--label team=net`.
    /// let args = network_create_args(["-d", "macvlan", "--label", "team=net", "pub_net"])?;
    /// assert_eq!(spec, args.build()?);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// How addresses are handed out: lowest free (the default, as Docker)
    /// or round-robin.
    ///
    /// ```
    /// use underlay::ipam::AllocationPolicy;
    /// use underlay::Network;
    ///
    /// let builder = Network::builder("pub_net").macvlan().subnet("172.16.86.0/24");
    /// let round_robin = builder.clone().allocation_policy(AllocationPolicy::Serial).build()?;
    /// assert_ne!(round_robin, builder.build()?);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn allocation_policy(mut self, policy: AllocationPolicy) -> Self {
        self.allocation_policy = policy;
        self
    }

    /// Gives the host a link of the network's own, so that the host and its
    /// containers reach each other (the kernel keeps a macvlan or ipvlan
    /// link and its parent apart): `auto` takes an address of each subnet
    /// family from the network and reserves it; an address (or one per
    /// family, comma-separated, with `auto` for the rest) takes that one.
    /// See [`crate::shim`]. The Docker option is `-o host_shim=VALUE`.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let builder = Network::builder("pub_net").macvlan().parent("eth0");
    /// let spec = builder.clone().host_shim("192.168.1.250").build()?;
    /// assert_eq!(spec, builder.clone().option("host_shim", "192.168.1.250").build()?);
    /// assert!(builder.clone().host_shim("yes").build().is_err());
    /// // The mode decides whether a shim can reach the containers.
    /// let private = builder.option("macvlan_mode", "private").host_shim("auto").build();
    /// assert!(private.unwrap_err().to_string().contains("private"));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn host_shim(mut self, value: &str) -> Self {
        match value.parse() {
            Ok(request) => self.host_shim = Some(request),
            Err(e) => self.fail(e),
        }
        self
    }

    /// Applies one of Docker's driver options (`-o KEY=VALUE`, or a compose
    /// file's `driver_opts`): `parent`, `macvlan_mode`, `ipvlan_mode`,
    /// `ipvlan_flag`, and `mtu`. An unknown option is an error naming it and
    /// the valid ones; Docker would silently ignore it.
    ///
    /// ```
    /// use underlay::link::MacvlanMode;
    /// use underlay::Network;
    ///
    /// // -o parent=eth0.50 -o macvlan_mode=bridge
    /// let options = Network::builder("macvlan50").macvlan().option("parent", "eth0.50");
    /// let typed = Network::builder("macvlan50").macvlan().parent("eth0.50");
    /// assert_eq!(
    ///     options.option("macvlan_mode", "bridge").build()?,
    ///     typed.macvlan_mode(MacvlanMode::Bridge).build()?,
    /// );
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn option(mut self, key: &str, value: &str) -> Self {
        let mut settings = self.driver_settings();
        let result = match key {
            "parent" => {
                self.parent = Some(value.to_owned());
                Ok(())
            }
            "no_gateway" => match value {
                "" | "true" | "1" => {
                    self.no_gateway = true;
                    Ok(())
                }
                "false" | "0" => {
                    self.no_gateway = false;
                    Ok(())
                }
                _ => Err(Error::invalid(
                    "no_gateway",
                    value,
                    "expected true or false",
                )),
            },
            "host_shim" => {
                self = self.host_shim(value);
                Ok(())
            }
            "mtu" | "com.docker.network.driver.mtu" => {
                value.parse().map(|m| self.mtu = Some(m)).map_err(|_| {
                    Error::invalid("mtu", value, "expected a number of bytes, such as 1500")
                })
            }
            key => match settings.set(key, value) {
                Ok(true) => {
                    self.macvlan_mode = settings.macvlan_mode;
                    self.ipvlan_mode = settings.ipvlan_mode;
                    self.ipvlan_flag = settings.ipvlan_flag;
                    Ok(())
                }
                Ok(false) => Err(DriverSettings::unknown_option(self.driver, key)),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            self.fail(e);
        }
        self
    }

    /// Checks everything that can be checked without the kernel and returns
    /// the network's description.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first bad value (name, driver, option,
    /// MTU, parent name, families) and [`Error::Ipam`] for bad subnets, gateways,
    /// ranges or aux addresses.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let spec = Network::builder("pub_net").macvlan().parent("eth0").build()?;
    /// assert_eq!(spec.parent(), Some("eth0"));
    /// // A driver must be chosen; errors show up here, before the kernel is touched.
    /// let err = Network::builder("pub_net").parent("eth0").build().unwrap_err();
    /// assert!(err.to_string().contains("macvlan or ipvlan"));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn build(&self) -> Result<NetworkSpec> {
        if let Some(e) = &self.error {
            return Err(Error::invalid(e.what, e.value.clone(), e.reason.clone()));
        }
        crate::names::validate_network_name(&self.name)?;
        let Some(kind) = self.driver else {
            return Err(Error::invalid(
                "driver",
                "",
                "choose one: macvlan or ipvlan",
            ));
        };
        let driver = self.driver_settings().resolve(kind)?;
        if let Some(mtu) = self.mtu {
            if !(68..=65535).contains(&mtu) {
                return Err(Error::invalid(
                    "mtu",
                    mtu.to_string(),
                    "expected 68 to 65535 bytes",
                ));
            }
        }
        fn strs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let ipam = NetworkIpamConfig::from_docker_lists(
            &strs(&self.subnets),
            &strs(&self.gateways),
            &strs(&self.ip_ranges),
            &strs(&self.aux_addresses),
        )?;
        let has = |v4: bool| ipam.prefixes().any(|p| p.addr().is_ipv4() == v4);
        let ipv6 = match self.ipv6 {
            Some(false) if has(false) => {
                return Err(Error::invalid(
                    "ipv6",
                    "false",
                    "the network has an IPv6 subnet; drop it or turn IPv6 on",
                ))
            }
            Some(on) => on,
            None => has(false),
        };
        let ipv4 = match self.ipv4 {
            Some(false) if has(true) => {
                return Err(Error::invalid(
                    "ipv4",
                    "false",
                    "the network has an IPv4 subnet; drop it or turn IPv4 on",
                ))
            }
            // IPv4 off and no IPv6: a network with no address family, whose
            // containers get the link alone (their own DHCP client, say).
            Some(on) => on,
            None => true,
        };
        if let (Some(mtu), true) = (self.mtu, ipv6) {
            if mtu < 1280 {
                return Err(Error::invalid(
                    "mtu",
                    mtu.to_string(),
                    "IPv6 needs an MTU of 1280 or more: raise it, or turn IPv6 off",
                ));
            }
        }
        if self.no_gateway && !self.gateways.is_empty() {
            return Err(Error::invalid(
                "no_gateway",
                "true",
                "a gateway is given too: drop --gateway, or the no_gateway option",
            ));
        }
        if driver
            == (Driver::Macvlan {
                mode: MacvlanMode::Source,
            })
        {
            return Err(Error::invalid(
                "macvlan mode",
                "source",
                "source mode admits only frames from a list of source MAC addresses, which underlay does not take yet; use bridge, private, vepa or passthru",
            ));
        }
        if let Some(request) = &self.host_shim {
            driver.check_host_shim(&request.to_string())?;
            if !ipv4 && !ipv6 {
                return Err(Error::invalid(
                    "host_shim",
                    request.to_string(),
                    "the network has no address family, so the shim would have no address: give the network a subnet",
                ));
            }
        }
        // Docker: no parent means an isolated network on a dummy parent.
        let internal = self.internal || self.parent.is_none();
        if let Some(parent) = &self.parent {
            validate_name(parent)?;
            if self.internal {
                log::warn!(
                    "network {}: internal networks use a dummy parent; parent {parent} is ignored",
                    self.name
                );
            }
        }
        Ok(NetworkSpec {
            name: self.name.clone(),
            driver,
            parent: if self.internal {
                None
            } else {
                self.parent.clone()
            },
            ipam,
            ipv4,
            ipv6,
            internal,
            no_gateway: self.no_gateway,
            mtu: self.mtu,
            labels: self.labels.clone(),
            policy: self.allocation_policy,
            host_shim: self.host_shim.clone(),
        })
    }

    fn driver_settings(&self) -> DriverSettings {
        DriverSettings {
            macvlan_mode: self.macvlan_mode,
            ipvlan_mode: self.ipvlan_mode,
            ipvlan_flag: self.ipvlan_flag,
        }
    }
}

/// A checked network description, made by [`NetworkBuilder::build`].
///
/// ```
/// use underlay::Network;
///
/// let spec = Network::builder("pub_net")
///     .macvlan()
///     .parent("eth0")
///     .subnet("172.16.86.0/24")
///     .gateway("172.16.86.1")
///     .build()?;
/// assert_eq!((spec.name(), spec.parent()), ("pub_net", Some("eth0")));
/// assert_eq!(spec.families(), (true, false));
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    name: String,
    driver: Driver,
    parent: Option<String>,
    ipam: NetworkIpamConfig,
    ipv4: bool,
    ipv6: bool,
    internal: bool,
    no_gateway: bool,
    mtu: Option<u32>,
    labels: BTreeMap<String, String>,
    policy: AllocationPolicy,
    host_shim: Option<HostShimRequest>,
}

impl NetworkSpec {
    /// The host shim asked for, if any (see
    /// [`NetworkBuilder::host_shim`]).
    pub fn host_shim(&self) -> Option<&HostShimRequest> {
        self.host_shim.as_ref()
    }

    /// Whether gateways are left uninferred (see
    /// [`NetworkBuilder::no_gateway`]).
    pub fn no_gateway(&self) -> bool {
        self.no_gateway
    }

    /// The endpoints' MTU, if set.
    pub fn mtu(&self) -> Option<u32> {
        self.mtu
    }

    /// The network's name.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// assert_eq!(Network::builder("pub_net").macvlan().build()?.name(), "pub_net");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The driver and its mode.
    ///
    /// ```
    /// use underlay::link::{IpvlanFlag, IpvlanMode};
    /// use underlay::{driver::Driver, Network};
    ///
    /// let spec = Network::builder("ipnet210").ipvlan().option("ipvlan_mode", "l3").build()?;
    /// let l3 = Driver::Ipvlan { mode: IpvlanMode::L3, flag: IpvlanFlag::Bridge };
    /// assert_eq!(spec.driver(), l3);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// The parent interface as requested; `None` for a dummy parent.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let spec = Network::builder("macvlan50").macvlan().parent("eth0.50").build()?;
    /// assert_eq!(spec.parent(), Some("eth0.50"));
    /// assert_eq!(Network::builder("isolated").macvlan().build()?.parent(), None);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// The subnets, gateways, ranges and aux addresses as given (default
    /// pools and inferred gateways are added when the network is created).
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let spec = Network::builder("pub_net").macvlan().subnet("172.16.86.0/24").build()?;
    /// let subnet = &spec.ipam().subnets()[0];
    /// assert_eq!(subnet.subnet().to_string(), "172.16.86.0/24");
    /// assert_eq!(subnet.gateway(), None); // inferred when the network is created
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn ipam(&self) -> &NetworkIpamConfig {
        &self.ipam
    }

    /// Whether the network is internal.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// assert!(!Network::builder("pub_net").macvlan().parent("eth0").build()?.internal());
    /// assert!(Network::builder("isolated").macvlan().build()?.internal());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn internal(&self) -> bool {
        self.internal
    }

    /// Whether the network has IPv4 and IPv6.
    ///
    /// ```
    /// use underlay::Network;
    ///
    /// let dual = Network::builder("macnet32").macvlan().subnet("2001:db8:abc8::/64").build()?;
    /// assert_eq!(dual.families(), (true, true)); // IPv4 from the default pools
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn families(&self) -> (bool, bool) {
        (self.ipv4, self.ipv6)
    }

    /// The first field in which the stored network `record` differs from
    /// this description, as `(field, stored, requested)`; `None` when the
    /// record is what this description would create. What the description
    /// leaves open (no subnet, so a default pool; no gateway, so an
    /// inferred one) matches whatever the record has. Labels are not
    /// compared.
    pub(crate) fn difference(
        &self,
        record: &NetworkRecord,
    ) -> Option<(&'static str, String, String)> {
        self.difference_in(record, true)
    }

    /// [`difference`](Self::difference), the parent left out (a shared
    /// definition's: each host has its own).
    pub(crate) fn difference_but_parent(
        &self,
        record: &NetworkRecord,
    ) -> Option<(&'static str, String, String)> {
        self.difference_in(record, false)
    }

    fn difference_in(
        &self,
        record: &NetworkRecord,
        parent: bool,
    ) -> Option<(&'static str, String, String)> {
        fn differs<T: PartialEq + fmt::Display>(
            field: &'static str,
            stored: T,
            requested: T,
        ) -> Option<(&'static str, String, String)> {
            (stored != requested).then(|| (field, stored.to_string(), requested.to_string()))
        }
        fn shown<T: fmt::Display>(value: Option<T>) -> String {
            value.map_or_else(|| "none".to_string(), |v| v.to_string())
        }
        if self.driver.kind() != record.driver.kind() {
            return differs("driver", record.driver.kind(), self.driver.kind());
        }
        let (stored_options, requested_options) =
            (record.driver.docker_options(), self.driver.docker_options());
        for (key, requested) in &requested_options {
            let stored = stored_options.get(key).map_or("", String::as_str);
            if stored != requested {
                let field = if key == "ipvlan_flag" {
                    "ipvlan_flag"
                } else if key == "ipvlan_mode" {
                    "ipvlan_mode"
                } else {
                    "macvlan_mode"
                };
                return differs(field, stored, requested.as_str());
            }
        }
        match &self.parent {
            _ if !parent => {}
            Some(parent) if &record.parent.name != parent => {
                return differs("parent", record.parent.name.as_str(), parent.as_str());
            }
            Some(_) => {}
            None if record.parent.kind != crate::parent::ParentKind::Dummy => {
                return differs(
                    "parent",
                    record.parent.name.as_str(),
                    "none (a dummy parent)",
                );
            }
            None => {}
        }
        if let Some(found) = differs("internal", record.internal, self.internal)
            .or_else(|| differs("ipv6", record.ipv6, self.ipv6))
            .or_else(|| differs("ipv4", record.ipv4, self.ipv4))
            .or_else(|| differs("mtu", shown(record.mtu), shown(self.mtu)))
            .or_else(|| {
                differs(
                    "host_shim",
                    record.host_shim.is_some(),
                    self.host_shim.is_some(),
                )
            })
        {
            return Some(found);
        }
        let requested = self.ipam.subnets();
        if requested.is_empty() {
            return None;
        }
        let list = |subnets: &[crate::ipam::SubnetConfig]| {
            let names: Vec<String> = subnets.iter().map(|s| s.subnet().to_string()).collect();
            names.join(",")
        };
        let stored = record.ipam.subnets();
        if list(stored) != list(requested) {
            return differs("subnet", list(stored), list(requested));
        }
        for (stored, requested) in stored.iter().zip(requested) {
            if requested.gateway().is_some() {
                if let Some(found) = differs(
                    "gateway",
                    shown(stored.gateway()),
                    shown(requested.gateway()),
                ) {
                    return Some(found);
                }
            }
            if let Some(found) = differs(
                "ip_range",
                shown(stored.ip_range()),
                shown(requested.ip_range()),
            ) {
                return Some(found);
            }
            let aux = |subnet: &crate::ipam::SubnetConfig| {
                let pairs: Vec<String> = subnet
                    .aux_addresses()
                    .filter(|(name, _)| !name.starts_with("host_shim"))
                    .map(|(name, address)| format!("{name}={address}"))
                    .collect();
                if pairs.is_empty() {
                    "none".to_string()
                } else {
                    pairs.join(",")
                }
            };
            if let Some(found) = differs("aux_address", aux(stored), aux(requested)) {
                return Some(found);
            }
        }
        None
    }

    /// The record of a network made from this description, as it is
    /// stored before its parent is made.
    pub(crate) fn into_record(
        self,
        id: String,
        parent: ParentLink,
        ipam: NetworkIpamConfig,
    ) -> NetworkRecord {
        NetworkRecord {
            version: NetworkRecord::VERSION,
            id,
            name: self.name,
            driver: self.driver,
            parent,
            ipam,
            ipv4: self.ipv4,
            ipv6: self.ipv6,
            internal: self.internal,
            mtu: self.mtu,
            labels: self.labels,
            policy: self.policy,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            state: NetworkState::Creating,
            host_shim: None,
            shared: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Network;

    /// The record `builder` would create on `parent`, with the gateway the
    /// engine would infer.
    fn stored(builder: &NetworkBuilder, parent: ParentLink, gateway: &str) -> NetworkRecord {
        let spec = builder.build().unwrap();
        let subnets: Vec<String> = spec
            .ipam()
            .subnets()
            .iter()
            .map(|s| s.subnet().to_string())
            .collect();
        let subnets: Vec<&str> = subnets.iter().map(String::as_str).collect();
        let ipam = NetworkIpamConfig::from_docker_lists(&subnets, &[gateway], &[], &[]).unwrap();
        spec.into_record("0".repeat(64), parent, ipam)
    }

    #[test]
    fn a_stored_definition_is_compared_field_by_field() {
        let eth0 = ParentLink {
            name: "eth0".into(),
            kind: crate::parent::ParentKind::Existing,
        };
        let base = Network::builder("n")
            .macvlan()
            .parent("eth0")
            .subnet("10.1.0.0/24");
        let record = stored(&base, eth0.clone(), "10.1.0.1");
        // The same, and the same with the inferred gateway spelt out.
        assert_eq!(base.build().unwrap().difference(&record), None);
        let explicit = base.clone().gateway("10.1.0.1");
        assert_eq!(explicit.build().unwrap().difference(&record), None);
        // No subnet asked for: whatever the network has matches.
        let open = Network::builder("n").macvlan().parent("eth0");
        assert_eq!(open.build().unwrap().difference(&record), None);
        for (builder, field) in [
            (base.clone().subnet("10.2.0.0/24"), "subnet"),
            (
                Network::builder("n")
                    .macvlan()
                    .parent("eth0")
                    .subnet("10.9.0.0/24"),
                "subnet",
            ),
            (base.clone().gateway("10.1.0.254"), "gateway"),
            (base.clone().ip_range("10.1.0.128/25"), "ip_range"),
            (
                base.clone().aux_address("router", "10.1.0.5"),
                "aux_address",
            ),
            (base.clone().parent("eth1"), "parent"),
            (base.clone().mtu(1400), "mtu"),
            (
                base.clone().option("macvlan_mode", "private"),
                "macvlan_mode",
            ),
            (base.clone().ipv6(true), "ipv6"),
            (
                Network::builder("n")
                    .ipvlan()
                    .parent("eth0")
                    .subnet("10.1.0.0/24"),
                "driver",
            ),
        ] {
            let found = builder.build().unwrap().difference(&record);
            assert_eq!(found.map(|(f, _, _)| f), Some(field), "{builder:?}");
        }
        let (_, stored, requested) = base
            .clone()
            .mtu(1400)
            .build()
            .unwrap()
            .difference(&record)
            .unwrap();
        assert_eq!((stored.as_str(), requested.as_str()), ("none", "1400"));
    }

    #[test]
    fn options_and_typed_setters_give_the_same_spec() {
        let typed = Network::builder("macvlan60")
            .macvlan()
            .macvlan_mode(MacvlanMode::Bridge)
            .parent("eth0.60")
            .subnet("192.168.60.0/24")
            .gateway("192.168.60.1")
            .build()
            .unwrap();
        let options = Network::builder("macvlan60")
            .option("macvlan_mode", "bridge")
            .driver("macvlan")
            .option("parent", "eth0.60")
            .subnet("192.168.60.0/24")
            .gateway("192.168.60.1")
            .build()
            .unwrap();
        assert_eq!(typed, options);
    }

    #[test]
    fn bad_options_name_themselves_and_the_valid_ones() {
        let cases: Vec<(NetworkBuilder, &str)> = vec![
            (
                Network::builder("n").macvlan().option("colour", "x"),
                "colour",
            ),
            (
                Network::builder("n").macvlan().option("macvlan_mode", "l3"),
                "bridge, private, vepa",
            ),
            (
                Network::builder("n").ipvlan().option("ipvlan_mode", "l4"),
                "l2, l3, l3s",
            ),
            (
                Network::builder("n").ipvlan().option("ipvlan_flag", "x"),
                "bridge, private, vepa",
            ),
            (
                Network::builder("n")
                    .ipvlan()
                    .option("macvlan_mode", "bridge"),
                "not an ipvlan option",
            ),
            (
                Network::builder("n").macvlan().option("ipvlan_mode", "l2"),
                "not a macvlan option",
            ),
            (Network::builder("n").driver("bridge"), "macvlan and ipvlan"),
            (Network::builder("n"), "choose one"),
            (Network::builder("bad/name").macvlan(), "network name"),
            (Network::builder("n").macvlan().mtu(10), "68 to 65535"),
            (
                Network::builder("n").macvlan().option("mtu", "big"),
                "\"big\"",
            ),
            (
                Network::builder("n").macvlan().parent("a-name-too-long-x"),
                "at most 15",
            ),
            (
                Network::builder("n")
                    .macvlan()
                    .subnet("10.1.0.0/16")
                    .ipv4(false),
                "IPv4 subnet",
            ),
            (
                Network::builder("n")
                    .macvlan()
                    .subnet("fd00::/64")
                    .ipv6(false),
                "IPv6 subnet",
            ),
            (
                Network::builder("n")
                    .macvlan()
                    .subnet("10.1.0.0/16")
                    .gateway("10.2.0.1"),
                "10.2.0.1",
            ),
        ];
        for (builder, needle) in cases {
            let err = builder.build().unwrap_err();
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        let err = Network::builder("n")
            .ipvlan()
            .option("colour", "x")
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("parent, ipvlan_mode, ipvlan_flag, mtu"),
            "{err}"
        );
    }

    #[test]
    fn no_parent_means_internal_and_ipv6_subnets_turn_ipv6_on() {
        let spec = Network::builder("iso").ipvlan().build().unwrap();
        assert!(spec.internal() && spec.parent().is_none());
        let spec = Network::builder("v6")
            .macvlan()
            .parent("eth0")
            .subnet("2001:db8:abc8::/64")
            .build()
            .unwrap();
        assert_eq!(spec.families(), (true, true));
        let spec = Network::builder("in")
            .macvlan()
            .parent("eth0")
            .internal(true)
            .build()
            .unwrap();
        assert!(spec.internal() && spec.parent().is_none());
    }
}
