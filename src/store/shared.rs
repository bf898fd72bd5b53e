//! Addresses arbitrated among hosts: when several hosts put containers on
//! one segment, each address is claimed in a store they share before a
//! container gets it, and released only by the claim's holder.
//!
//! [`SharedStore`] is the seam (etcd implements it: `store::EtcdStore`,
//! feature `etcd`). [`ClaimingEndpointStore`] puts it in front of a host's
//! own endpoint store: every record saved with an address claims it (after
//! the record is written, so a crash leaves an intent that recovery undoes),
//! and every record forgotten or abandoned releases its addresses, comparing
//! the claim's value so that another holder's claim is never deleted. The
//! local allocator proposes; the shared store decides.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{EndpointRecord, EndpointSession, EndpointStore, NetworkRecord, Owner};
use crate::ipam::Ipam;
use crate::{Error, Result};

/// Who holds a claimed address: the value stored with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The holding host's id (its state directory's).
    pub host: String,
    /// The network's name.
    pub network: String,
    /// The endpoint's id, 16 hexadecimal digits.
    pub endpoint: String,
    /// The endpoint's name.
    pub name: String,
    /// The container's namespace path, as the host knows it.
    pub container: String,
}

impl Claim {
    /// Whether `other` is the same holder: the same host's same endpoint
    /// (its name or namespace path may have been learnt anew, as after a
    /// rebuild of lost state).
    pub fn same_holder(&self, other: &Claim) -> bool {
        self.host == other.host && self.endpoint == other.endpoint
    }

    /// The claim of `record`'s addresses, made by `host` on `network`.
    pub fn of(host: &str, network: &NetworkRecord, record: &EndpointRecord) -> Claim {
        Claim {
            host: host.to_owned(),
            network: network.name.clone(),
            endpoint: format!("{:016x}", record.id),
            name: record.name.clone(),
            container: record.netns_path.display().to_string(),
        }
    }
}

/// A store of address claims shared by hosts.
pub trait SharedStore: Send + Sync + fmt::Debug {
    /// Claims `address` of the network called `network` (on every host:
    /// hosts share a network by its name) for `claim`, if no one holds it
    /// and `claim`'s host has the network (see [`join`](Self::join)), in
    /// one atomic write. Returns `None` when the claim is `claim`'s now (or
    /// was already), or the claim that holds it.
    ///
    /// # Errors
    /// [`Error::NoLongerShared`] when the host's part in the network is
    /// gone ([`undefine`](Self::undefine), [`forget_host`](Self::forget_host))
    /// and the address is not `claim`'s already; when the store cannot be
    /// reached or answers nonsense.
    fn claim(&self, network: &str, address: IpAddr, claim: &Claim) -> Result<Option<Claim>>;

    /// Releases `address` if `claim`'s holder (its host's endpoint) holds
    /// it. Returns whether it was released (`false`: no one held it).
    ///
    /// # Errors
    /// [`Error::AddressClaimed`] when another holder has it (never
    /// released); when the store cannot be reached.
    fn release(&self, network: &str, address: IpAddr, claim: &Claim) -> Result<bool>;

    /// Every claim on the network called `network`.
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn claims(&self, network: &str) -> Result<Vec<(IpAddr, Claim)>>;

    /// The network's shared definition: `proposal` is written if there is
    /// none (and `None` returned), else the stored one is returned, to be
    /// compared and adopted. (A definition is a [`NetworkRecord`] as JSON,
    /// without what is each host's: parent, id, state.)
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn define(&self, network: &str, proposal: &str) -> Result<Option<String>>;

    /// The network's shared definition, if there is one (as [`define`]
    /// returns it).
    ///
    /// [`define`]: SharedStore::define
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn definition(&self, network: &str) -> Result<Option<String>>;

    /// Records that `host` has the network now, only while its definition
    /// is `definition` (as [`define`](Self::define) or
    /// [`definition`](Self::definition) gave it), in one atomic write: a
    /// definition removed or replaced meanwhile is not joined. Returns
    /// whether the host joined.
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn join(&self, network: &str, host: &str, definition: &str) -> Result<bool>;

