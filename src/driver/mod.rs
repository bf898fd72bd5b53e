//! The drivers: what a macvlan network is and what an ipvlan network is.
//!
//! Everything that differs between the two lives here, one file per
//! driver: the modes and flags a network takes (their kernel values are
//! in [`crate::link`], which encodes them), the Docker options and their
//! names, the kernel feature each needs, the link made for an endpoint,
//! the endpoint's MAC address, its default routes, and the name of the
//! dummy parent of a network without one. The rest of the crate asks a
//! [`Driver`] and never matches on the driver itself, so a new driver or
//! mode is an addition here, and the compiler points at what else must
//! change.
//!
//! ```
//! use underlay::driver::{Driver, IpvlanFlag, IpvlanMode};
//!
//! let d = Driver::Ipvlan { mode: IpvlanMode::L3, flag: IpvlanFlag::Bridge };
//! assert_eq!(d.name(), "ipvlan");
//! assert!(d.is_l3());
//! ```

mod ipvlan;
mod macvlan;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::feature::KernelFeature;
use crate::ipam::Allocation;
use crate::link::{Link, LinkKind, MacAddress, NewLink};
use crate::route::{IpFamily, NewRoute};
use crate::{Error, Result};

pub use crate::link::{IpvlanFlag, IpvlanMode, MacvlanMode};

/// The driver of a network, with its mode.
///
/// ```
/// use underlay::driver::{Driver, IpvlanFlag, IpvlanMode};
///
/// let d = Driver::Ipvlan { mode: IpvlanMode::L3, flag: IpvlanFlag::Bridge };
/// assert_eq!(d.name(), "ipvlan");
/// assert!(d.is_l3());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Driver {
    /// macvlan: every endpoint has its own MAC address.
    Macvlan {
        /// The macvlan mode (bridge by default).
        mode: MacvlanMode,
    },
    /// ipvlan: endpoints share the parent's MAC address.
    Ipvlan {
        /// The ipvlan mode (l2 by default).
        mode: IpvlanMode,
        /// The ipvlan flag (bridge by default).
        flag: IpvlanFlag,
    },
}

/// A driver without its settings, as `docker network create -d` names it.
///
/// ```
/// use underlay::driver::DriverKind;
///
/// assert_eq!("ipvlan".parse::<DriverKind>()?, DriverKind::Ipvlan);
/// let err = "bridge".parse::<DriverKind>().unwrap_err();
/// assert!(err.to_string().contains("macvlan and ipvlan"));
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DriverKind {
    /// macvlan.
    Macvlan,
    /// ipvlan.
    Ipvlan,
}

impl DriverKind {
    /// `macvlan` or `ipvlan`.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Macvlan => "macvlan",
            DriverKind::Ipvlan => "ipvlan",
        }
    }

    /// "a" or "an", for messages.
    fn article(self) -> &'static str {
        match self {
            DriverKind::Macvlan => "a",
            DriverKind::Ipvlan => "an",
        }
    }

    /// The Docker driver options (`-o KEY=VALUE`) this driver takes.
    ///
    /// ```
    /// use underlay::driver::DriverKind;
    ///
    /// assert!(DriverKind::Ipvlan.options().contains(&"ipvlan_mode"));
    /// assert!(!DriverKind::Macvlan.options().contains(&"ipvlan_mode"));
    /// ```
    pub fn options(self) -> &'static [&'static str] {
        match self {
            DriverKind::Macvlan => macvlan::OPTIONS,
            DriverKind::Ipvlan => ipvlan::OPTIONS,
        }
    }

    /// The kernel feature its links need.
    pub fn feature(self) -> KernelFeature {
        match self {
            DriverKind::Macvlan => KernelFeature::Macvlan,
            DriverKind::Ipvlan => KernelFeature::Ipvlan,
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DriverKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "macvlan" => Ok(DriverKind::Macvlan),
            "ipvlan" => Ok(DriverKind::Ipvlan),
            other => Err(Error::invalid(
                "driver",
                other,
                "underlay provides the macvlan and ipvlan drivers",
            )),
        }
    }
}

