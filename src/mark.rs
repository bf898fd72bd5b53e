//! The ownership mark: how underlay tells the links it made from everyone
//! else's.
//!
//! Every link underlay creates (owned parents and endpoint links) carries,
//! as its interface alias (`ip link set NAME alias TEXT`), a mark naming
//! the state directory and the network, and for an endpoint link the
//! endpoint too:
//!
//! ```text
//! underlay:STATE_ID:NETWORK_ID               an owned parent (VLAN or dummy)
//! underlay:STATE_ID:NETWORK_ID:shim          the network's host shim
//! underlay:STATE_ID:NETWORK_ID:ENDPOINT_ID   an endpoint link
//! underlay:STATE_ID:NETWORK_ID:ENDPOINT_ID:detached
//!                                            an endpoint link taken off the
//!                                            network, waiting for deletion
//! ```
//!
//! The kernel keeps the alias with the link, across namespaces, so the mark
//! answers "is this link ours?" after a crash, when no record may explain
//! it. A link is deleted only when it carries the expected mark, or, for a
//! step that a crash interrupted before the mark was set, when it carries
//! no mark at all and has the name recorded before it was made.
//!
//! This module is the only place that writes or reads the mark.

use std::fmt;

use crate::link::Link;
use crate::netlink::Netlink;
use crate::{Error, Result};

/// What every mark starts with.
const PREFIX: &str = "underlay:";

/// The last part of a host shim's mark.
const SHIM: &str = "shim";

/// The last part of a detached endpoint link's mark.
const DETACHED: &str = "detached";

/// What a marked link is to its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// Its owned parent (a VLAN or a dummy), in the host namespace.
    Parent,
    /// Its host shim, in the host namespace.
    Shim,
    /// An endpoint's link, in a container's namespace.
    Endpoint(u64),
    /// A detached endpoint's link: no addresses, waiting for deletion.
    Detached(u64),
}

/// A parsed ownership mark.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Mark {
    /// The state directory (host) that made the link.
    pub host: String,
    /// The network it belongs to.
    pub network: String,
    /// What the link is to the network.
    pub role: Role,
}

impl Mark {
    /// The mark of a network's owned parent.
    pub fn parent(host: &str, network: &str) -> Self {
        Mark::new(host, network, Role::Parent)
    }

    /// The mark of a network's host shim.
    pub fn shim(host: &str, network: &str) -> Self {
        Mark::new(host, network, Role::Shim)
    }

    /// The mark of an endpoint's link.
    pub fn endpoint(host: &str, network: &str, endpoint: u64) -> Self {
        Mark::new(host, network, Role::Endpoint(endpoint))
    }

    /// The mark the same endpoint's link carries once detached.
    pub fn detached(&self) -> Self {
        match self.role {
            Role::Endpoint(id) => Mark::new(&self.host, &self.network, Role::Detached(id)),
            _ => self.clone(),
        }
    }

    fn new(host: &str, network: &str, role: Role) -> Self {
        Mark {
            host: host.to_owned(),
            network: network.to_owned(),
            role,
        }
    }

    /// The endpoint, for an endpoint link's mark.
    pub fn endpoint_id(&self) -> Option<u64> {
        match self.role {
            Role::Endpoint(id) => Some(id),
            Role::Parent | Role::Shim | Role::Detached(_) => None,
        }
    }

    /// Reads a link's alias as a mark; `None` for anything that is not one.
    pub fn parse(alias: &str) -> Option<Self> {
        let rest = alias.strip_prefix(PREFIX)?;
        let mut parts = rest.split(':');
        let host = parts.next().filter(|p| !p.is_empty())?;
        let network = parts.next().filter(|p| !p.is_empty())?;
        let role = match parts.next() {
            None => Role::Parent,
            Some(SHIM) => Role::Shim,
            Some(id) if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                let id = u64::from_str_radix(id, 16).ok()?;
                match parts.next() {
                    None => Role::Endpoint(id),
                    Some(DETACHED) => Role::Detached(id),
                    Some(_) => return None,
                }
            }
            Some(_) => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Mark::new(host, network, role))
    }

    /// The mark a link carries, if it carries one.
    pub fn of(link: &Link) -> Option<Self> {
        link.alias.as_deref().and_then(Mark::parse)
    }

    /// Whether `link` carries exactly this mark.
    pub fn is_on(&self, link: &Link) -> bool {
        Mark::of(link).as_ref() == Some(self)
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}:{}", self.host, self.network)?;
        match self.role {
            Role::Parent => Ok(()),
            Role::Shim => write!(f, ":{SHIM}"),
            Role::Endpoint(endpoint) => write!(f, ":{endpoint:016x}"),
            Role::Detached(endpoint) => write!(f, ":{endpoint:016x}:{DETACHED}"),
        }
    }
}

