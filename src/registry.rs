//! The endpoint records of one network, shared safely between processes.
//!
//! Endpoints are runtime state: their records live under the runtime
//! directory (on tmpfs, `/run/underlay/STATE_ID/` by default), because a
//! reboot takes the containers away with them. Each network has
//!
//! ```text
//! RUNTIME/NETWORK_ID/lock           flock: one attach or detach at a time
//! RUNTIME/NETWORK_ID/endpoints.log  the journal of endpoint records
//! ```
//!
//! The journal is append-only, one JSON entry a line: an attach appends its
//! record (`attaching`) before it touches the kernel and a one-line `ready`
//! when it is done; a detach appends `forget`. Storing an attach thus costs
//! two small appends to an open file, whatever the number of endpoints, and
//! creates no file. When most of the journal is history, it is compacted:
//! the live records are written to a new file that replaces it atomically.
//!
//! Each process keeps the network's records and allocator in memory and the
//! length of the journal it has read: under the lock it reads only what
//! other processes appended since (or everything, after a compaction).
//!
//! A crash can cut the last entry short. Entries are appended under the
//! lock, so whoever takes the lock next finds the cut line and truncates it;
//! a cut `attaching` entry was written before anything was made, so nothing
//! is lost with it. A record still `attaching` once its process is gone is
//! an attach a crash interrupted, which recovery undoes. A failed attach
//! truncates its own entries away, leaving the journal as it was.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ipam::Ipam;
use crate::link::MacAddress;
use crate::netns::{NetNs, NetNsId};
use crate::network::NetworkRecord;
use crate::store::{self, Durability};
use crate::{Error, Result};

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
    /// Told by the journal entries, not stored in the record.
    #[serde(skip, default = "ready")]
    pub state: EndpointState,
    pub created: u64,
}

fn ready() -> EndpointState {
    EndpointState::Ready
}

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

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Entry {
    /// An attach begins (or its record changes while it is under way).
    Attaching(EndpointRecord),
    /// The attach with this id is done.
    Ready(u64),
    /// The endpoint with this id is gone.
    Forget(u64),
    /// A record as it stands, written by compaction.
    Record(EndpointRecord),
}

/// The journal's file name.
const JOURNAL: &str = "endpoints.log";

/// Compaction happens when the journal holds more than this many entries
/// and more than `COMPACT_RATIO` times as many as there are endpoints.
const COMPACT_MIN_ENTRIES: usize = 1024;
const COMPACT_RATIO: usize = 4;

/// One network's endpoint records and address allocator.
#[derive(Debug)]
pub(crate) struct Registry {
    dir: PathBuf,
    network: NetworkRecord,
    state: Mutex<State>,
}

/// What a process keeps of a network between sessions.
#[derive(Debug, Default)]
struct State {
    /// The lock file, opened once.
    lock_file: Option<File>,
    /// The records and allocator, as of `Cache::read`.
    cache: Option<Cache>,
    /// The parent's interface index, once looked up (0: not yet). A deleted
    /// parent's index is not handed to another link (the kernel allocates
    /// them cyclically), so a stale one fails with `ENODEV`, never points
    /// elsewhere.
    parent_index: u32,
}

#[derive(Debug)]
struct Cache {
    /// The journal, open for appending.
    journal: File,
    /// Its inode: compaction replaces the file.
    inode: u64,
    /// How many bytes of it are applied below.
    read: u64,
    /// How many entries those bytes hold.
    entries: usize,
    ipam: Ipam,
    endpoints: BTreeMap<u64, EndpointRecord>,
}

/// Exclusive access to a network's endpoints, across threads (the mutex)
/// and processes (`flock`, released when the session ends), with an
/// up-to-date view of them.
pub(crate) struct Session<'a> {
    state: MutexGuard<'a, State>,
    registry: &'a Registry,
}

impl Registry {
    pub fn new(runtime_dir: &Path, network: &NetworkRecord) -> Self {
        Registry {
            dir: runtime_dir.join(&network.id),
            network: network.clone(),
            state: Mutex::new(State::default()),
        }
    }

