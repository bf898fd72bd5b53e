//! The default [`NetworkStore`]: a state directory on persistent storage.
//!
//! ```text
//! STATE_DIR/lock                 flock: network create, remove and recovery
//! STATE_DIR/id                   this state directory's random id
//! STATE_DIR/networks/NAME.json   one record per network (fsync'd)
//! STATE_DIR/pending/NAME         an operation on NAME is under way
//! RUNTIME_DIR/recovered          the boot id of the last recovery (tmpfs:
//!                                a reboot empties it)
//! STATE_DIR/quarantine/          records that did not read back, moved aside
//! ```
//!
//! A name becomes a path only once [`validate_network_name`] accepted it,
//! and a record is believed only if its name is its file's and its id is a
//! network id.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::{self, Durability, Link, DEFAULT_LOCK_TIMEOUT};
use super::{NetworkRecord, NetworkStore, StoreLock};
use crate::names::{is_host_id, is_network_id, validate_network_name};
use crate::{Error, Result};

/// The default state directory.
///
/// ```
/// use std::path::Path;
/// use underlay::host::DEFAULT_STATE_DIR;
///
/// // Where `Host::open(DEFAULT_STATE_DIR)` keeps network pub_net's record.
/// let record = Path::new(DEFAULT_STATE_DIR).join("networks/pub_net.json");
/// assert_eq!(record, Path::new("/var/lib/underlay/networks/pub_net.json"));
/// ```
pub const DEFAULT_STATE_DIR: &str = "/var/lib/underlay";

/// The parent of the default runtime directories.
///
/// ```
/// use std::path::Path;
/// use underlay::host::DEFAULT_RUNTIME_DIR;
///
/// // Each state directory's endpoints live under its random id.
/// let runtime = Path::new(DEFAULT_RUNTIME_DIR).join("3f2a9c61d0b4e857");
/// assert_eq!(runtime, Path::new("/run/underlay/3f2a9c61d0b4e857"));
/// ```
pub const DEFAULT_RUNTIME_DIR: &str = "/run/underlay";

/// Network definitions in a state directory, one fsync'd JSON record per
/// network, replaced atomically; `flock` on `STATE_DIR/lock` for the
/// store's lock.
///
/// ```no_run
/// use underlay::store::{FileNetworkStore, NetworkStore};
///
/// let store = FileNetworkStore::open("/var/lib/underlay")?;
/// for record in store.networks()? {
///     println!("{} {}", record.name, record.driver);
/// }
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug)]
pub struct FileNetworkStore {
    dir: PathBuf,
    id: String,
    runtime_dir: PathBuf,
    lock_timeout: Duration,
}

impl FileNetworkStore {
    /// Opens (creating if needed) the state directory `dir`.
    ///
    /// # Errors
    /// When the directory or its id cannot be created or read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        files::create_dir(&dir, Link::Followed)?;
        files::create_dir(&dir.join("networks"), Link::Refused)?;
        files::create_dir(&dir.join("pending"), Link::Refused)?;
        // The id is written once, atomically: read it without the lock,
        // which is taken only to make it.
        let id = match read_state_id(&dir)? {
            Some(id) => id,
            None => {
                let _lock = files::lock(&dir.join("lock"), DEFAULT_LOCK_TIMEOUT)?;
                state_id(&dir)?
            }
        };
        Ok(FileNetworkStore {
            runtime_dir: Path::new(DEFAULT_RUNTIME_DIR).join(&id),
            dir,
            id,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        })
    }

    /// Where the store notes that recovery ran this boot: a directory a
    /// reboot empties (tmpfs), the endpoints' runtime directory
    /// (`/run/underlay/STATE_ID` by default).
    pub fn with_runtime_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.runtime_dir = dir.as_ref().to_owned();
        self
    }

    /// How long [`lock`](NetworkStore::lock) waits for another holder
    /// before it fails with [`Error::LockTimeout`] (30 s by default).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The runtime directory that goes with this state directory:
    /// `/run/underlay/STATE_ID` unless set with
    /// [`with_runtime_dir`](Self::with_runtime_dir).
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    fn record_path(&self, name: &str) -> Result<PathBuf> {
        validate_network_name(name)?;
        Ok(self.dir.join("networks").join(format!("{name}.json")))
    }

    fn pending_path(&self, name: &str) -> Result<PathBuf> {
        validate_network_name(name)?;
        Ok(self.dir.join("pending").join(name))
    }

    /// Reads a record and checks that it is one: its name is the file's,
    /// its id a network id.
    fn read(&self, path: &Path) -> Result<Option<NetworkRecord>> {
        let Some(record) = files::read_record::<NetworkRecord>(path)? else {
            return Ok(None);
        };
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let problem = if stem.as_deref() != Some(record.name.as_str()) {
            Some(format!(
                "it names network {:?}, not its file's",
                record.name
            ))
        } else if !is_network_id(&record.id) {
            Some(format!("{:?} is not a network id", record.id))
        } else {
            None
        };
        match problem {
            Some(reason) => Err(Error::CorruptState {
                path: path.to_owned(),
                reason,
            }),
            None => Ok(Some(record)),
        }
    }

    /// The records that do not read back, with the reason.
    fn corrupt_records(&self) -> Result<Vec<(PathBuf, Error)>> {
        let mut out = Vec::new();
        for path in files::list_records(&self.dir.join("networks"))? {
            if let Err(e) = self.read(&path) {
                out.push((path, e));
            }
        }
        Ok(out)
    }
}

