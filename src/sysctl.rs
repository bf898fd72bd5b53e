//! A network namespace's kernel settings (`/proc/sys/net/...`), opened
//! from a thread inside it, the way that stays fast with many namespaces.
//!
//! Each network namespace has its own `/proc/sys/net`, and the kernel
//! finds it by name under `/proc/sys` among the `net` entries of every
//! namespace looked up so far through the same procfs instance, one by
//! one. With hundreds of containers, opening a setting of a new one costs
//! 40-110 µs, most of what an attach spends beyond the kernel's own work
//! (an IPv4-only endpoint's `disable_ipv6`, a dual-stack one's
//! `ndisc_notify`). [`ProcSys`] looks settings up through a procfs
//! instance of the library's own instead: made with `fsopen` and
//! `fsmount`, attached nowhere in the file tree, replaced by a fresh one
//! after [`RENEW_AFTER`] look-ups, so that the list it walks stays short
//! (7 µs). Which namespace's settings a look-up finds depends only on the
//! thread that makes it, whatever the procfs instance.
//!
//! Where such an instance cannot be made (kernels before 5.2, a process
//! without `CAP_SYS_ADMIN` over its mount namespace, a seccomp filter), or
//! where the process's own `/proc/sys` is read-only (an administrator's
//! choice, which the library respects), `/proc/sys` it is.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use rustix::fs::{openat, Mode, OFlags};

/// Look-ups through one private procfs instance before it is replaced:
/// each leaves an entry the next ones walk past (about 0.1 µs each), and
/// making an instance costs 100-200 µs.
pub(crate) const RENEW_AFTER: u32 = 64;

/// Where the process's own settings are.
const PROC_SYS: &str = "/proc/sys";

/// Opens settings of the calling thread's network namespace (see the
/// [module](self)). Shared by the threads of one engine.
#[derive(Debug, Default)]
pub(crate) struct ProcSys {
    instance: Mutex<Instance>,
}

#[derive(Debug, Default)]
struct Instance {
    /// The private procfs instance, if one could be made.
    mount: Option<Arc<OwnedFd>>,
    /// Look-ups made through it.
    uses: u32,
    /// Making one failed: `/proc/sys` from then on (logged once).
    unavailable: bool,
}

impl ProcSys {
    /// Opens the directory `dir` below `/proc/sys` (`net/ipv6/conf`) of
    /// the calling thread's network namespace. `dir` is the library's own,
    /// never a caller's.
    pub(crate) fn open_dir(&self, dir: &str) -> std::io::Result<File> {
        debug_assert!(!dir.starts_with('/') && !dir.split('/').any(|p| p == ".."));
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        if let Some(mount) = self.private_instance() {
            return Ok(openat(&*mount, format!("sys/{dir}"), flags, Mode::empty())?.into());
        }
        Ok(openat(
            rustix::fs::CWD,
            format!("{PROC_SYS}/{dir}"),
            flags,
            Mode::empty(),
        )?
        .into())
    }

    /// Writes `value` to the setting `key` of the directory `dir` (as in
    /// [`open_dir`](Self::open_dir)).
    pub(crate) fn write(&self, dir: &str, key: &str, value: &[u8]) -> std::io::Result<()> {
        write_at(&self.open_dir(dir)?, key, value)
    }

    /// The private instance to look up through, made or renewed if need
    /// be; `None` where `/proc/sys` is to be used.
    fn private_instance(&self) -> Option<Arc<OwnedFd>> {
        if process_proc_sys_read_only() {
            return None;
        }
        let mut instance = self.instance.lock().unwrap_or_else(|p| p.into_inner());
        if instance.unavailable {
            return None;
        }
        if instance.mount.is_none() || instance.uses >= RENEW_AFTER {
            match new_instance() {
                Ok(mount) => {
                    // The old one goes once no look-up holds it any more.
                    instance.mount = Some(Arc::new(mount));
                    instance.uses = 0;
                }
                // Short of descriptors or memory for now: the old instance
                // a while longer, or `/proc/sys` this time.
                Err(e) if is_transient(e) => {
                    log::debug!("cannot make a procfs instance of the library's own for now: {e}");
                    instance.mount.as_ref()?;
                }
                Err(e) => {
                    log::debug!(
                        "cannot make a procfs instance of the library's own ({e}); settings are looked up through {PROC_SYS}"
                    );
                    *instance = Instance {
                        unavailable: true,
                        ..Instance::default()
                    };
                    return None;
                }
            }
        }
        instance.uses += 1;
        instance.mount.clone()
    }
}

/// Writes `value` to the setting `key` (`eth0/disable_ipv6`) of `dir`, a
/// directory [`ProcSys::open_dir`] opened. A link is not followed.
pub(crate) fn write_at(dir: &File, key: &str, value: &[u8]) -> std::io::Result<()> {
    let file = openat(
        dir,
        key,
        OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    std::io::Write::write_all(&mut File::from(file), value)
}

/// Whether making a procfs instance may work later: it failed for want of
/// descriptors or memory, not for want of permission or kernel support.
fn is_transient(error: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [
        Errno::MFILE,
        Errno::NFILE,
        Errno::NOMEM,
        Errno::AGAIN,
        Errno::INTR,
    ]
    .contains(&error)
}

/// Whether this thread's `/proc/sys` is mounted read-only (as in many
/// containers): then the library does not write settings behind the
/// administrator's back through a procfs of its own.
fn process_proc_sys_read_only() -> bool {
    rustix::fs::statvfs(PROC_SYS)
        .map(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
        .unwrap_or(true)
}

/// A fresh procfs instance, detached: reachable only through the returned
/// descriptor, gone when it is closed.
fn new_instance() -> rustix::io::Result<OwnedFd> {
    use rustix::mount::{
        fsconfig_create, fsmount, fsopen, FsMountFlags, FsOpenFlags, MountAttrFlags,
    };
    let context = fsopen("proc", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_create(context.as_fd())?;
    fsmount(
        context.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (a procfs instance of its own); skipped otherwise.
    #[test]
    fn opens_the_same_settings_as_proc_sys_and_renews_its_instance() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let sys = ProcSys::default();
        let mut instances: Vec<Arc<OwnedFd>> = Vec::new();
        for _ in 0..=RENEW_AFTER {
            let dir = sys.open_dir("net/ipv4/conf").unwrap();
            let file = openat(&dir, "lo/arp_notify", OFlags::RDONLY, Mode::empty()).unwrap();
            let ours = std::io::read_to_string(File::from(file)).unwrap();
            let theirs = std::fs::read_to_string("/proc/sys/net/ipv4/conf/lo/arp_notify").unwrap();
            assert_eq!(ours, theirs);
            let mount = sys.instance.lock().unwrap().mount.clone().unwrap();
            if !instances.iter().any(|m| Arc::ptr_eq(m, &mount)) {
                instances.push(mount);
            }
        }
        assert_eq!(instances.len(), 2, "one instance, renewed once");
    }
}
