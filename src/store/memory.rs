//! [`MemoryStore`]: both stores in memory.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{
    EndpointRecord, EndpointSession, EndpointStore, EndpointTable, NetworkRecord, NetworkStore,
    StoreLock,
};
use crate::ipam::Ipam;
use crate::{Error, Result};

/// Networks and endpoints kept in memory: both a [`NetworkStore`] and an
/// [`EndpointStore`]. Clones share one state, so several hosts in one
/// process can share it as several processes share a state directory.
/// Nothing survives the process, and nothing is shared with other
/// processes: for tests, and for programs that keep their state elsewhere.
///
/// ```
/// use underlay::store::{MemoryStore, NetworkStore};
///
/// let store = MemoryStore::new();
/// assert_eq!(store.host_id().len(), 16);
/// assert!(store.networks()?.is_empty());
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    id: String,
    /// The store's lock: whether it is held, and a signal when it is not.
    locked: Mutex<bool>,
    unlocked: Condvar,
    networks: Mutex<BTreeMap<String, NetworkRecord>>,
    pending: Mutex<Vec<String>>,
    recovered: Mutex<bool>,
    /// Each network's endpoints, by network id; `None` while a session has
    /// them.
    tables: Mutex<HashMap<String, Option<EndpointTable>>>,
    returned: Condvar,
}

impl MemoryStore {
    /// An empty store with a fresh host id.
    ///
    /// # Panics
    /// Never in practice: only if the kernel cannot give random bytes for
    /// the id, in which case the id is made from the clock.
    pub fn new() -> Self {
        let id = crate::random::hex(8).unwrap_or_else(|_| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{:016x}", nanos as u64)
        });
        MemoryStore {
            shared: Arc::new(Shared {
                id,
                locked: Mutex::new(false),
                unlocked: Condvar::new(),
                networks: Mutex::new(BTreeMap::new()),
                pending: Mutex::new(Vec::new()),
                recovered: Mutex::new(false),
                tables: Mutex::new(HashMap::new()),
                returned: Condvar::new(),
            }),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The held lock of a [`MemoryStore`].
struct Held(Arc<Shared>);

impl Drop for Held {
    fn drop(&mut self) {
        *lock(&self.0.locked) = false;
        self.0.unlocked.notify_one();
    }
}

impl NetworkStore for MemoryStore {
    fn host_id(&self) -> &str {
        &self.shared.id
    }

    fn lock(&self) -> Result<StoreLock> {
        let mut locked = lock(&self.shared.locked);
        while *locked {
            locked = self
                .shared
                .unlocked
                .wait(locked)
                .unwrap_or_else(|p| p.into_inner());
        }
        *locked = true;
        Ok(Box::new(Held(Arc::clone(&self.shared))))
    }

    fn networks(&self) -> Result<Vec<NetworkRecord>> {
        Ok(lock(&self.shared.networks).values().cloned().collect())
    }

    fn network(&self, name: &str) -> Result<Option<NetworkRecord>> {
        Ok(lock(&self.shared.networks).get(name).cloned())
    }

    fn save(&self, record: &NetworkRecord) -> Result<()> {
        lock(&self.shared.networks).insert(record.name.clone(), record.clone());
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<()> {
        lock(&self.shared.networks).remove(name);
        Ok(())
    }

    fn begin(&self, name: &str) -> Result<()> {
        lock(&self.shared.pending).push(name.to_owned());
        Ok(())
    }

    fn end(&self, name: &str) {
        lock(&self.shared.pending).retain(|n| n != name);
    }

    fn pending(&self) -> Result<Vec<String>> {
        Ok(lock(&self.shared.pending).clone())
    }

    fn needs_recovery(&self) -> Result<bool> {
        Ok(!*lock(&self.shared.recovered) || !lock(&self.shared.pending).is_empty())
    }

    fn recovered(&self) -> Result<()> {
        lock(&self.shared.pending).clear();
        *lock(&self.shared.recovered) = true;
        Ok(())
    }
}

impl EndpointStore for MemoryStore {
    fn add_network(&self, network: &NetworkRecord) -> Result<()> {
        lock(&self.shared.tables)
            .entry(network.id.clone())
            .or_insert_with(|| Some(EndpointTable::new(network)));
        Ok(())
    }

    fn session<'a>(&'a self, network: &NetworkRecord) -> Result<Box<dyn EndpointSession + 'a>> {
        let mut tables = lock(&self.shared.tables);
        let table = loop {
            match tables.get_mut(&network.id) {
                None => {
                    return Err(Error::NetworkNotFound {
                        name: network.name.clone(),
                    })
                }
                Some(slot) => {
                    if let Some(table) = slot.take() {
                        break table;
                    }
                }
            }
            tables = self
                .shared
                .returned
                .wait(tables)
                .unwrap_or_else(|p| p.into_inner());
        };
        Ok(Box::new(MemorySession {
            shared: &self.shared,
            network: network.id.clone(),
            table: Some(table),
        }))
    }

    fn quarantine_network(&self, network: &NetworkRecord) -> Result<String> {
        lock(&self.shared.tables).insert(network.id.clone(), Some(EndpointTable::new(network)));
        Ok(format!("(memory) network {}", network.name))
    }

    fn remove_network(&self, network: &NetworkRecord) -> Result<()> {
        lock(&self.shared.tables).remove(&network.id);
        Ok(())
    }
}

struct MemorySession<'a> {
    shared: &'a Shared,
    network: String,
    /// Always `Some` until dropped.
    table: Option<EndpointTable>,
}

impl MemorySession<'_> {
    fn table(&mut self) -> &mut EndpointTable {
        self.table.as_mut().expect("held until drop")
    }
}

impl Drop for MemorySession<'_> {
    fn drop(&mut self) {
        let mut tables = lock(&self.shared.tables);
        // A network removed during the session stays removed.
        if let Some(slot) = tables.get_mut(&self.network) {
            *slot = self.table.take();
        }
        drop(tables);
        self.shared.returned.notify_all();
    }
}

impl EndpointSession for MemorySession<'_> {
    fn endpoints(&self) -> Box<dyn Iterator<Item = &EndpointRecord> + '_> {
        Box::new(
            self.table
                .as_ref()
                .expect("held until drop")
                .endpoints
                .values(),
        )
    }

    fn unfinished(&self) -> Vec<EndpointRecord> {
        self.table.as_ref().expect("held until drop").unfinished()
    }

    fn ipam(&mut self) -> &mut Ipam {
        &mut self.table().ipam
    }

    fn save(&mut self, record: &EndpointRecord) -> Result<()> {
        self.table()
            .insert(record.clone(), super::EndpointState::Attaching);
        Ok(())
    }

    fn mark_ready(&mut self, id: u64) -> Result<()> {
        self.table()
            .set_state(id, super::EndpointState::Ready, None);
        Ok(())
    }

    fn mark_detaching(&mut self, id: u64, owner: super::Owner) -> Result<()> {
        self.table()
            .set_state(id, super::EndpointState::Detaching, Some(owner));
        Ok(())
    }

    fn mark_detached(&mut self, id: u64) -> Result<()> {
        self.table().detach(id);
        Ok(())
    }

    fn forget(&mut self, id: u64) -> Result<Option<EndpointRecord>> {
        Ok(self.table().remove(id))
    }

    fn abandon(&mut self, id: u64, addresses: &[IpAddr]) -> Result<()> {
        self.table().abandon(id, addresses);
        Ok(())
    }
}
