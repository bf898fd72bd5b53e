//! The default [`EndpointStore`]: each network's endpoint records as an
//! append-only journal, shared safely between processes.
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

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::files::{self, Access, Durability, Link, DEFAULT_LOCK_TIMEOUT};
use super::{
    EndpointRecord, EndpointSession, EndpointState, EndpointStore, EndpointTable, NetworkRecord,
};
use crate::ipam::Ipam;
use crate::{Error, Result};

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Entry {
    /// An attach begins (or its record changes while it is under way).
    Attaching(EndpointRecord),
    /// The attach with this id is done.
    Ready(u64),
    /// The endpoint with this id is being detached by this process.
    Detaching {
        /// The endpoint.
        id: u64,
        /// The process detaching it.
        owner: super::Owner,
    },
    /// The endpoint with this id is off the network: its addresses are
    /// released; its link waits for deletion.
    Detached(u64),
    /// The endpoint with this id is gone.
    Forget(u64),
    /// A record as it stands, written by compaction.
    Record(EndpointRecord),
}

/// The journal's file name.
const JOURNAL: &str = "endpoints.log";

/// Compaction happens when the journal holds more than this many entries
/// and more than `COMPACT_RATIO` times as many as there are endpoints. A
/// process per call (the CLI, the CNI plugin) reads the whole journal each
/// time, so history is kept short: at most about twice the live records
/// (an endpoint's `attaching` and `ready` are two entries, so attaches
/// alone never compact), and the rewrite of the live records is amortised
/// over the entries that made it due.
const COMPACT_MIN_ENTRIES: usize = 64;
const COMPACT_RATIO: usize = 2;

/// The default [`EndpointStore`]: a journal per network under a runtime
/// directory (`/run/underlay/STATE_ID` for a host's state directory).
///
/// ```no_run
/// use underlay::store::{FileEndpointStore, FileNetworkStore};
/// use underlay::Host;
///
/// let networks = FileNetworkStore::open("/var/lib/underlay")?;
/// let endpoints = FileEndpointStore::new(networks.runtime_dir());
/// let host = Host::options().network_store(networks).endpoint_store(endpoints).open()?;
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug)]
pub struct FileEndpointStore {
    dir: PathBuf,
    lock_timeout: Duration,
    /// Each network's journal state, shared by every session in this
    /// process.
    journals: Mutex<HashMap<String, Arc<Journal>>>,
}

impl FileEndpointStore {
    /// A store under `runtime_dir`, which should be on tmpfs so that a
    /// reboot empties it along with the containers. The directory is made
    /// at the first session.
    pub fn new(runtime_dir: impl AsRef<Path>) -> Self {
        FileEndpointStore {
            dir: runtime_dir.as_ref().to_owned(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            journals: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session waits for another process's before it fails with
    /// [`Error::LockTimeout`] (30 s by default).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The runtime directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Drops this process's view of a network's journal (it is about to be
    /// moved or removed) and returns the network's directory.
    fn let_go(&self, network: &NetworkRecord) -> Result<PathBuf> {
        check_id(network)?;
        self.journals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&network.id);
        Ok(self.dir.join(&network.id))
    }

    fn journal(&self, network: &NetworkRecord) -> Arc<Journal> {
        let mut journals = self.journals.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(journals.entry(network.id.clone()).or_insert_with(|| {
            Arc::new(Journal {
                dir: self.dir.join(&network.id),
                network: network.clone(),
                state: Mutex::new(Some(State::default())),
                returned: Condvar::new(),
            })
        }))
    }
}

/// Refuses a network id that is not one before it becomes a path.
fn check_id(network: &NetworkRecord) -> Result<()> {
    if crate::names::is_network_id(&network.id) {
        Ok(())
    } else {
        Err(Error::invalid(
            "network id",
            &network.id,
            "expected 64 lower-case hexadecimal digits",
        ))
    }
}

impl EndpointStore for FileEndpointStore {
    /// The runtime directory (a network's directory appears and goes in
    /// it) and each network's directory (its journal grows there).
    fn watch_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.dir.clone()];
        let networks = std::fs::read_dir(&self.dir).into_iter().flatten().flatten();
        paths.extend(
            networks
                .filter(|e| crate::names::is_network_id(&e.file_name().to_string_lossy()))
                .map(|e| e.path()),
        );
        paths
    }

