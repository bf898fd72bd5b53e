//! Removing a network, with or without its endpoints.

use super::Engine;
use crate::driver::Driver;
use crate::link::Link;
use crate::mark::{self, Mark, Unmarked};
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::parent;
use crate::store::{EndpointRecord, EndpointState, NetworkRecord, NetworkState};
use crate::{Error, Result};

use super::detach::LeftLink;
use super::PARALLEL_DELETIONS;

/// When a removal deletes its endpoints' links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deletion {
    /// Before it returns (recovery finishing an interrupted removal).
    Now,
    /// The containers taken off the network before it returns (addresses
    /// off, links down and marked detached), their links deleted on a
    /// thread of the library's own once the network is gone.
    Later,
}

impl Engine {
    /// Removes a network (by name or id). Without `force`, a network with
    /// endpoints is refused; with it, they are detached first. Every
    /// failure is reported; the record stays until everything is done.
    pub fn remove_network(&self, name: &str, force: bool) -> Result<()> {
        // A sweep of this process on the network (after a detach) ends
        // first: it works in the network's endpoint state, which goes.
        let found = self.network(name)?;
        self.require_shared(&found)?;
        self.wait_for_sweep(&found);
        let _lock = self.networks.lock()?;
        let mut record = self.network(name)?;
        let count = self
            .session(&record)?
            .endpoints()
            .filter(|e| e.state != EndpointState::Detached)
            .count();
        if count > 0 && !force {
            return Err(Error::NetworkHasEndpoints {
                network: record.name,
                count,
            });
        }
        record.state = NetworkState::Removing;
        self.networks.begin(&record.name)?;
        self.networks.save(&record)?;
        log::debug!("network {}: recorded as removing", record.name);
        self.finish_removal(&record, Deletion::Later)?;
        log::info!("removed network {}", record.name);
        // This host's half of a shared network is gone; the definition
        // goes with the last host.
        if let Some(shared) = &self.shared {
            match shared.leave(&record.name, self.networks.host_id()) {
                Ok(true) => log::info!("network {}: its shared definition went with the last host", record.name),
                Ok(false) => {}
                Err(e) => log::warn!("network {}: cannot leave its shared definition ({e}); `underlay host forget` can", record.name),
            }
        }
        Ok(())
    }

    /// Removes a network here and, when it is shared, on every host: this
    /// host's half with its endpoints (as a forced removal), then the
    /// shared definition and every host's part in it. While other hosts
    /// hold addresses of it, refused before anything changes, unless
    /// `force`; their claims stay either way (see
    /// [`Host::remove_network_everywhere`](crate::Host::remove_network_everywhere)).
    pub fn remove_network_everywhere(&self, name: &str, force: bool) -> Result<()> {
        // This host's half, if it has one. Without one (a removal that
        // stopped after it, or a network this host never joined), the
        // shared part alone, if there is a definition.
        let local = match self.network(name) {
            Ok(found) => Some(found),
            Err(Error::NetworkNotFound { .. }) if self.shared.is_some() => None,
            Err(e) => return Err(e),
        };
        let shared = match (&local, self.shared.as_ref()) {
            (Some(found), Some(shared)) if found.shared => shared,
            (Some(found), _) => {
                self.require_shared(found)?;
                return self.remove_network(name, true);
            }
            (None, Some(shared)) => {
                crate::names::validate_network_name(name)?;
                if shared.definition(name)?.is_none() {
                    return Err(Error::NetworkNotFound { name: name.into() });
                }
                shared
            }
            (None, None) => return Err(Error::NetworkNotFound { name: name.into() }),
        };
        let network = local.as_ref().map_or(name, |found| found.name.as_str());
        // The hosts holding addresses of it, as a refusal; this host's own
        // count only when it has no half left (claims no record explains).
        let elsewhere = |only_others: bool| -> Result<Option<Error>> {
            let me = self.networks.host_id();
            let claims = shared.claims(network)?;
            let held: Vec<_> = claims
                .iter()
                .filter(|(_, c)| !only_others || c.host != me)
                .collect();
            if held.is_empty() {
                return Ok(None);
            }
            let mut hosts: Vec<String> = held.iter().map(|(_, c)| c.host.clone()).collect();
            hosts.sort();
            hosts.dedup();
            Ok(Some(Error::NetworkInUseElsewhere {
                network: network.to_owned(),
                hosts,
                addresses: held.len(),
            }))
        };
        if !force {
            if let Some(refusal) = elsewhere(local.is_some())? {
                return Err(refusal);
            }
        }
        if local.is_some() {
            self.remove_network(network, true)?;
        }
        if shared.undefine(network, !force)? {
            log::info!("network {network}: its shared definition is removed for every host");
            return Ok(());
        }
        // Another host claimed an address since the check: its network
        // stays defined (this host's half is gone; the call can be made
        // again, and then removes the definition alone).
        Err(elsewhere(false)?.unwrap_or_else(|| Error::SharedStoreUnavailable {
            tried: format!(
                "the shared definition of network {network:?} kept changing while it was removed; try again"
            ),
        }))
    }

