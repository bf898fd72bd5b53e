//! The address configuration of a network: its subnets, and for each subnet
//! a gateway, an ip-range and named aux addresses.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::prefix::{
    address_to_u128, check_no_host_bits, first_usable_address, host_count_minus_one, overlaps,
    parse_address, parse_prefix, special_offsets, u128_to_address,
};
use super::{IpFamily, IpamError, Reservation};

/// One subnet of a network, with its optional gateway, optional ip-range and
/// named aux (reserved) addresses.
///
/// Every value is checked when it is set: the gateway, the ip-range and the
/// aux addresses must lie inside the subnet. The gateway may not be the
/// network or broadcast address (IPv4) or the subnet-router anycast address
/// (IPv6); an aux address may be any address of the subnet, including the
/// gateway's. Deserializing runs the same checks.
///
/// ```
/// use underlay::ipam::{parse_prefix, SubnetConfig};
///
/// let subnet = SubnetConfig::new(parse_prefix("192.168.32.0/24")?)?
///     .with_gateway("192.168.32.254".parse().unwrap())?
///     .with_ip_range(parse_prefix("192.168.32.128/25")?)?
///     .with_aux_address("router", "192.168.32.1".parse().unwrap())?;
/// assert_eq!(subnet.gateway().unwrap().to_string(), "192.168.32.254");
/// # Ok::<(), underlay::ipam::IpamError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SubnetConfigRecord")]
pub struct SubnetConfig {
    subnet: IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_range: Option<IpNet>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    aux_addresses: BTreeMap<String, IpAddr>,
}

/// The serialized form of [`SubnetConfig`], checked on the way in.
#[derive(Deserialize)]
struct SubnetConfigRecord {
    subnet: IpNet,
    gateway: Option<IpAddr>,
    ip_range: Option<IpNet>,
    #[serde(default)]
    aux_addresses: BTreeMap<String, IpAddr>,
}

impl TryFrom<SubnetConfigRecord> for SubnetConfig {
    type Error = IpamError;

    fn try_from(record: SubnetConfigRecord) -> Result<Self, IpamError> {
        let mut config = SubnetConfig::new(record.subnet)?;
        if let Some(gateway) = record.gateway {
            config.set_gateway(gateway)?;
        }
        if let Some(range) = record.ip_range {
            config.set_ip_range(range)?;
        }
        for (name, address) in record.aux_addresses {
            config.add_aux_address(name, address)?;
        }
        Ok(config)
    }
}

impl SubnetConfig {
    /// A subnet with no gateway, no ip-range and no aux address.
    ///
    /// Refuses a prefix with host bits set ([`IpamError::HostBitsSet`]) and
    /// a /0 ([`IpamError::ZeroPrefix`]).
    ///
    /// # Errors
    /// [`IpamError::HostBitsSet`] when `subnet` has host bits set;
    /// [`IpamError::ZeroPrefix`] for a prefix length of 0.
    ///
    /// ```
    /// use underlay::ipam::{IpamError, SubnetConfig};
    ///
    /// let subnet = SubnetConfig::new("fd11::/64".parse().unwrap())?;
    /// assert_eq!(subnet.subnet().to_string(), "fd11::/64");
    /// assert!(matches!(
    ///     SubnetConfig::new("0.0.0.0/0".parse().unwrap()),
    ///     Err(IpamError::ZeroPrefix { .. })
    /// ));
    /// # Ok::<(), IpamError>(())
    /// ```
    pub fn new(subnet: IpNet) -> Result<SubnetConfig, IpamError> {
        check_no_host_bits(subnet)?;
        if subnet.prefix_len() == 0 {
            return Err(IpamError::ZeroPrefix { subnet });
        }
        if let Some(reason) = special_purpose(&subnet) {
            return Err(IpamError::UnusableSubnet { subnet, reason });
        }
        Ok(SubnetConfig {
            subnet,
            gateway: None,
            ip_range: None,
            aux_addresses: BTreeMap::new(),
        })
    }

    /// Sets the gateway; it must be a host address of the subnet.
    ///
    /// # Errors
    /// [`IpamError::GatewayOutsideSubnet`] for an address outside the subnet;
    /// [`IpamError::MultipleGateways`] when a gateway is set already;
    /// [`IpamError::GatewayNotUsable`] for the network, broadcast or anycast address.
    ///
    /// ```
    /// use underlay::ipam::{IpamError, SubnetConfig};
    ///
    /// let subnet = SubnetConfig::new("2001:db8:abc2::/64".parse().unwrap())?;
    /// let subnet = subnet.with_gateway("2001:db8:abc2::22".parse().unwrap())?;
    /// assert_eq!(subnet.gateway(), Some("2001:db8:abc2::22".parse().unwrap()));
    ///
    /// let err = subnet.clone().with_gateway("10.0.0.1".parse().unwrap()).unwrap_err();
    /// assert!(matches!(err, IpamError::GatewayOutsideSubnet { .. }));
    /// # Ok::<(), IpamError>(())
    /// ```
    pub fn with_gateway(mut self, gateway: IpAddr) -> Result<SubnetConfig, IpamError> {
        self.set_gateway(gateway)?;
        Ok(self)
    }

    /// Sets the ip-range, the part of the subnet dynamic allocation draws
    /// from. It must be a prefix inside the subnet (the whole subnet is
    /// allowed).
    ///
    /// # Errors
    /// [`IpamError::HostBitsSet`] when `range` has host bits set;
    /// [`IpamError::IpRangeOutsideSubnet`] when it is not inside the subnet;
    /// [`IpamError::MultipleIpRanges`] when an ip-range is set already.
    ///
    /// ```
    /// use underlay::ipam::{IpamError, SubnetConfig};
    ///
    /// let subnet = SubnetConfig::new("192.168.32.0/24".parse().unwrap())?
    ///     .with_ip_range("192.168.32.128/25".parse().unwrap())?;
    /// assert_eq!(subnet.ip_range().unwrap().to_string(), "192.168.32.128/25");
    /// # Ok::<(), IpamError>(())
    /// ```
    pub fn with_ip_range(mut self, range: IpNet) -> Result<SubnetConfig, IpamError> {
        self.set_ip_range(range)?;
        Ok(self)
    }

