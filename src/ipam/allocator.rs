//! The address allocator of one network.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::holders::HolderMap;
use super::prefix::{address_to_u128, prefix_bounds, special_offsets, u128_to_address};
use super::range_set::RangeSet;
use super::{IpFamily, IpamError, NetworkIpamConfig, Reservation, SubnetConfig};

/// How dynamic allocation picks the next address.
///
/// ```
/// use underlay::ipam::AllocationPolicy;
///
/// assert_eq!(AllocationPolicy::default(), AllocationPolicy::LowestFree);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AllocationPolicy {
    /// The lowest free address from the start of the ip-range (or subnet),
    /// trying the subnets of the family in configuration order. This is
    /// what Docker's default IPAM does.
    #[default]
    LowestFree,
    /// Round robin: the lowest free address after the last one handed out,
    /// moving on through the subnets of the family and wrapping around to
    /// the start, like CNI's host-local. A released address is reused only
    /// once the cursor comes round again. The cursor is exposed
    /// ([`Ipam::serial_cursor`]) so the owner can persist it.
    Serial,
}

/// An address handed out, with what the endpoint needs to configure it.
///
/// ```
/// use underlay::ipam::{IpFamily, Ipam, NetworkIpamConfig};
///
/// let mut config = NetworkIpamConfig::from_docker_lists(&["192.168.1.0/24"], &[], &[], &[])?;
/// config.infer_gateways();
/// let mut ipam = Ipam::new("db_net", &config, Default::default());
/// let allocation = ipam.allocate(IpFamily::V4, 1)?;
/// assert_eq!(allocation.address().to_string(), "192.168.1.2/24");
/// assert_eq!(allocation.gateway(), Some("192.168.1.1".parse().unwrap()));
/// # Ok::<(), underlay::ipam::IpamError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Allocation {
    address: IpNet,
    gateway: Option<IpAddr>,
    holder: u64,
}

impl Allocation {
    /// An address the network's caller assigned (a CNI IPAM plugin's), on a
    /// network with no address management of its own.
    pub(crate) fn assigned(address: IpNet, gateway: Option<IpAddr>, holder: u64) -> Self {
        Allocation {
            address,
            gateway,
            holder,
        }
    }

    /// The address with the prefix length of its subnet, as it is added to
    /// the interface (`192.168.136.3/24`).
    ///
    /// ```
    /// # use underlay::ipam::{IpFamily, Ipam, NetworkIpamConfig};
    /// # let config = NetworkIpamConfig::from_docker_lists(&["fd11::/64"], &[], &[], &[])?;
    /// # let mut ipam = Ipam::new("n", &config, Default::default());
    /// let allocation = ipam.allocate(IpFamily::V6, 1)?;
    /// assert_eq!(allocation.address().to_string(), "fd11::1/64");
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn address(&self) -> IpNet {
        self.address
    }

    /// The bare address.
    ///
    /// ```
    /// # use underlay::ipam::{IpFamily, Ipam, NetworkIpamConfig};
    /// # let config = NetworkIpamConfig::from_docker_lists(&["fd11::/64"], &[], &[], &[])?;
    /// # let mut ipam = Ipam::new("n", &config, Default::default());
    /// let allocation = ipam.allocate(IpFamily::V6, 1)?;
    /// assert_eq!(allocation.ip(), "fd11::1".parse::<std::net::IpAddr>().unwrap());
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn ip(&self) -> IpAddr {
        self.address.addr()
    }

    /// The subnet the address came from.
    ///
    /// ```
    /// # use underlay::ipam::{IpFamily, Ipam, NetworkIpamConfig};
    /// # let config = NetworkIpamConfig::from_docker_lists(&["fd11::/64"], &[], &[], &[])?;
    /// # let mut ipam = Ipam::new("n", &config, Default::default());
    /// let allocation = ipam.allocate(IpFamily::V6, 1)?;
    /// assert_eq!(allocation.subnet().to_string(), "fd11::/64");
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn subnet(&self) -> IpNet {
        self.address.trunc()
    }

