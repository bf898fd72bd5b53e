//! macvlan: every endpoint is a link with a MAC address of its own on the
//! parent, in one of the kernel's macvlan modes.

use crate::link::{MacAddress, MacvlanMode, NewLink};
use crate::Result;

/// The Docker driver options macvlan networks take.
pub(super) const OPTIONS: &[&str] = &["parent", "macvlan_mode", "mtu"];

/// The prefix of a macvlan network's dummy parent (Docker's).
pub(super) const DUMMY_PREFIX: &str = "dm-";

/// An endpoint's link.
pub(super) fn endpoint_link(ifname: &str, parent: u32, mode: MacvlanMode) -> NewLink<'static> {
    NewLink::macvlan(ifname, parent, mode)
}

/// An endpoint's MAC address: the requested one, or a random locally
/// administered one, as Docker gives.
pub(super) fn endpoint_mac(requested: Option<MacAddress>) -> Result<Option<MacAddress>> {
    Ok(Some(match requested {
        Some(mac) => mac,
        None => MacAddress::random_local()?,
    }))
}
