//! A network's host shim, as the engine keeps it: its addresses chosen and
//! reserved at creation, the link made with the network and remade by
//! recovery, and the routes to the containers kept in step with attaches
//! and detaches. The link itself is `crate::shim`'s.

use std::net::IpAddr;

use ipnet::IpNet;

use super::Engine;
use crate::ipam::{IpamError, NetworkIpamConfig};
use crate::mark::Mark;
use crate::route::IpFamily;
use crate::shim::{self, HostShim, HostShimRequest};
use crate::store::{EndpointRecord, NetworkRecord};
use crate::{Error, Result};

impl Engine {
    /// The mark of a network's host shim.
    pub(super) fn shim_mark(&self, network: &NetworkRecord) -> Mark {
        Mark::shim(self.networks.host_id(), &network.id)
    }

    /// Chooses the shim's addresses for a network being created, one per
    /// family it has: the given ones, checked, and for `auto` one picked
    /// from each remaining family's first subnet. Reserves them in `ipam`
    /// as aux addresses, so that no container gets them.
    pub(super) fn plan_shim(
        &self,
        request: &HostShimRequest,
        network_id: &str,
        families: (bool, bool),
        ipam: &mut NetworkIpamConfig,
    ) -> Result<HostShim> {
        let on_host: Vec<(IpAddr, u32)> = self
            .nl
            .addresses(None)?
            .into_iter()
            .map(|a| (a.address.addr(), a.link_index))
            .collect();
        let value = request.to_string();
        // The host routes each container address through one shim: two
        // shimmed networks with overlapping subnets (on different parents)
        // would fight over the same routes.
        for other in self.networks.networks()? {
            if other.host_shim.is_none() {
                continue;
            }
            for mine in ipam.prefixes() {
                if let Some(theirs) = other
                    .ipam
                    .prefixes()
                    .find(|p| p.contains(&mine.network()) || mine.contains(&p.network()))
                {
                    return Err(Error::invalid(
                        "host_shim",
                        &value,
                        format!(
                            "subnet {mine} overlaps {theirs} of network {:?}, which has a host shim already: the host cannot route the same addresses to both; use another subnet, or no shim",
                            other.name
                        ),
                    ));
                }
            }
        }
        let mut addresses: Vec<IpAddr> = Vec::new();
        for address in request.addresses() {
            let enabled = if address.is_ipv4() {
                families.0
            } else {
                families.1
            };
            let subnets: Vec<String> = ipam.prefixes().map(|p| p.to_string()).collect();
            if !enabled || !ipam.prefixes().any(|p| p.contains(&address)) {
                return Err(Error::invalid(
                    "host_shim",
                    &value,
                    format!(
                        "{address} is in none of the network's subnets ({}): choose an address in one, or auto",
                        if subnets.is_empty() { "none".to_owned() } else { subnets.join(", ") }
                    ),
                ));
            }
            let aux = ipam
                .subnets()
                .iter()
                .flat_map(|s| s.aux_addresses())
                .find(|(_, a)| *a == address);
            if let Some((name, _)) = aux {
                return Err(Error::invalid(
                    "host_shim",
                    &value,
                    format!("{address} is the aux address {name:?}, reserved for another device: choose another address (underlay reserves the shim's itself), or auto"),
                ));
            }
            if let Some((_, index)) = on_host.iter().find(|(a, _)| *a == address) {
                let link = self
                    .nl
                    .link_by_index(*index)
                    .map(|l| l.name)
                    .unwrap_or_else(|_| format!("#{index}"));
                return Err(Error::invalid(
                    "host_shim",
                    &value,
                    format!("{address} is already an address of {link} on this host: choose a free one, or auto"),
                ));
            }
            addresses.push(address);
        }
        if request.is_auto() {
            for (family, enabled) in [(IpFamily::V4, families.0), (IpFamily::V6, families.1)] {
                if !enabled || addresses.iter().any(|a| IpFamily::of(*a) == family) {
                    continue;
                }
                let Some(subnet) = ipam.subnets_of(family).next() else {
                    continue;
                };
                let picked = subnet
                    .shim_candidate(|a| on_host.iter().any(|(h, _)| *h == a))
                    .ok_or_else(|| {
                        Error::invalid(
                            "host_shim",
                            &value,
                            format!(
                                "subnet {} has no free address for the shim: widen it, or give an address",
                                subnet.subnet()
                            ),
                        )
                    })?;
                addresses.push(picked);
            }
        }
        for address in &addresses {
            let name = HostShim::aux_name(*address);
            ipam.reserve(name, *address).map_err(|e| {
                let reason = match e {
                    IpamError::AuxAddressNotUsable {
                        address,
                        subnet,
                        reservation,
                        ..
                    } => format!(
                        "{address} is {reservation} of subnet {subnet}: choose another address, or auto"
                    ),
                    IpamError::DuplicateAuxName { .. } => format!(
                        "the network has an aux address named {name} already, the name the shim's address is reserved under: rename it"
                    ),
                    e => e.to_string(),
                };
                Error::invalid("host_shim", &value, reason)
            })?;
        }
        for address in &addresses {
            let left = ipam
                .subnets()
                .iter()
                .find(|s| s.subnet().contains(address))
                .and_then(|s| s.shim_candidate(|_| false));
            if left.is_none() {
                return Err(Error::invalid(
                    "host_shim",
                    &value,
                    format!("{address} is the last address of its subnet that a container could have: widen the subnet"),
                ));
            }
        }
        if let Err(e) = ipam.check_allocatable() {
            return Err(Error::invalid(
                "host_shim",
                &value,
                format!("with {addresses:?} for the shim, {e}"),
            ));
        }
        Ok(HostShim::new(network_id, addresses))
    }