    /// The gateway of the subnet the address came from, if it has one: the
    /// next hop of the endpoint's default route.
    ///
    /// ```
    /// # use underlay::ipam::{IpFamily, Ipam, NetworkIpamConfig};
    /// # let config = NetworkIpamConfig::from_docker_lists(&["fd11::/64"], &[], &[], &[])?;
    /// # let mut ipam = Ipam::new("n", &config, Default::default());
    /// // No gateway was given or inferred.
    /// assert_eq!(ipam.allocate(IpFamily::V6, 1)?.gateway(), None);
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn gateway(&self) -> Option<IpAddr> {
        self.gateway
    }

    /// Who holds the address: the id the caller passed when allocating.
    ///
    /// ```
    /// # use underlay::ipam::{IpFamily, Ipam, NetworkIpamConfig};
    /// # let config = NetworkIpamConfig::from_docker_lists(&["fd11::/64"], &[], &[], &[])?;
    /// # let mut ipam = Ipam::new("n", &config, Default::default());
    /// assert_eq!(ipam.allocate(IpFamily::V6, 42)?.holder(), 42);
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn holder(&self) -> u64 {
        self.holder
    }
}

/// The allocation state of one subnet.
#[derive(Debug, Clone)]
struct SubnetPool {
    subnet: IpNet,
    family: IpFamily,
    /// The subnet's first address as a number; offsets count from it.
    base: u128,
    /// What dynamic allocation draws from (ip-range or subnet).
    range: IpNet,
    range_first: u128,
    range_last: u128,
    gateway: Option<IpAddr>,
    /// Reserved offsets and why, sorted by offset, one entry per offset.
    reserved: Vec<(u128, Reservation)>,
    /// Reserved and allocated offsets.
    occupied: RangeSet,
    /// Allocated offsets and their holders.
    holders: HolderMap,
}

impl SubnetPool {
    fn new(config: &SubnetConfig) -> SubnetPool {
        let subnet = config.subnet();
        let (base, _) = prefix_bounds(&subnet);
        let range = config.allocation_range();
        let (first, last) = prefix_bounds(&range);
        let mut reserved = special_offsets(&subnet);
        if let Some(gateway) = config.gateway() {
            reserved.push((address_to_u128(gateway) - base, Reservation::Gateway));
        }
        for (name, address) in config.aux_addresses() {
            reserved.push((
                address_to_u128(address) - base,
                Reservation::AuxAddress {
                    name: name.to_owned(),
                },
            ));
        }
        // Stable: the first reason given for an offset is the one reported.
        reserved.sort_by_key(|(offset, _)| *offset);
        reserved.dedup_by_key(|(offset, _)| *offset);
        let mut occupied = RangeSet::default();
        for (offset, _) in &reserved {
            occupied.insert(*offset);
        }
        SubnetPool {
            subnet,
            family: config.family(),
            base,
            range,
            range_first: first - base,
            range_last: last - base,
            gateway: config.gateway(),
            reserved,
            occupied,
            holders: HolderMap::default(),
        }
    }

    fn offset_of(&self, address: IpAddr) -> Option<u128> {
        self.subnet
            .contains(&address)
            .then(|| address_to_u128(address) - self.base)
    }

    fn address_at(&self, offset: u128) -> IpAddr {
        u128_to_address(self.base + offset, self.family)
    }

    fn reservation(&self, offset: u128) -> Option<&Reservation> {
        self.reserved
            .binary_search_by_key(&offset, |(o, _)| *o)
            .ok()
            .map(|i| &self.reserved[i].1)
    }

    fn allocation(&self, offset: u128, holder: u64) -> Allocation {
        Allocation {
            // The prefix length is the subnet's own, so it is valid.
            address: IpNet::new(self.address_at(offset), self.subnet.prefix_len())
                .unwrap_or(self.subnet),
            gateway: self.gateway,
            holder,
        }
    }

    /// The lowest free offset of the allocation range within `low..=high`.
    fn first_free(&self, low: u128, high: u128) -> Option<u128> {
        self.occupied
            .first_absent(low.max(self.range_first), high.min(self.range_last))
    }

    fn take(&mut self, offset: u128, holder: u64) -> Allocation {
        self.occupied.insert(offset);
        self.holders.insert(offset, holder);
        self.allocation(offset, holder)
    }
}