    /// Reserves an aux address of the subnet under a name, so that it is
    /// never handed out.
    ///
    /// # Errors
    /// [`IpamError::AuxAddressOutsideSubnet`] for an address outside the subnet;
    /// [`IpamError::DuplicateAuxName`] when the subnet has an aux address of that name already.
    ///
    /// ```
    /// use underlay::ipam::{IpamError, SubnetConfig};
    ///
    /// let subnet = SubnetConfig::new("172.16.86.0/24".parse().unwrap())?
    ///     .with_aux_address("exclude_host", "172.16.86.250".parse().unwrap())?;
    /// let aux: Vec<_> = subnet.aux_addresses().collect();
    /// assert_eq!(aux, [("exclude_host", "172.16.86.250".parse().unwrap())]);
    /// # Ok::<(), IpamError>(())
    /// ```
    pub fn with_aux_address(
        mut self,
        name: impl Into<String>,
        address: IpAddr,
    ) -> Result<SubnetConfig, IpamError> {
        self.add_aux_address(name.into(), address)?;
        Ok(self)
    }

    /// The subnet.
    ///
    /// ```
    /// use underlay::ipam::SubnetConfig;
    ///
    /// let subnet = SubnetConfig::new("10.1.20.0/24".parse().unwrap()).unwrap();
    /// assert_eq!(subnet.subnet().prefix_len(), 24);
    /// ```
    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    /// The subnet's address family.
    ///
    /// ```
    /// use underlay::ipam::{IpFamily, SubnetConfig};
    ///
    /// let subnet = SubnetConfig::new("fd11::/64".parse().unwrap()).unwrap();
    /// assert_eq!(subnet.family(), IpFamily::V6);
    /// ```
    pub fn family(&self) -> IpFamily {
        IpFamily::of_prefix(&self.subnet)
    }

    /// The gateway, if one was given or inferred.
    ///
    /// ```
    /// use underlay::ipam::SubnetConfig;
    ///
    /// let subnet = SubnetConfig::new("10.1.20.0/24".parse().unwrap()).unwrap();
    /// assert_eq!(subnet.gateway(), None);
    /// ```
    pub fn gateway(&self) -> Option<IpAddr> {
        self.gateway
    }

    /// The ip-range, if one was given.
    ///
    /// ```
    /// use underlay::ipam::SubnetConfig;
    ///
    /// let subnet = SubnetConfig::new("10.1.20.0/24".parse().unwrap()).unwrap();
    /// assert_eq!(subnet.ip_range(), None);
    /// ```
    pub fn ip_range(&self) -> Option<IpNet> {
        self.ip_range
    }

    /// The prefix dynamic allocation draws from: the ip-range, or the whole
    /// subnet when there is none.
    ///
    /// ```
    /// use underlay::ipam::SubnetConfig;
    ///
    /// let subnet = SubnetConfig::new("10.1.20.0/24".parse().unwrap()).unwrap();
    /// assert_eq!(subnet.allocation_range(), subnet.subnet());
    /// ```
    pub fn allocation_range(&self) -> IpNet {
        self.ip_range.unwrap_or(self.subnet)
    }

