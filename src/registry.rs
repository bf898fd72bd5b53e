//! The endpoint records of one network, shared safely between processes.
//!
//! Endpoints are runtime state: their records live under the runtime
//! directory (on tmpfs, `/run/underlay/STATE_ID/` by default), because a
//! reboot takes the containers away with them. Each network has
//!
//! ```text
//! RUNTIME/NETWORK_ID/lock                        flock + change counter
//! RUNTIME/NETWORK_ID/ENDPOINT_ID.attaching.json  an attach under way
//! RUNTIME/NETWORK_ID/ENDPOINT_ID.json            one record per endpoint
//! ```
//!
//! An attach writes its record once, as `.attaching.json`, before it touches
//! the kernel, and renames it when it is done: a record that is still
//! `.attaching.json` after its process died is an attach a crash
//! interrupted, which recovery undoes. (Such a record may even be cut short
//! by the crash: it was written before anything was made, so it is simply
//! dropped.)
//!
//! Storing an attach writes one small file, whatever the number of
//! endpoints. The addresses in use are not stored twice: each process keeps
//! the network's allocator in memory, rebuilt from the records, and the
//! change counter in the lock file tells it when another process changed
//! them, so it reads the directory again only then.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ipam::Ipam;
use crate::link::MacAddress;
use crate::netns::{NetNs, NetNsId};
use crate::network::NetworkRecord;
use crate::store::{self, Durability, Lock};
use crate::Result;

/// Where an endpoint is in its life. `Attaching` records that survive
/// their process are attaches a crash interrupted, which recovery undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EndpointState {
    Attaching,
    Ready,
}

/// What is stored for an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndpointRecord {
    pub version: u32,
    pub id: u64,
    pub name: String,
    pub aliases: Vec<String>,
    pub netns_path: PathBuf,
    pub netns_id: NetNsId,
    pub ifname: String,
    pub mac: Option<MacAddress>,
    pub addresses: Vec<IpNet>,
    /// Told by the file name, not stored in it.
    #[serde(skip, default = "ready")]
    pub state: EndpointState,
    pub created: u64,
}

fn ready() -> EndpointState {
    EndpointState::Ready
}

/// The suffix of records of attaches under way.
const ATTACHING: &str = ".attaching.json";

impl EndpointRecord {
    pub const VERSION: u32 = 1;

    pub fn addresses_ip(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses.iter().map(|a| a.addr())
    }

    /// The endpoint's namespace, if its recorded path still names the
    /// namespace it was attached in.
    pub fn netns(&self) -> Option<NetNs> {
        NetNs::open(&self.netns_path)
            .ok()
            .filter(|ns| ns.id() == self.netns_id)
    }
}

/// One network's endpoint records and address allocator.
#[derive(Debug)]
pub(crate) struct Registry {
    dir: PathBuf,
    network: NetworkRecord,
    cache: Mutex<Option<Cache>>,
}

#[derive(Debug)]
struct Cache {
    counter: u64,
    ipam: Ipam,
    endpoints: BTreeMap<u64, EndpointRecord>,
}

/// Exclusive access to a network's endpoints, across threads and processes,
/// with an up-to-date view of them.
pub(crate) struct Session<'a> {
    lock: Lock,
    cache: MutexGuard<'a, Option<Cache>>,
    registry: &'a Registry,
}

impl Registry {
    pub fn new(runtime_dir: &Path, network: &NetworkRecord) -> Self {
        Registry {
            dir: runtime_dir.join(&network.id),
            network: network.clone(),
            cache: Mutex::new(None),
        }
    }

