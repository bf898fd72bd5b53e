//! Parent interfaces: finding, creating and owning the link a network's
//! endpoints sit on.
//!
//! The rules are Docker's (see its macvlan and ipvlan guides):
//!
//! - an interface that exists, whatever its name (`eth0`, `bond0`, a VLAN
//!   link made by hand and named `foo` or `eth0.40`), is used as it is and
//!   never deleted or changed. If it is down, underlay leaves it down and
//!   logs a warning: bringing up an interface it does not own is the
//!   administrator's call;
//! - `NAME.VLAN_ID` that does not exist is created as an 802.1q link with
//!   that id on `NAME`, brought up, and owned by underlay;
//! - no parent, or an internal network, gets a dummy link named `dm-` (macvlan)
//!   or `di-` (ipvlan) plus the first 12 characters of the network id, owned;
//! - `lo`, a missing interface with no dot, a malformed `eth0.abc` and VLAN
//!   ids outside 1-4094 are refused before anything is created.
//!
//! Links underlay creates carry the ownership mark of their network (see
//! `mark.rs`), which is how recovery tells them apart from links made by
//! anyone else; a link is deleted only when it carries that mark.
//!
//! ```
//! use underlay::parent::{ParentKind, ParentLink};
//!
//! let parent = ParentLink {
//!     name: "eth0.50".into(),
//!     kind: ParentKind::Vlan { master: "eth0".into(), id: 50 },
//! };
//! assert!(parent.owned());
//! ```

use serde::{Deserialize, Serialize};

use crate::link::{validate_name, Link, LinkKind, NewLink};
use crate::mark::{self, Mark, Role, Unmarked};
use crate::netlink::Netlink;
use crate::{Error, Result};

/// How a network got its parent interface.
///
/// ```
/// use underlay::parent::ParentKind;
///
/// let kind = ParentKind::Vlan { master: "eth0".into(), id: 50 };
/// // As a network's state file records it.
/// let json = serde_json::to_string(&kind).unwrap();
/// assert_eq!(json, r#"{"type":"vlan","master":"eth0","id":50}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
#[non_exhaustive]
pub enum ParentKind {
    /// An interface that existed before the network. Never deleted.
    Existing,
    /// An 802.1q sub-interface underlay created on `master`.
    Vlan {
        /// The interface it is tagged on.
        master: String,
        /// The VLAN id.
        id: u16,
    },
    /// A dummy interface underlay created for an isolated network.
    Dummy,
}

/// A network's parent interface.
///
/// ```
/// use underlay::parent::{ParentKind, ParentLink};
///
/// // -o parent=eth0 on an interface that exists: used, never deleted.
/// let parent = ParentLink { name: "eth0".into(), kind: ParentKind::Existing };
/// assert!(!parent.owned());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The interface name.
    pub name: String,
    /// How it came to be.
    pub kind: ParentKind,
}

impl ParentLink {
    /// Whether underlay created this link, and so deletes it with the
    /// network and recreates it after a reboot.
    ///
    /// ```
    /// use underlay::parent::{ParentKind, ParentLink};
    ///
    /// let dummy = ParentLink { name: "dm-3f2a9c61d0b4".into(), kind: ParentKind::Dummy };
    /// assert!(dummy.owned());
    /// let eth0 = ParentLink { name: "eth0".into(), kind: ParentKind::Existing };
    /// assert!(!eth0.owned());
    /// ```
    pub fn owned(&self) -> bool {
        self.kind != ParentKind::Existing
    }

    /// What the link is, in words (`a VLAN 50 on eth0`), for messages.
    pub(crate) fn kind_description(&self) -> String {
        match &self.kind {
            ParentKind::Existing => "an existing interface".into(),
            ParentKind::Vlan { master, id } => format!("a VLAN {id} on {master}"),
            ParentKind::Dummy => "a dummy".into(),
        }
    }
}