    fn add_network(&self, network: &NetworkRecord) -> Result<()> {
        check_id(network)?;
        files::create_dir(&self.dir, Link::Followed)?;
        let dir = self.dir.join(&network.id);
        files::create_dir(&dir, Link::Refused)?;
        files::open_lock_file(&dir.join("lock"))?;
        files::open(&dir.join(JOURNAL), Access::AppendCreate)?;
        Ok(())
    }

    fn session<'a>(&'a self, network: &NetworkRecord) -> Result<Box<dyn EndpointSession + 'a>> {
        check_id(network)?;
        Ok(Box::new(JournalSession::begin(
            self.journal(network),
            self.lock_timeout,
        )?))
    }

    fn quarantine_network(&self, network: &NetworkRecord) -> Result<String> {
        let dir = self.let_go(network)?;
        let target = files::move_aside(&dir, &self.dir.join("quarantine"))?;
        self.add_network(network)?;
        Ok(target.display().to_string())
    }

    fn remove_network(&self, network: &NetworkRecord) -> Result<()> {
        let dir = self.let_go(network)?;
        let mut tries = 0;
        loop {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                // Another process's session wrote into it meanwhile (its
                // last look before it finds the network gone): again.
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && tries < 5 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => return Err(Error::io(format!("remove {}", dir.display()), e)),
            }
        }
    }
}

/// One network's journal.
#[derive(Debug)]
struct Journal {
    dir: PathBuf,
    network: NetworkRecord,
    /// What this process keeps of it; taken by the session in progress
    /// (`None` while one runs) and given back when it ends.
    state: Mutex<Option<State>>,
    /// Signalled when a session gives the state back.
    returned: Condvar,
}

/// What a process keeps of a network between sessions.
#[derive(Debug, Default)]
struct State {
    /// The lock file, opened once.
    lock_file: Option<File>,
    /// The records and allocator, as of the last catch-up.
    cache: Option<Cache>,
    /// For each attach of this process under way: where the journal stood
    /// before its first entry and after its last (with the journal's
    /// inode), to cut it back to if the attach fails and nothing else was
    /// appended since.
    attach_marks: HashMap<u64, AttachMark>,
}

#[derive(Debug, Clone, Copy)]
struct AttachMark {
    inode: u64,
    start: u64,
    end: u64,
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
    table: EndpointTable,
}

impl Journal {
    fn path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    fn not_found(&self) -> Error {
        Error::NetworkNotFound {
            name: self.network.name.clone(),
        }
    }

    /// Applies what other processes appended since `cache` was read, or
    /// reads the whole journal when there is no cache or it was compacted.
    fn catch_up(&self, cache: Option<Cache>) -> Result<Cache> {
        let path = self.path();
        let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
        let mut cache = match cache {
            Some(cache) => cache,
            None => self.empty_cache()?,
        };
        // The journal as it is now (compaction replaces it); not followed if
        // it became a link. Gone: the network was removed while we waited.
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(self.not_found()),
            Err(e) => return Err(io("stat", e)),
        };
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
            cache.apply(entry);
        }
        cache.read += complete as u64;
        Ok(cache)
    }

    fn empty_cache(&self) -> Result<Cache> {
        let path = self.path();
        // Opened, never created: `add_network` makes it.
        let journal = files::open(&path, Access::Append)?.ok_or_else(|| self.not_found())?;
        let inode = journal
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .ino();
        Ok(Cache {
            journal,
            inode,
            read: 0,
            entries: 0,
            table: EndpointTable::new(&self.network),
        })
    }
}

