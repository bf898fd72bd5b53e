//! ipvlan: every endpoint shares the parent's MAC address; the kernel
//! tells endpoints apart by IP address, at layer 2 or (l3, l3s) by routing.

use crate::link::{IpvlanFlag, IpvlanMode, MacAddress, NewLink};
use crate::{Error, Result};

/// The Docker driver options ipvlan networks take.
pub(super) const OPTIONS: &[&str] = &["parent", "ipvlan_mode", "ipvlan_flag", "mtu", "host_shim"];

/// The prefix of an ipvlan network's dummy parent (Docker's).
pub(super) const DUMMY_PREFIX: &str = "di-";

/// An endpoint's link.
pub(super) fn endpoint_link(
    ifname: &str,
    parent: u32,
    mode: IpvlanMode,
    flag: IpvlanFlag,
) -> NewLink<'static> {
    NewLink::ipvlan(ifname, parent, mode, flag)
}

/// Why a network with this flag cannot have a host shim, if it cannot.
pub(super) fn host_shim_refusal(flag: IpvlanFlag) -> Option<&'static str> {
    match flag {
        IpvlanFlag::Bridge | IpvlanFlag::Vepa => None,
        IpvlanFlag::Private => Some(
            "with ipvlan_flag=private the endpoints reach nothing on their parent, a shim included: use ipvlan_flag=bridge",
        ),
    }
}

/// An endpoint's MAC address: none of its own (the parent's), and a
/// requested one is refused, as Docker refuses it.
pub(super) fn endpoint_mac(requested: Option<MacAddress>) -> Result<Option<MacAddress>> {
    match requested {
        None => Ok(None),
        Some(mac) => Err(Error::invalid(
            "MAC address",
            mac.to_string(),
            "ipvlan endpoints share the parent's MAC address; use a macvlan network to choose one",
        )),
    }
}

/// Whether endpoints route at layer 3: their default route is `default dev
/// IF`, with no gateway.
pub(super) fn is_l3(mode: IpvlanMode) -> bool {
    matches!(mode, IpvlanMode::L3 | IpvlanMode::L3s)
}
