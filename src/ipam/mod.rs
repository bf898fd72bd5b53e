//! IP address management: subnets, gateways, ranges, reserved addresses and
//! allocation. Pure logic, no I/O.

mod error;
pub use error::IpamError;