/// The driver settings a network description gathers (typed setters or
/// Docker's `-o` options), checked against the driver when the network is
/// built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DriverSettings {
    /// `macvlan_mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macvlan_mode: Option<MacvlanMode>,
    /// `ipvlan_mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipvlan_mode: Option<IpvlanMode>,
    /// `ipvlan_flag`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipvlan_flag: Option<IpvlanFlag>,
}

/// Every driver option underlay knows, for messages when no driver is
/// chosen yet.
const ALL_OPTIONS: &str = "parent, macvlan_mode, ipvlan_mode, ipvlan_flag, mtu, host_shim";

impl DriverSettings {
    /// Applies a driver-specific Docker option; `Ok(false)` for a key that
    /// is not one (`parent` and `mtu` are the network's, not the driver's).
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            "macvlan_mode" => self.macvlan_mode = Some(value.parse()?),
            "ipvlan_mode" => self.ipvlan_mode = Some(value.parse()?),
            "ipvlan_flag" => self.ipvlan_flag = Some(value.parse()?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The error for an option no driver knows, naming the valid ones.
    pub(crate) fn unknown_option(kind: Option<DriverKind>, key: &str) -> Error {
        let valid = kind.map_or(ALL_OPTIONS.to_owned(), |k| k.options().join(", "));
        Error::invalid(
            "driver option",
            key,
            format!("unknown option; valid options are: {valid}"),
        )
    }

    /// The driver these settings describe for `kind`; a setting of the
    /// other driver is refused.
    pub(crate) fn resolve(&self, kind: DriverKind) -> Result<Driver> {
        let foreign = |option: &str| {
            Error::invalid(
                "driver option",
                option,
                format!(
                    "not {} {kind} option; valid options are: {}",
                    kind.article(),
                    kind.options().join(", ")
                ),
            )
        };
        match kind {
            DriverKind::Macvlan => {
                if self.ipvlan_mode.is_some() {
                    return Err(foreign("ipvlan_mode"));
                }
                if self.ipvlan_flag.is_some() {
                    return Err(foreign("ipvlan_flag"));
                }
                Ok(Driver::Macvlan {
                    mode: self.macvlan_mode.unwrap_or_default(),
                })
            }
            DriverKind::Ipvlan => {
                if self.macvlan_mode.is_some() {
                    return Err(foreign("macvlan_mode"));
                }
                Ok(Driver::Ipvlan {
                    mode: self.ipvlan_mode.unwrap_or_default(),
                    flag: self.ipvlan_flag.unwrap_or_default(),
                })
            }
        }
    }
}

impl Driver {
    /// `macvlan` or `ipvlan`.
    ///
    /// ```
    /// use underlay::driver::{Driver, MacvlanMode};
    ///
    /// let driver = Driver::Macvlan { mode: MacvlanMode::Bridge };
    /// assert_eq!(driver.name(), "macvlan");
    /// assert_eq!(driver.to_string(), "macvlan");
    /// ```
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The driver without its settings.
    pub fn kind(&self) -> DriverKind {
        match self {
            Driver::Macvlan { .. } => DriverKind::Macvlan,
            Driver::Ipvlan { .. } => DriverKind::Ipvlan,
        }
    }

    /// The kernel feature its links need.
    ///
    /// ```
    /// use underlay::capability::KernelFeature;
    /// use underlay::driver::{Driver, IpvlanFlag, IpvlanMode};
    ///
    /// let l2 = Driver::Ipvlan { mode: IpvlanMode::L2, flag: IpvlanFlag::Bridge };
    /// assert_eq!(l2.feature(), KernelFeature::Ipvlan);
    /// ```
    pub fn feature(&self) -> KernelFeature {
        self.kind().feature()
    }

    /// Whether endpoints route at layer 3 (ipvlan l3 and l3s): their default
    /// route is `default dev eth0`, with no gateway.
    ///
    /// ```
    /// use underlay::driver::{Driver, IpvlanFlag, IpvlanMode};
    ///
    /// let l3s = Driver::Ipvlan { mode: IpvlanMode::L3s, flag: IpvlanFlag::Bridge };
    /// let l2 = Driver::Ipvlan { mode: IpvlanMode::L2, flag: IpvlanFlag::Bridge };
    /// assert!(l3s.is_l3() && !l2.is_l3());
    /// ```
    pub fn is_l3(&self) -> bool {
        match self {
            Driver::Macvlan { .. } => false,
            Driver::Ipvlan { mode, .. } => ipvlan::is_l3(*mode),
        }
    }