    /// The aux addresses, by name.
    ///
    /// ```
    /// use underlay::ipam::SubnetConfig;
    ///
    /// let subnet = SubnetConfig::new("10.1.20.0/24".parse().unwrap()).unwrap();
    /// assert_eq!(subnet.aux_addresses().count(), 0);
    /// ```
    pub fn aux_addresses(&self) -> impl Iterator<Item = (&str, IpAddr)> + '_ {
        self.aux_addresses
            .iter()
            .map(|(name, address)| (name.as_str(), *address))
    }

    fn set_gateway(&mut self, gateway: IpAddr) -> Result<(), IpamError> {
        if !self.subnet.contains(&gateway) {
            return Err(IpamError::GatewayOutsideSubnet {
                gateway,
                subnets: vec![self.subnet],
            });
        }
        if let Some(first) = self.gateway {
            return Err(IpamError::MultipleGateways {
                subnet: self.subnet,
                first,
                second: gateway,
            });
        }
        if let Some((name, _)) = self.aux_addresses.iter().find(|(_, a)| **a == gateway) {
            return Err(IpamError::AuxAddressNotUsable {
                name: name.clone(),
                address: gateway,
                subnet: self.subnet,
                reservation: Reservation::Gateway,
            });
        }
        let offset = address_to_u128(gateway) - address_to_u128(self.subnet.network());
        if let Some((_, reservation)) = special_offsets(&self.subnet)
            .into_iter()
            .find(|(special, _)| *special == offset)
        {
            return Err(IpamError::GatewayNotUsable {
                gateway,
                subnet: self.subnet,
                reservation,
            });
        }
        self.gateway = Some(gateway);
        Ok(())
    }

    fn set_ip_range(&mut self, range: IpNet) -> Result<(), IpamError> {
        check_no_host_bits(range)?;
        if !self.subnet.contains(&range) {
            return Err(IpamError::IpRangeOutsideSubnet {
                range,
                subnets: vec![self.subnet],
            });
        }
        if let Some(first) = self.ip_range {
            return Err(IpamError::MultipleIpRanges {
                subnet: self.subnet,
                first,
                second: range,
            });
        }
        self.ip_range = Some(range);
        Ok(())
    }

    fn add_aux_address(&mut self, name: String, address: IpAddr) -> Result<(), IpamError> {
        if !self.subnet.contains(&address) {
            return Err(IpamError::AuxAddressOutsideSubnet {
                name,
                address,
                subnets: vec![self.subnet],
            });
        }
        if self.aux_addresses.contains_key(&name) {
            return Err(IpamError::DuplicateAuxName { name });
        }
        let offset = address_to_u128(address) - address_to_u128(self.subnet.network());
        let reservation = special_offsets(&self.subnet)
            .into_iter()
            .find(|(special, _)| *special == offset)
            .map(|(_, reservation)| reservation)
            .or((self.gateway == Some(address)).then_some(Reservation::Gateway));
        if let Some(reservation) = reservation {
            return Err(IpamError::AuxAddressNotUsable {
                name,
                address,
                subnet: self.subnet,
                reservation,
            });
        }
        self.aux_addresses.insert(name, address);
        Ok(())
    }

    /// An address for a host shim: the highest of the subnet that is not
    /// reserved (network, broadcast, anycast), the gateway, an aux address
    /// or `taken`, outside the ip-range when there is room (away from the
    /// containers' addresses, as the blog posts' shims are), else inside it.
    /// `None` when the subnet has no such address among its top 65536.
    pub(crate) fn shim_candidate(&self, taken: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
        let base = address_to_u128(self.subnet.network());
        let last = host_count_minus_one(&self.subnet);
        let family = IpFamily::of_prefix(&self.subnet);
        let special: Vec<u128> = special_offsets(&self.subnet)
            .into_iter()
            .map(|(offset, _)| offset)
            .collect();
        let usable = |offset: u128| {
            let address = u128_to_address(base + offset, family);
            (!special.contains(&offset)
                && self.gateway != Some(address)
                && !self.aux_addresses.values().any(|a| *a == address)
                && !taken(address))
            .then_some(address)
        };
        let in_range = |address: IpAddr| self.ip_range.is_some_and(|r| r.contains(&address));
        let top = (0..=last).rev().take(1 << 16);
        let outside = top
            .clone()
            .filter_map(usable)
            .find(|a| self.ip_range.is_some() && !in_range(*a));
        outside.or_else(|| top.filter_map(usable).next())
    }

    /// Checks that the ip-range (or the subnet) has an address to hand out
    /// once the gateway, the aux addresses and the reserved addresses are
    /// set aside.
    fn check_allocatable(&self) -> Result<(), IpamError> {
        let Some(range) = self.ip_range else {
            return Ok(());
        };
        let start = address_to_u128(range.network());
        let size: u128 = if range.max_prefix_len() - range.prefix_len() >= 127 {
            u128::MAX
        } else {
            1u128 << (range.max_prefix_len() - range.prefix_len())
        };
        let base = address_to_u128(self.subnet.network());
        let mut taken: Vec<u128> = special_offsets(&self.subnet)
            .into_iter()
            .map(|(offset, _)| base + offset)
            .chain(self.gateway.map(address_to_u128))
            .chain(self.aux_addresses.values().map(|a| address_to_u128(*a)))
            .filter(|a| (start..=start.saturating_add(size - 1)).contains(a))
            .collect();
        taken.sort_unstable();
        taken.dedup();
        if (taken.len() as u128) < size {
            Ok(())
        } else {
            Err(IpamError::EmptyIpRange {
                range,
                subnet: self.subnet,
            })
        }
    }
}

