//! The crate's error type.

use std::io;
use std::path::PathBuf;

use crate::feature::KernelFeature;
use crate::ipam::IpamError;

/// The result type of every fallible operation in this crate.
///
/// ```
/// use underlay::link::MacAddress;
///
/// fn parse_mac(text: &str) -> underlay::Result<MacAddress> {
///     text.parse()
/// }
/// assert!(parse_mac("02:42:ac:10:56:0a").is_ok());
/// assert!(parse_mac("not a mac").is_err());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in underlay.
///
/// Variants carry enough to act on: the kernel's errno and its extended-ACK
/// message, the name of the link or the path that was wrong.
///
/// ```
/// use underlay::Error;
///
/// fn explain(err: &Error) -> &'static str {
///     match err {
///         Error::Unsupported { .. } => "boot a kernel with that driver",
///         Error::LinkNotFound { .. } => "check the interface name",
///         e if e.errno() == Some(libc::EEXIST) => "pick another name",
///         _ => "see the message",
///     }
/// }
/// # let _ = explain;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused a netlink request.
    #[error("{operation}: {}", kernel_text(*errno, message.as_deref()))]
    Kernel {
        /// What was being done, for example `create macvlan link "eth0"`.
        operation: String,
        /// The positive errno the kernel answered with.
        errno: i32,
        /// The kernel's extended-ACK text, when it gave one.
        message: Option<String>,
    },

    /// The running kernel cannot make a kind of link.
    #[error(
        "this kernel has no {} support ({}): load the module or boot a kernel built with it",
        feature.name(),
        feature.config_option()
    )]
    Unsupported {
        /// The missing feature.
        feature: KernelFeature,
    },

    /// No link with this name or index exists in the namespace asked.
    #[error("link {link} not found")]
    LinkNotFound {
        /// The name (or `#index`) that was looked up.
        link: String,
    },

    /// An argument was rejected before anything was sent to the kernel: it
    /// is malformed, out of range or does not fit the network. (A value
    /// that is fine but taken is a conflict: [`Error::NetworkExists`],
    /// [`Error::NameInUse`], [`Error::InterfaceExists`],
    /// [`Error::AddressInUse`], ...; see [`Error::is_conflict`].)
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        /// Which argument, for example `interface name`.
        what: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused and what is accepted.
        reason: String,
    },

    /// A path given as a network namespace is not one.
    #[error("{path} is not a network namespace: {reason}")]
    NotANetworkNamespace {
        /// The path that was opened.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },

    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A state file could not be read back (it does not parse as a
    /// record).
    #[error("state file {path} is corrupt: {reason}; recovery (`underlay recover`, Host::recover) moves it aside and keeps the rest working")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// A state file is not what underlay writes there (a symbolic link, a
    /// FIFO, another user's file): it was not opened. Someone else made
    /// it; find out who before moving it aside.
    #[error("refusing state file {path}: {reason}; underlay did not make it: find out who did, then move it aside")]
    UnsafeState {
        /// The file.
        path: PathBuf,
        /// What it is.
        reason: String,
    },

    /// Another process held a lock past the wait's bound.
    #[error("timed out after {waited:.1?} waiting for the lock {lock}{}: if that process is stuck, stop it", holder.map(|p| format!(" (held by process {p})")).unwrap_or_default())]
    LockTimeout {
        /// The lock file.
        lock: PathBuf,
        /// The process holding it, when the kernel says (not when it is in a
        /// pid namespace this process cannot see).
        holder: Option<u32>,
        /// How long the wait lasted.
        waited: std::time::Duration,
    },

    /// A record could not be encoded for storage.
    #[error("cannot encode {what} for storage: {reason}")]
    StateEncoding {
        /// What was being stored, for example `network record "pub_net"`.
        what: String,
        /// The encoder's complaint.
        reason: String,
    },

    /// A network with this name exists already.
    #[error("network {name:?} already exists: pick another name or remove it first")]
    NetworkExists {
        /// The name.
        name: String,
    },

    /// A network with this name exists, but its definition differs from
    /// the one given (see [`Network::check_definition`](crate::Network::check_definition)).
    #[error("network {network:?} exists with a different {field}: it has {stored}, the request says {requested}; use the stored definition, or another network name")]
    DefinitionDiffers {
        /// The network's name.
        network: String,
        /// The first field that differs, in Docker's words (`driver`,
        /// `parent`, `subnet`, `gateway`, `ip_range`, `aux_address`, `mtu`, ...).
        field: &'static str,
        /// The stored value.
        stored: String,
        /// The requested value.
        requested: String,
    },

    /// Another host holds the address, as the shared store says.
    #[error("address {address} of network {network:?} is held by endpoint {endpoint:?} of host {host} (claimed in the shared store)")]
    AddressClaimed {
        /// The address.
        address: std::net::IpAddr,
        /// The network's name.
        network: String,
        /// The holding host's id.
        host: String,
        /// The holding endpoint's name.
        endpoint: String,
    },

    /// The shared store (etcd) could not be reached or refused the request.
    #[error("the shared store did not answer: {tried}; check that it runs and that this host reaches it, then try again")]
    SharedStoreUnavailable {
        /// Each endpoint tried, and what went wrong with it.
        tried: String,
    },

    /// No network with this name exists.
    #[error("network {name:?} not found")]
    NetworkNotFound {
        /// The name.
        name: String,
    },

    /// The parent interface does not exist (and is not a `name.vlan` that
    /// underlay could create).
    #[error("parent interface {parent} not found: create it first, or name a VLAN sub-interface as NAME.VLAN_ID on an existing one")]
    ParentNotFound {
        /// The parent as given.
        parent: String,
    },

    /// Another network already uses this parent interface.
    #[error("parent interface {parent} is already used by network {network:?}: only one network may be attached to a parent interface at a time")]
    ParentInUse {
        /// The parent.
        parent: String,
        /// The network that holds it.
        network: String,
    },

    /// The network still has endpoints.
    #[error("network {network:?} still has {count} endpoint(s): detach them first, or remove it with force")]
    NetworkHasEndpoints {
        /// The network.
        network: String,
        /// How many endpoints it has.
        count: usize,
    },

    /// Other hosts hold addresses of the shared network being removed
    /// everywhere.
    #[error("network {network:?} is in use on other hosts: {addresses} address(es) held by host(s) {}; remove it there first, or force the removal (their containers keep their addresses until those hosts remove the network)", hosts.join(", "))]
    NetworkInUseElsewhere {
        /// The network.
        network: String,
        /// The hosts holding its addresses (their ids).
        hosts: Vec<String>,
        /// How many addresses they hold.
        addresses: usize,
    },

    /// This host's part in a shared network is gone from the shared store:
    /// another host removed the network everywhere (and may have defined
    /// it anew), or forgot this host, or the store lost it. Its containers
    /// keep their addresses until they detach; no new address is claimed
    /// for it. [`Host::recover`](crate::Host::recover) joins the host
    /// again if the store still has the definition this host has.
    #[error("network {network:?} is no longer shared with this host: another host removed it everywhere or forgot this host, or the shared store lost it; if this host was forgotten by mistake, `recover` joins it again; otherwise detach its containers and remove the network here, then create it again to join it as it is defined now")]
    NoLongerShared {
        /// The network.
        network: String,
    },

    /// The container is attached to this network already.
    #[error("the container is attached to network {network:?} already, as endpoint {endpoint:?}")]
    AlreadyAttached {
        /// The network.
        network: String,
        /// The existing endpoint.
        endpoint: String,
    },

    /// Another endpoint of the network has this name or alias.
    #[error(
        "network {network:?} has an endpoint named {name:?} already: pick another name or alias"
    )]
    NameInUse {
        /// The network.
        network: String,
        /// The name or alias.
        name: String,
    },

    /// The container has an interface of the requested name already.
    #[error("the container has an interface named {ifname:?} already: pick another interface name, or leave it to underlay")]
    InterfaceExists {
        /// The interface name.
        ifname: String,
    },

    /// An attach or detach of this endpoint is under way in another process
    /// (or thread).
    #[error("endpoint {endpoint:?} of network {network:?} is being attached or detached{}: try again once that is done", pid.map(|p| format!(" by process {p}")).unwrap_or_default())]
    EndpointBusy {
        /// The network.
        network: String,
        /// The endpoint.
        endpoint: String,
        /// The process doing it, if known.
        pid: Option<u32>,
    },

    /// A requested address is held by another endpoint.
    #[error("address {address} is already in use on network {network:?} by endpoint {endpoint:?}")]
    AddressInUse {
        /// The address.
        address: std::net::IpAddr,
        /// The network.
        network: String,
        /// The endpoint that holds it.
        endpoint: String,
    },

    /// A step of an attach failed; everything done before it was undone.
    #[error(
        "attaching to network {network:?} failed at \"{step}\" (nothing was left behind): {source}"
    )]
    AttachFailed {
        /// The network.
        network: String,
        /// The step that failed.
        step: String,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },

    /// Removing a network left work undone: every failure is listed (the
    /// network's record is kept, so the removal can be tried again).
    #[error("removing network {network:?} failed {} time(s): {}", errors.len(), join(errors))]
    RemovalIncomplete {
        /// The network.
        network: String,
        /// Every failure, in the order they happened.
        errors: Vec<Error>,
    },

    /// The kernel answered with something this crate could not understand.
    #[error("netlink protocol error: {0}")]
    Protocol(String),

    /// Something that should never happen did (a broken invariant, a
    /// worker thread that panicked): a bug in underlay. Please report it.
    #[error("internal error (a bug in underlay, please report it): {0}")]
    Internal(String),

    /// Address management refused the request.
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