    /// The driver's options in Docker's words (`macvlan_mode`, `ipvlan_mode`,
    /// `ipvlan_flag`).
    ///
    /// ```
    /// use underlay::driver::{Driver, IpvlanFlag, IpvlanMode};
    ///
    /// let driver = Driver::Ipvlan { mode: IpvlanMode::L3, flag: IpvlanFlag::Private };
    /// let options = driver.docker_options();
    /// assert_eq!(options["ipvlan_mode"], "l3");
    /// assert_eq!(options["ipvlan_flag"], "private");
    /// ```
    pub fn docker_options(&self) -> BTreeMap<String, String> {
        let mut options = BTreeMap::new();
        match self {
            Driver::Macvlan { mode } => {
                options.insert("macvlan_mode".into(), mode.to_string());
            }
            Driver::Ipvlan { mode, flag } => {
                options.insert("ipvlan_mode".into(), mode.to_string());
                options.insert("ipvlan_flag".into(), flag.to_string());
            }
        }
        options
    }

    /// The link an endpoint gets, on the parent with index `parent`.
    pub(crate) fn endpoint_link(&self, ifname: &str, parent: u32) -> NewLink<'static> {
        match *self {
            Driver::Macvlan { mode } => macvlan::endpoint_link(ifname, parent, mode),
            Driver::Ipvlan { mode, flag } => ipvlan::endpoint_link(ifname, parent, mode, flag),
        }
    }

    /// Whether `link` is of the kind this driver's endpoint links are:
    /// macvlan or ipvlan, in its mode.
    pub(crate) fn is_kind_of(&self, link: &Link) -> bool {
        match (*self, &link.kind) {
            (Driver::Macvlan { mode }, Some(LinkKind::Macvlan { mode: its })) => mode == *its,
            (Driver::Ipvlan { mode, .. }, Some(LinkKind::Ipvlan { mode: its, .. })) => mode == *its,
            _ => false,
        }
    }

