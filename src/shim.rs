//! The host shim: how the host reaches its own containers.
//!
//! The kernel keeps a macvlan or ipvlan link and its parent apart: a
//! container cannot reach the host's address on the parent, nor the host
//! the container's (the seeds warn of it). The usual fix, made by hand in
//! every blog post, is a link of the same kind on the same parent in the
//! host namespace, with an address of the network and routes to the
//! containers through it. With `host_shim`, underlay makes that link, owns
//! it (it carries the network's shim mark), and keeps it with the network:
//!
//! - its name is `hs-` and 12 characters of the network id;
//! - it is a macvlan link in the network's mode (bridge or VEPA), or an
//!   ipvlan link in the network's mode and flag;
//! - its addresses are host addresses (`/32`, `/128`): no subnet route is
//!   added, so the host's routes to the rest of the segment are unchanged;
//! - routes on the host send to the containers through it: one per
//!   container address (`/32`, `/128`), in the families the shim has an
//!   address in, added on attach and removed on detach. Never a range: a
//!   range would also take the host's way to whatever else sits in it (the
//!   gateway, other machines). They carry their own routing protocol,
//!   [`HOST_ROUTE_PROTOCOL`] (`proto 85` in `ip route`), so that routes an
//!   administrator adds through the shim (to another machine on the
//!   segment, say) are told apart and left alone;
//! - it answers ARP only for its own addresses (`arp_ignore=1`,
//!   `arp_announce=2`) and takes no router advertisements, so the host's
//!   neighbours keep seeing the host where they saw it.
//!
//! ```
//! use underlay::shim::HostShimRequest;
//!
//! let request: HostShimRequest = "auto".parse()?;
//! assert!(request.is_auto());
//! let request: HostShimRequest = "192.168.1.250,auto".parse()?;
//! assert_eq!(request.addresses().count(), 1);
//! assert!("192.168.1.250,192.168.1.251".parse::<HostShimRequest>().is_err());
//! # Ok::<(), underlay::Error>(())
//! ```

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::link::NewLink;
use crate::mark::{self, Mark, Unmarked};
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::route::{IpFamily, NewRoute, Route};
use crate::{Error, Result};

/// What the link's name starts with.
const PREFIX: &str = "hs-";

/// What `-o host_shim=` asks for: an address per family, given or `auto`
/// (one from the network's subnets, reserved for the shim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostShimRequest {
    addresses: Vec<IpAddr>,
    auto: bool,
}

impl HostShimRequest {
    /// Whether the families with no given address get one picked.
    pub fn is_auto(&self) -> bool {
        self.auto
    }

    /// The addresses given.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses.iter().copied()
    }
}

impl FromStr for HostShimRequest {
    type Err = Error;

    /// `auto`, an address, or a comma-separated list of at most one IPv4
    /// and one IPv6 address and `auto` (for the family not given).
    fn from_str(value: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::invalid("host_shim", value, reason);
        let mut request = HostShimRequest {
            addresses: Vec::new(),
            auto: false,
        };
        for item in value.split(',').map(str::trim) {
            if item == "auto" {
                if request.auto {
                    return Err(invalid("auto is given twice"));
                }
                request.auto = true;
                continue;
            }
            let address: IpAddr = item.parse().map_err(|_| {
                invalid(&format!(
                    "{item:?} is neither an address nor auto; write an address of the network (192.168.1.250), auto, or both families (192.168.1.250,fd00::fa)"
                ))
            })?;
            if request
                .addresses
                .iter()
                .any(|a| a.is_ipv4() == address.is_ipv4())
            {
                return Err(invalid(&format!(
                    "two {} addresses: the shim takes one per family",
                    IpFamily::of(address)
                )));
            }
            request.addresses.push(address);
        }
        Ok(request)
    }
}

impl fmt::Display for HostShimRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = self.addresses.iter().map(IpAddr::to_string).collect();
        if self.auto {
            items.push("auto".into());
        }
        f.write_str(&items.join(","))
    }
}

impl TryFrom<String> for HostShimRequest {
    type Error = Error;

    fn try_from(value: String) -> Result<Self> {
        value.parse()
    }
}