/// The address allocator of one network.
///
/// Built from a [`NetworkIpamConfig`], it hands out addresses dynamically
/// ([`allocate`](Ipam::allocate)) or on request ([`request`](Ipam::request)),
/// records a caller-chosen `u64` holder for each, and takes them back
/// ([`release`](Ipam::release)). It never hands out an IPv4 network or
/// broadcast address (except in /31 and /32), an IPv6 subnet-router anycast
/// address (except in /127 and /128), a gateway, an aux address or an address
/// already taken. Allocating, requesting, releasing and looking up cost
/// O(log n) in the number n of allocations (and linear in the number of
/// subnets, a handful); memory grows with the allocations, not the pool size.
///
/// The network name only appears in error messages.
///
/// ```
/// use underlay::ipam::{IpFamily, Ipam, NetworkIpamConfig};
///
/// // docker network create -d ipvlan --subnet=2001:db8:abc2::/64 --gateway=2001:db8:abc2::22
/// let config = NetworkIpamConfig::from_docker_lists(
///     &["2001:db8:abc2::/64"], &["2001:db8:abc2::22"], &[], &[],
/// )?;
/// let mut ipam = Ipam::new("v6ipvlan139", &config, Default::default());
/// let first = ipam.allocate(IpFamily::V6, 1)?;
/// let second = ipam.allocate(IpFamily::V6, 2)?;
/// assert_eq!(first.address().to_string(), "2001:db8:abc2::1/64");
/// assert_eq!(second.address().to_string(), "2001:db8:abc2::2/64");
/// assert_eq!(second.gateway().unwrap().to_string(), "2001:db8:abc2::22");
/// # Ok::<(), underlay::ipam::IpamError>(())
/// ```
#[derive(Clone)]
pub struct Ipam {
    network: String,
    policy: AllocationPolicy,
    pools: Vec<SubnetPool>,
    /// Per family (IPv4, IPv6): indices of its pools, in configuration order.
    family_pools: [Vec<usize>; 2],
    /// Per family (IPv4, IPv6): the pool and offset last handed out
    /// dynamically.
    cursors: [Option<(usize, u128)>; 2],
    len: usize,
}

impl fmt::Debug for Ipam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subnets: Vec<IpNet> = self.pools.iter().map(|p| p.subnet).collect();
        f.debug_struct("Ipam")
            .field("network", &self.network)
            .field("policy", &self.policy)
            .field("subnets", &subnets)
            .field("allocated", &self.len)
            .finish()
    }
}

impl Ipam {
    /// An allocator for the network named `network` (used in error
    /// messages), with nothing allocated.
    ///
    /// ```
    /// use underlay::ipam::{AllocationPolicy, Ipam, NetworkIpamConfig};
    ///
    /// let config = NetworkIpamConfig::from_docker_lists(&["10.1.20.0/24"], &[], &[], &[])?;
    /// let ipam = Ipam::new("mcv101", &config, AllocationPolicy::Serial);
    /// assert_eq!(ipam.network(), "mcv101");
    /// assert!(ipam.is_empty());
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn new(
        network: impl Into<String>,
        config: &NetworkIpamConfig,
        policy: AllocationPolicy,
    ) -> Ipam {
        let pools: Vec<SubnetPool> = config.subnets().iter().map(SubnetPool::new).collect();
        let indices_of = |family| {
            (0..pools.len())
                .filter(|&i| pools[i].family == family)
                .collect()
        };
        let family_pools = [indices_of(IpFamily::V4), indices_of(IpFamily::V6)];
        Ipam {
            network: network.into(),
            policy,
            pools,
            family_pools,
            cursors: [None, None],
            len: 0,
        }
    }

    /// The network's name.
    ///
    /// ```
    /// # use underlay::ipam::{Ipam, NetworkIpamConfig};
    /// let ipam = Ipam::new("pub_net", &NetworkIpamConfig::default(), Default::default());
    /// assert_eq!(ipam.network(), "pub_net");
    /// ```
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The allocation policy.
    ///
    /// ```
    /// # use underlay::ipam::{AllocationPolicy, Ipam, NetworkIpamConfig};
    /// let ipam = Ipam::new("n", &NetworkIpamConfig::default(), AllocationPolicy::Serial);
    /// assert_eq!(ipam.policy(), AllocationPolicy::Serial);
    /// ```
    pub fn policy(&self) -> AllocationPolicy {
        self.policy
    }