    /// The link of the network's host shim (see [`crate::shim`]), on the
    /// parent with index `parent`: a link of the endpoints' kind, so that it
    /// reaches them: macvlan in the network's mode, ipvlan in its mode and
    /// flag. The modes where endpoints reach nothing beside them (macvlan
    /// `private`, ipvlan `private`) or have the parent to themselves
    /// (macvlan `passthru`) are refused.
    pub(crate) fn host_shim_link(&self, name: &str, parent: u32) -> Result<NewLink<'static>> {
        self.check_host_shim("")?;
        Ok(self.endpoint_link(name, parent))
    }

    /// Whether a network of this driver can have a host shim; why not, if
    /// it cannot (`request`, the `host_shim` value, is named in the error).
    pub(crate) fn check_host_shim(&self, request: &str) -> Result<()> {
        let why = match *self {
            Driver::Macvlan { mode } => macvlan::host_shim_refusal(mode),
            Driver::Ipvlan { flag, .. } => ipvlan::host_shim_refusal(flag),
        };
        match why {
            None => Ok(()),
            Some(reason) => Err(Error::invalid("host_shim", request, reason)),
        }
    }

    /// The MAC address an endpoint's link gets (`None`: the kernel's
    /// choice, the parent's for ipvlan); refuses a requested one the driver
    /// cannot honour.
    pub(crate) fn endpoint_mac(&self, requested: Option<MacAddress>) -> Result<Option<MacAddress>> {
        match self {
            Driver::Macvlan { mode } => macvlan::endpoint_mac(*mode, requested),
            Driver::Ipvlan { .. } => ipvlan::endpoint_mac(requested),
        }
    }

    /// How many endpoints a network of this driver may have at once, if
    /// the kernel limits it (macvlan passthru: one).
    pub(crate) fn endpoint_limit(&self) -> Option<usize> {
        match self {
            Driver::Macvlan { mode } => macvlan::endpoint_limit(*mode),
            Driver::Ipvlan { .. } => None,
        }
    }

    /// Checks a requested MAC address before anything is allocated.
    pub(crate) fn check_mac(&self, requested: Option<MacAddress>) -> Result<()> {
        match (self, requested) {
            (_, None) => Ok(()),
            (Driver::Ipvlan { .. }, mac) => ipvlan::endpoint_mac(mac).map(drop),
            (
                Driver::Macvlan {
                    mode: MacvlanMode::Passthru,
                },
                mac,
            ) => macvlan::endpoint_mac(MacvlanMode::Passthru, mac).map(drop),
            (Driver::Macvlan { .. }, Some(mac)) => {
                if !mac.is_unicast() || mac.0 == [0; 6] {
                    return Err(Error::invalid(
                        "MAC address",
                        mac.to_string(),
                        "expected a unicast address (the first byte even)",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The routes an endpoint gets, as Docker's drivers give them:
    /// `default via GATEWAY` per family for macvlan and ipvlan L2 (none on
    /// internal networks); `default dev` per family for ipvlan L3, where the
    /// parent routes and there is no gateway, internal networks included (the
    /// seeds' `ipnet210`: on an isolated dummy parent it reaches only the
    /// network's own endpoints).
    pub(crate) fn default_routes(
        &self,
        index: u32,
        allocations: &[Allocation],
        internal: bool,
    ) -> Vec<NewRoute> {
        let l3 = self.is_l3();
        if internal && !l3 {
            return Vec::new();
        }
        let mut routes: Vec<NewRoute> = Vec::new();
        for allocation in allocations {
            let family = IpFamily::of(allocation.ip());
            if routes.iter().any(|r| r.family() == family) {
                continue;
            }
            if l3 {
                routes.push(NewRoute::default_dev(family, index));
            } else if let Some(gateway) = allocation.gateway() {
                routes.push(NewRoute::default_via(gateway, index));
            }
        }
        routes
    }

    /// The dummy parent's name for a network without a parent: `dm-`
    /// (macvlan) or `di-` (ipvlan) and 12 characters of its id, 15 bytes in
    /// all, as Docker names it.
    ///
    /// ```
    /// use underlay::driver::{Driver, MacvlanMode};
    ///
    /// let driver = Driver::Macvlan { mode: MacvlanMode::Bridge };
    /// assert_eq!(driver.dummy_parent_name("3f2a9c61d0b4e857aa"), "dm-3f2a9c61d0b4");
    /// ```
    pub fn dummy_parent_name(&self, network_id: &str) -> String {
        let prefix = match self {
            Driver::Macvlan { .. } => macvlan::DUMMY_PREFIX,
            Driver::Ipvlan { .. } => ipvlan::DUMMY_PREFIX,
        };
        let id: String = network_id.chars().take(12).collect();
        format!("{prefix}{id}")
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_of_the_other_driver_are_refused_by_name() {
        let mut settings = DriverSettings::default();
        assert!(settings.set("ipvlan_mode", "l3").unwrap());
        let err = settings.resolve(DriverKind::Macvlan).unwrap_err();
        assert!(err.to_string().contains("ipvlan_mode"), "{err}");
        let driver = settings.resolve(DriverKind::Ipvlan).unwrap();
        assert!(driver.is_l3());
        assert!(!settings.set("parent", "eth0").unwrap());
        assert!(settings.set("macvlan_mode", "l3").is_err());
    }

    #[test]
    fn macvlan_endpoints_get_a_mac_and_ipvlan_endpoints_refuse_one() {
        let macvlan = Driver::Macvlan {
            mode: MacvlanMode::Bridge,
        };
        let ipvlan = Driver::Ipvlan {
            mode: IpvlanMode::L2,
            flag: IpvlanFlag::Bridge,
        };
        let mac: MacAddress = "02:42:ac:10:56:0a".parse().unwrap();
        assert_eq!(macvlan.endpoint_mac(Some(mac)).unwrap(), Some(mac));
        assert!(macvlan
            .endpoint_mac(None)
            .unwrap()
            .unwrap()
            .is_locally_administered());
        assert_eq!(ipvlan.endpoint_mac(None).unwrap(), None);
        assert!(ipvlan.check_mac(Some(mac)).is_err());
        assert!(macvlan
            .check_mac(Some("01:00:5e:00:00:01".parse().unwrap()))
            .is_err());
        assert_eq!(
            ipvlan.dummy_parent_name("abcdef0123456789"),
            "di-abcdef012345"
        );
    }
}