impl Cache {
    fn apply(&mut self, entry: Entry) {
        self.entries += 1;
        match entry {
            Entry::Attaching(record) => self.table.insert(record, EndpointState::Attaching),
            Entry::Record(record) => self.table.insert(record, EndpointState::Ready),
            Entry::Ready(id) => self.table.set_state(id, EndpointState::Ready, None),
            Entry::Detaching { id, owner } => {
                self.table
                    .set_state(id, EndpointState::Detaching, Some(owner))
            }
            Entry::Detached(id) => self.table.detach(id),
            Entry::Forget(id) => {
                self.table.remove(id);
            }
        }
    }
}

/// Exclusive access to a network's endpoints, across threads (the state is
/// taken out of its mutex for the session's length) and processes
/// (`flock`, released when the session ends), with an up-to-date view of
/// them.
struct JournalSession {
    state: State,
    journal: Arc<Journal>,
}

impl JournalSession {
    /// Takes the network's lock and brings the in-memory view up to date.
    fn begin(journal: Arc<Journal>, timeout: Duration) -> Result<Self> {
        let mut state = {
            let mut slot = journal.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(state) = slot.take() {
                    break state;
                }
                slot = journal
                    .returned
                    .wait(slot)
                    .unwrap_or_else(|p| p.into_inner());
            }
        };
        let result = (|| {
            if state.lock_file.is_none() {
                // Never made here: a network without its directory was
                // removed (or never added).
                if std::fs::symlink_metadata(&journal.dir).is_err() {
                    return Err(journal.not_found());
                }
                // Checked once a process: the directories are this user's
                // (whoever owns one could swap the journal for a link).
                if let Some(runtime) = journal.dir.parent() {
                    files::check_dir(runtime, Link::Followed)?;
                }
                files::check_dir(&journal.dir, Link::Refused)?;
                state.lock_file = Some(files::open_lock_file(&journal.dir.join("lock"))?);
            }
            let file = state.lock_file.as_ref().expect("opened above");
            files::flock(file, &journal.dir.join("lock"), timeout)?;
            let cache = state.cache.take();
            state.cache = Some(journal.catch_up(cache)?);
            Ok(())
        })();
        let session = JournalSession { state, journal };
        // On error, dropping the session unlocks and gives the state back.
        result.map(|()| session)
    }

    fn cache(&mut self) -> &mut Cache {
        self.state
            .cache
            .as_mut()
            .expect("loaded when the session began")
    }

    /// Appends one entry and applies it.
    fn append(&mut self, entry: Entry) -> Result<()> {
        let mut line = serde_json::to_vec(&entry).map_err(|e| Error::StateEncoding {
            what: format!("a journal entry of network {:?}", self.journal.network.name),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        let path = self.journal.path();
        let cache = self.cache();
        cache
            .journal
            .write_all(&line)
            .map_err(|e| Error::io(format!("append to {}", path.display()), e))?;
        cache.read += line.len() as u64;
        cache.apply(entry);
        Ok(())
    }

    /// Rewrites the journal with only the live records when most of it is
    /// history. Amortised over the appends that made it long, this keeps the
    /// cost of an attach constant.
    fn compact_if_worth_it(&mut self) -> Result<()> {
        let path = self.journal.path();
        let network = self.journal.network.name.clone();
        let cache = self.cache();
        let live = cache.table.endpoints.len();
        if cache.entries <= COMPACT_MIN_ENTRIES || cache.entries <= COMPACT_RATIO * live.max(1) {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for record in cache.table.endpoints.values() {
            let mut entries = vec![match record.state {
                EndpointState::Attaching => Entry::Attaching(record.clone()),
                _ => Entry::Record(record.clone()),
            }];
            if let (EndpointState::Detaching, Some(owner)) = (record.state, record.owner) {
                entries.push(Entry::Detaching {
                    id: record.id,
                    owner,
                });
            }
            if record.state == EndpointState::Detached {
                entries.push(Entry::Detached(record.id));
            }
            for entry in entries {
                serde_json::to_writer(&mut bytes, &entry).map_err(|e| Error::StateEncoding {
                    what: format!("a journal entry of network {network:?}"),
                    reason: e.to_string(),
                })?;
                bytes.push(b'\n');
            }
        }
        files::write_atomic(&path, &bytes, Durability::Atomic)?;
        let mut fresh = self.journal.empty_cache()?;
        let cache = self.cache();
        std::mem::swap(&mut fresh.journal, &mut cache.journal);
        cache.inode = fresh.inode;
        cache.read = bytes.len() as u64;
        cache.entries = live;
        // An attach under way keeps its mark, made void: its entries are in
        // the new file now, so giving it up must append `forget`, never cut
        // the journal back to a length of the old file (which would leave
        // its `attaching` record behind, its addresses free in memory only).
        for mark in self.state.attach_marks.values_mut() {
            mark.inode = 0;
        }
        log::debug!("network {network}: journal compacted to {live} records");
        Ok(())
    }
}

impl Drop for JournalSession {
    fn drop(&mut self) {
        if let Some(file) = &self.state.lock_file {
            files::unlock(file);
        }
        let state = std::mem::take(&mut self.state);
        *self.journal.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
        self.journal.returned.notify_one();
    }
}

impl EndpointSession for JournalSession {
    fn endpoints(&self) -> Box<dyn Iterator<Item = &EndpointRecord> + '_> {
        let cache = self
            .state
            .cache
            .as_ref()
            .expect("loaded when the session began");
        Box::new(cache.table.endpoints.values())
    }

    fn unfinished(&self) -> Vec<EndpointRecord> {
        self.state
            .cache
            .as_ref()
            .expect("loaded when the session began")
            .table
            .unfinished()
    }

    fn ipam(&mut self) -> &mut Ipam {
        &mut self.cache().table.ipam
    }

    fn save(&mut self, record: &EndpointRecord) -> Result<()> {
        let (inode, before) = {
            let cache = self.cache();
            (cache.inode, cache.read)
        };
        let mut record = record.clone();
        record.state = EndpointState::Attaching;
        let id = record.id;
        self.append(Entry::Attaching(record))?;
        let end = self.cache().read;
        let mark = self.state.attach_marks.entry(id).or_insert(AttachMark {
            inode,
            start: before,
            end,
        });
        mark.end = end;
        Ok(())
    }

    fn mark_ready(&mut self, id: u64) -> Result<()> {
        self.append(Entry::Ready(id))?;
        self.state.attach_marks.remove(&id);
        self.compact_if_worth_it()
    }

    fn mark_detaching(&mut self, id: u64, owner: super::Owner) -> Result<()> {
        self.append(Entry::Detaching { id, owner })
    }

    fn mark_detached(&mut self, id: u64) -> Result<()> {
        self.append(Entry::Detached(id))
    }

    fn forget(&mut self, id: u64) -> Result<Option<EndpointRecord>> {
        let record = self.cache().table.endpoints.get(&id).cloned();
        if record.is_some() {
            self.append(Entry::Forget(id))?;
            self.compact_if_worth_it()?;
        }
        Ok(record)
    }

    fn abandon(&mut self, id: u64, addresses: &[IpAddr]) -> Result<()> {
        let mark = self.state.attach_marks.remove(&id);
        let cache = self.cache();
        match mark {
            // Nothing appended since: cut the journal back, so that it reads
            // exactly as before the attach.
            Some(mark) if mark.inode == cache.inode && mark.end == cache.read => {
                let path = self.journal.path();
                let cache = self.cache();
                cache
                    .journal
                    .set_len(mark.start)
                    .map_err(|e| Error::io(format!("truncate {}", path.display()), e))?;
                cache.read = mark.start;
                cache.table.abandon(id, addresses);
            }
            // Others appended meanwhile: say it is gone.
            _ if cache.table.endpoints.contains_key(&id) => {
                self.append(Entry::Forget(id))?;
                self.cache().table.abandon(id, addresses);
            }
            _ => self.cache().table.abandon(id, addresses),
        }
        Ok(())
    }
}
