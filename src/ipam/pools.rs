//! Subnets across networks: default pools for networks given no subnet,
//! and the overlap check between networks.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::prefix::{
    check_no_host_bits, host_count_minus_one, overlaps, prefix_bounds, u128_to_address,
};
use super::{IpFamily, IpamError};

/// Where networks created without a subnet get one, like Docker's
/// `default-address-pools`.
///
/// Each entry is a base prefix cut into subnets of a size (a prefix length);
/// the first subnet, in entry order, that overlaps nothing in use is taken.
/// The default list is Docker's: `172.17.0.0/16` … `172.31.0.0/16`, then
/// `192.168.0.0/16` cut into /20s. An IPv6 subnet comes from the IPv6 entries
/// if any, else is a unique-local /64 (RFC 4193) from a global ID the caller
/// draws at random.
///
/// Picking costs O(m²) in the number m of prefixes in use, whatever the size
/// of the pools: it jumps past each prefix in use instead of trying every
/// candidate.
///
/// ```
/// use underlay::ipam::DefaultPools;
///
/// let pools = DefaultPools::default();
/// // docker0 holds 172.17.0.0/16, so the first network gets 172.18.0.0/16.
/// let subnet = pools.pick_ipv4(["172.17.0.0/16".parse().unwrap()])?;
/// assert_eq!(subnet.to_string(), "172.18.0.0/16");
/// # Ok::<(), underlay::ipam::IpamError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<DefaultPoolRecord>", into = "Vec<DefaultPoolRecord>")]
pub struct DefaultPools {
    entries: Vec<(IpNet, u8)>,
}

/// The serialized form of one entry, as in Docker's `daemon.json`:
/// `{"base": "172.17.0.0/16", "size": 16}`.
#[derive(Serialize, Deserialize)]
struct DefaultPoolRecord {
    base: IpNet,
    size: u8,
}

impl TryFrom<Vec<DefaultPoolRecord>> for DefaultPools {
    type Error = IpamError;

    fn try_from(records: Vec<DefaultPoolRecord>) -> Result<Self, IpamError> {
        DefaultPools::new(records.into_iter().map(|r| (r.base, r.size)))
    }
}

impl From<DefaultPools> for Vec<DefaultPoolRecord> {
    fn from(pools: DefaultPools) -> Self {
        pools
            .entries
            .into_iter()
            .map(|(base, size)| DefaultPoolRecord { base, size })
            .collect()
    }
}

impl Default for DefaultPools {
    fn default() -> Self {
        let mut entries: Vec<(IpNet, u8)> = (17..=31u8)
            .map(|second| {
                (
                    IpNet::V4(ipnet::Ipv4Net::new_assert([172, second, 0, 0].into(), 16)),
                    16,
                )
            })
            .collect();
        entries.push((
            IpNet::V4(ipnet::Ipv4Net::new_assert([192, 168, 0, 0].into(), 16)),
            20,
        ));
        DefaultPools { entries }
    }
}

impl DefaultPools {
    /// Pools from (base, size) entries of either family, tried in order.
    ///
    /// Refuses a base with host bits set and a size that is not a prefix
    /// length between the base's own and the family's maximum (and at least
    /// 1).
    ///
    /// # Errors
    /// [`IpamError::HostBitsSet`] for a base with host bits set;
    /// [`IpamError::InvalidDefaultPool`] for a size of 0, below the base's prefix length or
    /// beyond the family's maximum.
    ///
    /// ```
    /// use underlay::ipam::{DefaultPools, IpamError};
    ///
    /// let pools = DefaultPools::new([("10.10.0.0/16".parse().unwrap(), 24)])?;
    /// assert_eq!(pools.pick_ipv4([])?.to_string(), "10.10.0.0/24");
    ///
    /// let err = DefaultPools::new([("10.10.0.0/16".parse().unwrap(), 8)]).unwrap_err();
    /// assert!(matches!(err, IpamError::InvalidDefaultPool { .. }));
    /// # Ok::<(), IpamError>(())
    /// ```
    pub fn new(entries: impl IntoIterator<Item = (IpNet, u8)>) -> Result<DefaultPools, IpamError> {
        let entries: Vec<(IpNet, u8)> = entries.into_iter().collect();
        for &(base, size) in &entries {
            check_no_host_bits(base)?;
            if size < base.prefix_len() || size > base.max_prefix_len() || size == 0 {
                return Err(IpamError::InvalidDefaultPool { base, size });
            }
        }
        Ok(DefaultPools { entries })
    }

