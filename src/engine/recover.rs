//! Recovery: bringing the host back in line with its stores after a crash
//! or a reboot.

use std::path::PathBuf;

use super::remove::Deletion;
use super::{link_present, Engine};
use crate::mark::{Mark, Role};
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::parent;
use crate::store::{EndpointRecord, EndpointState, NetworkRecord, NetworkState};
use crate::{Error, Result};

/// What [`Host::recover`](crate::Host::recover) found and did.
///
/// ```no_run
/// use underlay::Host;
///
/// let report = Host::open("/var/lib/underlay")?.recover()?;
/// for endpoint in &report.released_endpoints {
///     println!("released the addresses of {endpoint}");
/// }
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Owned parent links that were missing (after a reboot) and were
    /// created again.
    pub recreated_parents: Vec<String>,
    /// Host shims that were missing (after a reboot) and were created
    /// again.
    pub recreated_shims: Vec<String>,
    /// Networks whose creation a crash interrupted, undone.
    pub undone_creations: Vec<String>,
    /// Networks whose removal a crash interrupted, finished.
    pub finished_removals: Vec<String>,
    /// Links marked as underlay's that no network record explains; they
    /// were deleted.
    pub removed_links: Vec<String>,
    /// Networks whose owned parent could not be created again (for example
    /// because the VLAN's master interface is missing), with the reason.
    pub broken_networks: Vec<(String, String)>,
    /// Endpoints (`network/endpoint`) whose namespace or link is gone; their
    /// addresses were released.
    pub released_endpoints: Vec<String>,
    /// Endpoints (`network/endpoint`) whose attach a crash interrupted;
    /// their link was deleted and their addresses released.
    pub undone_attaches: Vec<String>,
    /// Network records and endpoint journals that did not read back, moved
    /// aside (where they went, and what was wrong); the other networks are
    /// untouched.
    pub quarantined: Vec<(String, String)>,
    /// Endpoints (`network/endpoint`) of a quarantined journal, rebuilt
    /// from their links in the kernel (which carry the network's mark), so
    /// that their addresses stay held; their names are made up.
    pub rebuilt_endpoints: Vec<String>,
    /// Addresses released in the shared store (`network: address count`):
    /// claims of this host that no record of its own explains (a crash
    /// between a claim and its record's end, a release that could not
    /// reach the store).
    pub released_claims: Vec<String>,
}

impl RecoveryReport {
    /// Whether there was nothing to do.
    ///
    /// ```
    /// use underlay::host::RecoveryReport;
    ///
    /// let mut report = RecoveryReport::default();
    /// assert!(report.is_clean());
    /// report.recreated_parents.push("eth0.50".into());
    /// assert!(!report.is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        *self == RecoveryReport::default()
    }
}

