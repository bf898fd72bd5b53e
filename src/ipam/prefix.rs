//! Prefix and address arithmetic: parsing, address families, the special
//! addresses of a subnet, and addresses as `u128` numbers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

use super::{IpFamily, IpamError, Reservation};

/// Parses a prefix written `address/length`, refusing host bits.
///
/// A subnet or ip-range must be written with its network address: Docker
/// prints `10.1.100.0/16` in one of its guides, which is refused here with
/// [`IpamError::HostBitsSet`] naming the network address meant, `10.1.0.0/16`.
///
/// # Errors
/// [`IpamError::MalformedPrefix`] when the text is not `address/length` with a valid length
/// for its family; [`IpamError::HostBitsSet`] when the address has bits set past the length.
///
/// ```
/// use underlay::ipam::{parse_prefix, IpamError};
///
/// let subnet = parse_prefix("192.168.136.0/24").unwrap();
/// assert_eq!(subnet.prefix_len(), 24);
///
/// let err = parse_prefix("10.1.0.5/24").unwrap_err();
/// assert!(matches!(err, IpamError::HostBitsSet { .. }));
/// assert!(err.to_string().contains("10.1.0.5/24"));
/// assert!(err.to_string().contains("10.1.0.0/24"));
///
/// let err = parse_prefix("10.1.0.0").unwrap_err();
/// assert!(matches!(err, IpamError::MalformedPrefix { .. }));
/// ```
pub fn parse_prefix(input: &str) -> Result<IpNet, IpamError> {
    let malformed = |reason: String| IpamError::MalformedPrefix {
        input: input.to_owned(),
        reason,
    };
    let Some((address, length)) = input.split_once('/') else {
        return Err(malformed(
            "the prefix length is missing: write address/length, for example 192.168.1.0/24"
                .to_owned(),
        ));
    };
    let address = IpAddr::from_str(address)
        .map_err(|_| malformed(format!("{address:?} is not an IPv4 or IPv6 address")))?;
    let max = IpFamily::of(address).bits();
    let length = length
        .parse::<u8>()
        .ok()
        .filter(|&length| length <= max)
        .ok_or_else(|| {
            malformed(format!(
                "the prefix length must be a number from 0 to {max} for an {} address",
                IpFamily::of(address)
            ))
        })?;
    let prefix = IpNet::new(address, length).map_err(|e| malformed(e.to_string()))?;
    check_no_host_bits(prefix)?;
    Ok(prefix)
}

/// Refuses a prefix whose address has bits set beyond its length.
pub(crate) fn check_no_host_bits(prefix: IpNet) -> Result<(), IpamError> {
    if prefix.addr() == prefix.network() {
        Ok(())
    } else {
        Err(IpamError::HostBitsSet {
            prefix,
            network: prefix.trunc(),
        })
    }
}

/// Parses a plain address (a gateway, an aux address).
pub(crate) fn parse_address(input: &str) -> Result<IpAddr, IpamError> {
    IpAddr::from_str(input).map_err(|_| IpamError::MalformedAddress {
        input: input.to_owned(),
    })
}