    /// Makes the shim of a network whose parent exists.
    pub(super) fn create_shim(&self, network: &NetworkRecord, shim: &HostShim) -> Result<()> {
        let spec = self.shim_link(network, shim)?;
        shim::create(&self.nl, &self.netns, spec, shim, &self.shim_mark(network))
    }

    /// Makes sure a ready network's shim is there (after a reboot it is
    /// not). Returns whether it had to be made again.
    pub(super) fn ensure_shim(&self, network: &NetworkRecord, shim: &HostShim) -> Result<bool> {
        shim::ensure(
            &self.nl,
            &self.netns,
            || self.shim_link(network, shim),
            shim,
            &self.shim_mark(network),
        )
    }

    fn shim_link(
        &self,
        network: &NetworkRecord,
        shim: &HostShim,
    ) -> Result<crate::link::NewLink<'static>> {
        let spec = network
            .driver
            .host_shim_link(&shim.link, self.parent_index(network)?)?;
        Ok(match network.mtu {
            Some(mtu) => spec.mtu(mtu),
            None => spec,
        })
    }

    /// Adds the host routes an endpoint needs through the network's shim
    /// (none when the network has no shim).
    pub(super) fn add_shim_routes(
        &self,
        network: &NetworkRecord,
        endpoint: &EndpointRecord,
    ) -> Result<()> {
        let Some(shim) = &network.host_shim else {
            return Ok(());
        };
        let routes = endpoint_host_routes(network, std::slice::from_ref(endpoint));
        if routes.is_empty() {
            return Ok(());
        }
        let index = shim::index(&self.nl, shim, &self.shim_mark(network))?.ok_or_else(|| {
            Error::invalid(
                "host shim",
                &shim.link,
                "the network's host shim is missing: run recover to make it again",
            )
        })?;
        for route in routes {
            shim::add_route(&self.nl, index, route)?;
        }
        Ok(())
    }

    /// Deletes an endpoint's host routes through the shim. A failure is
    /// logged: a route left to a free address only sends to the shim's
    /// segment, and recovery deletes it.
    pub(super) fn delete_shim_routes(&self, network: &NetworkRecord, endpoint: &EndpointRecord) {
        let Some(shim) = &network.host_shim else {
            return;
        };
        let routes = endpoint_host_routes(network, std::slice::from_ref(endpoint));
        if routes.is_empty() {
            return;
        }
        let result = shim::index(&self.nl, shim, &self.shim_mark(network)).and_then(|index| {
            let Some(index) = index else { return Ok(()) };
            routes
                .into_iter()
                .try_for_each(|route| shim::delete_route(&self.nl, index, route))
        });
        if let Err(e) = result {
            log::warn!(
                "endpoint {}: could not delete its routes through {}: {e}",
                endpoint.name,
                shim.link
            );
        }
    }

    /// Makes the host routes through the shim exactly those `endpoints`
    /// need.
    pub(super) fn sync_shim_routes(
        &self,
        network: &NetworkRecord,
        endpoints: &[EndpointRecord],
    ) -> Result<()> {
        let Some(shim) = &network.host_shim else {
            return Ok(());
        };
        let Some(index) = shim::index(&self.nl, shim, &self.shim_mark(network))? else {
            return Ok(());
        };
        shim::sync_host_routes(&self.nl, index, &endpoint_host_routes(network, endpoints))
    }
}

/// The host routes (`/32`, `/128`) through the shim for `endpoints`: their
/// addresses, in the families the shim has an address in. Each container
/// gets its own route, never a range: a range would also take the host's
/// way to whatever else sits in it (the gateway, other machines).
fn endpoint_host_routes(network: &NetworkRecord, endpoints: &[EndpointRecord]) -> Vec<IpNet> {
    let Some(shim) = &network.host_shim else {
        return Vec::new();
    };
    endpoints
        .iter()
        .flat_map(|e| e.addresses.iter().map(IpNet::addr))
        .filter(|a| shim.addresses.iter().any(|s| s.is_ipv4() == a.is_ipv4()))
        .map(shim::host_route)
        .collect()
}