impl From<HostShimRequest> for String {
    fn from(request: HostShimRequest) -> String {
        request.to_string()
    }
}

/// A network's host shim, as its record keeps it.
///
/// ```
/// use underlay::shim::HostShim;
///
/// let shim = HostShim::new("3f2a9c61d0b4e857aa", vec!["192.168.1.250".parse().unwrap()]);
/// assert_eq!(shim.link, "hs-3f2a9c61d0b4");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostShim {
    /// The link's name in the host namespace.
    pub link: String,
    /// Its addresses, one per family at most, reserved in the network's
    /// IPAM (as the aux addresses `host_shim` and `host_shim_ipv6`).
    pub addresses: Vec<IpAddr>,
}

impl HostShim {
    /// The shim of the network with id `network_id`, with these addresses.
    pub fn new(network_id: &str, addresses: Vec<IpAddr>) -> Self {
        let id: String = network_id.chars().take(12).collect();
        HostShim {
            link: format!("{PREFIX}{id}"),
            addresses,
        }
    }

    /// The aux-address name that reserves `address` for the shim.
    pub fn aux_name(address: IpAddr) -> &'static str {
        if address.is_ipv4() {
            "host_shim"
        } else {
            "host_shim_ipv6"
        }
    }

    /// Its addresses as the link carries them: host addresses, with no
    /// subnet route.
    fn host_addresses(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.addresses.iter().copied().map(host_route)
    }
}

/// A host route for one address (`/32` or `/128`).
/// The routing protocol (`proto` in `ip route`) of the host routes
/// underlay makes through a network's shim to its containers: the only
/// routes through the shim it ever deletes. 85 is in none of the kernel's
/// or iproute2's lists of protocols.
///
/// ```
/// assert_eq!(underlay::shim::HOST_ROUTE_PROTOCOL, 85);
/// ```
pub const HOST_ROUTE_PROTOCOL: u8 = 85;

pub(crate) fn host_route(address: IpAddr) -> IpNet {
    IpNet::new(address, if address.is_ipv4() { 32 } else { 128 }).expect("a host prefix")
}

/// Makes the shim from `spec` (the driver's link on the parent), marks
/// it, gives it its addresses and brings it up. `netns` is the host
/// namespace `nl` talks to (for the link's settings). On failure the link
/// is deleted.
pub(crate) fn create(
    nl: &Netlink,
    netns: &NetNs,
    spec: NewLink<'_>,
    shim: &HostShim,
    mark: &Mark,
) -> Result<()> {
    nl.create_link(&spec)?;
    let result = configure(nl, netns, shim, mark);
    if result.is_err() {
        if let Err(e) = mark::delete_if_ours(nl, &shim.link, mark, Unmarked::Take) {
            log::warn!("could not remove {} after a failed step: {e}", shim.link);
        }
    }
    result
}

fn configure(nl: &Netlink, netns: &NetNs, shim: &HostShim, mark: &Mark) -> Result<()> {
    let index = nl.link_by_name(&shim.link)?.index;
    nl.set_alias(index, &mark.to_string())?;
    settings(netns, shim)?;
    for address in shim.host_addresses() {
        // No duplicate address detection: the address is the network's
        // to give, and the shim is usable at once.
        nl.add_address_nodad(index, address)?;
    }
    nl.set_link_up_by_index(index, true)?;
    log::debug!("created host shim {} with {:?}", shim.link, shim.addresses);
    Ok(())
}

