//! Which link kinds the running kernel can make.

/// A kernel feature underlay depends on.
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
