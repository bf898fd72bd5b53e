//! Detaching a container, and sweeping the links detaches leave.
//!
//! As with attaching, the network's lock is held only to decide and to
//! record: the intent (`detaching`, naming this process) before the kernel
//! is touched, the outcome after. A crash in between leaves a record the
//! next session on the network finishes once this process is gone.
//!
//! A detach takes the container off the network without waiting for the
//! kernel: in one round trip inside the container's namespace, the link is
//! marked detached, its addresses are deleted, and (macvlan) it is set
//! protocol-down; its IPv6 is turned off. Then the addresses are released
//! and the record says `detached`. Deleting the link waits for an RCU grace
//! period (about 20 ms), so it is left to a sweep, where many deletions in
//! flight share their waits, or to the namespace's own end. Sweeps run
//! after detaches and attaches (on a thread of the library's own), in
//! `recover`, and in forced removals; an attach into a namespace that
//! holds a detached link of the network deletes that link first.

use std::collections::HashMap;
use std::sync::Arc;

use netlink_packet_route::RouteNetlinkMessage;

use super::{Engine, PARALLEL_DELETIONS};
use crate::address::address_message;
use crate::endpoint::DetachOptions;
use crate::mark;
use crate::netlink::{Netlink, Request};
use crate::netns::NetNs;
use crate::store::{EndpointRecord, EndpointSession, EndpointState, NetworkRecord};
use crate::sysctl::{ProcSys, IPV6_CONF};
use crate::{Error, Result};

