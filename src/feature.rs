//! The kernel features underlay depends on, named once for the link layer,
//! the capability probe and the errors.

/// A kernel feature underlay depends on.
///
/// ```
/// use underlay::capability::KernelFeature;
///
/// assert_eq!(KernelFeature::Ipvlan.to_string(), "ipvlan");
/// assert_eq!(KernelFeature::Ipvlan.config_option(), "CONFIG_IPVLAN");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KernelFeature {
    /// macvlan links (`CONFIG_MACVLAN`).
    Macvlan,
    /// ipvlan links (`CONFIG_IPVLAN`).
    Ipvlan,
    /// 802.1q VLAN links (`CONFIG_VLAN_8021Q`).
    Vlan,
    /// dummy links (`CONFIG_DUMMY`).
    Dummy,
    /// veth pairs (`CONFIG_VETH`).
    Veth,
}

impl KernelFeature {
    /// The short name, as `ip link` spells the kind.
    ///
    /// ```
    /// use underlay::capability::KernelFeature;
    ///
    /// assert_eq!(KernelFeature::Macvlan.name(), "macvlan");
    /// assert_eq!(KernelFeature::Vlan.name(), "802.1q VLAN");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            KernelFeature::Macvlan => "macvlan",
            KernelFeature::Ipvlan => "ipvlan",
            KernelFeature::Vlan => "802.1q VLAN",
            KernelFeature::Dummy => "dummy",
            KernelFeature::Veth => "veth",
        }
    }

    /// The kernel configuration option that provides it.
    ///
    /// ```
    /// use underlay::capability::KernelFeature;
    /// use underlay::Error;
    ///
    /// assert_eq!(KernelFeature::Vlan.config_option(), "CONFIG_VLAN_8021Q");
    /// // The error for a missing feature names the option to turn on.
    /// let err = Error::Unsupported { feature: KernelFeature::Macvlan };
    /// assert!(err.to_string().contains("CONFIG_MACVLAN"));
    /// ```
    pub fn config_option(self) -> &'static str {
        match self {
            KernelFeature::Macvlan => "CONFIG_MACVLAN",
            KernelFeature::Ipvlan => "CONFIG_IPVLAN",
            KernelFeature::Vlan => "CONFIG_VLAN_8021Q",
            KernelFeature::Dummy => "CONFIG_DUMMY",
            KernelFeature::Veth => "CONFIG_VETH",
        }
    }
}

impl std::fmt::Display for KernelFeature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