/// An address as a number (IPv4 addresses fill the low 32 bits).
pub(crate) fn address_to_u128(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of a family with this number; IPv4 keeps the low 32 bits.
pub(crate) fn u128_to_address(value: u128, family: IpFamily) -> IpAddr {
    match family {
        // Truncation is intended: callers only pass IPv4 numbers below 2^32.
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// The first and last address of a prefix, as numbers.
pub(crate) fn prefix_bounds(prefix: &IpNet) -> (u128, u128) {
    (
        address_to_u128(prefix.network()),
        address_to_u128(prefix.broadcast()),
    )
}

/// Whether two prefixes share at least one address.
pub(crate) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The addresses of a subnet that are never usable by hosts, as offsets
/// from the subnet's first address: the IPv4 network and broadcast addresses
/// and the IPv6 subnet-router anycast address. IPv4 /31 and /32 and IPv6 /127
/// and /128 have none (RFC 3021, RFC 6164).
pub(crate) fn special_offsets(subnet: &IpNet) -> Vec<(u128, Reservation)> {
    let last = host_count_minus_one(subnet);
    match subnet {
        IpNet::V4(net) if net.prefix_len() <= 30 => vec![
            (0, Reservation::NetworkAddress),
            (last, Reservation::BroadcastAddress),
        ],
        IpNet::V6(net) if net.prefix_len() <= 126 => vec![(0, Reservation::SubnetRouterAnycast)],
        _ => Vec::new(),
    }
}

/// The offset of the last address of a prefix (its size minus one).
pub(crate) fn host_count_minus_one(prefix: &IpNet) -> u128 {
    let host_bits = u32::from(prefix.max_prefix_len() - prefix.prefix_len());
    match host_bits {
        0 => 0,
        128 => u128::MAX,
        bits => (1u128 << bits) - 1,
    }
}

/// The first address of a subnet a host may use, if the subnet has at least
/// two usable addresses (so that a gateway taken from it leaves one).
pub(crate) fn first_usable_address(subnet: &IpNet) -> Option<IpAddr> {
    let last = host_count_minus_one(subnet);
    if last == 0 {
        return None;
    }
    let reserved = special_offsets(subnet);
    let offset = (0..=1u128).find(|o| !reserved.iter().any(|(r, _)| r == o))?;
    let family = IpFamily::of_prefix(subnet);
    Some(u128_to_address(
        address_to_u128(subnet.network()) + offset,
        family,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_prefixes_of_both_families() {
        assert_eq!(parse_prefix("192.168.1.0/24"), Ok(net("192.168.1.0/24")));
        assert_eq!(parse_prefix("fd11::/64"), Ok(net("fd11::/64")));
        assert_eq!(parse_prefix("10.0.0.1/32"), Ok(net("10.0.0.1/32")));
    }

    #[test]
    fn host_bits_name_the_prefix_and_the_network_meant() {
        let err = parse_prefix("10.1.100.0/16").unwrap_err();
        assert_eq!(
            err,
            IpamError::HostBitsSet {
                prefix: net("10.1.100.0/16"),
                network: net("10.1.0.0/16"),
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("10.1.100.0/16") && text.contains("10.1.0.0/16"),
            "{text}"
        );
    }

    #[test]
    fn malformed_prefixes_name_the_input() {
        for input in [
            "10.1.0.0",
            "10.1.0.0/33",
            "fd11::/129",
            "foo/24",
            "",
            "10.1.0.0/x",
            "10.1.0/24",
        ] {
            let err = parse_prefix(input).unwrap_err();
            assert!(
                matches!(&err, IpamError::MalformedPrefix { input: i, .. } if i == input),
                "{input}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn special_addresses() {
        assert_eq!(special_offsets(&net("192.168.1.0/24")).len(), 2);
        assert_eq!(
            special_offsets(&net("192.168.1.0/24"))[1],
            (255, Reservation::BroadcastAddress)
        );
        assert!(special_offsets(&net("192.168.1.0/31")).is_empty());
        assert!(special_offsets(&net("192.168.1.1/32")).is_empty());
        assert_eq!(
            special_offsets(&net("fd11::/64")),
            vec![(0, Reservation::SubnetRouterAnycast)]
        );
        assert!(special_offsets(&net("fd11::/127")).is_empty());
    }

    #[test]
    fn first_usable_addresses() {
        let first = |s: &str| first_usable_address(&net(s)).map(|a| a.to_string());
        assert_eq!(first("10.1.100.0/24").as_deref(), Some("10.1.100.1"));
        assert_eq!(first("10.1.100.128/25").as_deref(), Some("10.1.100.129"));
        assert_eq!(first("fd11::/64").as_deref(), Some("fd11::1"));
        assert_eq!(first("10.0.0.0/31").as_deref(), Some("10.0.0.0"));
        assert_eq!(first("10.0.0.0/32"), None);
        assert_eq!(first("fd11::/128"), None);
        assert_eq!(first("fd11::/127").as_deref(), Some("fd11::"));
    }

    #[test]
    fn sizes() {
        assert_eq!(host_count_minus_one(&net("10.0.0.0/8")), (1 << 24) - 1);
        assert_eq!(host_count_minus_one(&net("::/0")), u128::MAX);
        assert_eq!(host_count_minus_one(&net("::1/128")), 0);
    }
}