    /// Records that `host` has the network no more; the definition goes
    /// with the last host. Returns whether it went.
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn leave(&self, network: &str, host: &str) -> Result<bool>;

    /// Removes the network's shared definition and every host's part in
    /// it, whoever still has it. With `only_if_unclaimed`, only while no
    /// address of it is claimed (checked in the same atomic write). Claims
    /// are never removed: an address stays held until its holder releases
    /// it (or its host is forgotten). Returns whether the definition went.
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn undefine(&self, network: &str, only_if_unclaimed: bool) -> Result<bool>;

    /// Forgets a host that is gone for good: releases every address it
    /// claimed and its part in every network. Returns how many addresses
    /// were released.
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn forget_host(&self, host: &str) -> Result<usize>;
}

/// The definition other hosts share of `record`: the record without what
/// is this host's own (parent, id, creation time, state).
pub(crate) fn definition_of(record: &NetworkRecord) -> Result<String> {
    let mut shared = record.clone();
    shared.parent = crate::parent::ParentLink {
        name: String::new(),
        kind: crate::parent::ParentKind::Existing,
    };
    shared.id = String::new();
    shared.created = 0;
    shared.state = super::NetworkState::Ready;
    shared.host_shim = None;
    shared.shared = true;
    serde_json::to_string(&shared).map_err(|e| Error::StateEncoding {
        what: format!("shared definition of network {:?}", record.name),
        reason: e.to_string(),
    })
}

/// Whether a host's record of a network is of the shared definition
/// `stored`: what a joining host must agree on (its driver and mode, its
/// address plan, which it adopts as it is, its families, `internal`, its
/// MTU); not labels or policy, which are each host's.
fn same_definition(local: &NetworkRecord, stored: &NetworkRecord) -> bool {
    local.driver == stored.driver
        && local.ipam == stored.ipam
        && local.ipv4 == stored.ipv4
        && local.ipv6 == stored.ipv6
        && local.internal == stored.internal
        && local.mtu == stored.mtu
}

/// A shared definition read back.
pub(crate) fn read_definition(network: &str, text: &str) -> Result<NetworkRecord> {
    serde_json::from_str(text).map_err(|e| Error::SharedStoreUnavailable {
        tried: format!("the shared definition of network {network:?} does not read back ({e})"),
    })
}

/// A host's endpoint store with its addresses claimed in a shared store.
#[derive(Debug)]
pub struct ClaimingEndpointStore {
    inner: Box<dyn EndpointStore>,
    claims: Arc<dyn SharedStore>,
    host: String,
}

impl ClaimingEndpointStore {
    /// `inner`'s endpoints, their addresses claimed in `claims` for `host`.
    pub fn new(inner: Box<dyn EndpointStore>, claims: Arc<dyn SharedStore>, host: &str) -> Self {
        ClaimingEndpointStore {
            inner,
            claims,
            host: host.to_owned(),
        }
    }
}

impl EndpointStore for ClaimingEndpointStore {
    fn add_network(&self, network: &NetworkRecord) -> Result<()> {
        self.inner.add_network(network)
    }

