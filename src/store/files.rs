//! Files of the default stores: records written atomically, guarded by
//! file locks.
//!
//! Every record is a small JSON file replaced as a whole: written to a
//! temporary file in the same directory, flushed with `fsync`, renamed over
//! the old one, and the directory flushed too. A crash at any point leaves
//! either the old record or the new one, never a mix, and never loses a
//! record that was reported written. Leftover temporary files (names
//! starting with `.tmp-`) are ignored and removed.
//!
//! Cross-process exclusion uses `flock(2)` on lock files: the kernel drops
//! a lock when its holder dies, so a crashed process never blocks the others.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// Whether records in a directory must survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `fsync` the file and its directory (network definitions).
    Durable,
    /// Atomic replacement only: enough for runtime state on tmpfs, which a
    /// reboot clears anyway.
    Atomic,
}

/// A held `flock`; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// Takes an exclusive (or shared) lock on `path`, creating the file if
/// needed, waiting for other holders.
pub(crate) fn lock(path: &Path, exclusive: bool) -> Result<Lock> {
    let file = open_lock_file(path)?;
    let operation = if exclusive {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::LockShared
    };
    flock(&file, operation, path)?;
    Ok(Lock { _file: file })
}

/// Opens (creating if needed) a lock file, to [`flock`] and unlock many
/// times.
pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(format!("open lock file {}", path.display()), e))
}

/// `flock(2)`, waiting for other holders; `what` names the lock in errors.
pub(crate) fn flock(file: &File, operation: FlockOperation, what: &Path) -> Result<()> {
    loop {
        match rustix::fs::flock(file, operation) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::io(format!("lock {}", what.display()), e.into())),
        }
    }
}

/// Creates a directory and its parents.
pub(crate) fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path)
        .map_err(|e| Error::io(format!("create directory {}", path.display()), e))
}

/// Replaces the record at `path` with `value`, atomically.
pub(crate) fn write_record<T: Serialize>(
    path: &Path,
    value: &T,
    durability: Durability,
) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::StateEncoding {
        what: path.display().to_string(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes, durability)
}

/// Replaces the file at `path` with `bytes`, atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".tmp-{}-{name}", std::process::id()));
    let io = |what: &str, e| Error::io(format!("{what} {}", temporary.display()), e);
    let mut file = File::create(&temporary).map_err(|e| io("create", e))?;
    file.write_all(bytes).map_err(|e| io("write", e))?;
    if durability == Durability::Durable {
        file.sync_all().map_err(|e| io("fsync", e))?;
    }
    drop(file);
    fs::rename(&temporary, path).map_err(|e| {
        let _ = fs::remove_file(&temporary);
        Error::io(
            format!("rename {} to {}", temporary.display(), path.display()),
            e,
        )
    })?;
    if durability == Durability::Durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes the record at `path`; a missing record is not an error.
pub(crate) fn remove_record(path: &Path, durability: Durability) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("remove {}", path.display()), e)),
    }
    if durability == Durability::Durable {
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Reads one record; `None` if it does not exist.
pub(crate) fn read_record<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::CorruptState {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// The `*.json` records of a directory, sorted by file name. Stale
/// temporary files are removed on the way.
pub(crate) fn list_records(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".tmp-") {
            remove_stale_temporary(&entry.path(), &name);
        } else if name.ends_with(".json") {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes a temporary file left by a process that died mid-write (its pid
/// is in the name); files of live processes are left alone.
fn remove_stale_temporary(path: &Path, name: &str) {
    let pid = name
        .trim_start_matches(".tmp-")
        .split('-')
        .next()
        .and_then(|p| p.parse::<i32>().ok());
    let alive = pid.is_some_and(|pid| {
        pid == std::process::id() as i32
            || rustix::process::Pid::from_raw(pid).is_none_or(|pid| {
                // Signal 0 only asks whether the process exists; EPERM
                // means it does, as another user's.
                !matches!(
                    rustix::process::test_kill_process(pid),
                    Err(rustix::io::Errno::SRCH)
                )
            })
    });
    if !alive {
        log::debug!("removing stale temporary file {}", path.display());
        let _ = fs::remove_file(path);
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("underlay-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn records_round_trip_and_replace_whole() {
        let dir = scratch("roundtrip");
        let path = dir.join("a.json");
        write_record(&path, &vec![1, 2, 3], Durability::Durable).unwrap();
        write_record(&path, &vec![4], Durability::Atomic).unwrap();
        assert_eq!(read_record::<Vec<i32>>(&path).unwrap(), Some(vec![4]));
        assert_eq!(list_records(&dir).unwrap(), vec![path.clone()]);
        remove_record(&path, Durability::Durable).unwrap();
        remove_record(&path, Durability::Durable).unwrap();
        assert_eq!(read_record::<Vec<i32>>(&path).unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temporaries_are_ignored_and_removed_and_corruption_is_named() {
        let dir = scratch("stale");
        // pid 0x7fffffff does not exist.
        let stale = dir.join(".tmp-2147483647-a.json");
        fs::write(&stale, b"{half").unwrap();
        let bad = dir.join("b.json");
        fs::write(&bad, b"{half").unwrap();
        assert_eq!(list_records(&dir).unwrap(), vec![bad.clone()]);
        assert!(!stale.exists());
        let err = read_record::<Vec<i32>>(&bad).unwrap_err();
        assert!(err.to_string().contains("b.json"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exclusive_locks_exclude_across_open_files() {
        let dir = scratch("lock");
        let path = dir.join("lock");
        let held = lock(&path, true).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let _l = lock(&p, true).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_err());
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