    /// The directory of this network's records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the network's lock and brings the in-memory view up to date.
    pub fn session(&self) -> Result<Session<'_>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        store::create_dir(&self.dir)?;
        let lock = store::lock(&self.dir.join("lock"), true)?;
        let counter = lock.counter()?;
        if cache.as_ref().is_none_or(|c| c.counter != counter) {
            *cache = Some(self.load(counter)?);
        }
        Ok(Session {
            lock,
            cache,
            registry: self,
        })
    }

    /// Reads every record and rebuilds the allocator from them.
    fn load(&self, counter: u64) -> Result<Cache> {
        let mut ipam = Ipam::new(&self.network.name, &self.network.ipam, self.network.policy);
        let mut endpoints = BTreeMap::new();
        for path in store::list_records(&self.dir)? {
            let attaching = path.to_string_lossy().ends_with(ATTACHING);
            let record = match store::read_record::<EndpointRecord>(&path) {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(e) if attaching => {
                    // Cut short by a crash before anything was made.
                    log::warn!("dropping an unfinished attach record: {e}");
                    store::remove_record(&path, Durability::Atomic)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let record = EndpointRecord {
                state: if attaching {
                    EndpointState::Attaching
                } else {
                    EndpointState::Ready
                },
                ..record
            };
            for address in record.addresses_ip() {
                if let Err(e) = ipam.request(address, record.id) {
                    log::warn!(
                        "network {}: endpoint {} holds {address}, which the allocator refuses: {e}",
                        self.network.name,
                        record.name
                    );
                }
            }
            endpoints.insert(record.id, record);
        }
        Ok(Cache {
            counter,
            ipam,
            endpoints,
        })
    }
}

impl Session<'_> {
    fn cache(&mut self) -> &mut Cache {
        self.cache.as_mut().expect("loaded when the session began")
    }

    /// The network's allocator.
    pub fn ipam(&mut self) -> &mut Ipam {
        &mut self.cache().ipam
    }

    /// The endpoints, by id.
    pub fn endpoints(&self) -> impl Iterator<Item = &EndpointRecord> + '_ {
        self.cache
            .as_ref()
            .expect("loaded when the session began")
            .endpoints
            .values()
    }

    /// Announces a change to other processes, before making it: one that
    /// dies half-way makes the others re-read, which is always safe.
    fn bump(&mut self) -> Result<()> {
        let next = self.cache().counter.wrapping_add(1);
        self.lock.set_counter(next)?;
        self.cache().counter = next;
        Ok(())
    }

    fn path(&self, id: u64, state: EndpointState) -> PathBuf {
        match state {
            EndpointState::Ready => self.registry.dir.join(format!("{id:016x}.json")),
            EndpointState::Attaching => self.registry.dir.join(format!("{id:016x}{ATTACHING}")),
        }
    }

    /// Stores an endpoint record (its addresses must already be allocated).
    /// A record of an attach under way is written in place, with no
    /// temporary file: before the attach touches the kernel, losing it to a
    /// crash loses nothing.
    pub fn save(&mut self, record: &EndpointRecord) -> Result<()> {
        self.bump()?;
        let path = self.path(record.id, record.state);
        match record.state {
            EndpointState::Attaching => {
                let bytes = serde_json::to_vec(record)
                    .map_err(|e| crate::Error::Protocol(format!("serialize an endpoint: {e}")))?;
                std::fs::write(&path, bytes)
                    .map_err(|e| crate::Error::io(format!("write {}", path.display()), e))?;
            }
            EndpointState::Ready => store::write_record(&path, record, Durability::Atomic)?,
        }
        self.cache().endpoints.insert(record.id, record.clone());
        Ok(())
    }

    /// Marks an attach as done: one rename.
    pub fn mark_ready(&mut self, record: &mut EndpointRecord) -> Result<()> {
        self.bump()?;
        let from = self.path(record.id, EndpointState::Attaching);
        let to = self.path(record.id, EndpointState::Ready);
        std::fs::rename(&from, &to).map_err(|e| {
            crate::Error::io(format!("rename {} to {}", from.display(), to.display()), e)
        })?;
        record.state = EndpointState::Ready;
        self.cache().endpoints.insert(record.id, record.clone());
        Ok(())
    }

    /// Removes an endpoint's record and releases its addresses.
    pub fn forget(&mut self, id: u64) -> Result<Option<EndpointRecord>> {
        self.bump()?;
        let record = self.cache().endpoints.remove(&id);
        let state = record.as_ref().map_or(EndpointState::Ready, |r| r.state);
        store::remove_record(&self.path(id, state), Durability::Atomic)?;
        if let Some(record) = &record {
            for address in record.addresses_ip() {
                self.cache().ipam.release(address);
            }
        }
        Ok(record)
    }

    /// Releases addresses allocated for an attach that will not happen.
    pub fn release(&mut self, addresses: &[IpAddr]) {
        for address in addresses {
            self.cache().ipam.release(*address);
        }
    }

    /// An endpoint id not used yet in this network (never 0).
    pub fn new_id(&self) -> Result<u64> {
        loop {
            let mut bytes = [0u8; 8];
            crate::link::fill_random(&mut bytes)?;
            let id = u64::from_le_bytes(bytes);
            if id != 0 && !self.endpoints().any(|e| e.id == id) {
                return Ok(id);
            }
        }
    }
}
