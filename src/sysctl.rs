//! A network namespace's kernel settings (`/proc/sys/net/...`), opened
//! from a thread inside it, the way that stays fast with many namespaces.
//!
//! `/proc/sys/net` is one directory for every network namespace; below it,
//! each namespace has its own `ipv6` (and `ipv4`, `core`, ...), and the
//! kernel finds the calling thread's by name among the `ipv6` entries of
//! every namespace looked up so far through the same procfs instance, one
//! by one. With hundreds of containers, opening a setting of a new one costs
//! 40-110 µs, a large part of what an attach spends beyond the kernel's own work
//! (an IPv4-only endpoint's `disable_ipv6`, a dual-stack one's
//! `ndisc_notify`). [`ProcSys`] looks settings up through a procfs
//! instance of the library's own instead: made with `fsopen` and
//! `fsmount`, attached nowhere in the file tree, replaced by a fresh one
//! after [`RENEW_AFTER`] look-ups, so that the list it walks stays short
//! (7-20 µs). Which namespace's settings a look-up finds depends only on the
//! thread that makes it, whatever the procfs instance.
//!
//! Where such an instance cannot be made (kernels before 5.2, a process
//! without `CAP_SYS_ADMIN` over its mount namespace, a seccomp filter),
//! would not help (kernels before 5.8 give every procfs mount of a pid
//! namespace the same entries), is refused (an LSM that denies files of
//! detached mounts), or where the process's own `/proc/sys` is not plain
//! (read-only, masked, or with mounts on `net` or below: an administrator's choice,
//! which the library respects), `/proc/sys` it is.
//!
//! An instance is replaced off the look-up's path: a thread of the
//! library's own makes the next one and closes the old one (closing a
//! mount waits for the kernel's RCU grace period). Mounts on `/proc/sys`
//! are looked for in `mountinfo` each time one is made; at every look-up,
//! `statfs` of `/proc/sys/net` says whether a file system other than
//! procfs, or a read-only one, is over it or over `/proc/sys` now.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use rustix::fs::{openat, Mode, OFlags};
use rustix::io::Errno;

use crate::process::ThisProcess;

/// Look-ups through one private procfs instance before it is replaced:
/// each leaves an entry the next ones walk past (about 0.1 µs each), and
/// making an instance costs 100-200 µs.
pub(crate) const RENEW_AFTER: u32 = 64;

/// Where the process's own settings are.
const PROC_SYS: &str = "/proc/sys";

/// Where the network settings are (of the calling thread's namespace below
/// it, the directory itself the same for all).
const PROC_SYS_NET: &str = "/proc/sys/net";

/// Where the per-link IPv6 settings are, below `/proc/sys`.
pub(crate) const IPV6_CONF: &str = "net/ipv6/conf";

/// Opens settings of the calling thread's network namespace (see the
/// [module](self)). Shared by the threads of one engine.
#[derive(Debug, Default)]
pub(crate) struct ProcSys {
    instance: Arc<Mutex<Instance>>,
}

#[derive(Debug, Default)]
struct Instance {
    /// The private procfs instance, if one is made, and the process that
    /// made it (a forked child does not look up through its parent's).
    mount: Option<(ThisProcess, Arc<OwnedFd>)>,
    /// Look-ups made through it.
    uses: u32,
    /// A thread of the library's own is making the next one.
    renewing: bool,
    /// No private instance for this engine: `/proc/sys` from then on
    /// (said once, at debug level).
    unavailable: bool,
    /// Attempts in a row that failed for want of descriptors, memory or
    /// mount namespaces: after [`PASSING_FAILURES`], none any more.
    passing_failures: u32,
}

/// Failed attempts at an instance, for reasons that may pass, after which
/// an engine keeps to `/proc/sys` (each attempt costs a look-up its time).
const PASSING_FAILURES: u32 = 8;

/// A directory of settings [`ProcSys::open_dir`] opened.
pub(crate) struct SettingsDir {
    file: File,
    /// Opened through the private procfs instance.
    private: bool,
}