/// The link's sysctls: ARP answered only for its own addresses and sent
/// from them; no router advertisements or autoconfiguration (they would
/// give the host routes through it); no IPv6 at all when it has no IPv6
/// address.
fn settings(netns: &NetNs, shim: &HostShim) -> Result<()> {
    let link = shim.link.clone();
    let ipv6 = shim.addresses.iter().any(IpAddr::is_ipv6);
    netns.run(move || {
        let mut values = vec![
            (format!("ipv4/conf/{link}/arp_ignore"), "1"),
            (format!("ipv4/conf/{link}/arp_announce"), "2"),
        ];
        if ipv6 {
            values.push((format!("ipv6/conf/{link}/disable_ipv6"), "0"));
            values.push((format!("ipv6/conf/{link}/accept_ra"), "0"));
            values.push((format!("ipv6/conf/{link}/autoconf"), "0"));
        } else {
            values.push((format!("ipv6/conf/{link}/disable_ipv6"), "1"));
        }
        for (key, value) in values {
            let path = format!("/proc/sys/net/{key}");
            match std::fs::write(&path, value) {
                Ok(()) => {}
                // A kernel without IPv6 has no ipv6/ directory.
                Err(e) if key.starts_with("ipv6/") && !ipv6 => {
                    log::debug!("cannot set {path}: {e}");
                }
                Err(e) => return Err(Error::io(format!("set {path} to {value}"), e)),
            }
        }
        Ok(())
    })
}