    /// Forgets a host that is gone for good (see
    /// [`Host::forget_host`](crate::Host::forget_host)).
    pub fn forget_host(&self, host: &str) -> Result<usize> {
        crate::names::validate_host_id(host)?;
        if host == self.networks.host_id() {
            return Err(Error::invalid(
                "host",
                host,
                "this is this host: remove its networks instead",
            ));
        }
        match &self.shared {
            Some(shared) => shared.forget_host(host),
            None => Err(Error::invalid(
                "host",
                host,
                "this host has no shared store: there is no other host to forget",
            )),
        }
    }

    /// Removes a network recorded as `removing` (or undoes one recorded as
    /// `creating`), also after a crash cut a removal short: its endpoints'
    /// links, its owned parent, its endpoint state, its record. Every
    /// failure is reported, and the record is kept until all is done.
    pub(super) fn finish_removal(&self, record: &NetworkRecord, deletion: Deletion) -> Result<()> {
        // Held to the end, so no attach slips in between; a waiting one
        // then finds the network gone.
        let session = match self.endpoints.session(record) {
            Ok(session) => Some(session),
            Err(Error::NetworkNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let endpoints = session
            .as_deref()
            .map(Engine::endpoint_records)
            .unwrap_or_default();
        if deletion == Deletion::Later && !record.parent.owned() && !endpoints.is_empty() {
            // Before any link is taken off: until the links left for
            // deletion are gone, opening a host looks for them if this
            // process dies (the records that could say where they are go
            // first).
            self.networks.begin(&record.id)?;
        }
        // Endpoint links go first. With an owned parent, deleting the parent
        // takes them all in one kernel operation. Otherwise each goes on its
        // own, in parallel: a deletion waits for an RCU grace period, and
        // concurrent deletions share their waits. Unless they must be gone
        // now, the containers are only taken off the network here (a round
        // trip each, no wait), and the links deleted once it is gone.
        let mut errors = Vec::new();
        let mut left = Vec::new();
        if !record.parent.owned() {
            let now = match deletion {
                Deletion::Now => endpoints,
                Deletion::Later => {
                    let (off, now) = self.take_off_or_delete(record, endpoints);
                    left = off;
                    log::debug!(
                        "network {}: {} container(s) taken off the network",
                        record.name,
                        left.len()
                    );
                    now
                }
            };
            errors.extend(
                self.remove_endpoint_links(record, &now)
                    .into_iter()
                    .map(|(_, e)| e),
            );
            log::debug!("network {}: endpoint links deleted", record.name);
        }
        let unfinished = record.state == NetworkState::Creating;
        if let Some(shim) = &record.host_shim {
            // Before the parent: an existing parent is not deleted, and
            // would keep it.
            if let Err(e) = crate::shim::remove(&self.nl, shim, &self.shim_mark(record), unfinished)
            {
                errors.push(e);
            }
        }
        if let Err(e) = parent::remove(
            &self.nl,
            &record.parent,
            &self.parent_mark(record),
            unfinished,
        ) {
            errors.push(e);
        }
        if !errors.is_empty() {
            // Left `removing`: the next removal or recovery finishes it.
            return Err(Error::RemovalIncomplete {
                network: record.name.clone(),
                errors,
            });
        }
        self.endpoints.remove_network(record)?;
        log::debug!("network {}: endpoint state removed", record.name);
        drop(session);
        self.parent_indexes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&record.id);
        self.networks.remove(&record.name)?;
        self.networks.end(&record.name);
        if deletion == Deletion::Later {
            self.delete_later(record, left);
        }
        Ok(())
    }

    /// A forced removal's endpoints, split: the links of those taken off
    /// the network now (ready ones, a chunk of namespaces open at a time)
    /// or earlier (detached ones), left for deletion; and those whose
    /// links must be deleted now (under way in another process, refusing
    /// to be taken off, or in a namespace that cannot be opened).
    fn take_off_or_delete(
        &self,
        network: &NetworkRecord,
        endpoints: Vec<EndpointRecord>,
    ) -> (Vec<LeftLink>, Vec<EndpointRecord>) {
        let mut left = Vec::new();
        let mut ready = Vec::new();
        let mut now = Vec::new();
        for endpoint in endpoints {
            match endpoint.state {
                EndpointState::Detached => left.push(LeftLink::of(
                    &endpoint,
                    self.endpoint_mark(network, endpoint.id),
                )),
                EndpointState::Ready => ready.push(endpoint),
                _ => now.push(endpoint),
            }
        }
        for chunk in ready.chunks(PARALLEL_DELETIONS) {
            let mut opened = Vec::new();
            for endpoint in chunk {
                match endpoint.netns_or_gone() {
                    Ok(Some(netns)) => opened.push((endpoint.clone(), netns)),
                    // Gone, and its link with it.
                    Ok(None) => {}
                    Err(e) => {
                        log::debug!("endpoint {}: {e}", endpoint.name);
                        now.push(endpoint.clone());
                    }
                }
            }
            let (off, refused) = self.take_off_all(network, opened);
            left.extend(off);
            now.extend(refused);
        }
        (left, now)
    }

    /// Deletes the links of `endpoints`, many at a time; returns every
    /// failure, with its endpoint's id.
    pub(super) fn remove_endpoint_links(
        &self,
        network: &NetworkRecord,
        endpoints: &[EndpointRecord],
    ) -> Vec<(u64, Error)> {
        let mut errors = Vec::new();
        for chunk in endpoints.chunks(PARALLEL_DELETIONS) {
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|endpoint| {
                        scope.spawn(move || {
                            // A namespace that cannot be opened (no
                            // descriptor left, say) is not taken for gone.
                            let removed = endpoint.netns_or_gone().and_then(|netns| {
                                self.remove_endpoint_link(network, netns.as_ref(), endpoint)
                            });
                            (endpoint.id, removed)
                        })
                    })
                    .collect();
                for handle in handles {
                    let (id, result) = handle.join().unwrap_or_else(|_| {
                        (
                            0,
                            Err(Error::Internal("a link deletion thread panicked".into())),
                        )
                    });
                    if let Err(e) = result {
                        errors.push((id, e));
                    }
                }
            });
        }
        errors
    }

    /// Deletes an endpoint's link inside its namespace, if the namespace and
    /// the link (with our mark) are still there, whatever it is called now
    /// (a container may rename its interfaces). The link of an attach that
    /// did not finish may not carry the mark yet: see
    /// [`delete_attach_link`].
    pub(super) fn remove_endpoint_link(
        &self,
        network: &NetworkRecord,
        netns: Option<&NetNs>,
        record: &EndpointRecord,
    ) -> Result<()> {
        let Some(netns) = netns else {
            log::debug!(
                "endpoint {}: namespace gone, nothing to delete",
                record.name
            );
            return Ok(());
        };
        let mark = self.endpoint_mark(network, record.id);
        let detached = mark.detached();
        netns.run(|| {
            let nl = Netlink::open()?;
            // An attach cut short may have made its link and not marked it:
            // found by the index it chose. Most other links keep their
            // name: looked for there first, then by the mark (the
            // endpoint's, or the one a detach left).
            let deleted = match record.state {
                EndpointState::Attaching => delete_attach_link(&nl, network.driver, record, &mark)?,
                _ => mark::delete_if_ours(&nl, &record.ifname, &mark, Unmarked::Spare)?,
            };
            if deleted || mark::delete_if_ours(&nl, &record.ifname, &detached, Unmarked::Spare)? {
                return Ok(());
            }
            let found = match mark::find(&nl, &mark)? {
                Some(link) => Some(link),
                None => mark::find(&nl, &detached)?,
            };
            if let Some(link) = found {
                log::info!(
                    "endpoint {}: its link is called {} now; deleting it",
                    record.name,
                    link.name
                );
                match nl.delete_link(link.index) {
                    Ok(()) | Err(Error::LinkNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    }
}

/// Deletes, from `nl` in its container, the link an unfinished attach of
/// `record` made, if it is there; says whether it did. The link is found
/// by the index the attach chose and recorded before making it (whatever
/// its name now), and taken if it carries the endpoint's `mark` or, not
/// marked yet, is of the network's `driver`: never a link of the
/// container's own by the name the attach tried (`eth0`), which it
/// recorded before it knew whether the container had one. A record of an
/// earlier version has no index: its link is found by name, and taken
/// unmarked only with the MAC address the attach chose (macvlan; a
/// passthru or ipvlan link is left).
pub(super) fn delete_attach_link(
    nl: &Netlink,
    driver: Driver,
    record: &EndpointRecord,
    mark: &Mark,
) -> Result<bool> {
    // (An index the kernel could not have given, in a record damaged on
    // disk, is no index.)
    let chosen = record.ifindex.filter(|i| (1..=i32::MAX as u32).contains(i));
    let Some(index) = chosen else {
        let mac = record.mac;
        let made = move |link: &Link| mac.is_some() && link.mac == mac && driver.is_kind_of(link);
        return mark::delete_if_ours(nl, &record.ifname, mark, Unmarked::TakeIf(&made));
    };
    let link = match nl.link_by_index(index) {
        Ok(link) => link,
        Err(Error::LinkNotFound { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if !(mark.is_on(&link) || (link.alias.is_none() && driver.is_kind_of(&link))) {
        log::debug!(
            "not deleting {} (#{index}): it is not the link endpoint {} was making",
            link.name,
            record.name
        );
        return Ok(false);
    }
    mark::delete_found(nl, index)
}
