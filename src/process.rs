//! This process as the kernel and `/proc` know it: its pid as the mounted
//! `/proc` names it (which is not `getpid()`'s in a pid namespace without
//! a `/proc` of its own), and whether it is still the process that looked
//! (a forked child is not).

use crate::{Error, Result};

/// This process's pid as the mounted `/proc` names it (what `/proc/self`
/// points to): the one to build `/proc` paths with and to record for other
/// processes to look up there.
///
/// # Errors
/// [`Error::Io`] when `/proc` does not show this process (a `/proc` of
/// another pid namespace than an ancestor of this one's, or none): a pid
/// from `getpid()` would name another process there, or none.
pub(crate) fn pid() -> Result<u32> {
    let link = read_proc_link("/proc/self")?;
    link.parse()
        .map_err(|_| Error::Internal(format!("/proc/self points to {link:?}")))
}

/// This thread's directory under the mounted `/proc`, as
/// `/proc/PID/task/TID` (what `/proc/thread-self` points to): a path that
/// names this thread from any other.
///
/// # Errors
/// As [`pid`].
pub(crate) fn thread_dir() -> Result<String> {
    Ok(format!("/proc/{}", read_proc_link("/proc/thread-self")?))
}

fn read_proc_link(link: &str) -> Result<String> {
    let target = std::fs::read_link(link).map_err(|e| {
        Error::io(
            format!("read {link} (is a /proc of this process's pid namespace, or of one above it, mounted?)"),
            e,
        )
    })?;
    match target.to_str() {
        Some(target) if !target.is_empty() && !target.starts_with('/') => Ok(target.to_owned()),
        _ => Err(Error::Internal(format!(
            "{link} points to {}",
            target.display()
        ))),
    }
}

/// Tells a process from a child forked from it, even one with the same
/// pid (pid 1 forking into a new pid namespace, whose first process is
/// pid 1 again): a page of memory that the kernel empties in a forked
/// child (`MADV_WIPEONFORK`, Linux 4.14), with the pid as well, and the
/// pid alone where the kernel cannot.
#[derive(Debug)]
pub(crate) struct ThisProcess {
    pid: u32,
    /// A page of its own, mapped private and anonymous, holding 1 in the
    /// process that made it (0 in a forked child); `None` without
    /// `MADV_WIPEONFORK`.
    page: Option<std::ptr::NonNull<std::sync::atomic::AtomicU8>>,
}

// SAFETY: the page is only read and written through the atomic, and it is
// unmapped only on drop, when nothing else can use it.
unsafe impl Send for ThisProcess {}
// SAFETY: as above.
unsafe impl Sync for ThisProcess {}

impl ThisProcess {
    /// The kernel rounds the mapping up to a page.
    const LEN: usize = 1;

    pub(crate) fn new() -> ThisProcess {
        use rustix::mm::{Advice, MapFlags, ProtFlags};
        // SAFETY: a new anonymous mapping where the kernel chooses; it
        // overlaps nothing of this process.
        let mapped = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                Self::LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        };
        let page = mapped.ok().and_then(|address| {
            // SAFETY: the mapping just made, and only it.
            match unsafe { rustix::mm::madvise(address, Self::LEN, Advice::LinuxWipeOnFork) } {
                Ok(()) => {
                    let page =
                        std::ptr::NonNull::new(address.cast::<std::sync::atomic::AtomicU8>())?;
                    // SAFETY: mapped, writable, aligned (a page), and ours.
                    unsafe { page.as_ref() }.store(1, std::sync::atomic::Ordering::SeqCst);
                    Some(page)
                }
                Err(e) => {
                    log::debug!("no MADV_WIPEONFORK ({e}): forks are told apart by pid");
                    // SAFETY: the mapping just made, used by nothing.
                    let _ = unsafe { rustix::mm::munmap(address, Self::LEN) };
                    None
                }
            }
        });
        ThisProcess {
            pid: std::process::id(),
            page,
        }
    }

    /// Whether this is still the process that made it.
    pub(crate) fn still(&self) -> bool {
        self.pid == std::process::id()
            && self.page.is_none_or(|page| {
                // SAFETY: mapped as long as `self` is (a forked child keeps
                // the mapping, emptied).
                unsafe { page.as_ref() }.load(std::sync::atomic::Ordering::SeqCst) == 1
            })
    }
}

impl Drop for ThisProcess {
    fn drop(&mut self) {
        if let Some(page) = self.page {
            // SAFETY: the mapping `new` made; nothing refers to it any more.
            let _ = unsafe { rustix::mm::munmap(page.as_ptr().cast(), Self::LEN) };
        }
    }
}
