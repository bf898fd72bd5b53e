//! Handles on network namespaces.
//!
//! A [`NetNs`] holds an open file descriptor of a network namespace: a
//! `/run/netns/NAME` bind mount, `/proc/PID/ns/net`, or one made with
//! [`NetNs::create`]. Work that must happen *inside* a namespace (opening a
//! netlink socket there, writing its `/proc/sys/net` settings) runs on a
//! short-lived thread of the library's own that switches into it; the
//! caller's threads are never moved with `setns`.
//!
//! ```no_run
//! use underlay::netns::NetNs;
//!
//! let container = NetNs::open("/run/netns/web1")?;
//! let nl = container.netlink()?;
//! let lo = nl.link_by_name("lo")?;
//! assert_eq!(lo.index, 1);
//! # Ok::<(), underlay::Error>(())
//! ```

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::netlink::Netlink;
use crate::process::ThisProcess;
use crate::{Error, Result};

/// `NSFS_MAGIC`: the filesystem of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// The identity of a network namespace: the device and inode of its
/// namespace file, stable for the namespace's lifetime and equal for every
/// path that names it.
///
/// ```
/// use underlay::netns::NetNsId;
///
/// let id = NetNsId { dev: 4, inode: 4026532296 };
/// // As `ls -l /proc/PID/ns/net` shows it.
/// assert_eq!(id.to_string(), "net:[4026532296]");
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct NetNsId {
    /// Device number of the nsfs filesystem.
    pub dev: u64,
    /// Inode number of the namespace.
    pub inode: u64,
}

impl std::fmt::Display for NetNsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "net:[{}]", self.inode)
    }
}

/// An open network namespace.
///
/// The namespace lives at least as long as this handle. It is `Send + Sync`.
///
/// ```no_run
/// use underlay::netns::NetNs;
///
/// let ns = NetNs::create()?; // a fresh, empty namespace
/// ns.write_sysctl("net/ipv4/conf/all/arp_notify", "1")?;
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    id: NetNsId,
    path: PathBuf,
}

