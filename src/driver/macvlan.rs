//! macvlan: every endpoint is a link with a MAC address of its own on the
//! parent, in one of the kernel's macvlan modes.

use crate::link::{MacAddress, MacvlanMode, NewLink};
use crate::{Error, Result};

/// The Docker driver options macvlan networks take.
pub(super) const OPTIONS: &[&str] = &["parent", "macvlan_mode", "mtu", "host_shim"];

/// The prefix of a macvlan network's dummy parent (Docker's).
pub(super) const DUMMY_PREFIX: &str = "dm-";

/// An endpoint's link.
pub(super) fn endpoint_link(ifname: &str, parent: u32, mode: MacvlanMode) -> NewLink<'static> {
    NewLink::macvlan(ifname, parent, mode)
}

/// Why a network in this mode cannot have a host shim, if it cannot.
pub(super) fn host_shim_refusal(mode: MacvlanMode) -> Option<&'static str> {
    match mode {
        MacvlanMode::Bridge | MacvlanMode::Vepa => None,
        MacvlanMode::Private => Some(
            "in macvlan private mode the endpoints reach nothing on their parent, a shim included: use macvlan_mode=bridge",
        ),
        MacvlanMode::Passthru => Some(
            "in macvlan passthru mode one endpoint has the parent to itself, leaving no room for a shim: use macvlan_mode=bridge",
        ),
        MacvlanMode::Source => Some("source mode is not supported"),
    }
}

/// An endpoint's MAC address: the requested one, or a random locally
/// administered one, as Docker gives. In passthru mode the endpoint takes
/// the parent's, and setting another would change the parent's.
pub(super) fn endpoint_mac(
    mode: MacvlanMode,
    requested: Option<MacAddress>,
) -> Result<Option<MacAddress>> {
    match (mode, requested) {
        (MacvlanMode::Passthru, None) => Ok(None),
        (MacvlanMode::Passthru, Some(mac)) => Err(Error::invalid(
            "MAC address",
            mac.to_string(),
            "a passthru endpoint takes the parent's MAC address; setting another would change the parent's",
        )),
        (_, Some(mac)) => Ok(Some(mac)),
        (_, None) => Ok(Some(MacAddress::random_local()?)),
    }
}

/// How many endpoints a network may have: passthru gives the parent to one.
pub(super) fn endpoint_limit(mode: MacvlanMode) -> Option<usize> {
    (mode == MacvlanMode::Passthru).then_some(1)
}