/// Which endpoint to detach.
enum Which<'a> {
    /// The one in this namespace.
    Netns(&'a NetNs),
    /// The one of this name, whether its namespace lives or not.
    Name(&'a str),
}

impl Engine {
    /// Detaches the container whose namespace is `netns`. Returns whether
    /// it was attached.
    pub fn detach(
        &self,
        network: &NetworkRecord,
        netns: &NetNs,
        options: &DetachOptions,
    ) -> Result<bool> {
        self.require_shared(network)?;
        self.detach_one(network, Which::Netns(netns), options)
    }

    /// Detaches an endpoint by name, also when its namespace is gone (the
    /// addresses are released all the same). Returns whether it existed.
    pub fn detach_endpoint(
        &self,
        network: &NetworkRecord,
        name: &str,
        options: &DetachOptions,
    ) -> Result<bool> {
        self.require_shared(network)?;
        self.detach_one(network, Which::Name(name), options)
    }

    fn detach_one(
        &self,
        network: &NetworkRecord,
        which: Which<'_>,
        options: &DetachOptions,
    ) -> Result<bool> {
        let Some(record) = self.record_detach(network, &which)? else {
            return Ok(false);
        };
        // Logged once the lock is released: what follows runs without it.
        log::debug!("endpoint {}: recorded as detaching", record.name);
        let found;
        let netns = match which {
            Which::Netns(netns) => Some(netns),
            Which::Name(_) => {
                found = record.netns();
                found.as_ref()
            }
        };
        if let (Some(netns), false) = (netns, options.delete_link) {
            match self.take_off(network, netns, &record) {
                Ok(()) => {
                    log::debug!("endpoint {}: off the network", record.name);
                    self.delete_shim_routes(network, &record);
                    self.session(network)?.mark_detached(record.id)?;
                    log::info!(
                        "detached {} from network {} (its link is deleted later)",
                        record.name,
                        network.name
                    );
                    return Ok(true);
                }
                // The link is not where it should be, or refused: delete it
                // instead, the slow and sure way.
                Err(e) => log::debug!("endpoint {}: {e}; deleting its link", record.name),
            }
        }
        let removed = self.remove_endpoint_link(network, netns, &record);
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
            .filter(|e| e.state != EndpointState::Detached)
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

    /// Takes an endpoint's link off the network in one round trip inside
    /// its namespace: the detached mark, its addresses deleted, protocol
    /// down where the driver has it; then no IPv6 on it (no link-local
    /// address either).
    fn take_off(
        &self,
        network: &NetworkRecord,
        netns: &NetNs,
        record: &EndpointRecord,
    ) -> Result<()> {
        let mark = self.endpoint_mark(network, record.id);
        netns.run(|| take_off_here(network, &mark, record, &self.sysctl))
    }

    /// Takes these (ready) endpoints off the network at once, on a few
    /// threads of the library's own, as a detach does, without recording
    /// anything (a forced removal, recorded as `removing`, has). Returns
    /// the links left for deletion and the endpoints that could not be
    /// taken off (their links must be deleted instead).
    pub(super) fn take_off_all(
        &self,
        network: &NetworkRecord,
        endpoints: Vec<(EndpointRecord, NetNs)>,
    ) -> (Vec<LeftLink>, Vec<EndpointRecord>) {
        let jobs: Vec<(&NetNs, (&EndpointRecord, mark::Mark))> = endpoints
            .iter()
            .map(|(record, netns)| (netns, (record, self.endpoint_mark(network, record.id))))
            .collect();
        let results = crate::netns::run_each(jobs, TAKE_OFF_THREADS, |(record, mark)| {
            take_off_here(network, &mark, record, &self.sysctl).map(|()| mark)
        });
        let mut left = Vec::new();
        let mut refused = Vec::new();
        for ((record, _), result) in endpoints.into_iter().zip(results) {
            match result {
                Ok(mark) => left.push(LeftLink::of(&record, mark)),
                Err(e) => {
                    log::debug!("endpoint {}: {e}; deleting its link", record.name);
                    refused.push(record);
                }
            }
        }
        (left, refused)
    }

    /// The detached endpoints of the network that stand in an attach's
    /// way: one in the same namespace (its link may hold the interface
    /// name), one holding a requested address or MAC, and on a network
    /// whose driver allows few endpoints (passthru) all of them.
    pub(super) fn detached_in_the_way(
        session: &dyn EndpointSession,
        network: &NetworkRecord,
        netns: &NetNs,
        options: &crate::endpoint::AttachOptions,
    ) -> Vec<EndpointRecord> {
        let limited = network.driver.endpoint_limit().is_some();
        session
            .endpoints()
            .filter(|e| e.state == EndpointState::Detached)
            .filter(|e| {
                limited
                    || e.netns_id == netns.id()
                    || [options.ipv4, options.ipv6]
                        .into_iter()
                        .flatten()
                        .chain(options.assigned.iter().map(|a| a.addr()))
                        .any(|ip| e.ips().any(|a| a == ip))
                    || (options.mac.is_some() && e.mac == options.mac)
            })
            .cloned()
            .collect()
    }

    /// Deletes the links of these detached endpoints, many at once, and
    /// forgets those that went (and are still detached).
    pub(super) fn clear_detached(
        &self,
        network: &NetworkRecord,
        detached: &[EndpointRecord],
    ) -> Result<usize> {
        let failed = self.remove_endpoint_links(network, detached);
        for (id, e) in &failed {
            log::warn!(
                "network {}: cannot delete the link of detached endpoint {id:016x}: {e}",
                network.name
            );
        }
        let mut session = self.session(network)?;
        let mut cleared = 0;
        for record in detached {
            let still = session
                .endpoints()
                .any(|e| e.id == record.id && e.state == EndpointState::Detached);
            if still && !failed.iter().any(|(id, _)| *id == record.id) {
                session.forget(record.id)?;
                cleared += 1;
            }
        }
        Ok(cleared)
    }

    /// Deletes the link called `ifname` in `netns` if it is a detached link
    /// of this host's (of any network); says whether it did.
    pub(super) fn delete_detached_named(&self, netns: &NetNs, ifname: &str) -> bool {
        let host = self.networks.host_id().to_owned();
        let ifname = ifname.to_owned();
        netns
            .run(move || {
                let nl = Netlink::open()?;
                let link = match nl.link_by_name(&ifname) {
                    Ok(link) => link,
                    Err(_) => return Ok(false),
                };
                let ours = mark::Mark::of(&link)
                    .is_some_and(|m| m.host == host && matches!(m.role, mark::Role::Detached(_)));
                Ok(ours && nl.delete_link(link.index).is_ok())
            })
            .unwrap_or(false)
    }

    /// Deletes the links of the network's detached endpoints, many at once
    /// (their waits overlap), and forgets them. Returns how many went.
    pub(crate) fn sweep(&self, network: &NetworkRecord) -> Result<usize> {
        let detached: Vec<EndpointRecord> = self
            .session(network)?
            .endpoints()
            .filter(|e| e.state == EndpointState::Detached)
            .cloned()
            .collect();
        if detached.is_empty() {
            return Ok(0);
        }
        let swept = self.clear_detached(network, &detached)?;
        log::debug!("network {}: swept {swept} detached link(s)", network.name);
        Ok(swept)
    }

    /// Sweeps `network` on a thread of its own, soon: one sweep at a time
    /// per network, and one more if more were asked for meanwhile (they
    /// find everything detached by then).
    pub(crate) fn sweep_later(engine: &Arc<Engine>, network: &NetworkRecord) {
        {
            let mut sweeps = engine.sweeps.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(again) = sweeps.get_mut(&network.id) {
                *again = true;
                return;
            }
            sweeps.insert(network.id.clone(), false);
        }
        let (owned, record) = (engine.clone(), network.clone());
        let spawned = std::thread::Builder::new()
            .name("underlay-sweep".into())
            .spawn(move || loop {
                if let Err(e) = owned.sweep(&record) {
                    log::debug!("network {}: sweep: {e}", record.name);
                }
                let mut sweeps = owned.sweeps.lock().unwrap_or_else(|p| p.into_inner());
                match sweeps.get_mut(&record.id) {
                    Some(again) if *again => *again = false,
                    _ => {
                        sweeps.remove(&record.id);
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            log::debug!("cannot start a sweep: {e}");
            let mut sweeps = engine.sweeps.lock().unwrap_or_else(|p| p.into_inner());
            sweeps.remove(&network.id);
        }
    }
}

impl Engine {
    /// Waits (up to the lock timeout's order, 30 s) until no sweep of this
    /// process runs on `network`.
    pub(super) fn wait_for_sweep(&self, network: &NetworkRecord) {
        if !self.wait_for_sweeps(SETTLE_TIMEOUT, |sweeps| !sweeps.contains_key(&network.id)) {
            log::warn!("network {}: a sweep is still running", network.name);
        }
    }

    /// Waits up to `timeout` until `done` says so of the sweeps under way;
    /// returns whether it did.
    fn wait_for_sweeps(
        &self,
        timeout: std::time::Duration,
        done: impl Fn(&HashMap<String, bool>) -> bool,
    ) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if done(&self.sweeps.lock().unwrap_or_else(|p| p.into_inner())) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }
}

/// How long waiting for the library's own threads may take (the order of
/// the lock timeout).
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How many threads take a forced removal's endpoints off the network.
const TAKE_OFF_THREADS: usize = 8;

/// Takes an endpoint's link off the network in one round trip from the
/// calling thread, which is in its namespace: the detached mark, its
/// addresses deleted, protocol down where the driver has it; then no IPv6
/// on it (no link-local address either).
fn take_off_here(
    network: &NetworkRecord,
    mark: &mark::Mark,
    record: &EndpointRecord,
    sysctl: &ProcSys,
) -> Result<()> {
    let macvlan = network.driver.kind() == crate::driver::DriverKind::Macvlan;
    let nl = Netlink::open()?;
    let link = match nl.link_by_name(&record.ifname) {
        Ok(link) if mark.is_on(&link) => link,
        Ok(_) | Err(Error::LinkNotFound { .. }) => {
            mark::find(&nl, mark)?.ok_or_else(|| Error::LinkNotFound {
                link: record.ifname.clone(),
            })?
        }
        Err(e) => return Err(e),
    };
    let index = link.index;
    let mut requests = vec![crate::link::alias_request(
        index,
        &mark.detached().to_string(),
    )];
    for address in &record.addresses {
        requests.push(Request {
            message: RouteNetlinkMessage::DelAddress(address_message(index, *address, false)),
            flags: 0,
            operation: format!("delete address {address}"),
        });
    }
    if macvlan {
        requests.push(crate::link::protodown_request(index));
    }
    let results = nl.batch(requests)?;
    let addresses = 1..=record.addresses.len();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(()) => {}
            // Gone already (the container took it off).
            Err(e) if addresses.contains(&i) && e.errno() == Some(libc::EADDRNOTAVAIL) => {}
            // The mark, or an address that would stay: not off the
            // network; the caller deletes the link instead.
            Err(e) if i <= record.addresses.len() => return Err(e),
            // Protocol-down refused: the addresses are off anyway.
            Err(e) => log::debug!("endpoint {}: {e}", record.name),
        }
    }
    let key = format!("{}/disable_ipv6", link.name);
    if let Err(e) = sysctl.write(None, IPV6_CONF, &key, b"1") {
        log::debug!("cannot set {IPV6_CONF}/{key}: {e}");
    }
    Ok(())
}

/// A link taken off its network and left for deletion, with no record
/// (its network is gone): where it is, and its detached mark.
pub(super) struct LeftLink {
    netns_path: std::path::PathBuf,
    netns_id: crate::netns::NetNsId,
    ifname: String,
    mark: mark::Mark,
}

impl LeftLink {
    /// The link of this endpoint, whose mark is `mark` (its detached mark
    /// is kept).
    pub(super) fn of(record: &EndpointRecord, mark: mark::Mark) -> LeftLink {
        LeftLink {
            netns_path: record.netns_path.clone(),
            netns_id: record.netns_id,
            ifname: record.ifname.clone(),
            mark: mark.detached(),
        }
    }

    /// Its namespace; `Ok(None)` when it is gone (with the link).
    fn netns(&self) -> Result<Option<NetNs>> {
        NetNs::open_if_same(&self.netns_path, self.netns_id)
    }

    /// Deletes the link, from the calling thread, which is in its
    /// namespace, if it is still there with its mark (whatever it is
    /// called now).
    fn delete_here(&self) -> Result<()> {
        let nl = Netlink::open()?;
        if mark::delete_if_ours(&nl, &self.ifname, &self.mark, mark::Unmarked::Spare)? {
            return Ok(());
        }
        if let Some(link) = mark::find(&nl, &self.mark)? {
            match nl.delete_link(link.index) {
                Ok(()) | Err(Error::LinkNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Link deletions left to threads of the library's own, and a way to wait
/// for them.
#[derive(Debug, Default)]
pub(crate) struct Deletions {
    running: std::sync::Mutex<usize>,
    idle: std::sync::Condvar,
}

impl Deletions {
    fn count(&self) -> std::sync::MutexGuard<'_, usize> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self) {
        *self.count() += 1;
    }

    fn end(&self) {
        *self.count() -= 1;
        self.idle.notify_all();
    }

    /// Whether any runs.
    pub(crate) fn running(&self) -> bool {
        *self.count() > 0
    }

    /// Waits up to `timeout` until none runs; returns whether none does.
    fn wait(&self, timeout: std::time::Duration) -> bool {
        let (running, _) = self
            .idle
            .wait_timeout_while(self.count(), timeout, |running| *running > 0)
            .unwrap_or_else(|p| p.into_inner());
        *running == 0
    }
}

impl Engine {
    /// Deletes `links` on a thread of the library's own, all in flight at
    /// once (their RCU grace periods overlap), and returns at once. The
    /// caller has noted the deletion as under way in the network store
    /// (`begin` with the network's id), which this ends: a crash before
    /// the links go leaves links with the detached mark of a network that
    /// no longer exists, which the next opening of the host deletes (as
    /// [`recover`](Engine::recover) does); the end of their namespaces
    /// takes them too.
    pub(super) fn delete_later(&self, record: &NetworkRecord, links: Vec<LeftLink>) {
        if links.is_empty() {
            self.networks.end(&record.id);
            return;
        }
        let deletions = self.deletions.clone();
        deletions.begin();
        let (network, id) = (record.name.clone(), record.id.clone());
        let store = self.networks.clone();
        let count = links.len();
        let job = move || {
            log::debug!("network {network}: deleting {count} link(s) in the background");
            let mut failed = 0;
            // A chunk of namespaces open at a time, its links all in flight.
            for chunk in links.chunks(PARALLEL_DELETIONS) {
                let mut opened = Vec::new();
                for link in chunk {
                    match link.netns() {
                        Ok(Some(netns)) => opened.push((netns, link)),
                        Ok(None) => {}
                        Err(e) => {
                            log::warn!("network {network}: cannot delete {}: {e}", link.ifname);
                            failed += 1;
                        }
                    }
                }
                let jobs: Vec<(&NetNs, &LeftLink)> = opened.iter().map(|(n, l)| (n, *l)).collect();
                let results =
                    crate::netns::run_each(jobs, PARALLEL_DELETIONS, LeftLink::delete_here);
                for ((netns, link), result) in opened.iter().zip(results) {
                    if let Err(e) = result {
                        log::warn!(
                            "network {network}: cannot delete {} in {}: {e}",
                            link.ifname,
                            netns.path().display()
                        );
                        failed += 1;
                    }
                }
            }
            if failed == 0 {
                log::debug!("network {network}: its links are deleted");
                store.end(&id);
            } else {
                // The note stays: the next opening of the host looks for
                // them again (and `recover` does).
                log::warn!("network {network}: {failed} link(s) not deleted; the next opening of the host (or `recover`) tries again");
            }
            deletions.end();
        };
        if let Err(e) = std::thread::Builder::new()
            .name("underlay-delete".into())
            .spawn(job)
        {
            // The job (and its links) went with the failed spawn; they are
            // off the network, marked, and `recover` deletes them.
            log::warn!(
                "cannot start deleting links in the background ({e}); `recover` deletes them"
            );
            self.deletions.end();
        }
    }

    /// Waits (up to 30 s in all) until every sweep and background deletion
    /// of this process is done.
    pub fn settle(&self) {
        let start = std::time::Instant::now();
        if !self.wait_for_deletions() {
            return;
        }
        if !self.wait_for_sweeps(SETTLE_TIMEOUT.saturating_sub(start.elapsed()), |sweeps| {
            sweeps.is_empty()
        }) {
            log::warn!("sweeps are still running");
        }
    }
}

impl Engine {
    /// Waits for the link deletions left to threads of the library's own
    /// (bounded); returns whether they are done.
    pub(crate) fn wait_for_deletions(&self) -> bool {
        let done = self.deletions.wait(SETTLE_TIMEOUT);
        if !done {
            log::warn!("link deletions are still running");
        }
        done
    }
}

/// Sweeps in progress, by network id, and whether another is asked for.
pub(crate) type Sweeps = std::sync::Mutex<HashMap<String, bool>>;