    /// The (base, size) entries, in order.
    ///
    /// ```
    /// use underlay::ipam::DefaultPools;
    ///
    /// let pools = DefaultPools::default();
    /// let (base, size) = pools.entries().last().unwrap();
    /// assert_eq!((base.to_string(), size), ("192.168.0.0/16".to_string(), 20));
    /// ```
    pub fn entries(&self) -> impl Iterator<Item = (IpNet, u8)> + '_ {
        self.entries.iter().copied()
    }

    /// The first IPv4 subnet of the pools that overlaps none of `in_use`:
    /// pass the subnets of every existing network and the prefixes in use on
    /// the host (its addresses' subnets and on-link routes, not the default
    /// route, which overlaps everything).
    ///
    /// # Errors
    /// [`IpamError::DefaultPoolsExhausted`] when every IPv4 pool subnet overlaps `in_use` (or
    /// there are no IPv4 entries).
    ///
    /// ```
    /// use underlay::ipam::DefaultPools;
    ///
    /// let pools = DefaultPools::default();
    /// assert_eq!(pools.pick_ipv4([])?.to_string(), "172.17.0.0/16");
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn pick_ipv4(&self, in_use: impl IntoIterator<Item = IpNet>) -> Result<IpNet, IpamError> {
        let in_use: Vec<IpNet> = in_use.into_iter().collect();
        self.entries_of(IpFamily::V4)
            .find_map(|(base, size)| first_free_subnet(base, size, &in_use))
            .ok_or(IpamError::DefaultPoolsExhausted {
                family: IpFamily::V4,
            })
    }

    /// An IPv6 subnet that overlaps none of `in_use`: the first free one of
    /// the IPv6 entries, if any; else a unique-local /64 (RFC 4193),
    /// `fdXX:XXXX:XXXX:YYYY::/64`, whose 40-bit global ID `XX:XXXX:XXXX` is
    /// `global_id` and whose subnet ID `YYYY` is the lowest free one.
    ///
    /// Draw `global_id` at random (for example from `getrandom`) when the
    /// network is created, and store the subnet in its configuration.
    ///
    /// # Errors
    /// [`IpamError::DefaultPoolsExhausted`] when every subnet of the IPv6 entries and every /64
    /// of the unique-local /48 overlaps `in_use`.
    ///
    /// ```
    /// use underlay::ipam::DefaultPools;
    ///
    /// let pools = DefaultPools::default();
    /// let global_id = [0x3a, 0x91, 0x07, 0xc2, 0x5e];
    /// let subnet = pools.pick_ipv6(global_id, [])?;
    /// assert_eq!(subnet.to_string(), "fd3a:9107:c25e::/64");
    /// let next = pools.pick_ipv6(global_id, [subnet])?;
    /// assert_eq!(next.to_string(), "fd3a:9107:c25e:1::/64");
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn pick_ipv6(
        &self,
        global_id: [u8; 5],
        in_use: impl IntoIterator<Item = IpNet>,
    ) -> Result<IpNet, IpamError> {
        let in_use: Vec<IpNet> = in_use.into_iter().collect();
        let mut prefix = [0u8; 16];
        prefix[0] = 0xfd;
        prefix[1..6].copy_from_slice(&global_id);
        let unique_local = IpNet::V6(ipnet::Ipv6Net::new_assert(prefix.into(), 48));
        self.entries_of(IpFamily::V6)
            .chain([(unique_local, 64)])
            .find_map(|(base, size)| first_free_subnet(base, size, &in_use))
            .ok_or(IpamError::DefaultPoolsExhausted {
                family: IpFamily::V6,
            })
    }

    fn entries_of(&self, family: IpFamily) -> impl Iterator<Item = (IpNet, u8)> + '_ {
        self.entries()
            .filter(move |(base, _)| IpFamily::of_prefix(base) == family)
    }
}

/// The first `/size` subnet of `base` that overlaps none of `in_use`.
fn first_free_subnet(base: IpNet, size: u8, in_use: &[IpNet]) -> Option<IpNet> {
    let family = IpFamily::of_prefix(&base);
    let (_, base_last) = prefix_bounds(&base);
    // A /size subnet of this family spans `step_minus_one + 1` addresses.
    let sized = IpNet::new(base.network(), size).ok()?;
    let step_minus_one = host_count_minus_one(&sized);
    let mut start = prefix_bounds(&base).0;
    loop {
        let end = start + step_minus_one;
        let candidate = IpNet::new(u128_to_address(start, family), size).ok()?;
        let Some(blocker) = in_use
            .iter()
            .filter(|p| overlaps(p, &candidate))
            .map(|p| prefix_bounds(p).1)
            .max()
        else {
            return Some(candidate);
        };
        // Jump to the first aligned subnet past the prefix in the way.
        let past = blocker.max(end).checked_add(1)?;
        start = past.checked_add(step_minus_one)? & !step_minus_one;
        if start > base_last {
            return None;
        }
    }
}