    /// The number of addresses allocated (reserved ones not counted).
    ///
    /// ```
    /// # use underlay::ipam::{IpFamily, Ipam, NetworkIpamConfig};
    /// # let config = NetworkIpamConfig::from_docker_lists(&["10.0.0.0/24"], &[], &[], &[])?;
    /// let mut ipam = Ipam::new("n", &config, Default::default());
    /// ipam.allocate(IpFamily::V4, 1)?;
    /// assert_eq!(ipam.len(), 1);
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is allocated.
    ///
    /// ```
    /// # use underlay::ipam::{Ipam, NetworkIpamConfig};
    /// assert!(Ipam::new("n", &NetworkIpamConfig::default(), Default::default()).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Like [`allocate`](Self::allocate), but searching from a point of
    /// the family's first range chosen by `seed` (wrapping around, then the
    /// other ranges): hosts that share a network and each allocate from
    /// their own seed rarely propose the same address.
    ///
    /// ```
    /// # use underlay::ipam::{AllocationPolicy, IpFamily, Ipam, NetworkIpamConfig};
    /// let config = NetworkIpamConfig::from_docker_lists(&["10.0.0.0/24"], &[], &[], &[])?;
    /// let mut a = Ipam::new("shared", &config, AllocationPolicy::LowestFree);
    /// let mut b = Ipam::new("shared", &config, AllocationPolicy::LowestFree);
    /// let x = a.allocate_spread(IpFamily::V4, 1, 7)?.ip();
    /// let y = b.allocate_spread(IpFamily::V4, 1, 130)?.ip();
    /// assert_ne!(x, y);
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    ///
    /// # Errors
    /// As [`allocate`](Self::allocate).
    pub fn allocate_spread(
        &mut self,
        family: IpFamily,
        holder: u64,
        seed: u64,
    ) -> Result<Allocation, IpamError> {
        let order = self.family_pools[family.index()].clone();
        let Some(&first) = order.first() else {
            return self.allocate(family, holder);
        };
        let pool = &self.pools[first];
        // A range of 2^128 addresses (::/0) has no size in a u128: any
        // start is fine then.
        let start = match (pool.range_last - pool.range_first).checked_add(1) {
            Some(size) => pool.range_first + u128::from(seed) % size,
            None => u128::from(seed),
        };
        let found = pool
            .first_free(start, pool.range_last)
            .or_else(|| pool.first_free(pool.range_first, start));
        match found {
            Some(offset) => {
                self.len += 1;
                Ok(self.pools[first].take(offset, holder))
            }
            None => self.allocate(family, holder),
        }
    }

    /// Hands out a free address of `family` to `holder`, following the
    /// policy: from the ip-range of each subnet (or the whole subnet), trying
    /// subnets in configuration order. On error nothing changes.
    ///
    /// # Errors
    /// [`IpamError::NoSubnet`] when the network has no subnet of the family;
    /// [`IpamError::Exhausted`] when every address it may hand out is taken.
    ///
    /// ```
    /// use underlay::ipam::{IpFamily, Ipam, NetworkIpamConfig};
    ///
    /// // docker network create -d macvlan --subnet=192.168.32.0/24
    /// //   --ip-range=192.168.32.128/25 --gateway=192.168.32.254 macnet32
    /// let config = NetworkIpamConfig::from_docker_lists(
    ///     &["192.168.32.0/24"], &["192.168.32.254"], &["192.168.32.128/25"], &[],
    /// )?;
    /// let mut ipam = Ipam::new("macnet32", &config, Default::default());
    /// let allocation = ipam.allocate(IpFamily::V4, 1)?;
    /// assert_eq!(allocation.ip().to_string(), "192.168.32.128");
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn allocate(&mut self, family: IpFamily, holder: u64) -> Result<Allocation, IpamError> {
        let order = &self.family_pools[family.index()];
        if order.is_empty() {
            return Err(IpamError::NoSubnet {
                network: self.network.clone(),
                family,
            });
        }
        let found = match (self.policy, self.cursors[family.index()]) {
            (AllocationPolicy::Serial, Some(cursor)) => self.find_after(order, cursor),
            _ => order.iter().find_map(|&i| {
                let pool = &self.pools[i];
                pool.first_free(pool.range_first, pool.range_last)
                    .map(|offset| (i, offset))
            }),
        };
        let Some((index, offset)) = found else {
            return Err(IpamError::Exhausted {
                network: self.network.clone(),
                family,
                pools: order.iter().map(|&i| self.pools[i].range).collect(),
            });
        };
        self.cursors[family.index()] = Some((index, offset));
        self.len += 1;
        Ok(self.pools[index].take(offset, holder))
    }

