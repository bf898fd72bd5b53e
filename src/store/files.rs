//! Files of the default stores: records written atomically, guarded by
//! file locks, and opened as a process running as root must open them.
//!
//! Every record is a small JSON file replaced as a whole: written to a
//! temporary file in the same directory, flushed with `fsync`, renamed over
//! the old one, and the directory flushed too. A crash at any point leaves
//! either the old record or the new one, never a mix, and never loses a
//! record that was reported written. Leftover temporary files (names
//! starting with `.tmp-`) are ignored, and removed once their writer is
//! gone and a minute has passed.
//!
//! Nothing read here is trusted. Every file is opened without following a
//! symbolic link (`O_NOFOLLOW`) and without blocking (`O_NONBLOCK`, so a
//! FIFO planted where a record belongs cannot hang the caller), and must
//! then be a regular file owned by this process's user; records are read
//! up to a size limit. Files are created `0600` and directories `0700`
//! (never wider, whatever the umask), temporary files under unpredictable
//! names with `O_EXCL`.
//!
//! Cross-process exclusion uses `flock(2)` on lock files: the kernel drops
//! a lock when its holder dies, so a crashed process never blocks the
//! others, and a wait is bounded: past its timeout the error names the lock
//! and, when the kernel says, the process that holds it.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// The mode of every file the stores create.
pub(crate) const FILE_MODE: u32 = 0o600;
/// The mode of every directory the stores create.
pub(crate) const DIR_MODE: u32 = 0o700;
/// The largest record read back; a larger one is corrupt.
const MAX_RECORD: u64 = 1 << 20;

/// How long a lock is waited for by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether records in a directory must survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `fsync` the file and its directory (network definitions).
    Durable,
    /// Atomic replacement only: enough for runtime state on tmpfs, which a
    /// reboot clears anyway.
    Atomic,
}

/// How a state file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// An existing file, to read.
    Read,
    /// Read and write, created if missing (lock files).
    ReadWriteCreate,
    /// Read and append, created if missing (journals).
    AppendCreate,
    /// Read and append an existing file.
    Append,
}

/// Opens a state file safely: no symbolic link followed, no blocking on a
/// FIFO, created `0600`; then checks that it is a regular file owned by
/// this process's user. `Ok(None)` when it does not exist and was not to be
/// created.
pub(crate) fn open(path: &Path, access: Access) -> Result<Option<File>> {
    Ok(open_checked(path, access)?.map(|(file, _)| file))
}

/// [`open`], with the metadata its check read.
fn open_checked(path: &Path, access: Access) -> Result<Option<(File, fs::Metadata)>> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .mode(FILE_MODE);
    match access {
        Access::Read => {}
        Access::ReadWriteCreate => {
            options.write(true).create(true);
        }
        Access::AppendCreate => {
            options.append(true).create(true);
        }
        Access::Append => {
            options.append(true);
        }
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e)
            if e.kind() == ErrorKind::NotFound
                && matches!(access, Access::Read | Access::Append) =>
        {
            return Ok(None)
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_file(
                path,
                "it is a symbolic link, which underlay never makes",
            ))
        }
        Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
    };
    let metadata = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    check_regular(path, &metadata)?;
    Ok(Some((file, metadata)))
}

/// Refuses anything but a regular file owned by this process's user.
fn check_regular(path: &Path, metadata: &fs::Metadata) -> Result<()> {
    let kind = metadata.file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(unsafe_file(
            path,
            &format!("it is {what}, not a regular file"),
        ));
    }
    owned_by_me(path, metadata)
}

/// Refuses what another user owns.
fn owned_by_me(path: &Path, metadata: &fs::Metadata) -> Result<()> {
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return Err(unsafe_file(
            path,
            &format!(
                "it is owned by uid {}, not by this process's uid {me}",
                metadata.uid()
            ),
        ));
    }
    Ok(())
}