impl Engine {
    /// Networks and endpoints: see [`Host::recover`](crate::Host::recover).
    pub fn recover(&self) -> Result<RecoveryReport> {
        // Its own look at every namespace comes below, with more to go on.
        let mut report = self.recover_networks(false)?;
        let _lock = self.networks.lock()?;
        let mut explained: Vec<Mark> = Vec::new();
        for network in self.networks()? {
            // Not `session`: its interrupted attaches are reported here.
            let mut session = match self.open_session(&network) {
                Ok(session) => session,
                Err(error @ (Error::CorruptState { .. } | Error::UnsafeState { .. })) => {
                    // Moved aside, and rebuilt from the kernel: a live
                    // container keeps its link and its addresses.
                    let place = self.endpoints.quarantine_network(&network)?;
                    log::warn!(
                        "network {}: moved its endpoint state to {place}: {error}",
                        network.name
                    );
                    report.quarantined.push((place, error.to_string()));
                    for (label, mark) in self.rebuild_endpoints(&network)? {
                        report.rebuilt_endpoints.push(label);
                        explained.push(mark);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut detached = Vec::new();
            // Interrupted detaches and attaches.
            let mut interrupted: Vec<EndpointRecord> = Vec::new();
            for endpoint in Engine::endpoint_records(session.as_ref()) {
                if endpoint.state == EndpointState::Detached {
                    // Off the network already; its link waits for a sweep.
                    detached.push(endpoint);
                    continue;
                }
                let label = format!("{}/{}", network.name, endpoint.name);
                let mark = self.endpoint_mark(&network, endpoint.id);
                if endpoint.state != EndpointState::Ready && !endpoint.is_abandoned() {
                    // Under way in a live process: its link is its own.
                    explained.push(mark);
                    continue;
                }
                let Some(netns) = endpoint.netns() else {
                    session.forget(endpoint.id)?;
                    report.released_endpoints.push(label);
                    continue;
                };
                if matches!(
                    endpoint.state,
                    EndpointState::Detaching | EndpointState::Attaching
                ) {
                    // Their links deleted below, many at once: each
                    // deletion waits for the kernel's RCU grace period, and
                    // the network's lock is held meanwhile.
                    interrupted.push(endpoint);
                    continue;
                }
                if link_present(&netns, &mark)? {
                    explained.push(mark);
                } else {
                    session.forget(endpoint.id)?;
                    report.released_endpoints.push(label);
                }
            }
            if !interrupted.is_empty() {
                let failed = self.remove_endpoint_links(&network, &interrupted);
                for endpoint in &interrupted {
                    if failed.iter().any(|(id, _)| *id == endpoint.id) {
                        continue;
                    }
                    session.forget(endpoint.id)?;
                    let label = format!("{}/{}", network.name, endpoint.name);
                    if endpoint.state == EndpointState::Attaching {
                        report.undone_attaches.push(label);
                    } else {
                        report.released_endpoints.push(label);
                    }
                }
                // The others are kept, as before, for the next recovery.
                if let Some((_, e)) = failed.into_iter().next() {
                    return Err(e);
                }
            }
            // The links detaches left: deleted now, many at once.
            if !detached.is_empty() {
                let failed = self.remove_endpoint_links(&network, &detached);
                for record in &detached {
                    if !failed.iter().any(|(id, _)| *id == record.id) {
                        session.forget(record.id)?;
                    }
                }
            }
            // The host's routes through the shim: those of the endpoints
            // that hold addresses now, and no others.
            let holding = Engine::endpoint_records(session.as_ref());
            drop(session);
            // Claims in a shared store that no record explains any more.
            match self.endpoints.reconcile(&network) {
                Ok(0) => {}
                Ok(n) => report
                    .released_claims
                    .push(format!("{}: {n}", network.name)),
                Err(e) => report
                    .broken_networks
                    .push((network.name.clone(), e.to_string())),
            }
            if let Err(e) = self.sync_shim_routes(&network, &holding) {
                log::warn!(
                    "network {}: cannot put its routes through the host shim right: {e}",
                    network.name
                );
                report
                    .broken_networks
                    .push((network.name.clone(), e.to_string()));
            }
        }
        if self.networks.has_quarantined() {
            log::warn!(
                "network records are in quarantine: links nothing explains are kept, as they may be theirs"
            );
        } else {
            report
                .removed_links
                .extend(self.remove_unexplained_endpoint_links(|mark| explained.contains(mark)));
        }
        Ok(report)
    }

    /// Makes endpoint records anew from the links in every namespace the
    /// machine knows that carry this network's mark: the link's name, MAC
    /// and addresses (those in the network's subnets), under a made-up
    /// name. Returns each one's label and mark.
    pub(super) fn rebuild_endpoints(&self, network: &NetworkRecord) -> Result<Vec<(String, Mark)>> {
        let host = self.networks.host_id();
        let subnets: Vec<ipnet::IpNet> = network.ipam.prefixes().collect();
        let mut found = Vec::new();
        for (path, netns) in self.other_namespaces() {
            let links = netns.run(|| {
                let nl = Netlink::open()?;
                let mut out = Vec::new();
                for link in nl.links()? {
                    let Some(mark) = Mark::of(&link) else {
                        continue;
                    };
                    if mark.host != host
                        || mark.network != network.id
                        || mark.endpoint_id().is_none()
                    {
                        continue;
                    }
                    let addresses: Vec<ipnet::IpNet> = nl
                        .addresses(Some(link.index))?
                        .into_iter()
                        .map(|a| a.address)
                        .filter(|a| subnets.iter().any(|s| s.contains(&a.addr())))
                        .collect();
                    out.push((link, mark, addresses));
                }
                Ok(out)
            });
            match links {
                Ok(links) => {
                    for (link, mark, addresses) in links {
                        found.push((path.clone(), netns.id(), link, mark, addresses));
                    }
                }
                Err(e) => log::debug!("skipping namespace {}: {e}", path.display()),
            }
        }
        let mut session = self.open_session(network)?;
        let mut out = Vec::new();
        for (path, netns_id, link, mark, addresses) in found {
            let Some(id) = mark.endpoint_id() else {
                continue;
            };
            let record = EndpointRecord {
                version: EndpointRecord::VERSION,
                id,
                name: format!("ep-{:012x}", id >> 16),
                dns_names: Vec::new(),
                netns_path: path,
                netns_id,
                ifname: link.name.clone(),
                ifindex: Some(link.index),
                mac: match network.driver.kind() {
                    crate::driver::DriverKind::Macvlan => link.mac,
                    _ => None,
                },
                addresses,
                state: EndpointState::Ready,
                owner: None,
                created: super::now(),
            };
            session.save(&record)?;
            session.mark_ready(id)?;
            log::info!(
                "network {}: rebuilt endpoint {} from link {} ({:?})",
                network.name,
                record.name,
                link.name,
                record.addresses
            );
            out.push((format!("{}/{}", network.name, record.name), mark));
        }
        Ok(out)
    }

    /// Every network namespace the machine knows but the host's, once each,
    /// with the path it was found by.
    fn other_namespaces(&self) -> Vec<(PathBuf, NetNs)> {
        let mut seen = vec![self.netns.id()];
        let mut out = Vec::new();
        for path in namespace_paths() {
            let Ok(netns) = NetNs::open(&path) else {
                continue;
            };
            if !seen.contains(&netns.id()) {
                seen.push(netns.id());
                out.push((path, netns));
            }
        }
        out
    }

    /// Deletes endpoint links with this host's mark, in every namespace the
    /// machine knows, that are not `explained`, and that their network (if
    /// it still exists) does not record by then either.
    fn remove_unexplained_endpoint_links(
        &self,
        explained: impl Fn(&Mark) -> bool + Sync,
    ) -> Vec<String> {
        let host = self.networks.host_id();
        let networks = match self.networks() {
            Ok(networks) => networks,
            Err(e) => {
                log::warn!("keeping the links nothing explains: cannot list the networks: {e}");
                return Vec::new();
            }
        };
        let mut removed = Vec::new();
        for (path, netns) in self.other_namespaces() {
            let found = netns.run(|| {
                let nl = Netlink::open()?;
                let mut found = Vec::new();
                for link in nl.links()? {
                    let Some(mark) = Mark::of(&link) else {
                        continue;
                    };
                    let endpoint_link = matches!(mark.role, Role::Endpoint(_) | Role::Detached(_));
                    if mark.host == host && endpoint_link && !explained(&mark) {
                        found.push((link.index, link.name, mark));
                    }
                }
                Ok(found)
            });
            let found = match found {
                Ok(found) => found,
                Err(e) => {
                    log::debug!("skipping namespace {}: {e}", path.display());
                    continue;
                }
            };
            for (index, name, mark) in found {
                // An attach may have recorded and made it since the
                // explanations were gathered (attaches do not wait for
                // recovery): looked at again under its network's lock,
                // which is held while the link goes.
                let session = match networks.iter().find(|n| n.id == mark.network) {
                    Some(network) => match self.open_session(network) {
                        Ok(session) => Some(session),
                        Err(e) => {
                            log::debug!("keeping {name} in {}: {e}", path.display());
                            continue;
                        }
                    },
                    None => None,
                };
                let recorded = session.as_ref().is_some_and(|session| {
                    let id = match mark.role {
                        Role::Endpoint(id) | Role::Detached(id) => id,
                        Role::Parent | Role::Shim => 0,
                    };
                    session
                        .endpoints()
                        .any(|e| e.id == id && e.state != EndpointState::Detached)
                });
                if recorded {
                    continue;
                }
                let deleted = netns.run(|| {
                    let nl = Netlink::open()?;
                    // Still the link that was found, with that mark.
                    let link = nl.link_by_index(index)?;
                    if Mark::of(&link).as_ref() != Some(&mark) {
                        return Ok(false);
                    }
                    nl.delete_link(index).map(|()| true)
                });
                drop(session);
                if matches!(deleted, Ok(true)) {
                    removed.push(format!("{}:{name}", path.display()));
                }
            }
        }
        removed
    }

    /// Checks the networks only: interrupted creations and removals, owned
    /// parents missing after a reboot, marked links on the host that no
    /// network explains; with `in_namespaces`, also endpoint links in every
    /// namespace of networks that no longer exist (a removal whose links
    /// a crash kept from being deleted).
    pub(super) fn recover_networks(&self, in_namespaces: bool) -> Result<RecoveryReport> {
        let _lock = self.networks.lock()?;
        let interrupted = if in_namespaces {
            self.networks.pending()?
        } else {
            Vec::new()
        };
        let mut report = RecoveryReport {
            quarantined: self.networks.quarantine()?,
            ..RecoveryReport::default()
        };
        let mut explained = Vec::new();
        for record in self.networks.networks()? {
            let mark = self.parent_mark(&record);
            match record.state {
                NetworkState::Creating => {
                    self.finish_removal(&record, Deletion::Now)?;
                    report.undone_creations.push(record.name.clone());
                }
                NetworkState::Removing => {
                    self.finish_removal(&record, Deletion::Now)?;
                    report.finished_removals.push(record.name.clone());
                }
                NetworkState::Ready => {
                    // After a reboot the runtime state is gone, and so are
                    // the containers. Nothing is made for it here: the
                    // network's first session makes it anew (`open_session`),
                    // filled from the links that carry the network's mark, so
                    // that if it went while containers live (a runtime
                    // directory removed by hand, a cleaned /run) their links
                    // are adopted again, not deleted as unexplained.
                    let parent_ok = match parent::ensure(&self.nl, &record.parent, &mark) {
                        Ok(true) => {
                            report.recreated_parents.push(record.parent.name.clone());
                            true
                        }
                        Ok(false) => true,
                        Err(e) => {
                            log::warn!(
                                "network {}: cannot restore parent {}: {e}",
                                record.name,
                                record.parent.name
                            );
                            report
                                .broken_networks
                                .push((record.name.clone(), e.to_string()));
                            false
                        }
                    };
                    explained.push(mark);
                    if let Some(shim) = &record.host_shim {
                        // (Not on a parent that could not be had: nothing
                        // is made on a link that is not the network's.)
                        let ensured = if parent_ok {
                            self.ensure_shim(&record, shim)
                        } else {
                            Ok(false)
                        };
                        match ensured {
                            Ok(true) => report.recreated_shims.push(shim.link.clone()),
                            Ok(false) => {}
                            Err(e) => {
                                log::warn!(
                                    "network {}: cannot restore host shim {}: {e}",
                                    record.name,
                                    shim.link
                                );
                                report
                                    .broken_networks
                                    .push((record.name.clone(), e.to_string()));
                            }
                        }
                        explained.push(self.shim_mark(&record));
                    }
                }
            }
        }
        let host = self.networks.host_id();
        // A quarantined record's owned parent must not go: its containers'
        // links would go with it.
        let keep_unexplained = self.networks.has_quarantined();
        for link in self.nl.links()? {
            let Some(mark) = Mark::of(&link) else {
                continue;
            };
            if mark.host == host && !explained.contains(&mark) && !keep_unexplained {
                match self.nl.delete_link(link.index) {
                    Ok(()) | Err(Error::LinkNotFound { .. }) => {
                        report.removed_links.push(link.name)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // A removal that a crash interrupted may have left links taken off
        // the network in containers' namespaces, which nothing records any
        // more (once the network's endpoint state or record is gone): those
        // of networks that no longer exist go.
        let records = self.networks.networks()?;
        let gone = |name: &String| !records.iter().any(|r| r.name == *name);
        if interrupted.iter().any(gone) && !keep_unexplained {
            report
                .removed_links
                .extend(self.remove_unexplained_endpoint_links(|mark| {
                    records.iter().any(|r| r.id == mark.network)
                }));
        }
        // Everything interrupted is settled now.
        self.networks.recovered()?;
        Ok(report)
    }
}

/// The namespace files a machine knows: named ones, those bind-mounted
/// anywhere else (a runtime's own directory), every process's and thread's,
/// and every namespace a process holds open (a runtime may keep a
/// container's namespace by a file descriptor alone).
fn namespace_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
        paths.extend(namespace_mounts(&mounts));
    }
    let processes: Vec<PathBuf> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|e| e.path())
        .collect();
    for process in &processes {
        paths.push(process.join("ns/net"));
        // Threads may be in namespaces of their own.
        for task in std::fs::read_dir(process.join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if Some(task.file_name().as_os_str()) != process.file_name() {
                paths.push(task.path().join("ns/net"));
            }
        }
    }
    for process in &processes {
        for fd in std::fs::read_dir(process.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let is_netns = std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("net:["));
            if is_netns {
                paths.push(fd.path());
            }
        }
    }
    paths
}

/// The mount points of namespace files (`nsfs`) in a `mountinfo` text: the
/// fifth field, with the kernel's octal escapes (`\040` for a space)
/// undone, of lines whose file system (after ` - `) is `nsfs`.
fn namespace_mounts(mountinfo: &str) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    mountinfo
        .lines()
        .filter_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            if rest.split(' ').next()? != "nsfs" {
                return None;
            }
            let point = fields.split(' ').nth(4)?;
            let mut bytes = Vec::with_capacity(point.len());
            let raw = point.as_bytes();
            let mut i = 0;
            while i < raw.len() {
                let octal = raw.get(i + 1..i + 4).and_then(|d| {
                    std::str::from_utf8(d)
                        .ok()
                        .and_then(|d| u8::from_str_radix(d, 8).ok())
                });
                match (raw[i], octal) {
                    (b'\\', Some(byte)) => {
                        bytes.push(byte);
                        i += 4;
                    }
                    (byte, _) => {
                        bytes.push(byte);
                        i += 1;
                    }
                }
            }
            Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_mounts_are_read_from_mountinfo() {
        let mountinfo = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
605 26 0:4 net:[4026532301] /run/netns/a rw shared:2 - nsfs nsfs rw
606 26 0:4 net:[4026532402] /var/run/docker/netns/b\\040c rw - nsfs nsfs rw
607 26 0:22 / /proc rw - proc proc rw
";
        assert_eq!(
            namespace_mounts(mountinfo),
            [
                PathBuf::from("/run/netns/a"),
                PathBuf::from("/var/run/docker/netns/b c")
            ]
        );
        assert!(namespace_mounts("garbage\n - nsfs").is_empty());
    }
}