impl NetNs {
    /// Opens the network namespace at `path` (`/run/netns/NAME`,
    /// `/proc/PID/ns/net`, ...). Anything that is not a network namespace
    /// file, such as a regular file or another kind of namespace, is refused
    /// with [`Error::NotANetworkNamespace`].
    ///
    /// # Errors
    /// [`Error::NotANetworkNamespace`] for a missing path or anything but a network
    /// namespace file; [`Error::Io`] when it cannot be opened or examined.
    ///
    /// ```no_run
    /// use underlay::{netns::NetNs, Error};
    ///
    /// let web1 = NetNs::open("/run/netns/web1")?;
    /// // Files that are not network namespaces are refused.
    /// let err = NetNs::open("/etc/hostname").unwrap_err();
    /// assert!(matches!(err, Error::NotANetworkNamespace { .. }));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // Non-blocking: a FIFO planted where a namespace belongs must not
        // hang the caller (namespace files ignore the flag). Links are
        // followed: /proc/PID/ns/net is one.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::NotANetworkNamespace {
                        path: path.to_owned(),
                        reason: "no such file (is the container still running?)".into(),
                    }
                } else {
                    Error::io(format!("open {}", path.display()), e)
                }
            })?;
        Self::from_file(file, path.to_owned())
    }

    /// The network namespace of the calling thread, named by the path
    /// another thread finds it by (`/proc/PID/task/TID/ns/net`, with the
    /// ids the mounted `/proc` knows it by).
    ///
    /// # Errors
    /// [`Error::Io`] when the thread's namespace file cannot be opened, or
    /// when the mounted `/proc` does not show this process (one of a pid
    /// namespace that is not this process's, nor above it).
    ///
    /// ```
    /// use underlay::netns::NetNs;
    ///
    /// let here = NetNs::current()?;
    /// assert_eq!(here.id(), NetNs::open("/proc/self/ns/net")?.id());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn current() -> Result<Self> {
        // Opened as this thread's own, named as any other thread would
        // find it: `/proc/PID/task/TID` with the ids of the mounted
        // `/proc` (in a pid namespace without a `/proc` of its own,
        // `getpid()`'s would name another process, or none).
        let mut ns = Self::open("/proc/thread-self/ns/net")?;
        ns.path = PathBuf::from(format!("{}/ns/net", crate::process::thread_dir()?));
        Ok(ns)
    }

    /// Creates a new, empty network namespace. It holds only a `lo` link,
    /// which is brought up, and lives as long as this handle (or any other
    /// reference to it) does; nothing is left behind when it is dropped.
    ///
    /// # Errors
    /// [`Error::Io`] when the namespace cannot be made (no `CAP_SYS_ADMIN`), the
    /// worker thread cannot be started, or the mounted `/proc` does not show this
    /// process (see [`current`](Self::current)); [`Error::Kernel`] when `lo` cannot
    /// be brought up.
    ///
    /// ```no_run
    /// use underlay::netns::NetNs;
    ///
    /// let sandbox = NetNs::create()?;
    /// let links = sandbox.netlink()?.links()?;
    /// assert_eq!(links.len(), 1); // only lo, and it is up
    /// assert!(links[0].up);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn create() -> Result<Self> {
        let ns = on_own_thread(|| {
            // SAFETY: unshare(CLONE_NEWNET) moves only this thread, which
            // the library owns and which ends right after; it does not
            // unshare the file table (CLONE_FILES), the case that makes
            // `unshare` unsafe.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .map_err(|e| {
                    Error::io(
                        "create a network namespace (unshare CLONE_NEWNET)",
                        e.into(),
                    )
                })?;
            let mut ns = NetNs::current()?;
            Netlink::open()?.set_link_up_by_index(1, true)?;
            // The thread's path dies with the thread: name the namespace by
            // this handle's descriptor instead, valid while it lives.
            ns.path = PathBuf::from(format!(
                "/proc/{}/fd/{}",
                crate::process::pid()?,
                ns.fd.as_raw_fd()
            ));
            Ok(ns)
        })?;
        log::debug!("created network namespace {}", ns.id);
        Ok(ns)
    }

    fn from_file(file: File, path: PathBuf) -> Result<Self> {
        let not_netns = |reason: String| Error::NotANetworkNamespace {
            path: path.clone(),
            reason,
        };
        let fs = rustix::fs::fstatfs(&file)
            .map_err(|e| Error::io(format!("fstatfs {}", path.display()), e.into()))?;
        let metadata = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        if fs.f_type as i64 != NSFS_MAGIC {
            let what = if metadata.is_dir() {
                "a directory"
            } else if metadata.is_file() {
                "a regular file"
            } else {
                "not a namespace file"
            };
            return Err(not_netns(format!(
                "it is {what}, not a namespace file (expected /run/netns/NAME or /proc/PID/ns/net)"
            )));
        }
        let kind = namespace_type(&file, &path)?;
        if kind != "net" {
            return Err(not_netns(format!(
                "it is a {} namespace, not a network namespace",
                namespace_kind(&kind)
            )));
        }
        Ok(NetNs {
            id: NetNsId {
                dev: metadata.dev(),
                inode: metadata.ino(),
            },
            fd: file.into(),
            path,
        })
    }

    /// The namespace's identity.
    ///
    /// ```
    /// use underlay::netns::NetNs;
    ///
    /// // Two paths to the same namespace: one identity.
    /// let a = NetNs::current()?;
    /// let b = NetNs::open(format!("/proc/{}/ns/net", std::process::id()))?;
    /// assert_eq!(a.id(), b.id());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn id(&self) -> NetNsId {
        self.id
    }

    /// The path the namespace was opened from (for one made by
    /// [`NetNs::create`], `/proc/PID/fd/FD` of this handle).
    ///
    /// ```
    /// use underlay::netns::NetNs;
    ///
    /// let ns = NetNs::open("/proc/self/ns/net")?;
    /// assert_eq!(ns.path(), std::path::Path::new("/proc/self/ns/net"));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a route-netlink socket that works inside this namespace.
    ///
    /// # Errors
    /// [`Error::Io`] when the namespace cannot be entered or the socket opened.
    ///
    /// ```no_run
    /// use underlay::netns::NetNs;
    ///
    /// let nl = NetNs::open("/run/netns/web1")?.netlink()?;
    /// for link in nl.links()? {
    ///     println!("web1: {} {:?}", link.name, link.mac);
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn netlink(&self) -> Result<Netlink> {
        self.run(Netlink::open)
    }

    /// Writes a per-namespace kernel setting under `/proc/sys`, for example
    /// `net/ipv6/conf/eth0/ndisc_notify`. `key` is relative to `/proc/sys`
    /// and may not leave it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a key outside `/proc/sys/net`; [`Error::Io`]
    /// when the setting cannot be written (it does not exist in this namespace).
    ///
    /// ```no_run
    /// use underlay::netns::NetNs;
    ///
    /// let web1 = NetNs::open("/run/netns/web1")?;
    /// web1.write_sysctl("net/ipv6/conf/eth0/ndisc_notify", "1")?;
    /// assert!(web1.write_sysctl("kernel/hostname", "web1").is_err()); // not under net/
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        if key.split('/').any(|part| part.is_empty() || part == "..") || !key.starts_with("net/") {
            return Err(Error::invalid(
                "sysctl key",
                key,
                "expected a path below /proc/sys/net such as net/ipv4/conf/eth0/arp_notify",
            ));
        }
        let path = format!("/proc/sys/{key}");
        self.run(|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("open {path}"), e))?;
            file.write_all(value.as_bytes())
                .map_err(|e| Error::io(format!("write {value:?} to {path}"), e))
        })
    }

    /// Runs `work` on a thread of the library's own that has switched into
    /// this namespace, and returns its result. The calling thread is never
    /// moved.
    ///
    /// # Errors
    /// [`Error::Io`] when the worker thread cannot be started or cannot enter the
    /// namespace; whatever `work` returns; [`Error::Internal`] if `work` panics.
    ///
    /// ```no_run
    /// use underlay::{netlink::Netlink, netns::NetNs};
    ///
    /// let web1 = NetNs::open("/run/netns/web1")?;
    /// let routes = web1.run(|| Netlink::open()?.routes(underlay::IpFamily::V4))?;
    /// println!("web1 has {} IPv4 routes", routes.len());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn run<T: Send>(&self, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        if self.is_calling_threads() {
            // Already there (a host opened for the process's own
            // namespace): no thread, no setns; a panic still comes back as
            // an error.
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|_| Err(Error::Internal("namespace work panicked".into())));
        }
        let fd = self.fd.as_fd();
        on_own_thread(move || {
            // setns moves only this thread, which the library owns.
            rustix::thread::move_into_link_name_space(
                fd,
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| {
                Error::io(
                    format!("enter network namespace {}", self.path.display()),
                    e.into(),
                )
            })?;
            work()
        })
    }
}