fn unsafe_file(path: &Path, reason: &str) -> Error {
    Error::UnsafeState {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A held `flock`; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// Takes an exclusive lock on `path`, creating the file if needed, waiting
/// at most `timeout` for other holders.
pub(crate) fn lock(path: &Path, timeout: Duration) -> Result<Lock> {
    let file = open_lock_file(path)?;
    flock(&file, path, timeout)?;
    Ok(Lock { _file: file })
}

/// Opens (creating if needed) a lock file, to [`flock`] and unlock many
/// times. Only its owner can open it (`0600`): a lock file others can
/// open is a lock others can hold.
pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    let file = open(path, Access::ReadWriteCreate)?
        .ok_or_else(|| Error::Internal(format!("{} not created", path.display())))?;
    tighten(&file, path, FILE_MODE)?;
    Ok(file)
}

/// Removes group and other permissions from a file made by an older
/// version or another tool.
fn tighten(file: &File, path: &Path, mode: u32) -> Result<()> {
    let metadata = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    if metadata.mode() & 0o077 != 0 {
        log::warn!(
            "{} was open to other users (mode {:o}); making it {mode:o}",
            path.display(),
            metadata.mode() & 0o7777
        );
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
    }
    Ok(())
}

/// An exclusive `flock(2)`, waiting at most `timeout`; `what` names the
/// lock in errors.
pub(crate) fn flock(file: &File, what: &Path, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => {}
            Err(e) => return Err(Error::io(format!("lock {}", what.display()), e.into())),
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(Error::LockTimeout {
                lock: what.to_owned(),
                holder: lock_holder(file),
                waited,
            });
        }
        std::thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Releases a lock taken with [`flock`].
pub(crate) fn unlock(file: &File) {
    let _ = rustix::fs::flock(file, FlockOperation::Unlock);
}

/// The process holding a `flock` on `file`, from `/proc/locks`, if the
/// kernel says. Looked at a few times before giving up: once, in a loaded
/// guest of the real-kernel tier, the first look did not find it (cause
/// not found).
fn lock_holder(file: &File) -> Option<u32> {
    let inode = file.metadata().ok()?.ino();
    for _ in 0..4 {
        if let Some(pid) = lock_holder_now(inode) {
            return Some(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

fn lock_holder_now(inode: u64) -> Option<u32> {
    let locks = fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| flock_holder(line, inode))
}

/// The process holding a `flock` on `inode`, from a line of `/proc/locks`
/// ("1: FLOCK  ADVISORY  WRITE 4242 fd:01:1835011 0 EOF"). None for other
/// locks, and for a holder the kernel shows as 0: one in a pid namespace
/// this process cannot see.
fn flock_holder(line: &str, inode: u64) -> Option<u32> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) != Some(&"FLOCK") || fields.get(2) == Some(&"->") {
        return None;
    }
    let device_inode = fields.get(5)?;
    let found: u64 = device_inode.rsplit(':').next()?.parse().ok()?;
    if found != inode {
        return None;
    }
    fields.get(4)?.parse().ok().filter(|&pid| pid != 0)
}

/// Creates a directory and its parents (`0700`) unless it is there, and
/// checks it as [`check_dir`] does. (One that is there is judged as it is:
/// a link before anything follows it, which the kernel may refuse anyway,
/// `fs.protected_symlinks`.)
pub(crate) fn create_dir(path: &Path, link: Link) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)
            .map_err(|e| Error::io(format!("create directory {}", path.display()), e))?;
    }
    check_dir(path, link)
}

/// Whether a directory may be a symbolic link to one, and what is made of
/// its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// One underlay makes: never a link; made `0700` if it was open to
    /// other users.
    Refused,
    /// One the caller names (a state or runtime directory, which an
    /// administrator may have made, or moved elsewhere and linked to): a
    /// link is followed if root or this user owns it, in a directory
    /// others cannot change; the mode is the administrator's, but others
    /// must not be able to write in it.
    Followed,
}