/// Splits `NAME.VLAN_ID` into its parts: `Ok(None)` for a name with no dot,
/// an error for a malformed name or a VLAN id outside 1-4094.
///
/// # Errors
/// [`Error::InvalidArgument`] for a name the kernel would refuse, a dotted name that is not
/// `NAME.VLAN_ID` (an empty `NAME`, a second dot, an id that is not a number) or a VLAN id
/// outside 1-4094.
///
/// ```
/// use underlay::parent::parse_vlan_name;
///
/// assert_eq!(parse_vlan_name("eth0.50")?, Some(("eth0".to_owned(), 50)));
/// assert_eq!(parse_vlan_name("eth0")?, None);
/// assert!(parse_vlan_name("eth0.abc").is_err());
/// assert!(parse_vlan_name("eth0.4095").is_err());
/// # Ok::<(), underlay::Error>(())
/// ```
pub fn parse_vlan_name(name: &str) -> Result<Option<(String, u16)>> {
    validate_name(name)?;
    let Some((master, id)) = name.split_once('.') else {
        return Ok(None);
    };
    let malformed = |reason: &str| {
        Error::invalid(
            "parent interface",
            name,
            format!("{reason}; a VLAN sub-interface is written NAME.VLAN_ID, for example eth0.50"),
        )
    };
    if master.is_empty() || id.contains('.') {
        return Err(malformed(
            "expected exactly one dot after an interface name",
        ));
    }
    let id: u16 = id
        .parse()
        .map_err(|_| malformed("the part after the dot is not a VLAN id"))?;
    if !(1..=4094).contains(&id) {
        return Err(Error::invalid(
            "VLAN id",
            id.to_string(),
            format!("{name}: VLAN ids run from 1 to 4094 (0 and 4095 are reserved)"),
        ));
    }
    Ok(Some((master.to_owned(), id)))
}

/// What creating a network will do about its parent, decided before
/// anything changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParentPlan {
    pub parent: ParentLink,
    /// The index of the existing parent, or of the VLAN master.
    pub index: u32,
}