/// Whether a link without this mark may be taken as ours anyway: only for
/// a step that a crash (or an error) interrupted after the link was made
/// and before it was marked.
#[derive(Clone, Copy)]
pub(crate) enum Unmarked<'a> {
    /// Leave an unmarked link alone.
    Spare,
    /// Take an unmarked link of the recorded name as ours: its name was
    /// recorded, free, before it was made.
    Take,
    /// Take an unmarked link of the recorded name only if it is the link
    /// the step was making, as far as the test tells: the name was not
    /// known to be free (an endpoint's `eth0`, tried first), so it may be
    /// another link's of the same namespace.
    TakeIf(&'a (dyn Fn(&Link) -> bool + Sync)),
}

/// Deletes the link called `name` in `nl`'s namespace if it carries `mark`
/// (or no mark at all, as `unmarked` allows). Returns whether a link was
/// deleted; a missing link is not an error, and a link marked by anyone
/// else is left alone with a warning.
pub(crate) fn delete_if_ours(
    nl: &Netlink,
    name: &str,
    mark: &Mark,
    unmarked: Unmarked,
) -> Result<bool> {
    let link = match nl.link_by_name(name) {
        Ok(link) => link,
        Err(Error::LinkNotFound { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    let ours = mark.is_on(&link)
        || (link.alias.is_none()
            && match unmarked {
                Unmarked::Spare => false,
                Unmarked::Take => true,
                Unmarked::TakeIf(is_it) => is_it(&link),
            });
    if !ours {
        log::debug!("not deleting {name}: it does not carry the mark {mark}");
        return Ok(false);
    }
    delete_found(nl, link.index)
}

/// Deletes the link with `index`, found just before; one gone meanwhile is
/// not an error. Returns whether it deleted it.
pub(crate) fn delete_found(nl: &Netlink, index: u32) -> Result<bool> {
    match nl.delete_link(index) {
        Ok(()) => Ok(true),
        Err(Error::LinkNotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The link in `nl`'s namespace that carries `mark`, if any.
pub(crate) fn find(nl: &Netlink, mark: &Mark) -> Result<Option<Link>> {
    Ok(nl.links()?.into_iter().find(|l| mark.is_on(l)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_anything_else_is_not_one() {
        let parent = Mark::parent("3f2a9c61d0b4e857", "ab12");
        assert_eq!(parent.to_string(), "underlay:3f2a9c61d0b4e857:ab12");
        assert_eq!(Mark::parse(&parent.to_string()), Some(parent));
        let endpoint = Mark::endpoint("3f2a9c61d0b4e857", "ab12", 0x1234);
        assert_eq!(
            endpoint.to_string(),
            "underlay:3f2a9c61d0b4e857:ab12:0000000000001234"
        );
        assert_eq!(Mark::parse(&endpoint.to_string()), Some(endpoint));
        let detached = Mark::endpoint("3f2a9c61d0b4e857", "ab12", 0x1234).detached();
        assert_eq!(
            detached.to_string(),
            "underlay:3f2a9c61d0b4e857:ab12:0000000000001234:detached"
        );
        assert_eq!(Mark::parse(&detached.to_string()), Some(detached));
        let shim = Mark::shim("3f2a9c61d0b4e857", "ab12");
        assert_eq!(shim.to_string(), "underlay:3f2a9c61d0b4e857:ab12:shim");
        assert_eq!(Mark::parse(&shim.to_string()), Some(shim));
        for other in [
            "underlay:host:net:shims",
            "underlay:host:net:shim:1",
            "underlay:host:net:+000000000001234",
            "",
            "underlay:",
            "underlay::ab12",
            "underlay:host:",
            "underlay:host:net:12",
            "underlay:host:net:000000000000zzzz",
            "underlay:host:net:0000000000001234:x",
            "underlay:host:net:0000000000001234:detached:x",
            "docker:host:net",
            "my uplink",
        ] {
            assert_eq!(Mark::parse(other), None, "{other:?}");
        }
    }
}
