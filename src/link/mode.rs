//! The modes of macvlan and ipvlan links: one table per kind that gives,
//! for each value, its name (as Docker and iproute2 spell it) and its
//! kernel value, read in both directions. Adding a mode is one line here;
//! the compiler then points at every `match` on it elsewhere (the drivers).

use std::fmt;
use std::str::FromStr;

use netlink_packet_route::link::{
    IpVlanFlags, IpVlanMode as NlIpVlanMode, MacVlanMode as NlMacVlanMode,
};

use crate::{Error, Result};

/// macvlan modes.
///
/// ```
/// use underlay::link::MacvlanMode;
///
/// assert_eq!(MacvlanMode::default(), MacvlanMode::Bridge);
/// assert_eq!("vepa".parse::<MacvlanMode>()?, MacvlanMode::Vepa);
/// assert!("l3".parse::<MacvlanMode>().is_err());
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MacvlanMode {
    /// Endpoints on one parent talk to each other directly (Docker's default).
    #[default]
    Bridge,
    /// Endpoints cannot talk to each other, even through the switch.
    Private,
    /// Traffic between endpoints goes out to the switch and back (802.1Qbg).
    Vepa,
    /// One endpoint takes over the parent, MAC address included.
    Passthru,
    /// Only frames from listed source MACs (not used by Docker).
    Source,
}

/// ipvlan modes.
///
/// ```
/// use underlay::link::IpvlanMode;
///
/// assert_eq!(IpvlanMode::default(), IpvlanMode::L2);
/// assert_eq!("l3".parse::<IpvlanMode>()?, IpvlanMode::L3);
/// assert_eq!(IpvlanMode::L3s.to_string(), "l3s");
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum IpvlanMode {
    /// Layer 2: endpoints share the parent's MAC and its broadcast domain
    /// (Docker's default).
    #[default]
    L2,
    /// Layer 3: the parent routes; no broadcast or multicast.
    L3,
    /// Layer 3 with netfilter (conntrack) on the host.
    L3s,
}

/// The ipvlan flag that says how endpoints on one parent reach each other.
///
/// ```
/// use underlay::link::IpvlanFlag;
///
/// assert_eq!(IpvlanFlag::default(), IpvlanFlag::Bridge);
/// assert_eq!("private".parse::<IpvlanFlag>()?, IpvlanFlag::Private);
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum IpvlanFlag {
    /// Endpoints talk to each other directly (default).
    #[default]
    Bridge,
    /// Endpoints cannot talk to each other.
    Private,
    /// Traffic between endpoints goes through the switch.
    Vepa,
}

/// Declares, from one table, a mode's names (`NAMES`, `as_str`, `Display`,
/// `FromStr`) and its kernel values (`to_kernel`, `from_kernel`).
macro_rules! kernel_values {
    ($type:ty, $what:literal, $kernel:ty, [$(($variant:path, $name:literal, $value:expr)),+ $(,)?]) => {
        impl $type {
            /// Every value, in the words `FromStr` accepts.
            ///
            #[doc = concat!("```\nuse underlay::link::", stringify!($type), ";\n")]
            #[doc = concat!("for name in ", stringify!($type), "::NAMES {")]
            #[doc = concat!("    let value: ", stringify!($type), " = name.parse()?;")]
            ///     assert_eq!(value.as_str(), *name);
            /// }
            /// # Ok::<(), underlay::Error>(())
            /// ```
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The value's name, as Docker and iproute2 spell it.
            ///
            #[doc = concat!("```\nuse underlay::link::", stringify!($type), ";\n")]
            #[doc = concat!("let default = ", stringify!($type), "::default();")]
            #[doc = concat!("assert_eq!(default.as_str(), ", stringify!($type), "::NAMES[0]);")]
            /// assert_eq!(default.to_string(), default.as_str());
            /// ```
            pub fn as_str(self) -> &'static str {
                match self {
                    $($variant => $name,)+
                }
            }

            /// The value the kernel uses for it.
            pub(crate) fn to_kernel(self) -> $kernel {
                match self {
                    $($variant => $value,)+
                }
            }

            /// The mode a kernel value stands for; `None` for a value this
            /// crate does not know.
            pub(crate) fn from_kernel(value: $kernel) -> Option<Self> {
                $(if value == $value {
                    return Some($variant);
                })+
                None
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $type {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($name => Ok($variant),)+
                    _ => Err(Error::invalid(
                        $what,
                        s,
                        format!("expected one of: {}", Self::NAMES.join(", ")),
                    )),
                }
            }
        }
    };
}

kernel_values!(
    MacvlanMode,
    "macvlan mode",
    NlMacVlanMode,
    [
        (MacvlanMode::Bridge, "bridge", NlMacVlanMode::Bridge),
        (MacvlanMode::Private, "private", NlMacVlanMode::Private),
        (MacvlanMode::Vepa, "vepa", NlMacVlanMode::Vepa),
        (
            MacvlanMode::Passthru,
            "passthru",
            NlMacVlanMode::Passthrough
        ),
        (MacvlanMode::Source, "source", NlMacVlanMode::Source),
    ]
);
kernel_values!(
    IpvlanMode,
    "ipvlan mode",
    NlIpVlanMode,
    [
        (IpvlanMode::L2, "l2", NlIpVlanMode::L2),
        (IpvlanMode::L3, "l3", NlIpVlanMode::L3),
        (IpvlanMode::L3s, "l3s", NlIpVlanMode::L3S),
    ]
);
kernel_values!(
    IpvlanFlag,
    "ipvlan flag",
    IpVlanFlags,
    [
        (IpvlanFlag::Bridge, "bridge", IpVlanFlags::empty()),
        (IpvlanFlag::Private, "private", IpVlanFlags::Private),
        (IpvlanFlag::Vepa, "vepa", IpVlanFlags::Vepa),
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_round_trips_through_its_name_and_its_kernel_value() {
        for name in MacvlanMode::NAMES {
            let mode: MacvlanMode = name.parse().unwrap();
            assert_eq!(MacvlanMode::from_kernel(mode.to_kernel()), Some(mode));
        }
        for name in IpvlanMode::NAMES {
            let mode: IpvlanMode = name.parse().unwrap();
            assert_eq!(IpvlanMode::from_kernel(mode.to_kernel()), Some(mode));
        }
        for name in IpvlanFlag::NAMES {
            let flag: IpvlanFlag = name.parse().unwrap();
            assert_eq!(IpvlanFlag::from_kernel(flag.to_kernel()), Some(flag));
        }
        assert_eq!(MacvlanMode::from_kernel(NlMacVlanMode::Other(99)), None);
    }
}