/// Checks that a directory where state belongs is a directory of this
/// process's user: whoever owns a directory, or can write in it, can swap
/// what is in it for a link to anywhere.
pub(crate) fn check_dir(path: &Path, link: Link) -> Result<()> {
    let stat = |path: &Path, follow: bool| {
        if follow {
            fs::metadata(path)
        } else {
            fs::symlink_metadata(path)
        }
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))
    };
    let me = rustix::process::geteuid().as_raw();
    let trusted = |uid: u32| uid == me || uid == 0;
    let mut metadata = stat(path, false)?;
    if metadata.file_type().is_symlink() {
        if link == Link::Refused {
            return Err(unsafe_file(
                path,
                "it is a symbolic link, which underlay never makes",
            ));
        }
        if !trusted(metadata.uid()) {
            return Err(unsafe_file(
                path,
                &format!(
                    "it is a symbolic link owned by uid {}: only root or this process's uid {me} may choose where state goes",
                    metadata.uid()
                ),
            ));
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        let holder = stat(parent, true)?;
        let others_write = holder.mode() & 0o022 != 0 && holder.mode() & 0o1000 == 0;
        if !trusted(holder.uid()) || others_write {
            return Err(unsafe_file(
                path,
                &format!(
                    "it is a symbolic link in {}, which other users can change: put the link where only root can",
                    parent.display()
                ),
            ));
        }
        metadata = stat(path, true)?;
    }
    if !metadata.is_dir() {
        return Err(unsafe_file(path, "it is not a directory"));
    }
    owned_by_me(path, &metadata)?;
    let mode = metadata.mode() & 0o7777;
    match link {
        Link::Refused if mode & 0o077 != 0 => {
            log::warn!(
                "{} was open to other users (mode {mode:o}); making it {DIR_MODE:o}",
                path.display()
            );
            fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
        }
        Link::Followed if mode & 0o022 != 0 => {
            return Err(unsafe_file(
                path,
                &format!("other users can write in it (mode {mode:o}): make it 0700 (or 0755)"),
            ));
        }
        _ => {}
    }
    Ok(())
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

/// Replaces the file at `path` with `bytes`, atomically: a temporary file
/// under an unpredictable name, created exclusively (`O_EXCL`, no link
/// followed), renamed over it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(
        ".tmp-{}-{}-{name}",
        std::process::id(),
        crate::random::hex(8)?
    ));
    let io = |what: &str, e| Error::io(format!("{what} {}", temporary.display()), e);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(FILE_MODE)
        .open(&temporary)
        .map_err(|e| io("create", e))?;
    let written = file
        .write_all(bytes)
        .map_err(|e| io("write", e))
        .and_then(|()| {
            if durability == Durability::Durable {
                file.sync_all().map_err(|e| io("fsync", e))
            } else {
                Ok(())
            }
        });
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&temporary);
        return Err(e);
    }
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

