//! The errors of address management.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::IpFamily;

/// Why an address of a subnet is never handed out.
///
/// ```
/// use underlay::ipam::Reservation;
///
/// let why = Reservation::AuxAddress { name: "exclude_host".into() };
/// assert_eq!(why.to_string(), "aux address \"exclude_host\"");
/// assert_eq!(Reservation::Gateway.to_string(), "the gateway");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reservation {
    /// The IPv4 network address (the all-zero host part), below /31.
    NetworkAddress,
    /// The IPv4 broadcast address (the all-ones host part), below /31.
    BroadcastAddress,
    /// The IPv6 subnet-router anycast address (the all-zero host part),
    /// below /127.
    SubnetRouterAnycast,
    /// The subnet's gateway.
    Gateway,
    /// An aux address reserved under this name.
    AuxAddress {
        /// The name the aux address was given (`name=address`).
        name: String,
    },
}

impl fmt::Display for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reservation::NetworkAddress => f.write_str("the network address"),
            Reservation::BroadcastAddress => f.write_str("the broadcast address"),
            Reservation::SubnetRouterAnycast => f.write_str("the subnet-router anycast address"),
            Reservation::Gateway => f.write_str("the gateway"),
            Reservation::AuxAddress { name } => write!(f, "aux address {name:?}"),
        }
    }
}