/// The special-purpose range a subnet falls in, if any.
fn special_purpose(subnet: &IpNet) -> Option<&'static str> {
    const RANGES: &[(&str, &str)] = &[
        ("0.0.0.0/8", "in 0.0.0.0/8 (this network)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "the broadcast address"),
        ("::/128", "the unspecified address"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    ];
    RANGES.iter().find_map(|(range, reason)| {
        let range: IpNet = range.parse().expect("a valid prefix");
        range.contains(subnet).then_some(*reason)
    })
}

/// The address configuration of one network: any number of IPv4 and IPv6
/// subnets, in order, that do not overlap one another.
///
/// The order matters: dynamic allocation tries the subnets of a family in
/// this order. Deserializing runs the same checks as building.
///
/// ```
/// use underlay::ipam::NetworkIpamConfig;
///
/// // docker network create -d macvlan --subnet=192.168.136.0/24 ... mcv0
/// let mut config = NetworkIpamConfig::from_docker_lists(
///     &["192.168.136.0/24", "192.168.138.0/24", "fd11::/64"],
///     &[],
///     &["192.168.136.0/25", "192.168.138.0/25"],
///     &["reserved1=fd11::2", "reserved2=192.168.136.2", "reserved3=192.168.138.2"],
/// )?;
/// config.infer_gateways();
/// let gateways: Vec<String> = config
///     .subnets()
///     .iter()
///     .map(|s| s.gateway().unwrap().to_string())
///     .collect();
/// assert_eq!(gateways, ["192.168.136.1", "192.168.138.1", "fd11::1"]);
/// # Ok::<(), underlay::ipam::IpamError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "NetworkIpamConfigRecord")]
pub struct NetworkIpamConfig {
    subnets: Vec<SubnetConfig>,
}

/// The serialized form of [`NetworkIpamConfig`], checked on the way in.
#[derive(Deserialize)]
struct NetworkIpamConfigRecord {
    subnets: Vec<SubnetConfig>,
}

impl TryFrom<NetworkIpamConfigRecord> for NetworkIpamConfig {
    type Error = IpamError;

    fn try_from(record: NetworkIpamConfigRecord) -> Result<Self, IpamError> {
        NetworkIpamConfig::new(record.subnets)
    }
}

impl NetworkIpamConfig {
    /// A configuration of these subnets, in this order.
    ///
    /// Refuses a repeated subnet, overlapping subnets and an aux address
    /// name used twice.
    ///
    /// # Errors
    /// [`IpamError::DuplicateSubnet`] for a subnet given twice;
    /// [`IpamError::OverlappingSubnets`] for subnets that overlap;
    /// [`IpamError::DuplicateAuxName`] for an aux address name used in two subnets.
    ///
    /// ```
    /// use underlay::ipam::{IpamError, NetworkIpamConfig, SubnetConfig};
    ///
    /// let a = SubnetConfig::new("10.0.0.0/8".parse().unwrap())?;
    /// let b = SubnetConfig::new("10.1.0.0/16".parse().unwrap())?;
    /// let err = NetworkIpamConfig::new([a, b]).unwrap_err();
    /// assert!(matches!(err, IpamError::OverlappingSubnets { .. }));
    /// # Ok::<(), IpamError>(())
    /// ```
    pub fn new(
        subnets: impl IntoIterator<Item = SubnetConfig>,
    ) -> Result<NetworkIpamConfig, IpamError> {
        let mut config = NetworkIpamConfig::default();
        for subnet in subnets {
            config.add_subnet(subnet)?;
        }
        Ok(config)
    }

    /// Builds a configuration from Docker-style loose lists, as given to
    /// `docker network create`: `--subnet`, `--gateway`, `--ip-range` and
    /// `--aux-address name=address`.
    ///
    /// Gateways, ip-ranges and aux addresses are paired with subnets by
    /// containment, not by position. A value inside no subnet is an error
    /// naming it, as is a second gateway or ip-range for one subnet.
    ///
    /// # Errors
    /// [`IpamError::MalformedPrefix`], [`IpamError::MalformedAddress`] or
    /// [`IpamError::MalformedAuxAddress`] for text that does not parse; a `*OutsideSubnet`
    /// error, such as [`IpamError::GatewayOutsideSubnet`], for a value inside no subnet;
    /// otherwise what [`SubnetConfig::new`], its `with_*` methods or
    /// [`add_subnet`](Self::add_subnet) refuse.
    ///
    /// ```
    /// use underlay::ipam::{IpamError, NetworkIpamConfig};
    ///
    /// // Gateways in another order than their subnets pair up all the same.
    /// let config = NetworkIpamConfig::from_docker_lists(
    ///     &["192.168.216.0/24", "192.168.218.0/24", "2001:db8:abc8::/64"],
    ///     &["2001:db8:abc8::10", "192.168.218.1", "192.168.216.1"],
    ///     &[],
    ///     &[],
    /// )?;
    /// assert_eq!(config.subnets()[1].gateway(), Some("192.168.218.1".parse().unwrap()));
    ///
    /// let err = NetworkIpamConfig::from_docker_lists(
    ///     &["192.168.1.0/24"], &["192.168.2.1"], &[], &[],
    /// ).unwrap_err();
    /// assert!(matches!(err, IpamError::GatewayOutsideSubnet { .. }));
    /// assert!(err.to_string().contains("192.168.2.1"));
    /// # Ok::<(), IpamError>(())
    /// ```
    pub fn from_docker_lists(
        subnets: &[&str],
        gateways: &[&str],
        ip_ranges: &[&str],
        aux_addresses: &[&str],
    ) -> Result<NetworkIpamConfig, IpamError> {
        let mut config = NetworkIpamConfig::default();
        for subnet in subnets {
            config.add_subnet(SubnetConfig::new(parse_prefix(subnet)?)?)?;
        }
        for gateway in gateways {
            let gateway = parse_address(gateway)?;
            let all = config.prefixes().collect();
            let subnet =
                config
                    .subnet_containing_mut(gateway)
                    .ok_or(IpamError::GatewayOutsideSubnet {
                        gateway,
                        subnets: all,
                    })?;
            subnet.set_gateway(gateway)?;
        }
        for range in ip_ranges {
            let range = parse_prefix(range)?;
            let all = config.prefixes().collect();
            let subnet = config
                .subnets
                .iter_mut()
                .find(|s| s.subnet.contains(&range))
                .ok_or(IpamError::IpRangeOutsideSubnet {
                    range,
                    subnets: all,
                })?;
            subnet.set_ip_range(range)?;
        }
        for aux in aux_addresses {
            let (name, address) = aux
                .split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| IpamError::MalformedAuxAddress {
                    input: (*aux).to_owned(),
                })?;
            let address = parse_address(address)?;
            if config.aux_name_taken(name) {
                return Err(IpamError::DuplicateAuxName {
                    name: name.to_owned(),
                });
            }
            let all = config.prefixes().collect();
            let subnet = config.subnet_containing_mut(address).ok_or_else(|| {
                IpamError::AuxAddressOutsideSubnet {
                    name: name.to_owned(),
                    address,
                    subnets: all,
                }
            })?;
            subnet.add_aux_address(name.to_owned(), address)?;
        }
        Ok(config)
    }

    /// Adds a subnet after the others. On error the configuration is left
    /// as it was.
    ///
    /// This is how a subnet taken from [`DefaultPools`](super::DefaultPools)
    /// joins a network that was given none of its family.
    ///
    /// # Errors
    /// [`IpamError::DuplicateSubnet`] when the subnet is configured already;
    /// [`IpamError::OverlappingSubnets`] when it overlaps another;
    /// [`IpamError::DuplicateAuxName`] when another subnet has one of its aux address names.
    ///
    /// ```
    /// use underlay::ipam::{IpamError, NetworkIpamConfig, SubnetConfig};
    ///
    /// let mut config = NetworkIpamConfig::default();
    /// config.add_subnet(SubnetConfig::new("172.18.0.0/16".parse().unwrap())?)?;
    /// let again = SubnetConfig::new("172.18.0.0/16".parse().unwrap())?;
    /// assert!(matches!(config.add_subnet(again), Err(IpamError::DuplicateSubnet { .. })));
    /// assert_eq!(config.subnets().len(), 1);
    /// # Ok::<(), IpamError>(())
    /// ```
    pub fn add_subnet(&mut self, subnet: SubnetConfig) -> Result<(), IpamError> {
        for existing in &self.subnets {
            if existing.subnet == subnet.subnet {
                return Err(IpamError::DuplicateSubnet {
                    subnet: subnet.subnet,
                });
            }
            if overlaps(&existing.subnet, &subnet.subnet) {
                return Err(IpamError::OverlappingSubnets {
                    subnet: subnet.subnet,
                    other: existing.subnet,
                });
            }
        }
        if let Some((name, _)) = subnet.aux_addresses().find(|(n, _)| self.aux_name_taken(n)) {
            return Err(IpamError::DuplicateAuxName {
                name: name.to_owned(),
            });
        }
        self.subnets.push(subnet);
        Ok(())
    }

    /// Gives every subnet that has no gateway its first usable address as
    /// gateway: `10.1.100.0/24` gets `10.1.100.1`, `10.1.100.128/25` gets
    /// `10.1.100.129` and `fd11::/64` gets `fd11::1`.
    ///
    /// Call it for networks that want a gateway; leave it out for internal
    /// networks or ipvlan L3 ones, which route through the device (Docker
    /// infers a gateway even for those). The inferred gateway is taken from
    /// the subnet, not from the ip-range, so a small ip-range keeps all of its
    /// addresses (libnetwork#2249). A subnet with a single address (IPv4 /32,
    /// IPv6 /128) gets no gateway, which would take that address.
    ///
    /// ```
    /// use underlay::ipam::{NetworkIpamConfig};
    ///
    /// let mut config = NetworkIpamConfig::from_docker_lists(
    ///     &["10.1.100.128/25", "fd11::/64"], &[], &[], &[],
    /// )?;
    /// config.infer_gateways();
    /// assert_eq!(config.subnets()[0].gateway(), Some("10.1.100.129".parse().unwrap()));
    /// assert_eq!(config.subnets()[1].gateway(), Some("fd11::1".parse().unwrap()));
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn infer_gateways(&mut self) {
        for subnet in &mut self.subnets {
            // Point-to-point subnets (/31, /32, /127, /128) get none: every
            // address goes to a container (RFC 3021), as in today's Docker.
            let point_to_point = subnet.subnet.prefix_len() + 1 >= subnet.subnet.max_prefix_len();
            if subnet.gateway.is_none() && !point_to_point {
                subnet.gateway = first_usable_address(&subnet.subnet);
            }
        }
    }

    /// Checks that every ip-range has an address to hand out once the
    /// gateways (given or inferred), aux and reserved addresses are set
    /// aside; run it after [`infer_gateways`](Self::infer_gateways).
    ///
    /// # Errors
    /// [`IpamError::EmptyIpRange`] naming the first range with nothing to
    /// hand out.
    ///
    /// ```
    /// use underlay::ipam::{IpamError, NetworkIpamConfig};
    ///
    /// // The range holds one address, and the inferred gateway takes it.
    /// let mut config =
    ///     NetworkIpamConfig::from_docker_lists(&["10.1.0.0/24"], &[], &["10.1.0.1/32"], &[])?;
    /// config.infer_gateways();
    /// assert!(matches!(config.check_allocatable(), Err(IpamError::EmptyIpRange { .. })));
    /// # Ok::<(), IpamError>(())
    /// ```
    pub fn check_allocatable(&self) -> Result<(), IpamError> {
        self.subnets
            .iter()
            .try_for_each(SubnetConfig::check_allocatable)
    }

    /// The subnets, in configuration order.
    ///
    /// ```
    /// use underlay::ipam::NetworkIpamConfig;
    ///
    /// assert!(NetworkIpamConfig::default().subnets().is_empty());
    /// ```
    pub fn subnets(&self) -> &[SubnetConfig] {
        &self.subnets
    }

    /// The subnets of one family, in configuration order.
    ///
    /// ```
    /// use underlay::ipam::{IpFamily, NetworkIpamConfig};
    ///
    /// let config = NetworkIpamConfig::from_docker_lists(
    ///     &["2001:db8:abc2::/64"], &["2001:db8:abc2::22"], &[], &[],
    /// )?;
    /// assert_eq!(config.subnets_of(IpFamily::V4).count(), 0);
    /// assert_eq!(config.subnets_of(IpFamily::V6).count(), 1);
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn subnets_of(&self, family: IpFamily) -> impl Iterator<Item = &SubnetConfig> + '_ {
        self.subnets.iter().filter(move |s| s.family() == family)
    }

    /// The subnet prefixes, in configuration order: what overlap checks
    /// against other networks take.
    ///
    /// ```
    /// use underlay::ipam::NetworkIpamConfig;
    ///
    /// let config = NetworkIpamConfig::from_docker_lists(&["10.1.20.0/24"], &[], &[], &[])?;
    /// assert_eq!(config.prefixes().next(), Some("10.1.20.0/24".parse().unwrap()));
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.subnets.iter().map(|s| s.subnet)
    }

    /// Reserves `address` under `name` as an aux address of the subnet
    /// that holds it (the way a network keeps its host shim's address from
    /// its containers).
    ///
    /// # Errors
    /// [`IpamError::AuxAddressOutsideSubnet`] when no subnet holds it,
    /// [`IpamError::DuplicateAuxName`] when the name is taken, and
    /// [`IpamError::AuxAddressNotUsable`] for a gateway, network, broadcast
    /// or subnet-router anycast address.
    pub(crate) fn reserve(&mut self, name: &str, address: IpAddr) -> Result<(), IpamError> {
        if self.aux_name_taken(name) {
            return Err(IpamError::DuplicateAuxName {
                name: name.to_owned(),
            });
        }
        let subnets: Vec<IpNet> = self.prefixes().collect();
        match self.subnet_containing_mut(address) {
            Some(subnet) => subnet.add_aux_address(name.to_owned(), address),
            None => Err(IpamError::AuxAddressOutsideSubnet {
                name: name.to_owned(),
                address,
                subnets,
            }),
        }
    }

    fn subnet_containing_mut(&mut self, address: IpAddr) -> Option<&mut SubnetConfig> {
        self.subnets
            .iter_mut()
            .find(|s| s.subnet.contains(&address))
    }

    fn aux_name_taken(&self, name: &str) -> bool {
        self.subnets
            .iter()
            .any(|s| s.aux_addresses.contains_key(name))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Reservation;
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn shim_candidates_sit_outside_the_range_and_skip_what_is_reserved() {
        let subnet = SubnetConfig::new(net("10.0.0.0/24"))
            .unwrap()
            .with_gateway(ip("10.0.0.1"))
            .unwrap()
            .with_ip_range(net("10.0.0.0/25"))
            .unwrap();
        assert_eq!(subnet.shim_candidate(|_| false), Some(ip("10.0.0.254")));
        let on_host = |a: IpAddr| a == ip("10.0.0.254");
        assert_eq!(subnet.shim_candidate(on_host), Some(ip("10.0.0.253")));
        // The range at the top: the first address below it.
        let top = SubnetConfig::new(net("10.0.0.0/24"))
            .unwrap()
            .with_ip_range(net("10.0.0.128/25"))
            .unwrap();
        assert_eq!(top.shim_candidate(|_| false), Some(ip("10.0.0.127")));
        // No range: the subnet's highest usable address, aux addresses skipped.
        let plain = SubnetConfig::new(net("fd00::/64"))
            .unwrap()
            .with_aux_address("x", ip("fd00::ffff:ffff:ffff:ffff"))
            .unwrap();
        assert_eq!(
            plain.shim_candidate(|_| false),
            Some(ip("fd00::ffff:ffff:ffff:fffe"))
        );
        // The range is the subnet: inside it.
        let whole = SubnetConfig::new(net("10.0.0.0/30"))
            .unwrap()
            .with_gateway(ip("10.0.0.1"))
            .unwrap()
            .with_ip_range(net("10.0.0.0/30"))
            .unwrap();
        assert_eq!(whole.shim_candidate(|_| false), Some(ip("10.0.0.2")));
        assert_eq!(whole.shim_candidate(|a| a == ip("10.0.0.2")), None);
    }

    #[test]
    fn reserving_checks_the_subnet_the_name_and_the_gateway() {
        let mut config =
            NetworkIpamConfig::from_docker_lists(&["10.0.0.0/24"], &["10.0.0.1"], &[], &[])
                .unwrap();
        config.reserve("host_shim", ip("10.0.0.9")).unwrap();
        assert!(matches!(
            config.reserve("host_shim", ip("10.0.0.8")),
            Err(IpamError::DuplicateAuxName { .. })
        ));
        assert!(matches!(
            config.reserve("b", ip("10.0.1.8")),
            Err(IpamError::AuxAddressOutsideSubnet { .. })
        ));
        assert!(matches!(
            config.reserve("c", ip("10.0.0.1")),
            Err(IpamError::AuxAddressNotUsable { .. })
        ));
        let aux: Vec<_> = config.subnets()[0].aux_addresses().collect();
        assert_eq!(aux, [("host_shim", ip("10.0.0.9"))]);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn lists(
        subnets: &[&str],
        gateways: &[&str],
        ranges: &[&str],
        aux: &[&str],
    ) -> Result<NetworkIpamConfig, IpamError> {
        NetworkIpamConfig::from_docker_lists(subnets, gateways, ranges, aux)
    }

    fn assert_names(err: &IpamError, value: &str) {
        let text = err.to_string();
        assert!(text.contains(value), "{text:?} does not name {value:?}");
    }

    #[test]
    fn seed_mcv0_pairs_ranges_and_aux_by_containment() {
        let config = lists(
            &["192.168.136.0/24", "192.168.138.0/24", "fd11::/64"],
            &[],
            &["192.168.136.0/25", "192.168.138.0/25"],
            &[
                "reserved1=fd11::2",
                "reserved2=192.168.136.2",
                "reserved3=192.168.138.2",
            ],
        )
        .unwrap();
        let s = config.subnets();
        assert_eq!(s[0].ip_range(), Some(net("192.168.136.0/25")));
        assert_eq!(s[1].ip_range(), Some(net("192.168.138.0/25")));
        assert_eq!(s[2].ip_range(), None);
        assert_eq!(
            s[0].aux_addresses().collect::<Vec<_>>(),
            [("reserved2", ip("192.168.136.2"))]
        );
        assert_eq!(
            s[2].aux_addresses().collect::<Vec<_>>(),
            [("reserved1", ip("fd11::2"))]
        );
        assert!(s.iter().all(|s| s.gateway().is_none()));
    }

    #[test]
    fn ranges_pair_by_containment_in_any_order() {
        let config = lists(
            &["192.168.136.0/24", "192.168.138.0/24"],
            &[],
            &["192.168.138.0/25", "192.168.136.128/25"],
            &[],
        )
        .unwrap();
        assert_eq!(
            config.subnets()[0].ip_range(),
            Some(net("192.168.136.128/25"))
        );
        assert_eq!(
            config.subnets()[1].ip_range(),
            Some(net("192.168.138.0/25"))
        );
    }

    #[test]
    fn seed_macvlan216_gateways_pair_by_containment() {
        let config = lists(
            &["192.168.216.0/24", "192.168.218.0/24", "2001:db8:abc8::/64"],
            &["192.168.216.1", "192.168.218.1", "2001:db8:abc8::10"],
            &[],
            &[],
        )
        .unwrap();
        let gateways: Vec<_> = config.subnets().iter().map(|s| s.gateway()).collect();
        assert_eq!(
            gateways,
            [
                Some(ip("192.168.216.1")),
                Some(ip("192.168.218.1")),
                Some(ip("2001:db8:abc8::10"))
            ]
        );
    }

    #[test]
    fn gateway_inference() {
        let mut config = lists(
            &[
                "10.1.100.0/24",
                "10.1.101.128/25",
                "fd11::/64",
                "10.9.0.0/31",
                "10.9.0.8/32",
                "192.168.1.0/24",
            ],
            &["192.168.1.254"],
            &[],
            &[],
        )
        .unwrap();
        config.infer_gateways();
        let gateways: Vec<_> = config.subnets().iter().map(|s| s.gateway()).collect();
        assert_eq!(
            gateways,
            [
                Some(ip("10.1.100.1")),
                Some(ip("10.1.101.129")),
                Some(ip("fd11::1")),
                // Point-to-point: no inferred gateway (RFC 3021).
                None,
                None,
                Some(ip("192.168.1.254")),
            ]
        );
    }

    #[test]
    fn gateway_is_inferred_from_the_subnet_not_the_range() {
        let mut config = lists(&["192.168.32.0/24"], &[], &["192.168.32.128/25"], &[]).unwrap();
        config.infer_gateways();
        assert_eq!(config.subnets()[0].gateway(), Some(ip("192.168.32.1")));
    }

    #[test]
    fn gateway_outside_every_subnet() {
        let err = lists(&["192.168.1.0/24", "10.0.0.0/8"], &["172.16.0.1"], &[], &[]).unwrap_err();
        assert_eq!(
            err,
            IpamError::GatewayOutsideSubnet {
                gateway: ip("172.16.0.1"),
                subnets: vec![net("192.168.1.0/24"), net("10.0.0.0/8")],
            }
        );
        assert_names(&err, "172.16.0.1");
        let err = lists(&[], &["172.16.0.1"], &[], &[]).unwrap_err();
        assert_names(&err, "172.16.0.1");
        assert_names(&err, "add a subnet");
    }

    #[test]
    fn gateway_outside_its_own_subnet() {
        let err = SubnetConfig::new(net("192.168.1.0/24"))
            .unwrap()
            .with_gateway(ip("192.168.2.1"))
            .unwrap_err();
        assert!(matches!(err, IpamError::GatewayOutsideSubnet { .. }));
        assert_names(&err, "192.168.2.1");
        assert_names(&err, "192.168.1.0/24");
        let err = SubnetConfig::new(net("192.168.1.0/24"))
            .unwrap()
            .with_gateway(ip("fd00::1"))
            .unwrap_err();
        assert!(matches!(err, IpamError::GatewayOutsideSubnet { .. }));
    }

    #[test]
    fn gateway_may_not_be_network_broadcast_or_anycast() {
        for (subnet, gateway, reservation) in [
            ("192.168.1.0/24", "192.168.1.0", Reservation::NetworkAddress),
            (
                "192.168.1.0/24",
                "192.168.1.255",
                Reservation::BroadcastAddress,
            ),
            ("fd11::/64", "fd11::", Reservation::SubnetRouterAnycast),
        ] {
            let err = lists(&[subnet], &[gateway], &[], &[]).unwrap_err();
            assert_eq!(
                err,
                IpamError::GatewayNotUsable {
                    gateway: ip(gateway),
                    subnet: net(subnet),
                    reservation
                }
            );
            assert_names(&err, gateway);
        }
        // Point-to-point subnets use every address.
        assert!(lists(&["10.0.0.0/31"], &["10.0.0.0"], &[], &[]).is_ok());
        assert!(lists(&["10.0.0.1/32"], &["10.0.0.1"], &[], &[]).is_ok());
        assert!(lists(&["fd11::/127"], &["fd11::"], &[], &[]).is_ok());
    }

    #[test]
    fn two_gateways_for_one_subnet() {
        let err = lists(
            &["192.168.1.0/24"],
            &["192.168.1.1", "192.168.1.254"],
            &[],
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err,
            IpamError::MultipleGateways {
                subnet: net("192.168.1.0/24"),
                first: ip("192.168.1.1"),
                second: ip("192.168.1.254"),
            }
        );
        assert_names(&err, "192.168.1.254");
    }

    #[test]
    fn ip_range_outside_every_subnet() {
        for range in ["192.168.2.0/25", "192.168.0.0/16", "fd11::/64"] {
            let err = lists(&["192.168.1.0/24"], &[], &[range], &[]).unwrap_err();
            assert_eq!(
                err,
                IpamError::IpRangeOutsideSubnet {
                    range: net(range),
                    subnets: vec![net("192.168.1.0/24")],
                }
            );
            assert_names(&err, range);
        }
        let err = SubnetConfig::new(net("192.168.1.0/24"))
            .unwrap()
            .with_ip_range(net("192.168.0.0/23"))
            .unwrap_err();
        assert!(matches!(err, IpamError::IpRangeOutsideSubnet { .. }));
        assert_names(&err, "192.168.0.0/23");
    }

    #[test]
    fn ip_range_with_host_bits_or_malformed() {
        let err = lists(&["192.168.1.0/24"], &[], &["192.168.1.5/25"], &[]).unwrap_err();
        assert!(matches!(err, IpamError::HostBitsSet { .. }));
        assert_names(&err, "192.168.1.5/25");
        let err = lists(&["192.168.1.0/24"], &[], &["192.168.1.128"], &[]).unwrap_err();
        assert!(matches!(err, IpamError::MalformedPrefix { .. }));
        assert_names(&err, "192.168.1.128");
    }

    #[test]
    fn two_ranges_for_one_subnet() {
        let err = lists(
            &["192.168.1.0/24"],
            &[],
            &["192.168.1.0/25", "192.168.1.128/25"],
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err,
            IpamError::MultipleIpRanges {
                subnet: net("192.168.1.0/24"),
                first: net("192.168.1.0/25"),
                second: net("192.168.1.128/25"),
            }
        );
        assert_names(&err, "192.168.1.128/25");
    }

    #[test]
    fn aux_address_outside_every_subnet() {
        let err = lists(&["192.168.1.0/24"], &[], &[], &["host=192.168.2.250"]).unwrap_err();
        assert_eq!(
            err,
            IpamError::AuxAddressOutsideSubnet {
                name: "host".into(),
                address: ip("192.168.2.250"),
                subnets: vec![net("192.168.1.0/24")],
            }
        );
        assert_names(&err, "192.168.2.250");
        assert_names(&err, "host");
    }

    #[test]
    fn malformed_aux_addresses() {
        for aux in ["192.168.1.250", "=192.168.1.250"] {
            let err = lists(&["192.168.1.0/24"], &[], &[], &[aux]).unwrap_err();
            assert_eq!(err, IpamError::MalformedAuxAddress { input: aux.into() });
            assert_names(&err, aux);
        }
        let err = lists(&["192.168.1.0/24"], &[], &[], &["host=192.168.1.x"]).unwrap_err();
        assert_eq!(
            err,
            IpamError::MalformedAddress {
                input: "192.168.1.x".into()
            }
        );
        assert_names(&err, "192.168.1.x");
    }

    #[test]
    fn duplicate_aux_names() {
        let err = lists(
            &["192.168.1.0/24", "192.168.2.0/24"],
            &[],
            &[],
            &["host=192.168.1.250", "host=192.168.2.250"],
        )
        .unwrap_err();
        assert_eq!(
            err,
            IpamError::DuplicateAuxName {
                name: "host".into()
            }
        );
        assert_names(&err, "host");
        // An aux address that is the gateway reserves nothing more and is
        // most likely a mistake: refused, in either order.
        let err = lists(
            &["192.168.1.0/24"],
            &["192.168.1.1"],
            &[],
            &["router=192.168.1.1"],
        )
        .unwrap_err();
        assert!(
            matches!(err, IpamError::AuxAddressNotUsable { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("is the gateway"), "{err}");
    }

    #[test]
    fn malformed_gateway() {
        let err = lists(&["192.168.1.0/24"], &["192.168.1.1/24"], &[], &[]).unwrap_err();
        assert_eq!(
            err,
            IpamError::MalformedAddress {
                input: "192.168.1.1/24".into()
            }
        );
        assert_names(&err, "192.168.1.1/24");
    }

    #[test]
    fn duplicate_subnet() {
        let err = lists(&["192.168.1.0/24", "192.168.1.0/24"], &[], &[], &[]).unwrap_err();
        assert_eq!(
            err,
            IpamError::DuplicateSubnet {
                subnet: net("192.168.1.0/24")
            }
        );
        assert_names(&err, "192.168.1.0/24");
    }

    #[test]
    fn overlapping_subnets() {
        for (a, b) in [
            ("10.0.0.0/8", "10.1.0.0/16"),
            ("10.1.0.0/16", "10.0.0.0/8"),
            ("fd11::/48", "fd11:0:0:1::/64"),
        ] {
            let err = lists(&[a, b], &[], &[], &[]).unwrap_err();
            assert_eq!(
                err,
                IpamError::OverlappingSubnets {
                    subnet: net(b),
                    other: net(a)
                }
            );
            assert_names(&err, a);
            assert_names(&err, b);
        }
        // Different families never overlap.
        assert!(lists(&["0.0.0.0/1", "::/1"], &[], &[], &[]).is_ok());
    }

    #[test]
    fn zero_prefix_and_malformed_subnets() {
        for subnet in ["0.0.0.0/0", "::/0"] {
            let err = lists(&[subnet], &[], &[], &[]).unwrap_err();
            assert_eq!(
                err,
                IpamError::ZeroPrefix {
                    subnet: net(subnet)
                }
            );
            assert_names(&err, subnet);
        }
        for subnet in ["192.168.1.0", "192.168.1.0/40", "nonsense"] {
            let err = lists(&[subnet], &[], &[], &[]).unwrap_err();
            assert!(matches!(err, IpamError::MalformedPrefix { .. }), "{err:?}");
            assert_names(&err, subnet);
        }
    }

    #[test]
    fn seed_vlan_mappings_with_host_bits_are_refused_with_the_fix() {
        // The seeds map VLAN 30 to "--subnet=10.1.100.0/16" and VLAN 20 to
        // "--subnet=172.16.50.0/22": both have host bits set.
        let err = lists(&["10.1.100.0/16"], &["10.1.100.1"], &[], &[]).unwrap_err();
        assert_eq!(
            err,
            IpamError::HostBitsSet {
                prefix: net("10.1.100.0/16"),
                network: net("10.1.0.0/16")
            }
        );
        assert_names(&err, "10.1.100.0/16");
        assert_names(&err, "10.1.0.0/16");
        let err = lists(&["172.16.50.0/22"], &["172.16.50.1"], &[], &[]).unwrap_err();
        assert_names(&err, "172.16.48.0/22");
        // Written with their network addresses they are accepted.
        assert!(lists(&["10.1.0.0/16"], &["10.1.100.1"], &[], &[]).is_ok());
        assert!(lists(&["172.16.80.0/24"], &["172.16.80.1"], &[], &[]).is_ok());
    }

    #[test]
    fn failed_add_subnet_leaves_the_config_unchanged() {
        let mut config = lists(
            &["192.168.1.0/24"],
            &["192.168.1.1"],
            &[],
            &["host=192.168.1.9"],
        )
        .unwrap();
        let before = config.clone();
        let overlapping = SubnetConfig::new(net("192.168.0.0/16")).unwrap();
        assert!(config.add_subnet(overlapping).is_err());
        let same_aux_name = SubnetConfig::new(net("10.0.0.0/24"))
            .unwrap()
            .with_aux_address("host", ip("10.0.0.9"))
            .unwrap();
        assert!(config.add_subnet(same_aux_name).is_err());
        assert_eq!(config, before);
    }

    #[test]
    fn serde_round_trip_and_checks() {
        let mut config = lists(
            &["192.168.136.0/24", "fd11::/64"],
            &[],
            &["192.168.136.0/25"],
            &["reserved1=fd11::2"],
        )
        .unwrap();
        config.infer_gateways();
        let json = serde_json::to_string(&config).unwrap();
        let back: NetworkIpamConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);

        let bad_gateway = r#"{"subnets":[{"subnet":"10.0.0.0/24","gateway":"10.0.1.1"}]}"#;
        let err = serde_json::from_str::<NetworkIpamConfig>(bad_gateway).unwrap_err();
        assert!(err.to_string().contains("10.0.1.1"), "{err}");
        let host_bits = r#"{"subnets":[{"subnet":"10.0.0.5/24"}]}"#;
        assert!(serde_json::from_str::<NetworkIpamConfig>(host_bits).is_err());
        let overlap = r#"{"subnets":[{"subnet":"10.0.0.0/24"},{"subnet":"10.0.0.0/16"}]}"#;
        assert!(serde_json::from_str::<NetworkIpamConfig>(overlap).is_err());
    }
}
