//! The crate's error type.

use std::io;
use std::path::PathBuf;

use crate::capability::KernelFeature;
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

    /// An argument was rejected before anything was sent to the kernel.
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

    /// A state file could not be read back.
    #[error("state file {path} is corrupt: {reason}; move it aside and run recovery")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// A network with this name exists already.
    #[error("network {name:?} already exists: pick another name or remove it first")]
    NetworkExists {
        /// The name.
        name: String,
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

    /// The container is attached to this network already.
    #[error("the container is attached to network {network:?} already, as endpoint {endpoint:?}")]
    AlreadyAttached {
        /// The network.
        network: String,
        /// The existing endpoint.
        endpoint: String,
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

    /// The kernel answered with something this crate could not understand.
    #[error("netlink protocol error: {0}")]
    Protocol(String),

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

fn kernel_text(errno: i32, message: Option<&str>) -> String {
    let os = io::Error::from_raw_os_error(errno);
    match message {
        Some(m) if !m.is_empty() => format!("{m} ({os})"),
        _ => os.to_string(),
    }
}