    /// A network that is not shared (one made before the host had the
    /// shared store) is this host's alone: nothing is claimed for it.
    fn session<'a>(&'a self, network: &NetworkRecord) -> Result<Box<dyn EndpointSession + 'a>> {
        if !network.shared {
            return self.inner.session(network);
        }
        Ok(Box::new(ClaimingSession {
            inner: self.inner.session(network)?,
            claims: self.claims.as_ref(),
            host: &self.host,
            network: network.clone(),
        }))
    }

    fn quarantine_network(&self, network: &NetworkRecord) -> Result<String> {
        self.inner.quarantine_network(network)
    }

    fn remove_network(&self, network: &NetworkRecord) -> Result<()> {
        self.inner.remove_network(network)?;
        if !network.shared {
            return Ok(());
        }
        // Whatever this host still claimed on the network (endpoints of a
        // forced removal, detached ones) is free now; the network may still
        // be other hosts'.
        for (address, claim) in self.claims.claims(&network.name)? {
            if claim.host == self.host {
                self.claims.release(&network.name, address, &claim)?;
            }
        }
        Ok(())
    }

    fn watch_paths(&self) -> Vec<std::path::PathBuf> {
        self.inner.watch_paths()
    }

    fn reconcile(&self, network: &NetworkRecord) -> Result<usize> {
        if !network.shared {
            return self.inner.reconcile(network);
        }
        // This host has the network: say so again (a failed or lost join),
        // but only to the definition it has. Gone, or another now (removed
        // everywhere, defined anew): this host's part stays gone, and its
        // attaches are refused until it is removed here and created again.
        let joined = match self.claims.definition(&network.name)? {
            Some(stored) if same_definition(network, &read_definition(&network.name, &stored)?) => {
                // (Not joined if it changed since it was read.)
                self.claims.join(&network.name, &self.host, &stored)?
            }
            Some(_) => {
                log::error!(
                    "network {}: its shared definition is another now (removed everywhere and defined anew); this host's part is not joined to it: detach its containers, remove the network here and create it again",
                    network.name
                );
                false
            }
            None => {
                log::warn!(
                    "network {}: it is shared no more (removed everywhere); detach its containers and remove it here",
                    network.name
                );
                false
            }
        };
        let all = self.claims.claims(&network.name)?;
        let session = self.inner.session(network)?;
        // Every address a record of this host holds is claimed for it: a
        // claim lost (forgotten by mistake, a store restored) is made again,
        // and one another host took meanwhile is reported, loudly.
        for record in session.endpoints().filter(|_| joined) {
            let claim = Claim::of(&self.host, network, record);
            for address in record.ips() {
                let claimed = all
                    .iter()
                    .any(|(a, c)| *a == address && c.same_holder(&claim));
                if claimed {
                    continue;
                }
                if let Some(holder) = self.claims.claim(&network.name, address, &claim)? {
                    log::error!(
                        "network {}: endpoint {} holds {address}, which host {} claimed meanwhile (endpoint {}): one of them must go",
                        network.name,
                        record.name,
                        holder.host,
                        holder.name
                    );
                }
            }
        }
        let held: Vec<(IpAddr, Claim)> = all
            .into_iter()
            .filter(|(_, claim)| claim.host == self.host)
            .collect();
        let mut released = 0;
        for (address, claim) in held {
            let recorded = session.endpoints().any(|e| {
                format!("{:016x}", e.id) == claim.endpoint && e.ips().any(|a| a == address)
            });
            if !recorded && self.claims.release(&network.name, address, &claim)? {
                log::info!(
                    "network {}: released {address}, claimed for endpoint {} that this host no longer has",
                    network.name,
                    claim.name
                );
                released += 1;
            }
        }
        Ok(released)
    }
}

/// A session whose saves claim and whose forgets release.
struct ClaimingSession<'a> {
    inner: Box<dyn EndpointSession + 'a>,
    claims: &'a dyn SharedStore,
    host: &'a str,
    network: NetworkRecord,
}

impl ClaimingSession<'_> {
    /// Releases `addresses` of `record`; a failure is logged (the claim
    /// stays with this host, and recovery's reconciliation releases it).
    fn release(&self, record: &EndpointRecord, addresses: impl Iterator<Item = IpAddr>) {
        let claim = Claim::of(self.host, &self.network, record);
        for address in addresses {
            if let Err(e) = self.claims.release(&self.network.name, address, &claim) {
                log::warn!(
                    "network {}: cannot release the claim on {address} now ({e}); recovery will",
                    self.network.name
                );
            }
        }
    }
}

