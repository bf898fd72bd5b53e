//! Detaching a container.

use super::Engine;
use crate::netns::NetNs;
use crate::store::NetworkRecord;
use crate::Result;

impl Engine {
    /// Detaches the container whose namespace is `netns`: deletes its link
    /// and releases its addresses. Returns whether it was attached.
    pub fn detach(&self, network: &NetworkRecord, netns: &NetNs) -> Result<bool> {
        let mut session = self.session(network)?;
        let Some(record) = session
            .endpoints()
            .find(|e| e.netns_id == netns.id())
            .cloned()
        else {
            return Ok(false);
        };
        if !self.is_live(network, &record) {
            // The record is of a dead namespace that had this inode number.
            session.forget(record.id)?;
            return Ok(false);
        }
        session.mark_detaching(record.id)?;
        log::debug!("endpoint {}: recorded as detaching", record.name);
        self.remove_endpoint_link(network, Some(netns), &record)?;
        log::debug!("endpoint {}: link deleted", record.name);
        session.forget(record.id)?;
        log::info!("detached {} from network {}", record.name, network.name);
        Ok(true)
    }

    /// Detaches an endpoint by name, also when its namespace is gone (the
    /// addresses are released all the same). Returns whether it existed.
    pub fn detach_endpoint(&self, network: &NetworkRecord, name: &str) -> Result<bool> {
        let mut session = self.session(network)?;
        let Some(record) = session.endpoints().find(|e| e.name == name).cloned() else {
            return Ok(false);
        };
        session.mark_detaching(record.id)?;
        log::debug!("endpoint {}: recorded as detaching", record.name);
        self.remove_endpoint_link(network, record.netns().as_ref(), &record)?;
        log::debug!("endpoint {}: link deleted", record.name);
        session.forget(record.id)?;
        log::info!("detached {} from network {}", record.name, network.name);
        Ok(true)
    }
}