impl NetNs {
    /// Whether the calling thread is in this namespace now (checked each
    /// time: a caller's thread may move between calls).
    fn is_calling_threads(&self) -> bool {
        rustix::fs::stat("/proc/thread-self/ns/net").is_ok_and(|st| {
            #[allow(clippy::unnecessary_cast)] // not u64 on every target
            let (dev, inode) = (st.st_dev as u64, st.st_ino as u64);
            dev == self.id.dev && inode == self.id.inode
        })
    }
}

/// The kind of the namespace `file` is (`net`, `uts`, ...). The kernel
/// says it through `NS_GET_NSTYPE` (Linux 4.11); older kernels name it in
/// the descriptor's link text (`net:[4026531840]`), which for a
/// bind-mounted namespace file is the mount's path on newer ones.
fn namespace_type(file: &File, path: &Path) -> Result<String> {
    /// `_IO(0xb7, 0x3)`.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the
    // descriptor, which `file` keeps open for the call.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind >= 0 {
        return Ok(match kind {
            libc::CLONE_NEWNET => "net",
            libc::CLONE_NEWUTS => "uts",
            libc::CLONE_NEWIPC => "ipc",
            libc::CLONE_NEWPID => "pid",
            libc::CLONE_NEWNS => "mnt",
            libc::CLONE_NEWUSER => "user",
            libc::CLONE_NEWCGROUP => "cgroup",
            _ => "other",
        }
        .to_owned());
    }
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    let target = std::fs::read_link(&link)
        .map_err(|e| Error::io(format!("query the namespace type of {}", path.display()), e))?;
    let target = target.to_string_lossy();
    Ok(target.split(':').next().unwrap_or_default().to_owned())
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A thread of the library's own that does short jobs inside namespaces:
/// it enters the namespace, runs the job, and comes back to where it
/// started (so that it never keeps a container's namespace alive). One
/// job at a time; a caller waits for its job's result when it needs it.
/// Cheaper than a thread per job ([`NetNs::run`]): a wake-up instead of a
/// spawn. Jobs own what they use (`'static`), the namespace's descriptor
/// included (a duplicate).
#[derive(Debug, Default)]
pub(crate) struct Worker {
    /// The thread's queue, and the process that started it: a process
    /// forked from that one has no such thread and starts its own.
    jobs: Mutex<Option<(ThisProcess, Queue)>>,
}