    /// The first free (pool, offset) after `cursor`, going round the pools
    /// of `order` once and ending at the cursor itself.
    fn find_after(&self, order: &[usize], (pool, offset): (usize, u128)) -> Option<(usize, u128)> {
        let start = order.iter().position(|&i| i == pool).unwrap_or(0);
        (0..=order.len()).find_map(|step| {
            let index = order[(start + step) % order.len()];
            let candidate = &self.pools[index];
            let low = if step == 0 { offset.checked_add(1)? } else { 0 };
            let high = if step == order.len() {
                offset
            } else {
                u128::MAX
            };
            candidate.first_free(low, high).map(|found| (index, found))
        })
    }

    /// Hands a specific address to `holder`: `docker run --ip` / `--ip6`,
    /// and how the state is rebuilt at load.
    ///
    /// The address must lie in a subnet of the network; it may be outside
    /// the ip-range. On error nothing changes.
    ///
    /// # Errors
    /// [`IpamError::AddressOutsideSubnets`] when it is in no subnet; [`IpamError::AddressReserved`]
    /// for a network, broadcast, anycast, gateway or aux address; [`IpamError::AddressInUse`]
    /// naming the holder when it is allocated already.
    ///
    /// ```
    /// use underlay::ipam::{Ipam, IpamError, NetworkIpamConfig};
    ///
    /// let config = NetworkIpamConfig::from_docker_lists(
    ///     &["172.16.86.0/24"], &["172.16.86.1"], &[], &["exclude_host=172.16.86.250"],
    /// )?;
    /// let mut ipam = Ipam::new("pub_net", &config, Default::default());
    /// let allocation = ipam.request("172.16.86.10".parse().unwrap(), 1)?;
    /// assert_eq!(allocation.address().to_string(), "172.16.86.10/24");
    ///
    /// let err = ipam.request("172.16.86.250".parse().unwrap(), 2).unwrap_err();
    /// assert!(matches!(err, IpamError::AddressReserved { .. }));
    /// # Ok::<(), IpamError>(())
    /// ```
    pub fn request(&mut self, address: IpAddr, holder: u64) -> Result<Allocation, IpamError> {
        let (index, offset) = self.locate(address)?;
        let pool = &self.pools[index];
        if let Some(reservation) = pool.reservation(offset) {
            return Err(IpamError::AddressReserved {
                network: self.network.clone(),
                address,
                subnet: pool.subnet,
                reservation: reservation.clone(),
            });
        }
        if let Some(current) = pool.holders.get(offset) {
            return Err(IpamError::AddressInUse {
                network: self.network.clone(),
                address,
                holder: current,
            });
        }
        self.len += 1;
        Ok(self.pools[index].take(offset, holder))
    }

    /// Takes an address back. Returns the holder it had, or `None` if it was
    /// not allocated (free, reserved or outside every subnet): releasing
    /// twice is not an error. The address can be requested again at once.
    ///
    /// ```
    /// # use underlay::ipam::{Ipam, NetworkIpamConfig};
    /// # let config = NetworkIpamConfig::from_docker_lists(&["2001:db8:abc6::/64"], &[], &[], &[])?;
    /// let mut ipam = Ipam::new("ipnet110", &config, Default::default());
    /// let address = "2001:db8:abc6::10".parse().unwrap();
    /// ipam.request(address, 1)?;
    /// assert_eq!(ipam.release(address), Some(1));
    /// assert_eq!(ipam.release(address), None);
    /// ipam.request(address, 2)?;
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn release(&mut self, address: IpAddr) -> Option<u64> {
        let (index, offset) = self.locate(address).ok()?;
        let pool = &mut self.pools[index];
        let holder = pool.holders.remove(offset)?;
        pool.occupied.remove(offset);
        self.len -= 1;
        Some(holder)
    }

    /// The holder of an address, if it is allocated.
    ///
    /// ```
    /// # use underlay::ipam::{Ipam, NetworkIpamConfig};
    /// # let config = NetworkIpamConfig::from_docker_lists(&["10.1.20.0/24"], &[], &[], &[])?;
    /// let mut ipam = Ipam::new("mcv101", &config, Default::default());
    /// ipam.request("10.1.20.9".parse().unwrap(), 5)?;
    /// assert_eq!(ipam.holder("10.1.20.9".parse().unwrap()), Some(5));
    /// assert_eq!(ipam.holder("10.1.20.10".parse().unwrap()), None);
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn holder(&self, address: IpAddr) -> Option<u64> {
        let (index, offset) = self.locate(address).ok()?;
        self.pools[index].holders.get(offset)
    }

