//! Which link kinds the running kernel can make.

use crate::link::{IpvlanFlag, IpvlanMode, MacvlanMode, NewLink};
use crate::netlink::Netlink;
use crate::netns::NetNs;

pub use crate::feature::KernelFeature;
use crate::{Error, Result};

/// Which of the link kinds underlay uses the running kernel can make.
///
/// The probe really creates each kind of link, in a throw-away network
/// namespace that disappears with everything in it when the probe ends, so
/// the answer holds for modules that load on demand too.
///
/// ```no_run
/// use underlay::capability::{KernelCapabilities, KernelFeature};
///
/// let caps = KernelCapabilities::probe()?;
/// if let Err(e) = caps.require(KernelFeature::Ipvlan) {
///     eprintln!("{e}"); // this kernel has no ipvlan support (CONFIG_IPVLAN): ...
/// }
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelCapabilities {
    macvlan: bool,
    ipvlan: bool,
    vlan: bool,
    dummy: bool,
    veth: bool,
}

impl KernelCapabilities {
    /// Every feature the probe looks for.
    ///
    /// ```
    /// use underlay::capability::{KernelCapabilities, KernelFeature};
    ///
    /// assert_eq!(KernelCapabilities::FEATURES.len(), 5);
    /// assert!(KernelCapabilities::FEATURES.contains(&KernelFeature::Ipvlan));
    /// ```
    pub const FEATURES: [KernelFeature; 5] = [
        KernelFeature::Macvlan,
        KernelFeature::Ipvlan,
        KernelFeature::Vlan,
        KernelFeature::Dummy,
        KernelFeature::Veth,
    ];

    /// Probes the running kernel. Needs `CAP_NET_ADMIN` and `CAP_SYS_ADMIN`
    /// (to make the throw-away namespace).
    ///
    /// # Errors
    /// [`Error::Io`] when the throw-away namespace cannot be made (no `CAP_SYS_ADMIN`) or the
    /// socket opened; [`Error::Kernel`] when a probe link fails for any reason but a missing
    /// kind; [`Error::Unsupported`] when the kernel has neither veth nor dummy links.
    ///
    /// ```no_run
    /// use underlay::capability::KernelCapabilities;
    ///
    /// let caps = KernelCapabilities::probe()?;
    /// for feature in KernelCapabilities::FEATURES {
    ///     println!("{feature}: {}", caps.supports(feature));
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn probe() -> Result<Self> {
        let sandbox = NetNs::create()?;
        sandbox.run(|| {
            let nl = Netlink::open()?;
            // Parents for the kinds that need one: the two ends of a veth
            // pair, or two dummy links on a kernel without veth. macvlan and
            // ipvlan refuse to share a parent (EBUSY), so each gets its own.
            let veth = supported(nl.create_link(&NewLink::veth("probe0", "probe1")))?;
            let dummy = supported(nl.create_link(&NewLink::dummy("probe2")))?;
            let names = match (veth, dummy) {
                (true, _) => ["probe0", "probe1"],
                (false, true) => {
                    nl.create_link(&NewLink::dummy("probe6"))?;
                    ["probe2", "probe6"]
                }
                (false, false) => {
                    // Neither veth nor dummy links to probe with.
                    return Err(Error::Unsupported {
                        feature: KernelFeature::Veth,
                    });
                }
            };
            let first = nl.link_by_name(names[0])?.index;
            let second = nl.link_by_name(names[1])?.index;
            let results = nl.create_links(&[
                NewLink::macvlan("probe3", first, MacvlanMode::Bridge),
                NewLink::ipvlan("probe4", second, IpvlanMode::L2, IpvlanFlag::Bridge),
                NewLink::vlan("probe5", first, 5),
            ])?;
            let mut results = results.into_iter();
            let mut next = || supported(results.next().unwrap_or(Ok(())));
            let caps = KernelCapabilities {
                macvlan: next()?,
                ipvlan: next()?,
                vlan: next()?,
                dummy,
                veth,
            };
            log::debug!("kernel capabilities: {caps:?}");
            Ok(caps)
        })
    }

    /// Whether the kernel can make this kind of link.
    ///
    /// ```no_run
    /// use underlay::capability::{KernelCapabilities, KernelFeature};
    ///
    /// let caps = KernelCapabilities::probe()?;
    /// let driver = if caps.supports(KernelFeature::Ipvlan) { "ipvlan" } else { "macvlan" };
    /// println!("using {driver}");
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn supports(&self, feature: KernelFeature) -> bool {
        match feature {
            KernelFeature::Macvlan => self.macvlan,
            KernelFeature::Ipvlan => self.ipvlan,
            KernelFeature::Vlan => self.vlan,
            KernelFeature::Dummy => self.dummy,
            KernelFeature::Veth => self.veth,
        }
    }

    /// `Ok` when the kernel has `feature`, [`Error::Unsupported`] otherwise.
    ///
    /// # Errors
    /// [`Error::Unsupported`] naming `feature` when the probe found no support for it.
    ///
    /// ```no_run
    /// use underlay::capability::{KernelCapabilities, KernelFeature};
    ///
    /// // Fails with Error::Unsupported, naming CONFIG_MACVLAN, on a kernel without it.
    /// KernelCapabilities::probe()?.require(KernelFeature::Macvlan)?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn require(&self, feature: KernelFeature) -> Result<()> {
        if self.supports(feature) {
            Ok(())
        } else {
            Err(Error::Unsupported { feature })
        }
    }

    /// The features this kernel lacks.
    ///
    /// ```no_run
    /// use underlay::capability::KernelCapabilities;
    ///
    /// for feature in KernelCapabilities::probe()?.missing() {
    ///     eprintln!("no {feature} support: enable {}", feature.config_option());
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn missing(&self) -> Vec<KernelFeature> {
        Self::FEATURES
            .into_iter()
            .filter(|f| !self.supports(*f))
            .collect()
    }
}

/// `Ok(true)` for a created link, `Ok(false)` for an unsupported kind, the
/// error for anything else.
fn supported(result: Result<()>) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(Error::Unsupported { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
