//! What is stored for networks and endpoints.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::driver::Driver;
use crate::ipam::{AllocationPolicy, NetworkIpamConfig};
use crate::link::MacAddress;
use crate::netns::{NetNs, NetNsId};
use crate::parent::ParentLink;
use crate::shim::HostShim;

/// Where a network is in its life; anything but `Ready` is a step that a
/// crash interrupted, which recovery finishes or undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NetworkState {
    /// Recorded, its parent perhaps not made yet.
    Creating,
    /// In use.
    Ready,
    /// Being removed.
    Removing,
}

/// What is stored for a network: its definition as created (default
/// subnets and inferred gateways filled in), its parent, and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetworkRecord {
    /// The record format's version ([`NetworkRecord::VERSION`]).
    pub version: u32,
    /// 64 hexadecimal characters.
    pub id: String,
    /// The network's name.
    pub name: String,
    /// The driver and its mode.
    pub driver: Driver,
    /// The parent interface and who owns it.
    pub parent: ParentLink,
    /// Subnets, gateways, ranges and aux addresses.
    pub ipam: NetworkIpamConfig,
    /// Whether endpoints get an IPv4 address.
    pub ipv4: bool,
    /// Whether endpoints get an IPv6 address.
    pub ipv6: bool,
    /// Isolated: no default route in its containers.
    pub internal: bool,
    /// The endpoints' MTU, if set.
    pub mtu: Option<u32>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// How addresses are handed out.
    pub policy: AllocationPolicy,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Where the network is in its life.
    pub state: NetworkState,
    /// Its host shim, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_shim: Option<HostShim>,
    /// Shared with other hosts through a shared store: its addresses are
    /// claimed there, so it is worked on only with that store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

impl NetworkRecord {
    /// The current record format.
    pub const VERSION: u32 = 1;
}

/// Where an endpoint is in its life. `Attaching` and `Detaching` records
/// that survive their process are attaches and detaches a crash
/// interrupted, which the next session on the network (or recovery)
/// undoes or finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EndpointState {
    /// Recorded before the kernel was touched; not finished.
    Attaching,
    /// Attached.
    Ready,
    /// Being detached: recorded before its link is deleted; not finished.
    Detaching,
    /// Off the network: its addresses are off its link, its link, marked
    /// detached, waits to be deleted in a batch (or with its namespace).
    /// Not an endpoint any more; its addresses and MAC stay held until its
    /// link is gone (the container could put them back on it meanwhile),
    /// and an attach that asks for them deletes that link first.
    Detached,
}

/// What is stored for an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndpointRecord {
    /// The record format's version ([`EndpointRecord::VERSION`]).
    pub version: u32,
    /// Unique within its network, never 0.
    pub id: u64,
    /// The endpoint's name (the container's).
    pub name: String,
    /// Its other DNS names (`--alias`), serialised as `aliases`.
    #[serde(rename = "aliases")]
    pub dns_names: Vec<String>,
    /// The container namespace's path, as given to attach.
    pub netns_path: PathBuf,
    /// The container namespace's identity.
    pub netns_id: NetNsId,
    /// The interface name inside the container.
    pub ifname: String,
    /// The interface index the attach chose for the link, recorded before
    /// the link is made with it: an attach cut short is told from a link
    /// of the container's own by it (the name is a guess, `eth0`, that the
    /// container may have taken). `None` in records of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// The MAC address (macvlan).
    pub mac: Option<MacAddress>,
    /// The addresses, with their prefix lengths.
    pub addresses: Vec<IpNet>,
    /// Told by the store (the journal's entries), not serialised with the
    /// record.
    #[serde(skip, default = "ready")]
    pub state: EndpointState,
    /// The process attaching or detaching it, while it is `attaching` or
    /// `detaching`: its kernel work runs without the network's lock, so an
    /// unfinished record is a crash's only when this process is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Attach time, seconds since the Unix epoch.
    pub created: u64,
}

fn ready() -> EndpointState {
    EndpointState::Ready
}

/// A process, told apart from a later one with the same pid by its start
/// time (in clock ticks after boot, `/proc/PID/stat` field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The process id.
    pub pid: u32,
    /// When it started, in clock ticks after boot.
    pub start: u64,
}

impl Owner {
    /// The process `pid`, if it runs.
    pub fn of(pid: u32) -> Option<Owner> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "PID (COMM) STATE ...": the command may hold spaces and parentheses.
        let rest = &stat[stat.rfind(')')? + 1..];
        let start = rest.split_whitespace().nth(19)?.parse().ok()?;
        Some(Owner { pid, start })
    }

    /// Whether this process still runs (the same one, not a later process
    /// given its pid).
    pub fn is_alive(&self) -> bool {
        Owner::of(self.pid).is_some_and(|now| now == *self)
    }
}

impl EndpointRecord {
    /// The current record format.
    pub const VERSION: u32 = 1;

    /// Whether this record is an attach or detach whose process is gone
    /// (or a record of an older version, which held the lock throughout).
    pub fn is_abandoned(&self) -> bool {
        matches!(
            self.state,
            EndpointState::Attaching | EndpointState::Detaching
        ) && !self.owner.is_some_and(|o| o.is_alive())
    }

    /// The addresses without their prefix lengths.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses.iter().map(|a| a.addr())
    }

    /// The endpoint's namespace, if its recorded path still names the
    /// namespace it was attached in.
    pub fn netns(&self) -> Option<NetNs> {
        NetNs::open(&self.netns_path)
            .ok()
            .filter(|ns| ns.id() == self.netns_id)
    }

    /// As [`netns`](Self::netns), for a caller that acts on its absence:
    /// `Ok(None)` when the namespace is gone (its recorded path names
    /// nothing, or something else); an error when that cannot be told (no
    /// descriptor or memory left).
    pub(crate) fn netns_or_gone(&self) -> crate::Result<Option<NetNs>> {
        NetNs::open_if_same(&self.netns_path, self.netns_id)
    }
}
