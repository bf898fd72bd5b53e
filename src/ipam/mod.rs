//! IP address management: subnets, gateways, ip-ranges, reserved addresses
//! and allocation. Pure logic, no I/O.
//!
//! The semantics are those of Docker libnetwork's default IPAM, as its
//! macvlan and ipvlan guides show them:
//!
//! - [`NetworkIpamConfig`] is a network's configuration: IPv4 and IPv6
//!   subnets ([`SubnetConfig`]), each with an optional gateway, an optional
//!   ip-range that dynamic allocation draws from, and named aux addresses that
//!   are never handed out. [`NetworkIpamConfig::from_docker_lists`] takes the
//!   loose `--subnet`/`--gateway`/`--ip-range`/`--aux-address` lists and pairs
//!   them by containment; [`NetworkIpamConfig::infer_gateways`] gives each
//!   subnet without a gateway its first usable address.
//! - [`Ipam`] is a network's allocator: lowest-free (or round-robin,
//!   [`AllocationPolicy`]) dynamic allocation per family, requests for
//!   specific addresses, exact and idempotent release, holder lookups. Each
//!   allocation records a caller-chosen `u64` holder id.
//! - [`DefaultPools`] gives a subnet to a network created without one, and
//!   [`check_overlap`] keeps networks' subnets apart.
//!
//! # State and persistence
//!
//! Only configuration is stored. [`NetworkIpamConfig`], [`SubnetConfig`],
//! [`AllocationPolicy`] and [`DefaultPools`] implement serde's `Serialize`
//! and `Deserialize`, and deserializing runs the same checks as building, so
//! the network layer stores them with the network.
//!
//! The allocation state is not stored: it is rebuilt when the network is
//! loaded, from the endpoint records, which already hold each endpoint's
//! addresses. The owner creates the [`Ipam`] from the stored configuration
//! and [`request`](Ipam::request)s each recorded address with its holder id.
//! There is thus a single source of truth, and no address can leak when a
//! process dies between writing an allocation and an endpoint. With the
//! round-robin policy, the owner also persists
//! [`serial_cursor`](Ipam::serial_cursor) and restores it with
//! [`set_serial_cursor`](Ipam::set_serial_cursor).
//!
//! ```
//! use underlay::ipam::{IpFamily, Ipam, NetworkIpamConfig};
//!
//! // Stored with the network:
//! let config = NetworkIpamConfig::from_docker_lists(&["192.168.1.0/24"], &["192.168.1.1"], &[], &[])?;
//! let json = serde_json::to_string(&config).unwrap();
//! // Stored with each endpoint: (holder id, address).
//! let endpoints = [(7u64, "192.168.1.2".parse().unwrap()), (9, "192.168.1.5".parse().unwrap())];
//!
//! // At load:
//! let config: NetworkIpamConfig = serde_json::from_str(&json).unwrap();
//! let mut ipam = Ipam::new("db_net", &config, Default::default());
//! for (holder, address) in endpoints {
//!     ipam.request(address, holder)?;
//! }
//! assert_eq!(ipam.allocate(IpFamily::V4, 10)?.ip().to_string(), "192.168.1.3");
//! # Ok::<(), underlay::ipam::IpamError>(())
//! ```
//!
//! # Cost
//!
//! Addresses are numbers (offsets from their subnet's first address). Each
//! subnet keeps its reserved and allocated offsets as coalesced runs in a
//! B-tree, which yields the lowest free offset in one lookup, and its holders
//! in blocks of 64 offsets. Allocation, request and release cost O(log n) in
//! the number n of allocations, also when a pool is nearly full, and memory
//! grows with the allocations, never with the size of the pool: an IPv6 /64
//! or /48 costs nothing until addresses are taken.

mod allocator;
mod config;
mod error;
mod holders;
mod pools;
mod prefix;
mod range_set;

pub use crate::family::IpFamily;
pub use allocator::{Allocation, AllocationPolicy, Ipam};
pub use config::{NetworkIpamConfig, SubnetConfig};
pub use error::{IpamError, Reservation};
pub use pools::{check_overlap, DefaultPools};
pub use prefix::parse_prefix;

#[cfg(test)]
mod tests;