impl ProcSys {
    /// Opens the directory `dir` below `/proc/sys` (`net/ipv6/conf`) of
    /// the calling thread's network namespace. `dir` is the library's own,
    /// never a caller's.
    pub(crate) fn open_dir(&self, dir: &str) -> std::io::Result<SettingsDir> {
        debug_assert!(!dir.starts_with('/') && !dir.split('/').any(|p| p == ".."));
        if let Some(mount) = self.private_instance() {
            match openat(&*mount, format!("sys/{dir}"), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => {
                    return Ok(SettingsDir {
                        file: fd.into(),
                        private: true,
                    })
                }
                Err(e) if is_refusal(e) => {
                    let settings = open_proc_sys(dir)?;
                    self.refused(e);
                    return Ok(settings);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(open_proc_sys(dir)?)
    }

    /// Writes `value` to the setting `key` (`eth0/disable_ipv6`) of `dir`
    /// (below `/proc/sys`), through `opened` when it is that directory,
    /// opened already. A link is not followed.
    pub(crate) fn write(
        &self,
        opened: Option<&SettingsDir>,
        dir: &str,
        key: &str,
        value: &[u8],
    ) -> std::io::Result<()> {
        let fresh;
        let settings = match opened {
            Some(settings) => settings,
            None => {
                fresh = self.open_dir(dir)?;
                &fresh
            }
        };
        match write_at(&settings.file, key, value) {
            // Refused through the library's procfs: through `/proc/sys`,
            // and if that is allowed, `/proc/sys` from now on.
            Err(e) if settings.private && is_refusal(e) => {
                write_at(&open_proc_sys(dir)?.file, key, value)?;
                self.refused(e);
                Ok(())
            }
            written => Ok(written?),
        }
    }

    /// A look-up or a write through the private instance was refused where
    /// `/proc/sys` allows it (an LSM that denies files of detached mounts):
    /// `/proc/sys` from now on.
    fn refused(&self, error: Errno) {
        let old = {
            let mut instance = self.instance.lock().unwrap_or_else(|p| p.into_inner());
            if !instance.unavailable {
                log::debug!(
                    "settings refused through the library's own procfs ({error}); looked up through {PROC_SYS} from now on"
                );
            }
            instance.unavailable = true;
            instance.mount.take()
        };
        // Closed off the lock (closing a mount waits for a grace period).
        drop(old);
    }

    /// The private instance to look up through, made if need be, its
    /// renewal started when due; `None` where `/proc/sys` is to be used.
    fn private_instance(&self) -> Option<Arc<OwnedFd>> {
        if !proc_sys_is_plain() {
            return None;
        }
        let mut instance = self.instance.lock().unwrap_or_else(|p| p.into_inner());
        if instance.unavailable {
            return None;
        }
        if instance
            .mount
            .as_ref()
            .is_some_and(|(made_by, _)| !made_by.still())
        {
            // A forked child: its parent's state is not its own.
            *instance = Instance::default();
        }
        if instance.mount.is_none() {
            // The first look-up (or the first of a forked child): made
            // here, once (under the lock: the other look-ups would make
            // one each meanwhile).
            match new_instance(None) {
                Ok(mount) => {
                    instance.mount = Some((ThisProcess::new(), Arc::new(mount)));
                    instance.uses = 0;
                    instance.passing_failures = 0;
                }
                Err(e) => {
                    instance.failed(e);
                    return None;
                }
            }
        }
        instance.uses = instance.uses.saturating_add(1);
        let mount = instance.mount.as_ref().map(|(_, mount)| Arc::clone(mount));
        if instance.uses < RENEW_AFTER || instance.renewing {
            return mount;
        }
        // Due: a thread of the library's own makes the next one, started
        // off the lock.
        instance.renewing = true;
        drop(instance);
        let shared = Arc::clone(&self.instance);
        let spawned = std::thread::Builder::new()
            .name("underlay-procfs".into())
            .spawn(move || renew(&shared));
        if let Err(e) = spawned {
            log::debug!("cannot start a thread to renew the library's procfs: {e}");
            let mut instance = self.instance.lock().unwrap_or_else(|p| p.into_inner());
            instance.renewing = false;
            instance.uses = 0;
        }
        mount
    }
}

impl Instance {
    /// Making an instance failed with `error`: tried again later if that
    /// may pass (a few times), never again otherwise.
    fn failed(&mut self, error: Errno) {
        // A renewal is tried again after as many look-ups as an instance
        // serves; a first instance at the next look-up.
        self.uses = 0;
        if is_transient(error) {
            self.passing_failures += 1;
            if self.passing_failures < PASSING_FAILURES {
                log::debug!("cannot make a procfs instance of the library's own for now: {error}");
                return;
            }
        }
        log::debug!(
            "no procfs instance of the library's own ({error}); settings are looked up through {PROC_SYS}"
        );
        self.unavailable = true;
    }
}

/// Makes the next private instance and puts it in place of the old one,
/// which is closed here, off every look-up's path. (The thread is in the
/// namespace of the look-up that started it, for its short life.)
fn renew(shared: &Mutex<Instance>) {
    let previous = {
        let instance = shared.lock().unwrap_or_else(|p| p.into_inner());
        instance.mount.as_ref().map(|(_, mount)| Arc::clone(mount))
    };
    let made = if proc_sys_is_plain() {
        new_instance(previous.as_deref())
    } else {
        Err(Errno::PERM)
    };
    drop(previous);
    let old = {
        let mut instance = shared.lock().unwrap_or_else(|p| p.into_inner());
        instance.renewing = false;
        match made {
            Ok(mount) if !instance.unavailable => {
                instance.uses = 0;
                instance.passing_failures = 0;
                instance
                    .mount
                    .replace((ThisProcess::new(), Arc::new(mount)))
            }
            Ok(_) => None,
            Err(e) => {
                // The old one a while longer, unless that was the last try.
                instance.failed(e);
                if instance.unavailable {
                    instance.mount.take()
                } else {
                    None
                }
            }
        }
    };
    drop(old);
}

/// How setting directories are opened.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

/// Opens the directory `dir` of `/proc/sys`.
fn open_proc_sys(dir: &str) -> Result<SettingsDir, Errno> {
    let fd = openat(
        rustix::fs::CWD,
        format!("{PROC_SYS}/{dir}"),
        DIR_FLAGS,
        Mode::empty(),
    )?;
    Ok(SettingsDir {
        file: fd.into(),
        private: false,
    })
}

/// Writes `value` to the setting `key` of `dir`. A link is not followed.
fn write_at(dir: &File, key: &str, value: &[u8]) -> Result<(), Errno> {
    let file = openat(
        dir,
        key,
        OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    std::io::Write::write_all(&mut File::from(file), value).map_err(|e| errno_of(&e))
}

/// The error number of an I/O error (`EIO` for one without).
fn errno_of(error: &std::io::Error) -> Errno {
    Errno::from_io_error(error).unwrap_or(Errno::IO)
}

/// Whether making a procfs instance may work later: it failed for want of
/// descriptors, memory or mount namespaces (`user.max_mnt_namespaces`),
/// not for want of permission or kernel support.
fn is_transient(error: Errno) -> bool {
    [
        Errno::MFILE,
        Errno::NFILE,
        Errno::NOMEM,
        Errno::NOSPC,
        Errno::AGAIN,
        Errno::INTR,
        Errno::BUSY,
    ]
    .contains(&error)
}

/// Whether a look-up or a write was refused as such (where `/proc/sys`
/// may still answer).
fn is_refusal(error: Errno) -> bool {
    [Errno::ACCESS, Errno::PERM, Errno::ROFS].contains(&error)
}

/// Whether this thread's `/proc/sys/net` is procfs's own and writable (not
/// under an administrator's read-only `/proc/sys`, nor masked, there or at
/// `net`, as in many containers): only then does the library look
/// settings up through a procfs of its own. Asked at every look-up, so
/// that a mask made since the instance was made counts at once: one
/// `statfs`, as cheap as one of `/proc/sys` (`net` is one entry for every
/// network namespace, and a mount on it hides theirs all).
fn proc_sys_is_plain() -> bool {
    let Ok(st) = rustix::fs::statfs(PROC_SYS_NET) else {
        return false;
    };
    // Not the same types on every target.
    #[allow(clippy::unnecessary_cast)]
    let plain = st.f_type as i64 == rustix::fs::PROC_SUPER_MAGIC as i64
        && st.f_flags as u64 & libc::ST_RDONLY as u64 == 0;
    plain
}

/// Whether a mount is made at `/proc/sys`, or at or below `/proc/sys/net`,
/// in this thread's mount namespace (from `mountinfo`: the fifth field,
/// compared as bytes, as the kernel writes it). Others (`fs/binfmt_misc`
/// on most hosts) do not matter.
fn mounts_on_proc_sys_net() -> Result<bool, Errno> {
    let info = std::fs::read("/proc/thread-self/mountinfo").map_err(|e| errno_of(&e))?;
    Ok(covers_proc_sys_net(&info))
}

/// Whether `mountinfo` (the bytes of a `mountinfo` file) has a mount at
/// `/proc/sys`, or at or below `/proc/sys/net`.
fn covers_proc_sys_net(mountinfo: &[u8]) -> bool {
    mountinfo.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ').nth(4).is_some_and(|point| {
            point == PROC_SYS.as_bytes()
                || point == b"/proc/sys/net"
                || point.starts_with(b"/proc/sys/net/")
        })
    })
}