/// Makes sure the shim exists, is up, has its addresses and its settings
/// (after a reboot, or a change by hand). `spec` makes it when missing; a
/// shim renamed by hand (found by its mark) is deleted and made anew.
/// Returns whether it had to be made again.
pub(crate) fn ensure(
    nl: &Netlink,
    netns: &NetNs,
    spec: impl FnOnce() -> Result<NewLink<'static>>,
    shim: &HostShim,
    mark: &Mark,
) -> Result<bool> {
    let link = match nl.link_by_name(&shim.link) {
        Ok(link) => link,
        Err(Error::LinkNotFound { .. }) => {
            if let Some(renamed) = mark::find(nl, mark)? {
                log::warn!(
                    "host shim {} was renamed {}: making it anew",
                    shim.link,
                    renamed.name
                );
                match nl.delete_link(renamed.index) {
                    Ok(()) | Err(Error::LinkNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            create(nl, netns, spec()?, shim, mark)?;
            log::info!("recreated host shim {}", shim.link);
            return Ok(true);
        }
        Err(e) => return Err(e),
    };
    if !mark.is_on(&link) {
        return Err(Error::invalid(
            "host shim",
            &shim.link,
            format!("a link of that name exists that underlay did not make (it does not carry the mark {mark}): rename or delete it, then run recover"),
        ));
    }
    settings(netns, shim)?;
    let present: Vec<IpNet> = nl
        .addresses(Some(link.index))?
        .into_iter()
        .map(|a| a.address)
        .collect();
    for address in shim.host_addresses() {
        if !present.contains(&address) {
            nl.add_address_nodad(link.index, address)?;
        }
    }
    if !link.up {
        nl.set_link_up_by_index(link.index, true)?;
    }
    Ok(false)
}

/// Deletes the shim if it carries `mark` (or, for a creation a crash cut
/// short, no mark).
pub(crate) fn remove(nl: &Netlink, shim: &HostShim, mark: &Mark, unfinished: bool) -> Result<()> {
    let unmarked = if unfinished {
        Unmarked::Take
    } else {
        Unmarked::Spare
    };
    if mark::delete_if_ours(nl, &shim.link, mark, unmarked)? {
        log::debug!("deleted host shim {}", shim.link);
    }
    // Renamed by hand: found by its mark.
    if let Some(renamed) = mark::find(nl, mark)? {
        match nl.delete_link(renamed.index) {
            Ok(()) | Err(Error::LinkNotFound { .. }) => {
                log::debug!("deleted host shim {} (renamed {})", shim.link, renamed.name)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The index of the shim link, if it is there and ours.
pub(crate) fn index(nl: &Netlink, shim: &HostShim, mark: &Mark) -> Result<Option<u32>> {
    match nl.link_by_name(&shim.link) {
        Ok(link) if mark.is_on(&link) => Ok(Some(link.index)),
        Ok(_) | Err(Error::LinkNotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Adds a route to `destination` through the shim; one that is there
/// already is fine. The kernel also refuses it when a route to the same
/// place with the same metric goes elsewhere (an administrator's, through
/// another link): that one is left, and said with a warning, since the
/// host then reaches the container through it rather than the shim.
pub(crate) fn add_route(nl: &Netlink, index: u32, destination: IpNet) -> Result<()> {
    match nl.add_route(&NewRoute::to_dev(destination, index).protocol(HOST_ROUTE_PROTOCOL)) {
        Ok(()) => Ok(()),
        Err(e) if e.errno() == Some(libc::EEXIST) => {
            // The kernel's metric for a route made without one: the
            // routes it took for this one have it too.
            let family = IpFamily::of(destination.addr());
            let metric = match family {
                IpFamily::V4 => 0,
                IpFamily::V6 => 1024,
            };
            let routes: Vec<Route> = nl
                .routes(family)?
                .into_iter()
                .filter(|r| r.destination == Some(destination) && r.metric.unwrap_or(0) == metric)
                .collect();
            if !routes
                .iter()
                .any(|r| r.oif == Some(index) && r.gateway.is_none())
            {
                let elsewhere: Vec<String> = routes
                    .iter()
                    .map(|r| match (r.gateway, r.oif) {
                        (Some(gateway), _) => format!("via {gateway}"),
                        (None, Some(oif)) => format!("through link #{oif}"),
                        (None, None) => "elsewhere".to_owned(),
                    })
                    .collect();
                let how = if elsewhere.is_empty() {
                    "of another kind (blackhole, unreachable?)".to_owned()
                } else {
                    elsewhere.join(", ")
                };
                log::warn!(
                    "the host has a route to {destination} {how} already: the host reaches that address that way, not through its host shim (link #{index}); delete that route to reach the container"
                );
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Deletes the route to `destination` through the shim; one that is gone
/// already is fine.
pub(crate) fn delete_route(nl: &Netlink, index: u32, destination: IpNet) -> Result<()> {
    match nl.delete_route(&NewRoute::to_dev(destination, index).protocol(HOST_ROUTE_PROTOCOL)) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.errno(), Some(libc::ESRCH) | Some(libc::ENODEV)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes underlay's host routes (`/32`, `/128`, [`HOST_ROUTE_PROTOCOL`])
/// through the shim exactly `wanted`: adds the missing ones, deletes the
/// others. Anyone else's routes through it (the kernel's to an IPv6 shim
/// address, an administrator's) are left as they are; one through the shim
/// to a wanted address serves as that route (one elsewhere is warned of:
/// see [`add_route`]).
pub(crate) fn sync_host_routes(nl: &Netlink, index: u32, wanted: &[IpNet]) -> Result<()> {
    let mut present = Vec::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        for route in nl.routes(family)? {
            let Some(destination) = route.destination else {
                continue;
            };
            if route.oif == Some(index)
                && route.protocol == HOST_ROUTE_PROTOCOL
                && route.gateway.is_none()
                && destination.prefix_len() == destination.max_prefix_len()
            {
                present.push(destination);
            }
        }
    }
    for destination in &present {
        if !wanted.contains(destination) {
            delete_route(nl, index, *destination)?;
        }
    }
    for destination in wanted {
        if !present.contains(destination) {
            add_route(nl, index, *destination)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_print_back() {
        for text in [
            "auto",
            "10.0.0.2",
            "fd00::2",
            "10.0.0.2,fd00::2",
            "10.0.0.2,auto",
        ] {
            let request: HostShimRequest = text.parse().unwrap();
            assert_eq!(request.to_string(), text);
        }
        for (bad, needle) in [
            ("", "neither an address nor auto"),
            ("yes", "neither an address nor auto"),
            ("10.0.0.2/24", "neither an address nor auto"),
            ("10.0.0.2,10.0.0.3", "two IPv4 addresses"),
            ("fd00::2,fd00::3", "two IPv6 addresses"),
            ("auto,auto", "auto is given twice"),
        ] {
            let err = bad.parse::<HostShimRequest>().unwrap_err();
            assert!(err.to_string().contains(needle), "{bad}: {err}");
            assert!(err.to_string().contains("host_shim"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_link_name_fits_and_addresses_are_host_routes() {
        let shim = HostShim::new(
            "0123456789abcdef0123",
            vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        );
        assert_eq!(shim.link, "hs-0123456789ab");
        assert_eq!(shim.link.len(), 15);
        let addresses: Vec<String> = shim.host_addresses().map(|a| a.to_string()).collect();
        assert_eq!(addresses, ["10.0.0.2/32", "fd00::2/128"]);
    }
}