/// Decides the parent for a network: checks what exists through `nl`, and
/// refuses what cannot work. Creates nothing.
pub(crate) fn plan(
    nl: &Netlink,
    requested: Option<&str>,
    dummy: Option<String>,
) -> Result<ParentPlan> {
    let Some(name) = requested else {
        let name =
            dummy.ok_or_else(|| Error::Internal("no dummy name for an isolated network".into()))?;
        return Ok(ParentPlan {
            parent: ParentLink {
                name,
                kind: ParentKind::Dummy,
            },
            index: 0,
        });
    };
    validate_name(name)?;
    if name == "lo" {
        return Err(Error::invalid(
            "parent interface",
            name,
            "the loopback interface cannot carry macvlan or ipvlan links; name a physical interface, a bond or a VLAN",
        ));
    }
    match nl.link_by_name(name) {
        Ok(link) => {
            match Mark::of(&link).map(|m| m.role) {
                Some(Role::Endpoint(_) | Role::Detached(_)) => return Err(Error::invalid(
                    "parent interface",
                    name,
                    "it is a container's endpoint of another network (it carries underlay's endpoint mark); name the host's own interface",
                )),
                Some(Role::Shim) => return Err(Error::invalid(
                    "parent interface",
                    name,
                    "it is the host shim of another network (it carries underlay's shim mark); name that network's parent instead",
                )),
                Some(Role::Parent) | None => {}
            }
            if !link.up {
                log::warn!("parent interface {name} is down: containers on it will have no carrier until it is brought up");
            }
            return Ok(ParentPlan {
                parent: ParentLink {
                    name: name.to_owned(),
                    kind: ParentKind::Existing,
                },
                index: link.index,
            });
        }
        Err(Error::LinkNotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let Some((master, id)) = parse_vlan_name(name)? else {
        return Err(Error::ParentNotFound {
            parent: name.to_owned(),
        });
    };
    let master_link = match nl.link_by_name(&master) {
        Ok(link) => link,
        Err(Error::LinkNotFound { .. }) => {
            return Err(Error::ParentNotFound { parent: master });
        }
        Err(e) => return Err(e),
    };
    Ok(ParentPlan {
        parent: ParentLink {
            name: name.to_owned(),
            kind: ParentKind::Vlan { master, id },
        },
        index: master_link.index,
    })
}

impl ParentPlan {
    /// Creates the parent if it is ours to create, marks it with `mark`
    /// and brings it up. On failure nothing is left behind.
    pub(crate) fn realize(&self, nl: &Netlink, mark: &Mark) -> Result<()> {
        create_owned(nl, &self.parent, Some(self.index), mark)
    }
}

/// Whether a link of an owned parent's name, ours or not, is what
/// underlay makes for it: a VLAN sub-interface with its id on its master,
/// or a dummy.
fn as_planned(nl: &Netlink, link: &Link, parent: &ParentLink) -> bool {
    match (&parent.kind, &link.kind) {
        (ParentKind::Vlan { master, id }, Some(LinkKind::Vlan { id: its })) => {
            id == its
                && nl
                    .link_by_name(master)
                    .is_ok_and(|m| link.parent_index == Some(m.index))
        }
        (ParentKind::Dummy, Some(LinkKind::Dummy)) => true,
        _ => false,
    }
}

/// Whether `link`, of an owned parent's name, is the network's to use:
/// one that carries the mark, or one made by someone else just as underlay
/// would make it (a VLAN that the system's network configuration made
/// again after a reboot, say: used, never brought up nor deleted). Any
/// other link is someone else's, and refused.
pub(crate) fn check_owned(
    nl: &Netlink,
    link: &Link,
    parent: &ParentLink,
    mark: &Mark,
) -> Result<Ownership> {
    if !parent.owned() || mark.is_on(link) {
        return Ok(Ownership::Ours);
    }
    if as_planned(nl, link, parent) {
        return Ok(Ownership::Lookalike);
    }
    Err(Error::invalid(
        "parent",
        &parent.name,
        format!(
            "a link of that name exists that underlay did not make (it does not carry the mark {mark}, nor is it {}): rename or delete it, then run recover; if underlay made it and its alias was changed, give the mark back (ip link set {} alias {mark})",
            parent.kind_description(),
            parent.name
        ),
    ))
}

/// Whose a link of an owned parent's name is (see [`check_owned`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// It carries the network's mark.
    Ours,
    /// Someone else's, made as underlay would make it.
    Lookalike,
}

/// Creates an owned parent link. `master_index` saves a lookup when known.
fn create_owned(
    nl: &Netlink,
    parent: &ParentLink,
    master_index: Option<u32>,
    mark: &Mark,
) -> Result<()> {
    let spec = match &parent.kind {
        ParentKind::Existing => return Ok(()),
        ParentKind::Dummy => NewLink::dummy(&parent.name),
        ParentKind::Vlan { master, id } => {
            let master_index = match master_index {
                Some(i) if i != 0 => i,
                _ => {
                    nl.link_by_name(master)
                        .map_err(|e| match e {
                            Error::LinkNotFound { .. } => Error::ParentNotFound {
                                parent: master.clone(),
                            },
                            e => e,
                        })?
                        .index
                }
            };
            NewLink::vlan(&parent.name, master_index, *id)
        }
    };
    nl.create_link(&spec.up())?;
    log::debug!("created parent link {}", parent.name);
    let marked = nl.link_by_name(&parent.name).and_then(|link| {
        nl.set_alias(link.index, &mark.to_string())
            .map(|()| link.index)
    });
    if let Err(e) = marked {
        if let Ok(link) = nl.link_by_name(&parent.name) {
            let _ = nl.delete_link(link.index);
        }
        return Err(e);
    }
    Ok(())
}

/// Makes sure an owned parent exists (after a reboot it does not): creates
/// it again when missing, brings it up if it is down. A link of its name
/// that does not carry the mark is someone else's: refused, untouched.
/// Returns whether it had to make it.
pub(crate) fn ensure(nl: &Netlink, parent: &ParentLink, mark: &Mark) -> Result<bool> {
    if !parent.owned() {
        return Ok(false);
    }
    match nl.link_by_name(&parent.name) {
        Ok(link) => {
            if check_owned(nl, &link, parent, mark)? == Ownership::Lookalike {
                if !link.up {
                    log::warn!(
                        "parent {} is down, and not underlay's to bring up (someone else made it, as underlay would)",
                        parent.name
                    );
                }
                return Ok(false);
            }
            if !link.up {
                nl.set_link_up_by_index(link.index, true)?;
            }
            Ok(false)
        }
        Err(Error::LinkNotFound { .. }) => {
            create_owned(nl, parent, None, mark)?;
            log::info!("recreated parent link {}", parent.name);
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Deletes an owned parent, but only if it still carries our `mark`: a
/// link of the same name made by someone else is left alone. When the
/// network's creation did not finish (`unfinished`), the link may not carry
/// the mark yet: an unmarked link of that name is taken too if it is what
/// the creation was making (a VLAN sub-interface with its id on its master,
/// a dummy). Its name was free when the creation was recorded, but a crash
/// leaves it to whoever comes before recovery (an administrator's link
/// after a reboot).
pub(crate) fn remove(
    nl: &Netlink,
    parent: &ParentLink,
    mark: &Mark,
    unfinished: bool,
) -> Result<()> {
    if !parent.owned() {
        return Ok(());
    }
    let made = |link: &Link| as_planned(nl, link, parent);
    let unmarked = if unfinished {
        Unmarked::TakeIf(&made)
    } else {
        Unmarked::Spare
    };
    if mark::delete_if_ours(nl, &parent.name, mark, unmarked)? {
        log::debug!("deleted parent link {}", parent.name);
    } else if nl.link_by_name(&parent.name).is_ok() {
        log::warn!(
            "not deleting {}: it is not the link underlay created (it does not carry the mark {mark})",
            parent.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_names_parse_like_docker() {
        assert_eq!(
            parse_vlan_name("eth0.50").unwrap(),
            Some(("eth0".into(), 50))
        );
        assert_eq!(
            parse_vlan_name("bond0.4094").unwrap(),
            Some(("bond0".into(), 4094))
        );
        assert_eq!(parse_vlan_name("eth0.1").unwrap(), Some(("eth0".into(), 1)));
        assert_eq!(parse_vlan_name("foo").unwrap(), None);
        for (bad, needle) in [
            ("eth0.abc", "not a VLAN id"),
            ("eth0.", "not a VLAN id"),
            (".50", "exactly one dot"),
            ("eth0.1.2", "exactly one dot"),
            ("eth0.0", "1 to 4094"),
            ("eth0.4095", "1 to 4094"),
            ("eth0.99999", "not a VLAN id"),
            ("a-very-long-name.5", "at most 15"),
        ] {
            let err = parse_vlan_name(bad).unwrap_err();
            assert!(err.to_string().contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn dummy_names_fit_in_fifteen_bytes() {
        use crate::driver::{Driver, IpvlanFlag, IpvlanMode, MacvlanMode};
        let id = "0123456789abcdef0123456789abcdef";
        let macvlan = Driver::Macvlan {
            mode: MacvlanMode::Bridge,
        };
        let ipvlan = Driver::Ipvlan {
            mode: IpvlanMode::L2,
            flag: IpvlanFlag::Bridge,
        };
        assert_eq!(macvlan.dummy_parent_name(id), "dm-0123456789ab");
        assert_eq!(ipvlan.dummy_parent_name(id), "di-0123456789ab");
        assert_eq!(ipvlan.dummy_parent_name(id).len(), 15);
    }
}