type Queue = mpsc::Sender<Job>;

type Job = Box<dyn FnOnce(&OwnedFd) -> bool + Send>;

impl Worker {
    /// Hands `work` to the worker thread (started at the first job, and
    /// again if it ever had to stop), to run inside `netns`, and returns at
    /// once: the caller goes on with its own work meanwhile and
    /// [waits](Pending::wait_soon) for the result when it needs it.
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        netns: &NetNs,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<Pending<T>> {
        let (reply, answer) = mpsc::sync_channel::<Result<T>>(1);
        // The job owns a duplicate of the descriptor: no borrow crosses
        // threads.
        let target = netns
            .fd
            .try_clone()
            .map_err(|e| Error::io("duplicate a namespace descriptor", e))?;
        let path = netns.path.clone();
        let job: Job = Box::new(move |home: &OwnedFd| {
            let entered = rustix::thread::move_into_link_name_space(
                target.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| {
                Error::io(
                    format!("enter network namespace {}", path.display()),
                    e.into(),
                )
            });
            let result = entered.and_then(|()| work());
            let back = rustix::thread::move_into_link_name_space(
                home.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .is_ok();
            let _ = reply.send(result);
            back
        });
        let sender = self.sender()?;
        if let Err(mpsc::SendError(job)) = sender.send(job) {
            // The thread stopped (it could not come back home): a new one.
            let sender = Worker::start()?;
            *self.jobs.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((ThisProcess::new(), sender.clone()));
            sender
                .send(job)
                .map_err(|_| Error::Internal("the namespace worker stopped".into()))?;
        }
        Ok(Pending { answer })
    }

    /// The running thread's queue, the thread started if need be (at the
    /// first job, and in a forked process: its jobs would wait forever in
    /// the queue of a thread that was not forked with it).
    fn sender(&self) -> Result<Queue> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        match jobs.as_ref() {
            Some((started_by, sender)) if started_by.still() => Ok(sender.clone()),
            _ => {
                let sender = Worker::start()?;
                // A forked child lets go of its parent's queue without
                // dropping it: dropping it takes a lock of the channel's
                // that the parent's thread may have held at the fork (a
                // page and a queue, once per fork).
                if let Some(parents) = jobs.replace((ThisProcess::new(), sender.clone())) {
                    std::mem::forget(parents);
                }
                Ok(sender)
            }
        }
    }

    fn start() -> Result<Queue> {
        let home: OwnedFd = File::open("/proc/thread-self/ns/net")
            .map_err(|e| Error::io("open this thread's network namespace", e))?
            .into();
        let (sender, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("underlay-netns-worker".into())
            .spawn(move || {
                for job in receiver {
                    if !job(&home) {
                        // Stuck in another namespace: stop, rather than
                        // keep it alive or run the next job there.
                        log::warn!("the namespace worker could not come back; stopping it");
                        return;
                    }
                }
            })
            .map_err(|e| Error::io("spawn the namespace worker", e))?;
        Ok(sender)
    }
}

/// The result of a job handed to the [`Worker`], to come.
pub(crate) struct Pending<T> {
    answer: mpsc::Receiver<Result<T>>,
}

impl<T> Pending<T> {
    /// Waits for the job's result, due within microseconds: see
    /// [`receive_soon`].
    pub(crate) fn wait_soon(self, spin: Duration) -> Result<T> {
        receive_soon(&self.answer, spin)
            .map_err(|_| Error::Internal("the namespace worker stopped".into()))?
    }
}

/// Receives a message due within microseconds from another thread: the
/// thread first gives way to others in a loop for up to `spin`, and only
/// then sleeps. A handoff between two threads that sleep costs each time
/// the wake-up of an idle CPU, tens of microseconds on a virtual machine;
/// an attach makes three.
pub(crate) fn receive_soon<T>(
    receiver: &mpsc::Receiver<T>,
    spin: Duration,
) -> std::result::Result<T, mpsc::RecvError> {
    let start = Instant::now();
    loop {
        match receiver.try_recv() {
            Ok(message) => return Ok(message),
            Err(mpsc::TryRecvError::Disconnected) => return Err(mpsc::RecvError),
            Err(mpsc::TryRecvError::Empty) if start.elapsed() < spin => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Empty) => return receiver.recv(),
        }
    }
}