/// Moves `path` (a file or a directory) into the directory `aside`, made if
/// needed, under its name and a random suffix; returns where it went.
pub(crate) fn move_aside(path: &Path, aside: &Path) -> Result<PathBuf> {
    create_dir(aside, Link::Refused)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = aside.join(format!("{name}.{}", crate::random::hex(4)?));
    fs::rename(path, &target).map_err(|e| {
        Error::io(
            format!("move {} to {}", path.display(), target.display()),
            e,
        )
    })?;
    Ok(target)
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

/// Reads a whole state file safely (see [`open`]), up to the record size
/// limit; `None` if it does not exist.
pub(crate) fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let Some((file, metadata)) = open_checked(path, Access::Read)? else {
        return Ok(None);
    };
    // Sized for the whole file (and the end-of-file read) at once; its
    // length as the open's check saw it, capped: the limit is checked on
    // what is read.
    let size = metadata.len().min(MAX_RECORD) as usize;
    let mut bytes = Vec::with_capacity(size + 1);
    file.take(MAX_RECORD + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    if bytes.len() as u64 > MAX_RECORD {
        return Err(Error::CorruptState {
            path: path.to_owned(),
            reason: format!("it is larger than {MAX_RECORD} bytes"),
        });
    }
    Ok(Some(bytes))
}

/// Reads one record; `None` if it does not exist.
pub(crate) fn read_record<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let Some(bytes) = read_file(path)? else {
        return Ok(None);
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

/// How old a temporary file whose writer looks gone must be before it is
/// removed: its pid may be another pid namespace's, which means nothing
/// here, and a write takes milliseconds.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes a temporary file left by a process that died mid-write (its pid
/// is in the name) a while ago; files of live processes are left alone,
/// and so are young ones (see [`STALE_TEMPORARY`]).
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
    let young = fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().map_or(true, |age| age < STALE_TEMPORARY));
    if !alive && !young {
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
        // Just written: perhaps by a live process of another pid namespace
        // (whose pids mean nothing here). Ignored, and kept.
        assert_eq!(list_records(&dir).unwrap(), vec![bad.clone()]);
        assert!(stale.exists());
        // A minute old: removed.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(61);
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
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
        let held = lock(&path, DEFAULT_LOCK_TIMEOUT).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let _l = lock(&p, DEFAULT_LOCK_TIMEOUT).unwrap();
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

    #[test]
    fn a_lock_holder_is_read_from_its_line_and_never_named_zero() {
        let line = |pid: &str| format!("1: FLOCK  ADVISORY  WRITE {pid} fd:01:1835011 0 EOF");
        assert_eq!(flock_holder(&line("4242"), 1835011), Some(4242));
        assert_eq!(flock_holder(&line("4242"), 7), None);
        // A holder in a pid namespace this process cannot see.
        assert_eq!(flock_holder(&line("0"), 1835011), None);
        assert_eq!(
            flock_holder(
                "2: POSIX  ADVISORY  WRITE 4242 fd:01:1835011 0 EOF",
                1835011
            ),
            None
        );
        assert_eq!(
            flock_holder(
                "1: -> FLOCK  ADVISORY  WRITE 4243 fd:01:1835011 0 EOF",
                1835011
            ),
            None
        );
    }

    #[test]
    fn lock_waits_are_bounded_and_name_the_lock_and_its_holder() {
        let dir = scratch("timeout");
        let path = dir.join("lock");
        let _held = lock(&path, DEFAULT_LOCK_TIMEOUT).unwrap();
        let start = Instant::now();
        let err = lock(&path, Duration::from_millis(100)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        match &err {
            Error::LockTimeout { lock, holder, .. } => {
                assert_eq!(lock, &path);
                assert_eq!(*holder, Some(std::process::id()));
            }
            other => panic!("{other}"),
        }
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().mode() & 0o7777,
            FILE_MODE,
            "lock files are the owner's only"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlinks_fifos_and_oversized_records_are_refused_at_once() {
        let dir = scratch("hostile");
        let victim = dir.join("victim");
        fs::write(&victim, b"[1]").unwrap();
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = read_record::<Vec<i32>>(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // Writing a record never writes through a link either: it replaces
        // the link, and the victim is untouched.
        write_record(&link, &vec![2], Durability::Atomic).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"[1]");
        let fifo = dir.join("fifo.json");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let start = Instant::now();
        let err = read_record::<Vec<i32>>(&fifo).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(err.to_string().contains("FIFO"), "{err}");
        let err = open(&fifo, Access::AppendCreate).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        let big = dir.join("big.json");
        fs::write(&big, vec![b' '; (MAX_RECORD + 1) as usize]).unwrap();
        let err = read_record::<Vec<i32>>(&big).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_and_directories_are_created_private_whatever_the_umask() {
        let dir = scratch("modes");
        let old = rustix::process::umask(rustix::fs::Mode::empty());
        let sub = dir.join("a/b");
        create_dir(&sub, Link::Refused).unwrap();
        write_record(&sub.join("r.json"), &1, Durability::Atomic).unwrap();
        let journal = open(&sub.join("j.log"), Access::AppendCreate)
            .unwrap()
            .unwrap();
        rustix::process::umask(old);
        assert_eq!(
            fs::metadata(dir.join("a")).unwrap().mode() & 0o7777,
            DIR_MODE
        );
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o7777, DIR_MODE);
        assert_eq!(
            fs::metadata(sub.join("r.json")).unwrap().mode() & 0o7777,
            FILE_MODE
        );
        assert_eq!(journal.metadata().unwrap().mode() & 0o7777, FILE_MODE);
        // A directory made wider by someone else is narrowed again.
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o777)).unwrap();
        create_dir(&sub, Link::Refused).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o7777, DIR_MODE);
        fs::remove_dir_all(&dir).unwrap();
    }
}
