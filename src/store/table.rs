//! One network's endpoint records and the allocator that holds their
//! addresses, kept in step: the in-memory view every [`EndpointStore`]
//! gives its sessions.
//!
//! [`EndpointStore`]: super::EndpointStore

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{EndpointRecord, EndpointState, NetworkRecord};
use crate::ipam::Ipam;

/// Endpoint records by id, and the allocator holding their addresses.
#[derive(Debug)]
pub(crate) struct EndpointTable {
    network: String,
    pub ipam: Ipam,
    pub endpoints: BTreeMap<u64, EndpointRecord>,
    /// The ids of the records still `attaching` or `detaching`.
    unfinished: BTreeSet<u64>,
    /// A network with no address family: its endpoints' addresses, if
    /// any, were assigned by the caller, and the allocator has no part.
    assigned: bool,
}

impl EndpointTable {
    /// An empty table for `network`.
    pub fn new(network: &NetworkRecord) -> Self {
        EndpointTable {
            network: network.name.clone(),
            ipam: Ipam::new(&network.name, &network.ipam, network.policy),
            endpoints: BTreeMap::new(),
            unfinished: BTreeSet::new(),
            assigned: !network.ipv4 && !network.ipv6,
        }
    }

    /// The records still `attaching` or `detaching`.
    pub fn unfinished(&self) -> Vec<EndpointRecord> {
        self.unfinished
            .iter()
            .filter_map(|id| self.endpoints.get(id))
            .cloned()
            .collect()
    }

    /// Adds or replaces a record in `state`; the allocator follows.
    pub fn insert(&mut self, mut record: EndpointRecord, state: EndpointState) {
        record.state = state;
        if matches!(state, EndpointState::Ready | EndpointState::Detached) {
            self.unfinished.remove(&record.id);
        } else {
            self.unfinished.insert(record.id);
        }
        if let Some(old) = self.endpoints.remove(&record.id) {
            for address in old.ips() {
                if !record.ips().any(|a| a == address) {
                    self.ipam.release(address);
                }
            }
        }
        for address in record.ips() {
            if self.assigned {
                break; // the caller's addresses: nothing to allocate
            }
            if self.ipam.holder(address) == Some(record.id) {
                continue; // allocated by this very attach
            }
            if let Err(e) = self.ipam.request(address, record.id) {
                log::warn!(
                    "network {}: endpoint {} holds {address}, which the allocator refuses: {e}",
                    self.network,
                    record.name
                );
            }
        }
        self.endpoints.insert(record.id, record);
    }

    /// Moves a record to `state` (an attach done, a detach begun by
    /// `owner`).
    pub fn set_state(&mut self, id: u64, state: EndpointState, owner: Option<super::Owner>) {
        if let Some(record) = self.endpoints.get_mut(&id) {
            record.state = state;
            record.owner = owner;
            if matches!(state, EndpointState::Ready | EndpointState::Detached) {
                self.unfinished.remove(&id);
            } else {
                self.unfinished.insert(id);
            }
        }
    }

    /// Marks a record detached: off the network, its link waiting for
    /// deletion. It keeps its addresses until then (the container, root in
    /// its namespace, could put them back on the link while it exists); an
    /// attach that asks for one of them deletes that link first.
    pub fn detach(&mut self, id: u64) {
        self.unfinished.remove(&id);
        if let Some(record) = self.endpoints.get_mut(&id) {
            record.state = EndpointState::Detached;
            record.owner = None;
        }
    }

    /// Removes a record and releases its addresses.
    pub fn remove(&mut self, id: u64) -> Option<EndpointRecord> {
        self.unfinished.remove(&id);
        let record = self.endpoints.remove(&id)?;
        for address in record.ips() {
            self.ipam.release(address);
        }
        Some(record)
    }

    /// Drops an attach that never happened: its record, if saved, and the
    /// addresses taken for it.
    pub fn abandon(&mut self, id: u64, addresses: &[IpAddr]) {
        self.unfinished.remove(&id);
        self.endpoints.remove(&id);
        for address in addresses {
            self.ipam.release(*address);
        }
    }
}