impl Error {
    /// The errno behind this error, if it came from the kernel or a system
    /// call.
    ///
    /// ```
    /// use underlay::Error;
    ///
    /// let err = Error::Kernel {
    ///     operation: "create macvlan link \"eth0\"".into(),
    ///     errno: libc::EEXIST,
    ///     message: None,
    /// };
    /// assert_eq!(err.errno(), Some(libc::EEXIST));
    /// assert_eq!(Error::LinkNotFound { link: "eth9".into() }.errno(), None);
    /// ```
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Whether the operation was refused because something it needs is
    /// taken or busy (a name, an interface, an address, a parent), rather
    /// than because an argument is malformed: the same call may work with
    /// another value, or later.
    ///
    /// ```
    /// use underlay::Error;
    ///
    /// assert!(Error::NetworkExists { name: "pub_net".into() }.is_conflict());
    /// assert!(Error::InterfaceExists { ifname: "eth0".into() }.is_conflict());
    /// assert!(!Error::LinkNotFound { link: "eth9".into() }.is_conflict());
    /// ```
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Error::NetworkExists { .. }
                | Error::DefinitionDiffers { .. }
                | Error::ParentInUse { .. }
                | Error::NetworkHasEndpoints { .. }
                | Error::NetworkInUseElsewhere { .. }
                | Error::NoLongerShared { .. }
                | Error::AlreadyAttached { .. }
                | Error::EndpointBusy { .. }
                | Error::NameInUse { .. }
                | Error::InterfaceExists { .. }
                | Error::AddressInUse { .. }
                | Error::AddressClaimed { .. }
                | Error::Ipam(IpamError::AddressInUse { .. })
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(
        what: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidArgument {
            what,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl From<Error> for io::Error {
    /// An [`io::Error`] of the nearest [`io::ErrorKind`], carrying the
    /// original error (and its message) as its source.
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// use underlay::Error;
    ///
    /// let io: std::io::Error = Error::NetworkNotFound { name: "x".into() }.into();
    /// assert_eq!(io.kind(), ErrorKind::NotFound);
    /// assert!(io.to_string().contains("network \"x\" not found"));
    /// ```
    fn from(error: Error) -> Self {
        use io::ErrorKind as K;
        let kind = match &error {
            Error::Io { source, .. } => source.kind(),
            Error::Kernel { errno, .. } => io::Error::from_raw_os_error(*errno).kind(),
            Error::LinkNotFound { .. }
            | Error::NetworkNotFound { .. }
            | Error::ParentNotFound { .. } => K::NotFound,
            Error::NetworkExists { .. }
            | Error::DefinitionDiffers { .. }
            | Error::AlreadyAttached { .. }
            | Error::NameInUse { .. }
            | Error::InterfaceExists { .. } => K::AlreadyExists,
            Error::AddressInUse { .. }
            | Error::AddressClaimed { .. }
            | Error::Ipam(IpamError::AddressInUse { .. }) => K::AddrInUse,
            Error::SharedStoreUnavailable { .. } => K::ConnectionRefused,
            // `ResourceBusy` would fit, but is newer than the MSRV.
            Error::ParentInUse { .. }
            | Error::NetworkHasEndpoints { .. }
            | Error::NetworkInUseElsewhere { .. }
            | Error::EndpointBusy { .. } => K::AlreadyExists,
            Error::InvalidArgument { .. } | Error::NotANetworkNamespace { .. } | Error::Ipam(_) => {
                K::InvalidInput
            }
            Error::Unsupported { .. } => K::Unsupported,
            Error::CorruptState { .. } | Error::Protocol(_) => K::InvalidData,
            Error::UnsafeState { .. } => K::PermissionDenied,
            Error::LockTimeout { .. } => K::TimedOut,
            _ => K::Other,
        };
        io::Error::new(kind, error)
    }
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn kernel_text(errno: i32, message: Option<&str>) -> String {
    let os = io::Error::from_raw_os_error(errno);
    match message {
        Some(m) if !m.is_empty() => format!("{m} ({os})"),
        _ => os.to_string(),
    }
}