    /// The directory of this network's records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the network's runtime directory and empty journal, so that
    /// attaches (failed ones included) only ever append to it.
    pub fn prepare(&self) -> Result<()> {
        self.session().map(drop)
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    /// Takes the network's lock and brings the in-memory view up to date.
    pub fn session(&self) -> Result<Session<'_>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.lock_file.is_none() {
            store::create_dir(&self.dir)?;
            state.lock_file = Some(store::open_lock_file(&self.dir.join("lock"))?);
        }
        let file = state.lock_file.as_ref().expect("opened above");
        store::flock(file, libc::LOCK_EX, &self.dir)?;
        let mut session = Session {
            state,
            registry: self,
        };
        let cache = session.state.cache.take();
        session.state.cache = Some(self.catch_up(cache)?);
        Ok(session)
    }

    /// Applies what other processes appended since `cache` was read, or
    /// reads the whole journal when there is no cache or it was compacted.
    fn catch_up(&self, cache: Option<Cache>) -> Result<Cache> {
        let path = self.journal_path();
        let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
        let mut cache = match cache {
            Some(cache) => cache,
            None => self.empty_cache()?,
        };
        let metadata = std::fs::metadata(&path).map_err(|e| io("stat", e))?;
        if metadata.ino() != cache.inode {
            cache = self.empty_cache()?;
        }
        let len = cache.journal.metadata().map_err(|e| io("stat", e))?.len();
        if len == cache.read {
            return Ok(cache);
        }
        let mut tail = Vec::with_capacity((len - cache.read) as usize);
        let mut reader = &cache.journal;
        reader
            .seek(SeekFrom::Start(cache.read))
            .and_then(|_| reader.read_to_end(&mut tail))
            .map_err(|e| io("read", e))?;
        // A line without its newline was cut short by a crash (entries are
        // appended under the lock we hold): drop it.
        let complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < tail.len() {
            log::warn!(
                "network {}: dropping a journal entry cut short by a crash",
                self.network.name
            );
            cache
                .journal
                .set_len(cache.read + complete as u64)
                .map_err(|e| io("truncate", e))?;
        }
        for line in tail[..complete]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let entry: Entry = serde_json::from_slice(line).map_err(|e| Error::CorruptState {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            cache.apply(&self.network.name, entry);
        }
        cache.read += complete as u64;
        Ok(cache)
    }

    fn empty_cache(&self) -> Result<Cache> {
        let path = self.journal_path();
        let journal = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let inode = journal
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .ino();
        Ok(Cache {
            journal,
            inode,
            read: 0,
            entries: 0,
            ipam: Ipam::new(&self.network.name, &self.network.ipam, self.network.policy),
            endpoints: BTreeMap::new(),
        })
    }
}

impl Cache {
    fn insert(&mut self, network: &str, mut record: EndpointRecord, state: EndpointState) {
        record.state = state;
        if let Some(old) = self.endpoints.remove(&record.id) {
            for address in old.addresses_ip() {
                self.ipam.release(address);
            }
        }
        for address in record.addresses_ip() {
            if self.ipam.holder(address) == Some(record.id) {
                continue; // allocated by this very attach
            }
            if let Err(e) = self.ipam.request(address, record.id) {
                log::warn!(
                    "network {network}: endpoint {} holds {address}, which the allocator refuses: {e}",
                    record.name
                );
            }
        }
        self.endpoints.insert(record.id, record);
    }

    fn apply(&mut self, network: &str, entry: Entry) {
        self.entries += 1;
        match entry {
            Entry::Attaching(record) => self.insert(network, record, EndpointState::Attaching),
            Entry::Record(record) => self.insert(network, record, EndpointState::Ready),
            Entry::Ready(id) => {
                if let Some(record) = self.endpoints.get_mut(&id) {
                    record.state = EndpointState::Ready;
                }
            }
            Entry::Forget(id) => {
                if let Some(record) = self.endpoints.remove(&id) {
                    for address in record.addresses_ip() {
                        self.ipam.release(address);
                    }
                }
            }
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Some(file) = &self.state.lock_file {
            // SAFETY: unlocking a file descriptor we own.
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(file), libc::LOCK_UN) };
        }
    }
}

