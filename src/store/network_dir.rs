//! The default [`NetworkStore`]: a state directory on persistent storage.
//!
//! ```text
//! STATE_DIR/lock                 flock: network create, remove and recovery
//! STATE_DIR/id                   this state directory's random id
//! STATE_DIR/networks/NAME.json   one record per network (fsync'd)
//! STATE_DIR/pending/NAME         an operation on NAME is under way
//! STATE_DIR/recovered            the boot id of the last recovery
//! ```

use std::path::{Path, PathBuf};

use super::files::{self, Durability};
use super::{NetworkRecord, NetworkStore, StoreLock};
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
}

impl FileNetworkStore {
    /// Opens (creating if needed) the state directory `dir`.
    ///
    /// # Errors
    /// When the directory or its id cannot be created or read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        files::create_dir(&dir.join("networks"))?;
        files::create_dir(&dir.join("pending"))?;
        let id = {
            let _lock = files::lock(&dir.join("lock"), true)?;
            state_id(&dir)?
        };
        Ok(FileNetworkStore { dir, id })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The runtime directory that goes with this state directory by
    /// default: `/run/underlay/STATE_ID`.
    pub fn default_runtime_dir(&self) -> PathBuf {
        Path::new(DEFAULT_RUNTIME_DIR).join(&self.id)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join("networks").join(format!("{name}.json"))
    }

    fn pending_path(&self, name: &str) -> PathBuf {
        self.dir.join("pending").join(name)
    }
}

impl NetworkStore for FileNetworkStore {
    fn host_id(&self) -> &str {
        &self.id
    }

    fn lock(&self) -> Result<StoreLock> {
        Ok(Box::new(files::lock(&self.dir.join("lock"), true)?))
    }

    fn networks(&self) -> Result<Vec<NetworkRecord>> {
        let mut out = Vec::new();
        for path in files::list_records(&self.dir.join("networks"))? {
            if let Some(record) = files::read_record::<NetworkRecord>(&path)? {
                out.push(record);
            }
        }
        Ok(out)
    }

    fn network(&self, name: &str) -> Result<Option<NetworkRecord>> {
        files::read_record(&self.record_path(name))
    }

    fn save(&self, record: &NetworkRecord) -> Result<()> {
        files::write_record(&self.record_path(&record.name), record, Durability::Durable)
    }

    fn remove(&self, name: &str) -> Result<()> {
        files::remove_record(&self.record_path(name), Durability::Durable)
    }

    /// (No fsync: a power cut changes the boot id, which makes opening
    /// recover anyway.)
    fn begin(&self, name: &str) -> Result<()> {
        let path = self.pending_path(name);
        std::fs::write(&path, b"").map_err(|e| Error::io(format!("write {}", path.display()), e))
    }

    fn end(&self, name: &str) {
        let _ = std::fs::remove_file(self.pending_path(name));
    }

    fn needs_recovery(&self) -> Result<bool> {
        let marker = std::fs::read_to_string(self.dir.join("recovered")).unwrap_or_default();
        if marker.is_empty() || marker != boot_id() {
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
        files::write_atomic(
            &self.dir.join("recovered"),
            boot_id().as_bytes(),
            Durability::Atomic,
        )
    }
}

/// Reads the state directory's id, creating it on first use.
fn state_id(state_dir: &Path) -> Result<String> {
    let path = state_dir.join("id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    }
    let id = crate::random::hex(8)?;
    files::write_atomic(&path, id.as_bytes(), Durability::Durable)?;
    Ok(id)
}

/// This boot's id: it changes at every boot.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}
