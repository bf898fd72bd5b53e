//! # underlay
//!
//! Put containers straight onto the physical network with Linux macvlan and
//! ipvlan, the way Docker's `macvlan` and `ipvlan` drivers do, as a library
//! that container runtimes link directly: no daemon, no plugin process.
//!
//! The crate is built in layers, each depending only on the ones below it:
//!
//! 1. [`netlink`]: a synchronous route-netlink socket that sends requests,
//!    waits for their acknowledgements, runs dumps and turns kernel errors
//!    (with their extended-ACK text) into [`Error`]s.
//! 2. [`link`], [`address`], [`route`] and [`netns`]: typed operations on
//!    links, addresses and routes, and handles on network namespaces.
//! 3. [`ipam`]: pure address management (no I/O).
//!
//! The library never prints, never exits and never panics on bad input: it
//! reports through [`Error`] and logs through the [`log`] facade. It never
//! calls `setns` on a caller's thread; namespace-bound work runs on threads of
//! its own.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod address;
pub mod capability;
pub mod docker;
pub mod endpoint;
mod error;
mod family;
pub mod host;
pub mod ipam;
pub mod link;
pub mod netlink;
pub mod netns;
pub mod network;
pub mod parent;
mod registry;
pub mod route;
mod store;

pub use error::{Error, Result};
pub use family::IpFamily;
pub use host::Host;
pub use network::Network;