/// Everything address management can refuse.
///
/// Each variant carries the values that were wrong, so a caller can match on
/// it; each message says what was wrong and what to do about it.
///
/// ```
/// use underlay::ipam::{IpFamily, Ipam, IpamError, NetworkIpamConfig};
///
/// let config = NetworkIpamConfig::from_docker_lists(&["192.168.1.0/24"], &[], &[], &[])?;
/// let mut ipam = Ipam::new("pub_net", &config, Default::default());
/// ipam.request("192.168.1.10".parse().unwrap(), 7)?;
///
/// match ipam.request("192.168.1.10".parse().unwrap(), 8) {
///     Err(IpamError::AddressInUse { address, holder, .. }) => {
///         assert_eq!(address.to_string(), "192.168.1.10");
///         assert_eq!(holder, 7);
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), IpamError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// A prefix could not be parsed.
    #[error("invalid prefix {input:?}: {reason}")]
    MalformedPrefix {
        /// The text as given.
        input: String,
        /// What is wrong with it and what is expected.
        reason: String,
    },

    /// A prefix has bits set beyond its length, such as `10.1.0.5/24`.
    #[error("prefix {prefix} has host bits set: write its network address instead, {network}")]
    HostBitsSet {
        /// The prefix as given.
        prefix: IpNet,
        /// The network address of that prefix, what was most likely meant.
        network: IpNet,
    },

    /// An address could not be parsed.
    #[error(
        "invalid IP address {input:?}: write a plain IPv4 or IPv6 address, \
         such as 192.168.1.1 or 2001:db8::1"
    )]
    MalformedAddress {
        /// The text as given.
        input: String,
    },

    /// An aux address is not written `name=address`.
    #[error(
        "invalid aux address {input:?}: write it as name=address, \
         for example exclude_host=192.168.1.250"
    )]
    MalformedAuxAddress {
        /// The text as given.
        input: String,
    },

    /// A subnet of length 0 would cover the whole address space.
    #[error(
        "subnet {subnet} has prefix length 0 and would cover every address: \
         give a real subnet, such as 192.168.1.0/24"
    )]
    ZeroPrefix {
        /// The subnet as given.
        subnet: IpNet,
    },

    /// The same subnet is configured twice in one network.
    #[error("subnet {subnet} is given twice: list each subnet of a network once")]
    DuplicateSubnet {
        /// The repeated subnet.
        subnet: IpNet,
    },

    /// Two subnets of one network overlap.
    #[error(
        "subnet {subnet} overlaps subnet {other} of the same network: \
         give a network subnets that do not overlap"
    )]
    OverlappingSubnets {
        /// The subnet being added.
        subnet: IpNet,
        /// The subnet already configured that it overlaps.
        other: IpNet,
    },

    /// A gateway lies outside the subnet it was given for (or outside every
    /// subnet of the network).
    #[error(
        "gateway {gateway} is outside {}: give each gateway inside the subnet it serves",
        describe_subnets(subnets)
    )]
    GatewayOutsideSubnet {
        /// The gateway as given.
        gateway: IpAddr,
        /// The subnets it was checked against.
        subnets: Vec<IpNet>,
    },

    /// A gateway is an address hosts cannot use (network, broadcast or
    /// subnet-router anycast address).
    #[error(
        "gateway {gateway} is {reservation} of subnet {subnet} and cannot be a gateway: \
         give a host address of the subnet"
    )]
    GatewayNotUsable {
        /// The gateway as given.
        gateway: IpAddr,
        /// Its subnet.
        subnet: IpNet,
        /// What the address is instead.
        reservation: Reservation,
    },

    /// An ip-range does not lie inside the subnet it was given for (or
    /// inside any subnet of the network).
    #[error(
        "ip-range {range} is not inside {}: give each ip-range inside the subnet it draws from",
        describe_subnets(subnets)
    )]
    IpRangeOutsideSubnet {
        /// The ip-range as given.
        range: IpNet,
        /// The subnets it was checked against.
        subnets: Vec<IpNet>,
    },

    /// An aux address lies outside the subnet it was given for (or outside
    /// every subnet of the network).
    #[error(
        "aux address {name}={address} is outside {}: \
         give each aux address inside one of the network's subnets",
        describe_subnets(subnets)
    )]
    AuxAddressOutsideSubnet {
        /// The name of the aux address.
        name: String,
        /// The address as given.
        address: IpAddr,
        /// The subnets it was checked against.
        subnets: Vec<IpNet>,
    },

    /// Two gateways were given for one subnet.
    #[error(
        "subnet {subnet} is given two gateways, {first} and {second}: give at most one per subnet"
    )]
    MultipleGateways {
        /// The subnet.
        subnet: IpNet,
        /// The gateway given first.
        first: IpAddr,
        /// The gateway given second.
        second: IpAddr,
    },

    /// Two ip-ranges were given for one subnet.
    #[error(
        "subnet {subnet} is given two ip-ranges, {first} and {second}: give at most one per subnet"
    )]
    MultipleIpRanges {
        /// The subnet.
        subnet: IpNet,
        /// The ip-range given first.
        first: IpNet,
        /// The ip-range given second.
        second: IpNet,
    },

    /// Two aux addresses of one network share a name.
    #[error("aux address name {name:?} is given twice: give each aux address its own name")]
    DuplicateAuxName {
        /// The repeated name.
        name: String,
    },

    /// A requested address (or serial cursor) lies outside every subnet of
    /// its family.
    #[error(
        "address {address} is outside {} of network {network:?}: \
         request an address inside one of them",
        describe_subnets(subnets)
    )]
    AddressOutsideSubnets {
        /// The network's name.
        network: String,
        /// The address requested.
        address: IpAddr,
        /// The network's subnets of the address's family.
        subnets: Vec<IpNet>,
    },

    /// A requested address is never handed out.
    #[error(
        "address {address} of network {network:?} is reserved as {reservation} of {subnet}: \
         request another address"
    )]
    AddressReserved {
        /// The network's name.
        network: String,
        /// The address requested.
        address: IpAddr,
        /// The subnet the address belongs to.
        subnet: IpNet,
        /// Why it is reserved.
        reservation: Reservation,
    },

    /// A requested address is already allocated.
    #[error(
        "address {address} of network {network:?} is already in use by holder {holder}: \
         release it first or request another address"
    )]
    AddressInUse {
        /// The network's name.
        network: String,
        /// The address requested.
        address: IpAddr,
        /// Who holds it.
        holder: u64,
    },

    /// The network has no subnet of the family asked for.
    #[error(
        "network {network:?} has no {family} subnet to allocate from: \
         configure one when creating the network"
    )]
    NoSubnet {
        /// The network's name.
        network: String,
        /// The family asked for.
        family: IpFamily,
    },

    /// Every address the network may hand out of this family is taken.
    #[error(
        "network {network:?} has no free {family} address left in {}: \
         release addresses, or widen the ip-range or add a subnet",
        describe_list(pools)
    )]
    Exhausted {
        /// The network's name.
        network: String,
        /// The family asked for.
        family: IpFamily,
        /// The ranges allocation draws from: each subnet's ip-range, or the
        /// subnet itself when it has none.
        pools: Vec<IpNet>,
    },

    /// A default pool entry is not usable.
    #[error(
        "invalid default pool {base} with size /{size}: the size must be a prefix length \
         from {} to {} and at least 1",
        base.prefix_len(),
        base.max_prefix_len()
    )]
    InvalidDefaultPool {
        /// The base prefix of the entry.
        base: IpNet,
        /// The prefix length of the subnets to cut from it.
        size: u8,
    },

    /// Every default pool subnet of a family overlaps a prefix in use.
    #[error(
        "every default {family} pool overlaps a network or a host prefix in use: \
         give the network an explicit subnet, or configure more default pools"
    )]
    DefaultPoolsExhausted {
        /// The family asked for.
        family: IpFamily,
    },

    /// A subnet lies in a special-purpose range containers cannot use on a
    /// physical network (loopback, link-local, multicast, unspecified).
    #[error("subnet {subnet} is {reason}, which containers cannot use on a physical network: give a unicast subnet")]
    UnusableSubnet {
        /// The subnet as given.
        subnet: IpNet,
        /// Which range it falls in.
        reason: &'static str,
    },

    /// An aux address is the gateway, or an address of the subnet that is
    /// never handed out anyway.
    #[error("aux address {name}={address} is {reservation} of subnet {subnet}, which is never handed out anyway: drop it or give another address")]
    AuxAddressNotUsable {
        /// The name of the aux address.
        name: String,
        /// The address as given.
        address: IpAddr,
        /// Its subnet.
        subnet: IpNet,
        /// What the address is.
        reservation: Reservation,
    },

    /// An ip-range holds no address that could be handed out (only the
    /// gateway, aux addresses, or reserved addresses).
    #[error("ip-range {range} of subnet {subnet} holds no address to hand out (only the gateway, aux addresses or reserved ones): widen it")]
    EmptyIpRange {
        /// The ip-range.
        range: IpNet,
        /// Its subnet.
        subnet: IpNet,
    },

    /// A subnet overlaps a subnet of another network.
    #[error(
        "subnet {subnet} overlaps subnet {existing} of network {network:?}: \
         choose a subnet that does not overlap it, or remove that network first"
    )]
    SubnetInUse {
        /// The new network's subnet.
        subnet: IpNet,
        /// The network it collides with.
        network: String,
        /// That network's subnet.
        existing: IpNet,
    },
}

fn describe_list(prefixes: &[IpNet]) -> String {
    let list: Vec<String> = prefixes.iter().map(IpNet::to_string).collect();
    list.join(", ")
}

fn describe_subnets(subnets: &[IpNet]) -> String {
    match subnets {
        [] => "every subnet (there is none: add a subnet first)".to_owned(),
        [one] => format!("subnet {one}"),
        many => format!("every subnet ({})", describe_list(many)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_lists_read_well() {
        let a: IpNet = "10.0.0.0/24".parse().unwrap();
        let b: IpNet = "10.0.1.0/24".parse().unwrap();
        assert_eq!(
            describe_subnets(&[]),
            "every subnet (there is none: add a subnet first)"
        );
        assert_eq!(describe_subnets(&[a]), "subnet 10.0.0.0/24");
        assert_eq!(
            describe_subnets(&[a, b]),
            "every subnet (10.0.0.0/24, 10.0.1.0/24)"
        );
    }

    #[test]
    fn errors_are_small_enough() {
        // Results of allocation carry this error; keep it a few words wide.
        assert!(std::mem::size_of::<IpamError>() <= 96);
    }
}