/// A fresh procfs instance, detached: reachable only through the returned
/// descriptor, gone when it is closed. Refused where `/proc/sys/net` has
/// mounts on or below it, and where it would share the entries of
/// `/proc` or of `previous`, the instance it replaces (kernels before 5.8
/// have one procfs per pid namespace).
fn new_instance(previous: Option<&OwnedFd>) -> rustix::io::Result<OwnedFd> {
    use rustix::mount::{
        fsconfig_create, fsmount, fsopen, FsMountFlags, FsOpenFlags, MountAttrFlags,
    };
    if mounts_on_proc_sys_net()? {
        return Err(Errno::PERM);
    }
    let context = fsopen("proc", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_create(context.as_fd())?;
    let mount = fsmount(
        context.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )?;
    let ours = rustix::fs::fstat(&mount)?.st_dev;
    let shared = match previous {
        Some(previous) => rustix::fs::fstat(previous)?.st_dev == ours,
        None => rustix::fs::stat("/proc")?.st_dev == ours,
    };
    if shared {
        return Err(Errno::NOTSUP);
    }
    Ok(mount)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root and a procfs instance of its own; skipped otherwise.
    #[test]
    fn opens_the_same_settings_as_proc_sys_and_renews_its_instance() {
        let sys = ProcSys::default();
        if !rustix::process::geteuid().is_root() || sys.private_instance().is_none() {
            eprintln!("skipped: needs root and a procfs instance of its own");
            return;
        }
        let mount = |sys: &ProcSys| {
            let instance = sys.instance.lock().unwrap();
            instance.mount.as_ref().map(|(_, m)| Arc::clone(m))
        };
        let first = mount(&sys).unwrap();
        for _ in 0..RENEW_AFTER {
            let dir = sys.open_dir("net/ipv4/conf").unwrap();
            assert!(dir.private);
            let file = openat(&dir.file, "lo/arp_notify", OFlags::RDONLY, Mode::empty()).unwrap();
            let ours = std::io::read_to_string(File::from(file)).unwrap();
            let theirs = std::fs::read_to_string("/proc/sys/net/ipv4/conf/lo/arp_notify").unwrap();
            assert_eq!(ours, theirs);
        }
        // Renewed by a thread of its own.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while mount(&sys).is_some_and(|m| Arc::ptr_eq(&m, &first)) {
            assert!(std::time::Instant::now() < deadline, "never renewed");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // (A look-up may have gone through the new one already.)
        assert!(sys.instance.lock().unwrap().uses <= 1);
        assert!(sys.open_dir("net/ipv4/conf").unwrap().private);
    }

    #[test]
    fn passing_failures_end_the_private_instance_after_a_few_others_at_once() {
        let mut instance = Instance::default();
        for _ in 1..PASSING_FAILURES {
            instance.failed(Errno::MFILE);
            assert!(!instance.unavailable);
        }
        instance.failed(Errno::NOSPC);
        assert!(instance.unavailable);
        let mut instance = Instance::default();
        instance.failed(Errno::PERM);
        assert!(instance.unavailable);
    }

    #[test]
    fn mounts_on_proc_sys_or_its_net_are_found_in_mountinfo() {
        let line = |point: &[u8]| {
            let mut line = b"36 35 0:5 / ".to_vec();
            line.extend_from_slice(point);
            line.extend_from_slice(b" rw,nosuid,nodev,noexec - proc proc rw\n");
            line
        };
        let base = [
            line(b"/"),
            line(b"/proc"),
            // A name that is not UTF-8 changes nothing.
            line(b"/tmp/rx_\xff"),
            // On most hosts: not below net.
            line(b"/proc/sys/fs/binfmt_misc"),
            // Only a path that starts with /proc/sys/net as a directory.
            line(b"/proc/sys/netfilter"),
            line(b"/proc/sysrq-trigger"),
        ]
        .concat();
        assert!(!covers_proc_sys_net(&base));
        for point in [
            &b"/proc/sys"[..],
            b"/proc/sys/net",
            b"/proc/sys/net/ipv6",
            b"/proc/sys/net/ipv6/conf",
        ] {
            let info = [base.clone(), line(point)].concat();
            assert!(
                covers_proc_sys_net(&info),
                "{}",
                String::from_utf8_lossy(point)
            );
        }
        // The last line without its newline, as in a truncated read.
        let mut info = [base, line(b"/proc/sys/net")].concat();
        info.pop();
        assert!(covers_proc_sys_net(&info));
    }

    #[test]
    fn refusals_and_passing_failures_are_told_apart() {
        assert!(is_transient(Errno::MFILE) && is_transient(Errno::NOSPC));
        assert!(!is_transient(Errno::PERM) && !is_transient(Errno::NOSYS));
        assert!(is_refusal(Errno::ACCESS) && !is_refusal(Errno::NOENT));
    }
}
