//! Detaching a container.
//!
//! As with attaching, the network's lock is held only to decide and to
//! record: the intent (`detaching`, naming this process) before the link
//! is deleted, the outcome after. A crash in between leaves a record the
//! next session on the network finishes once this process is gone.

use super::Engine;
use crate::netns::NetNs;
use crate::store::{EndpointRecord, EndpointState, NetworkRecord};
use crate::{Error, Result};

/// Which endpoint to detach.
enum Which<'a> {
    /// The one in this namespace.
    Netns(&'a NetNs),
    /// The one of this name, whether its namespace lives or not.
    Name(&'a str),
}

impl Engine {
    /// Detaches the container whose namespace is `netns`: deletes its link
    /// and releases its addresses. Returns whether it was attached.
    pub fn detach(&self, network: &NetworkRecord, netns: &NetNs) -> Result<bool> {
        self.detach_one(network, Which::Netns(netns))
    }

    /// Detaches an endpoint by name, also when its namespace is gone (the
    /// addresses are released all the same). Returns whether it existed.
    pub fn detach_endpoint(&self, network: &NetworkRecord, name: &str) -> Result<bool> {
        self.detach_one(network, Which::Name(name))
    }

    fn detach_one(&self, network: &NetworkRecord, which: Which<'_>) -> Result<bool> {
        let Some(record) = self.record_detach(network, &which)? else {
            return Ok(false);
        };
        // Logged once the lock is released: what follows runs without it.
        log::debug!("endpoint {}: recorded as detaching", record.name);
        let netns = match which {
            Which::Netns(netns) => Some(netns),
            Which::Name(_) => None,
        };
        let found = match netns {
            Some(_) => None,
            None => record.netns(),
        };
        let removed = self.remove_endpoint_link(network, netns.or(found.as_ref()), &record);
        let mut session = self.session(network)?;
        if let Err(e) = removed {
            // The link is still there: the endpoint stays, as it was.
            session.mark_ready(record.id)?;
            return Err(e);
        }
        log::debug!("endpoint {}: link deleted", record.name);
        self.delete_shim_routes(network, &record);
        session.forget(record.id)?;
        log::info!("detached {} from network {}", record.name, network.name);
        Ok(true)
    }

    /// The decision and the intent of a detach, under the network's lock.
    /// `None`: nothing to detach (or only a dead namespace's record, which
    /// is forgotten here).
    fn record_detach(
        &self,
        network: &NetworkRecord,
        which: &Which<'_>,
    ) -> Result<Option<EndpointRecord>> {
        let mut session = self.session(network)?;
        let found = session
            .endpoints()
            .find(|e| match which {
                Which::Netns(netns) => e.netns_id == netns.id(),
                Which::Name(name) => e.name == *name,
            })
            .cloned();
        let Some(record) = found else {
            return Ok(None);
        };
        if record.state != EndpointState::Ready {
            // Under way in a live process (a dead one's was finished when
            // the session began).
            return Err(Error::EndpointBusy {
                network: network.name.clone(),
                endpoint: record.name.clone(),
                pid: record.owner.map(|o| o.pid),
            });
        }
        if matches!(which, Which::Netns(_)) && !self.is_live(network, &record) {
            // The record is of a dead namespace that had this inode number.
            session.forget(record.id)?;
            return Ok(None);
        }
        session.mark_detaching(record.id, self.owner()?)?;
        Ok(Some(record))
    }
}