impl EndpointSession for ClaimingSession<'_> {
    fn endpoints(&self) -> Box<dyn Iterator<Item = &EndpointRecord> + '_> {
        self.inner.endpoints()
    }

    fn unfinished(&self) -> Vec<EndpointRecord> {
        self.inner.unfinished()
    }

    fn ipam(&mut self) -> &mut Ipam {
        self.inner.ipam()
    }

    fn save(&mut self, record: &EndpointRecord) -> Result<()> {
        // The intent first: a crash after this leaves a record recovery
        // undoes (releasing whatever was claimed for it).
        self.inner.save(record)?;
        let claim = Claim::of(self.host, &self.network, record);
        let mut claimed = Vec::new();
        for address in record.ips() {
            let mut answer = self.claims.claim(&self.network.name, address, &claim);
            if let Ok(Some(holder)) = &answer {
                // This host's own claim that none of its records explains
                // (a release that could not reach the store, a crash after
                // a claim): stale, taken over under the lock.
                let ours = holder.host == self.host
                    && !self
                        .inner
                        .endpoints()
                        .any(|e| format!("{:016x}", e.id) == holder.endpoint);
                if ours {
                    let stale = holder.clone();
                    answer = self
                        .claims
                        .release(&self.network.name, address, &stale)
                        .and_then(|_| self.claims.claim(&self.network.name, address, &claim));
                }
            }
            match answer {
                Ok(None) => claimed.push(address),
                Ok(Some(holder)) => {
                    self.release(record, claimed.into_iter());
                    return Err(Error::AddressClaimed {
                        address,
                        network: self.network.name.clone(),
                        host: holder.host,
                        endpoint: holder.name,
                    });
                }
                Err(e) => {
                    self.release(record, claimed.into_iter());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn mark_ready(&mut self, id: u64) -> Result<()> {
        self.inner.mark_ready(id)
    }

    fn mark_detaching(&mut self, id: u64, owner: Owner) -> Result<()> {
        self.inner.mark_detaching(id, owner)
    }

    fn mark_detached(&mut self, id: u64) -> Result<()> {
        self.inner.mark_detached(id)
    }

    fn forget(&mut self, id: u64) -> Result<Option<EndpointRecord>> {
        let record = self.inner.forget(id)?;
        if let Some(record) = &record {
            self.release(record, record.ips());
        }
        Ok(record)
    }

    fn spread(&self) -> Option<u64> {
        // FNV-1a of the host id: stable, and different per host.
        Some(self.host.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }))
    }

    fn held_elsewhere(&self) -> Result<Vec<IpAddr>> {
        Ok(self
            .claims
            .claims(&self.network.name)?
            .into_iter()
            .filter(|(_, claim)| claim.host != self.host)
            .map(|(address, _)| address)
            .collect())
    }

    fn abandon(&mut self, id: u64, addresses: &[IpAddr]) -> Result<()> {
        let record = self.inner.endpoints().find(|e| e.id == id).cloned();
        self.inner.abandon(id, addresses)?;
        if let Some(record) = record {
            self.release(&record, addresses.iter().copied());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::NetworkIpamConfig;
    use crate::Network;

    fn record(builder: crate::network::NetworkBuilder, subnet: &str) -> NetworkRecord {
        let parent = crate::parent::ParentLink {
            name: "eth0".into(),
            kind: crate::parent::ParentKind::Existing,
        };
        let ipam = NetworkIpamConfig::from_docker_lists(&[subnet], &[], &[], &[]).unwrap();
        builder
            .build()
            .unwrap()
            .into_record("0".repeat(64), parent, ipam)
    }

    #[test]
    fn a_host_rejoins_only_the_definition_it_has() {
        let base = || Network::builder("n").macvlan().parent("eth0");
        let mine = record(base(), "10.1.0.0/24");
        // Its own definition, read back as the store holds it; another
        // parent, labels or policy are each host's.
        let stored = read_definition("n", &definition_of(&mine).unwrap()).unwrap();
        assert!(same_definition(&mine, &stored));
        let elsewhere = record(base().parent("eth1").label("k", "v"), "10.1.0.0/24");
        assert!(same_definition(&mine, &elsewhere));
        // Defined anew with anything a joining host must agree on changed.
        for other in [
            record(base(), "10.2.0.0/24"),
            record(base().option("macvlan_mode", "private"), "10.1.0.0/24"),
            record(base().mtu(1400), "10.1.0.0/24"),
            record(base().internal(true), "10.1.0.0/24"),
            record(Network::builder("n").ipvlan().parent("eth0"), "10.1.0.0/24"),
        ] {
            assert!(!same_definition(&mine, &other), "{other:?}");
        }
    }
}