/// Checks a new network's subnets against those of existing networks.
///
/// `existing` yields each network's name and subnets. The error names the
/// first existing network with an overlapping subnet
/// ([`IpamError::SubnetInUse`]).
///
/// # Errors
/// [`IpamError::SubnetInUse`] naming the first existing network, and both subnets, that
/// overlap.
///
/// ```
/// use underlay::ipam::{check_overlap, IpamError, NetworkIpamConfig};
///
/// let mcv101 = NetworkIpamConfig::from_docker_lists(
///     &["10.1.20.0/24", "10.1.10.0/24"], &[], &[], &[],
/// )?;
/// let new = NetworkIpamConfig::from_docker_lists(&["10.1.0.0/16"], &[], &[], &[])?;
///
/// let err = check_overlap(new.prefixes(), [("mcv101", mcv101.prefixes())]).unwrap_err();
/// assert!(matches!(&err, IpamError::SubnetInUse { network, .. } if network == "mcv101"));
/// assert!(err.to_string().contains("mcv101"));
/// # Ok::<(), IpamError>(())
/// ```
pub fn check_overlap<N, S>(
    subnets: impl IntoIterator<Item = IpNet>,
    existing: impl IntoIterator<Item = (N, S)>,
) -> Result<(), IpamError>
where
    N: AsRef<str>,
    S: IntoIterator<Item = IpNet>,
{
    let subnets: Vec<IpNet> = subnets.into_iter().collect();
    for (network, their_subnets) in existing {
        for theirs in their_subnets {
            if let Some(ours) = subnets.iter().find(|ours| overlaps(ours, &theirs)) {
                return Err(IpamError::SubnetInUse {
                    subnet: *ours,
                    network: network.as_ref().to_owned(),
                    existing: theirs,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn default_list_is_dockers() {
        let pools = DefaultPools::default();
        let entries: Vec<_> = pools.entries().map(|(b, s)| format!("{b}:{s}")).collect();
        assert_eq!(entries.len(), 16);
        assert_eq!(entries[0], "172.17.0.0/16:16");
        assert_eq!(entries[14], "172.31.0.0/16:16");
        assert_eq!(entries[15], "192.168.0.0/16:20");
    }

    #[test]
    fn first_free_default_subnet_skips_overlaps() {
        let pools = DefaultPools::default();
        assert_eq!(pools.pick_ipv4([]), Ok(net("172.17.0.0/16")));
        // The seed's v6ipvlan139 got 172.18.0.0/16 because docker0 holds 172.17.
        assert_eq!(
            pools.pick_ipv4([net("172.17.0.0/16")]),
            Ok(net("172.18.0.0/16"))
        );
        // A host route inside a pool rules the pool out.
        assert_eq!(
            pools.pick_ipv4([net("172.17.0.0/16"), net("172.18.3.0/24")]),
            Ok(net("172.19.0.0/16"))
        );
        // A wide prefix in use covers many pools at once.
        let all_172 = net("172.16.0.0/12");
        assert_eq!(pools.pick_ipv4([all_172]), Ok(net("192.168.0.0/20")));
        assert_eq!(
            pools.pick_ipv4([all_172, net("192.168.1.0/24")]),
            Ok(net("192.168.16.0/20"))
        );
        assert_eq!(
            pools.pick_ipv4([all_172, net("192.168.0.0/20"), net("192.168.16.0/20")]),
            Ok(net("192.168.32.0/20"))
        );
        // IPv6 prefixes in use do not matter to IPv4.
        assert_eq!(pools.pick_ipv4([net("::/1")]), Ok(net("172.17.0.0/16")));
    }

    #[test]
    fn default_pools_exhausted() {
        let pools = DefaultPools::default();
        let err = pools
            .pick_ipv4([net("172.16.0.0/12"), net("192.168.0.0/16")])
            .unwrap_err();
        assert_eq!(
            err,
            IpamError::DefaultPoolsExhausted {
                family: IpFamily::V4
            }
        );
        assert!(err.to_string().contains("IPv4"));
        assert!(pools
            .pick_ipv4([net("0.0.0.0/1"), net("128.0.0.0/1")])
            .is_err());
    }

    #[test]
    fn custom_pools_and_big_bases() {
        let pools = DefaultPools::new([(net("10.0.0.0/8"), 24), (net("fd00:1::/48"), 64)]).unwrap();
        // 65536 candidates, but the jump makes it a handful of steps.
        let in_use = [
            net("10.0.0.0/9"),
            net("10.128.0.0/24"),
            net("10.128.1.0/25"),
        ];
        assert_eq!(pools.pick_ipv4(in_use), Ok(net("10.128.2.0/24")));
        assert_eq!(pools.pick_ipv6([1, 2, 3, 4, 5], []), Ok(net("fd00:1::/64")));
        assert_eq!(
            pools.pick_ipv6([1, 2, 3, 4, 5], [net("fd00:1::/56")]),
            Ok(net("fd00:1:0:100::/64"))
        );
        // Exhausted IPv6 entries fall back to the unique-local prefix.
        assert_eq!(
            pools.pick_ipv6([1, 2, 3, 4, 5], [net("fd00:1::/48")]),
            Ok(net("fd01:203:405::/64"))
        );
    }

    #[test]
    fn unique_local_skips_overlaps() {
        let pools = DefaultPools::default();
        let id = [0xab, 0xcd, 0xef, 0x01, 0x23];
        assert_eq!(pools.pick_ipv6(id, []), Ok(net("fdab:cdef:123::/64")));
        assert_eq!(
            pools.pick_ipv6(id, [net("fdab:cdef:123::/63")]),
            Ok(net("fdab:cdef:123:2::/64"))
        );
        let err = pools.pick_ipv6(id, [net("fd00::/8")]).unwrap_err();
        assert_eq!(
            err,
            IpamError::DefaultPoolsExhausted {
                family: IpFamily::V6
            }
        );
    }

    #[test]
    fn invalid_entries() {
        for (base, size) in [
            ("10.0.0.0/16", 8),
            ("10.0.0.0/16", 33),
            ("fd00::/48", 129),
            ("0.0.0.0/0", 0),
        ] {
            let err = DefaultPools::new([(net(base), size)]).unwrap_err();
            assert_eq!(
                err,
                IpamError::InvalidDefaultPool {
                    base: net(base),
                    size
                }
            );
            assert!(err.to_string().contains(base), "{err}");
        }
        assert!(matches!(
            DefaultPools::new([(net("10.0.0.1/16"), 24)]),
            Err(IpamError::HostBitsSet { .. })
        ));
        // A /0 base cut into /1s is fine.
        let whole = DefaultPools::new([(net("0.0.0.0/0"), 1)]).unwrap();
        assert_eq!(whole.pick_ipv4([net("10.0.0.0/8")]), Ok(net("128.0.0.0/1")));
    }

    #[test]
    fn serde_uses_dockers_shape() {
        let pools = DefaultPools::new([(net("10.10.0.0/16"), 24)]).unwrap();
        let json = serde_json::to_string(&pools).unwrap();
        assert_eq!(json, r#"[{"base":"10.10.0.0/16","size":24}]"#);
        assert_eq!(serde_json::from_str::<DefaultPools>(&json).unwrap(), pools);
        assert!(
            serde_json::from_str::<DefaultPools>(r#"[{"base":"10.10.0.0/16","size":8}]"#).is_err()
        );
    }

    #[test]
    fn overlap_across_networks_names_the_network() {
        let existing = [
            ("db_net", vec![net("192.168.1.0/24")]),
            ("mcv0", vec![net("192.168.136.0/24"), net("fd11::/64")]),
        ];
        assert_eq!(
            check_overlap([net("192.168.2.0/24")], existing.clone()),
            Ok(())
        );
        let err =
            check_overlap([net("192.168.2.0/24"), net("fd11::/48")], existing.clone()).unwrap_err();
        assert_eq!(
            err,
            IpamError::SubnetInUse {
                subnet: net("fd11::/48"),
                network: "mcv0".into(),
                existing: net("fd11::/64"),
            }
        );
        let text = err.to_string();
        assert!(text.contains("mcv0") && text.contains("fd11::/48") && text.contains("fd11::/64"));
        assert!(check_overlap([net("192.168.0.0/16")], existing).is_err());
    }
}