impl NetNs {
    /// The namespace at `path` if it is still the one with identity `id`;
    /// `Ok(None)` when it is gone (nothing there, or something else now:
    /// a descriptor's path names whatever took its number); an error only
    /// when that cannot be told, for want of descriptors or memory.
    pub(crate) fn open_if_same(path: &Path, id: NetNsId) -> Result<Option<NetNs>> {
        match NetNs::open(path) {
            Ok(netns) => Ok((netns.id() == id).then_some(netns)),
            Err(e)
                if matches!(
                    e.errno(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
                ) =>
            {
                Err(e)
            }
            Err(_) => Ok(None),
        }
    }
}

/// Runs `work` once for each job, inside the job's namespace, on up to
/// `threads` threads of the library's own, each entering the namespaces
/// of its share of the jobs in turn (one thread per job would spawn far
/// more). Returns the results in the jobs' order.
pub(crate) fn run_each<I: Send, T: Send>(
    jobs: Vec<(&NetNs, I)>,
    threads: usize,
    work: impl Fn(I) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    let count = jobs.len();
    if count == 0 {
        return Vec::new();
    }
    let per_thread = count.div_ceil(threads.clamp(1, count));
    let mut shares: Vec<Vec<(usize, &NetNs, I)>> = Vec::new();
    for (i, (netns, item)) in jobs.into_iter().enumerate() {
        if i % per_thread == 0 {
            shares.push(Vec::with_capacity(per_thread));
        }
        if let Some(share) = shares.last_mut() {
            share.push((i, netns, item));
        }
    }
    let work = &work;
    let mut results: Vec<Option<Result<T>>> = (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let indexes: Vec<usize> = share.iter().map(|(i, _, _)| *i).collect();
                let spawned = std::thread::Builder::new()
                    .name("underlay-netns".into())
                    .spawn_scoped(scope, move || {
                        share
                            .into_iter()
                            .map(|(i, netns, item)| {
                                // setns moves only this thread, which the
                                // library owns and which ends here.
                                let entered = rustix::thread::move_into_link_name_space(
                                    netns.fd.as_fd(),
                                    Some(rustix::thread::LinkNameSpaceType::Network),
                                )
                                .map_err(|e| {
                                    Error::io(
                                        format!("enter network namespace {}", netns.path.display()),
                                        e.into(),
                                    )
                                });
                                (i, entered.and_then(|()| work(item)))
                            })
                            .collect::<Vec<_>>()
                    });
                (indexes, spawned)
            })
            .collect();
        for (indexes, handle) in handles {
            let done = match handle {
                Ok(handle) => handle.join().ok(),
                Err(e) => {
                    log::debug!("cannot spawn a namespace worker thread: {e}");
                    None
                }
            };
            match done {
                Some(done) => {
                    for (i, result) in done {
                        results[i] = Some(result);
                    }
                }
                None => {
                    for i in indexes {
                        results[i] = Some(Err(Error::Internal(
                            "a namespace worker thread did not run".into(),
                        )));
                    }
                }
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Internal("no result from a namespace job".into()))))
        .collect()
}

/// Runs `work` on a fresh thread and waits for it.
fn on_own_thread<T: Send>(work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("underlay-netns".into())
            .spawn_scoped(scope, work)
            .map_err(|e| Error::io("spawn a namespace worker thread", e))?
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("a namespace worker thread panicked".into())))
    })
}

/// The kind of a namespace, from the name the kernel gives it in
/// `/proc/self/ns` (`uts`, `mnt`, `pid_for_children`, ...).
fn namespace_kind(kind: &str) -> &'static str {
    match kind {
        "uts" => "UTS",
        "ipc" => "IPC",
        "mnt" => "mount",
        "pid" | "pid_for_children" => "PID",
        "user" => "user",
        "cgroup" => "cgroup",
        "time" | "time_for_children" => "time",
        _ => "different",
    }
}