impl Session<'_> {
    fn cache(&mut self) -> &mut Cache {
        self.state
            .cache
            .as_mut()
            .expect("loaded when the session began")
    }

    /// The parent's cached interface index (0 when not known).
    pub fn parent_index(&self) -> u32 {
        self.state.parent_index
    }

    /// Remembers the parent's interface index.
    pub fn set_parent_index(&mut self, index: u32) {
        self.state.parent_index = index;
    }

    /// The network's allocator.
    pub fn ipam(&mut self) -> &mut Ipam {
        &mut self.cache().ipam
    }

    /// The endpoints, by id.
    pub fn endpoints(&self) -> impl Iterator<Item = &EndpointRecord> + '_ {
        self.state
            .cache
            .as_ref()
            .expect("loaded when the session began")
            .endpoints
            .values()
    }

    /// How much of the journal there is: a mark to [`roll_back`](Self::roll_back) to.
    pub fn mark(&mut self) -> u64 {
        self.cache().read
    }

    /// Appends one entry and applies it.
    fn append(&mut self, entry: Entry) -> Result<()> {
        let mut line = serde_json::to_vec(&entry)
            .map_err(|e| Error::Protocol(format!("serialize a journal entry: {e}")))?;
        line.push(b'\n');
        let path = self.registry.journal_path();
        let cache = self.cache();
        cache
            .journal
            .write_all(&line)
            .map_err(|e| Error::io(format!("append to {}", path.display()), e))?;
        cache.read += line.len() as u64;
        let network = self.registry.network.name.clone();
        self.cache().apply(&network, entry);
        Ok(())
    }

    /// Records an attach under way (its addresses must already be
    /// allocated), or a change to its record.
    pub fn save(&mut self, record: &EndpointRecord) -> Result<()> {
        let mut record = record.clone();
        record.state = EndpointState::Attaching;
        self.append(Entry::Attaching(record))
    }

    /// Marks an attach as done.
    pub fn mark_ready(&mut self, record: &mut EndpointRecord) -> Result<()> {
        self.append(Entry::Ready(record.id))?;
        record.state = EndpointState::Ready;
        self.compact_if_worth_it()
    }

    /// Removes an endpoint's record and releases its addresses.
    pub fn forget(&mut self, id: u64) -> Result<Option<EndpointRecord>> {
        let record = self.cache().endpoints.get(&id).cloned();
        if record.is_some() {
            self.append(Entry::Forget(id))?;
            self.compact_if_worth_it()?;
        }
        Ok(record)
    }

    /// Undoes everything since `mark` (an attach that failed): the journal
    /// is cut back, so it reads exactly as before the attach, and the
    /// attach's addresses are released.
    pub fn roll_back(&mut self, mark: u64, id: u64, addresses: &[IpAddr]) -> Result<()> {
        let path = self.registry.journal_path();
        let cache = self.cache();
        cache
            .journal
            .set_len(mark)
            .map_err(|e| Error::io(format!("truncate {}", path.display()), e))?;
        cache.read = mark;
        cache.endpoints.remove(&id);
        self.release(addresses);
        Ok(())
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

    /// Rewrites the journal with only the live records when most of it is
    /// history. Amortised over the appends that made it long, this keeps the
    /// cost of an attach constant.
    fn compact_if_worth_it(&mut self) -> Result<()> {
        let path = self.registry.journal_path();
        let cache = self.cache();
        if cache.entries <= COMPACT_MIN_ENTRIES
            || cache.entries <= COMPACT_RATIO * cache.endpoints.len().max(1)
        {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for record in cache.endpoints.values() {
            let entry = match record.state {
                EndpointState::Attaching => Entry::Attaching(record.clone()),
                EndpointState::Ready => Entry::Record(record.clone()),
            };
            serde_json::to_writer(&mut bytes, &entry)
                .map_err(|e| Error::Protocol(format!("serialize a journal entry: {e}")))?;
            bytes.push(b'\n');
        }
        store::write_atomic(&path, &bytes, Durability::Atomic)?;
        let count = cache.endpoints.len();
        let mut fresh = self.registry.empty_cache()?;
        let cache = self.cache();
        std::mem::swap(&mut fresh.journal, &mut cache.journal);
        cache.inode = fresh.inode;
        cache.read = bytes.len() as u64;
        cache.entries = count;
        log::debug!(
            "network {}: journal compacted to {count} records",
            self.registry.network.name
        );
        Ok(())
    }
}
