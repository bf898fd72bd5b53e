//! # underlay
//!
//! Put containers straight onto the physical network with Linux macvlan and
//! ipvlan, the way Docker's `macvlan` and `ipvlan` drivers do, as a library
//! that container runtimes link directly: no daemon, no plugin process.
//!
//! ```no_run
//! use underlay::{endpoint::AttachOptions, netns::NetNs, Host, Network};
//!
//! let host = Host::open("/var/lib/underlay")?;
//! let net = host.create_network(
//!     Network::builder("pub_net").macvlan().parent("eth0")
//!         .subnet("172.16.86.0/24").gateway("172.16.86.1"),
//! )?;
//! let web1 = NetNs::open("/run/netns/web1")?;
//! let ep = net.attach(&web1, &AttachOptions::new())?;
//! assert_eq!(ep.addresses()[0].to_string(), "172.16.86.2/24");
//! # Ok::<(), underlay::Error>(())
//! ```
//!
//! The crate is built in layers, each depending only on the ones below it:
//!
//! 1. [`netlink`]: a synchronous route-netlink socket that sends requests,
//!    waits for their acknowledgements, runs dumps and turns kernel errors
//!    (with their extended-ACK text) into [`Error`]s.
//! 2. [`link`], [`address`], [`route`], [`netns`] and [`capability`]: typed
//!    operations on links, addresses and routes, handles on network
//!    namespaces, and what the kernel can do.
//! 3. [`ipam`]: pure address management (no I/O).
//! 4. [`driver`] and [`parent`]: what macvlan and ipvlan are, and the
//!    parent interfaces with who owns them (the ownership mark).
//! 5. The engine, over the [`store`] traits: networks, endpoints and
//!    recovery, written once; the default stores keep them in files across
//!    crashes, concurrent processes and reboots.
//! 6. Front ends: [`Host`], [`Network`] and [`endpoint`] (the Rust API),
//!    and [`docker`], Docker's command-line vocabulary.
//!
//! `ARCHITECTURE.md` in the repository draws the same map and says where
//! each concept lives.
//!
//! The library never prints, never exits and never panics on bad input: it
//! reports through [`Error`] and logs through the [`log`] facade. It never
//! calls `setns` on a caller's thread; namespace-bound work runs on threads of
//! its own. Its handles are `Send + Sync`, and it keeps no global state.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::missing_errors_doc)]

pub mod address;
pub mod capability;
pub mod docker;
pub mod driver;
pub mod endpoint;
mod engine;
mod error;
mod family;
mod feature;
pub mod host;
pub mod ipam;
pub mod link;
mod mark;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod network;
pub mod parent;
mod process;
mod random;
#[cfg(feature = "dns")]
pub mod resolver;
pub mod route;
pub mod shim;
mod spec;
pub mod store;
mod sysctl;

pub use error::{Error, Result};
pub use family::IpFamily;
pub use host::Host;
pub use network::Network;