    /// Every allocation: subnets in configuration order, addresses in
    /// ascending order within each.
    ///
    /// ```
    /// # use underlay::ipam::{IpFamily, Ipam, NetworkIpamConfig};
    /// # let config = NetworkIpamConfig::from_docker_lists(&["10.1.20.0/24"], &[], &[], &[])?;
    /// let mut ipam = Ipam::new("mcv101", &config, Default::default());
    /// ipam.request("10.1.20.9".parse().unwrap(), 5)?;
    /// ipam.allocate(IpFamily::V4, 6)?;
    /// let held: Vec<(String, u64)> =
    ///     ipam.allocations().map(|a| (a.ip().to_string(), a.holder())).collect();
    /// assert_eq!(held, [("10.1.20.1".to_string(), 6), ("10.1.20.9".to_string(), 5)]);
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn allocations(&self) -> impl Iterator<Item = Allocation> + '_ {
        self.pools.iter().flat_map(|pool| {
            pool.holders
                .iter()
                .map(move |(offset, holder)| pool.allocation(offset, holder))
        })
    }

    /// The serial cursor of a family: the last address handed out by
    /// [`allocate`](Ipam::allocate) (or set with
    /// [`set_serial_cursor`](Ipam::set_serial_cursor)). Persist it to resume
    /// round robin where it stopped.
    ///
    /// ```
    /// # use underlay::ipam::{IpFamily, AllocationPolicy, Ipam, NetworkIpamConfig};
    /// # let config = NetworkIpamConfig::from_docker_lists(&["10.1.20.0/24"], &[], &[], &[])?;
    /// let mut ipam = Ipam::new("n", &config, AllocationPolicy::Serial);
    /// assert_eq!(ipam.serial_cursor(IpFamily::V4), None);
    /// ipam.allocate(IpFamily::V4, 1)?;
    /// assert_eq!(ipam.serial_cursor(IpFamily::V4), Some("10.1.20.1".parse().unwrap()));
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn serial_cursor(&self, family: IpFamily) -> Option<IpAddr> {
        self.cursors[family.index()].map(|(index, offset)| self.pools[index].address_at(offset))
    }

    /// Restores a persisted serial cursor: the next dynamic allocation of
    /// the address's family starts after it. The address must lie in a
    /// subnet of the network ([`IpamError::AddressOutsideSubnets`]).
    ///
    /// # Errors
    /// [`IpamError::AddressOutsideSubnets`] when `address` is in no subnet of the network.
    ///
    /// ```
    /// # use underlay::ipam::{IpFamily, AllocationPolicy, Ipam, NetworkIpamConfig};
    /// # let config = NetworkIpamConfig::from_docker_lists(&["10.1.20.0/24"], &[], &[], &[])?;
    /// let mut ipam = Ipam::new("n", &config, AllocationPolicy::Serial);
    /// ipam.set_serial_cursor("10.1.20.100".parse().unwrap())?;
    /// assert_eq!(ipam.allocate(IpFamily::V4, 1)?.ip().to_string(), "10.1.20.101");
    /// # Ok::<(), underlay::ipam::IpamError>(())
    /// ```
    pub fn set_serial_cursor(&mut self, address: IpAddr) -> Result<(), IpamError> {
        let located = self.locate(address)?;
        self.cursors[IpFamily::of(address).index()] = Some(located);
        Ok(())
    }

    /// The pool and offset of an address, or the error naming the subnets
    /// of its family.
    fn locate(&self, address: IpAddr) -> Result<(usize, u128), IpamError> {
        self.pools
            .iter()
            .enumerate()
            .find_map(|(index, pool)| pool.offset_of(address).map(|offset| (index, offset)))
            .ok_or_else(|| IpamError::AddressOutsideSubnets {
                network: self.network.clone(),
                address,
                subnets: self
                    .pools
                    .iter()
                    .filter(|p| p.family == IpFamily::of(address))
                    .map(|p| p.subnet)
                    .collect(),
            })
    }
}