impl NetworkStore for FileNetworkStore {
    fn watch_paths(&self) -> Vec<PathBuf> {
        vec![self.dir.join("networks")]
    }

    fn host_id(&self) -> &str {
        &self.id
    }

    fn lock(&self) -> Result<StoreLock> {
        Ok(Box::new(files::lock(
            &self.dir.join("lock"),
            self.lock_timeout,
        )?))
    }

    /// Records that do not read back are left out (with a warning), so one
    /// bad file does not hide every network; recovery quarantines them.
    fn networks(&self) -> Result<Vec<NetworkRecord>> {
        let mut out = Vec::new();
        for path in files::list_records(&self.dir.join("networks"))? {
            match self.read(&path) {
                Ok(Some(record)) => out.push(record),
                Ok(None) => {}
                Err(e @ (Error::CorruptState { .. } | Error::UnsafeState { .. })) => {
                    log::warn!("skipping a network record: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn network(&self, name: &str) -> Result<Option<NetworkRecord>> {
        // A name that cannot be a network's names none.
        match self.record_path(name) {
            Ok(path) => self.read(&path),
            Err(_) => Ok(None),
        }
    }

    fn save(&self, record: &NetworkRecord) -> Result<()> {
        if !is_network_id(&record.id) {
            return Err(Error::invalid(
                "network id",
                &record.id,
                "expected 64 lower-case hexadecimal digits",
            ));
        }
        files::write_record(
            &self.record_path(&record.name)?,
            record,
            Durability::Durable,
        )
    }

    fn remove(&self, name: &str) -> Result<()> {
        files::remove_record(&self.record_path(name)?, Durability::Durable)
    }

    /// (No fsync: a power cut changes the boot id, which makes opening
    /// recover anyway.)
    fn begin(&self, name: &str) -> Result<()> {
        let path = self.pending_path(name)?;
        files::write_atomic(&path, b"", Durability::Atomic)
    }

    fn end(&self, name: &str) {
        if let Ok(path) = self.pending_path(name) {
            let _ = std::fs::remove_file(path);
        }
    }

    fn pending(&self) -> Result<Vec<String>> {
        let pending = self.dir.join("pending");
        let entries = std::fs::read_dir(&pending)
            .map_err(|e| Error::io(format!("list {}", pending.display()), e))?;
        // (Not the temporary files of notes being written.)
        Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect())
    }

    fn has_quarantined(&self) -> bool {
        std::fs::read_dir(self.dir.join("quarantine"))
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false)
    }

    fn quarantine(&self) -> Result<Vec<(String, String)>> {
        let corrupt = self.corrupt_records()?;
        if corrupt.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (path, error) in corrupt {
            let target = files::move_aside(&path, &self.dir.join("quarantine"))?;
            log::warn!("moved {} to {}: {error}", path.display(), target.display());
            out.push((target.display().to_string(), error.to_string()));
        }
        Ok(out)
    }

    fn needs_recovery(&self) -> Result<bool> {
        let marker = match files::read_file(&self.runtime_dir.join("recovered")) {
            Ok(marker) => marker.unwrap_or_default(),
            // A missing runtime directory: not recovered this boot.
            Err(Error::Io { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        if marker.is_empty() || marker != boot_id().as_bytes() {
            return Ok(true);
        }
        let pending = self.dir.join("pending");
        let mut entries = std::fs::read_dir(&pending)
            .map_err(|e| Error::io(format!("list {}", pending.display()), e))?;
        Ok(entries.next().is_some())
    }

    fn recovered(&self) -> Result<()> {
        for entry in std::fs::read_dir(self.dir.join("pending"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_file(entry.path());
        }
        files::create_dir(&self.runtime_dir, Link::Followed)?;
        files::write_atomic(
            &self.runtime_dir.join("recovered"),
            boot_id().as_bytes(),
            Durability::Atomic,
        )
    }
}

/// Reads the state directory's id, creating it on first use.
fn state_id(state_dir: &Path) -> Result<String> {
    if let Some(id) = read_state_id(state_dir)? {
        return Ok(id);
    }
    let id = crate::random::hex(8)?;
    files::write_atomic(&state_dir.join("id"), id.as_bytes(), Durability::Durable)?;
    Ok(id)
}

/// Reads the state directory's id, if it has one.
fn read_state_id(state_dir: &Path) -> Result<Option<String>> {
    let path = state_dir.join("id");
    let Some(bytes) = files::read_file(&path)? else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(&bytes).trim().to_owned();
    if is_host_id(&id) {
        return Ok(Some(id));
    }
    // Every mark of every link this host made names this id: a changed one
    // would orphan them all. Refuse rather than guess.
    Err(Error::CorruptState {
        path,
        reason: format!("{id:?} is not a state directory id (16 hexadecimal digits)"),
    })
}

/// This boot's id: it changes at every boot.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}
