//! Links: reading them, creating macvlan, ipvlan, VLAN, dummy and veth links,
//! changing and deleting them.
//!
//! ```no_run
//! use underlay::link::{MacvlanMode, NewLink};
//! use underlay::netlink::Netlink;
//!
//! let nl = Netlink::open()?;
//! let parent = nl.link_by_name("eth0")?;
//! nl.create_link(&NewLink::macvlan("mv0", parent.index, MacvlanMode::Bridge).mtu(1400))?;
//! let mv0 = nl.link_by_name("mv0")?;
//! assert_eq!(mv0.parent_index, Some(parent.index));
//! nl.delete_link(mv0.index)?;
//! # Ok::<(), underlay::Error>(())
//! ```

mod mode;

use std::fmt;
use std::os::fd::{AsFd, AsRawFd};
use std::str::FromStr;

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, InfoMacVlan, InfoVeth, InfoVlan, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

pub use mode::{IpvlanFlag, IpvlanMode, MacvlanMode};

use crate::feature::KernelFeature;
use crate::netlink::{Netlink, Request};
use crate::netns::NetNs;
use crate::{Error, Result};

/// The longest interface name the kernel accepts (`IFNAMSIZ - 1`).
///
/// ```
/// use underlay::link::{validate_name, MAX_NAME_LEN};
///
/// assert_eq!("macvlan50-house".len(), MAX_NAME_LEN);
/// assert!(validate_name("macvlan50-house").is_ok());
/// assert!(validate_name("macvlan50-houses").is_err());
/// ```
pub const MAX_NAME_LEN: usize = 15;

/// An Ethernet MAC address.
///
/// ```
/// use underlay::link::MacAddress;
///
/// let mac: MacAddress = "02:42:ac:11:00:02".parse()?;
/// assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
/// assert!(mac.is_locally_administered() && mac.is_unicast());
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// A random locally administered unicast address, as the kernel gives
    /// new macvlan links and as Docker's drivers do.
    ///
    /// # Errors
    /// [`Error::Io`] when the kernel's random source cannot be read.
    ///
    /// ```
    /// use underlay::link::MacAddress;
    ///
    /// let mac = MacAddress::random_local()?;
    /// assert!(mac.is_locally_administered() && mac.is_unicast());
    /// assert_ne!(mac, MacAddress::random_local()?);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn random_local() -> Result<Self> {
        let mut bytes = [0u8; 6];
        crate::random::fill(&mut bytes)?;
        bytes[0] = (bytes[0] & 0xfe) | 0x02;
        Ok(MacAddress(bytes))
    }

    /// Whether the locally-administered bit is set.
    ///
    /// ```
    /// use underlay::link::MacAddress;
    ///
    /// let docker: MacAddress = "02:42:ac:11:00:02".parse()?;
    /// assert!(docker.is_locally_administered());
    /// let burned_in: MacAddress = "00:1b:21:3a:4f:01".parse()?;
    /// assert!(!burned_in.is_locally_administered());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// Whether this is a unicast (not multicast) address.
    ///
    /// ```
    /// use underlay::link::MacAddress;
    ///
    /// assert!("02:42:ac:11:00:02".parse::<MacAddress>()?.is_unicast());
    /// // 01:00:5e:... is IPv4 multicast.
    /// assert!(!"01:00:5e:00:00:fb".parse::<MacAddress>()?.is_unicast());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for MacAddress {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddress {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for MacAddress {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "MAC address",
                s,
                "expected six hexadecimal bytes separated by colons, like 02:42:ac:11:00:02",
            )
        };
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddress(bytes))
    }
}

/// What kind of link a [`Link`] is, with the settings that matter here.
///
/// ```no_run
/// use underlay::link::LinkKind;
/// use underlay::netlink::Netlink;
///
/// for link in Netlink::open()?.links()? {
///     if let Some(LinkKind::Vlan { id }) = link.kind {
///         println!("{} is tagged with VLAN {id}", link.name);
///     }
/// }
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkKind {
    /// A macvlan link.
    Macvlan {
        /// Its mode.
        mode: MacvlanMode,
    },
    /// An ipvlan link.
    Ipvlan {
        /// Its mode.
        mode: IpvlanMode,
        /// Its flag.
        flag: IpvlanFlag,
    },
    /// An 802.1q VLAN sub-interface.
    Vlan {
        /// The VLAN id (1-4094).
        id: u16,
    },
    /// A dummy link.
    Dummy,
    /// One end of a veth pair.
    Veth,
    /// Any other kind, by the kernel's name for it (`bridge`, `bond`, ...).
    Other(String),
}

/// A link as the kernel reports it.
///
/// ```no_run
/// use underlay::netlink::Netlink;
///
/// let eth0 = Netlink::open()?.link_by_name("eth0")?;
/// println!("#{} mtu {} up={} carrier={}", eth0.index, eth0.mtu, eth0.up, eth0.lower_up);
/// assert_eq!(eth0.kind, None); // a physical device
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Link {
    /// Interface index, unique within its namespace.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// The kind of a virtual link; `None` for a physical device or `lo`.
    pub kind: Option<LinkKind>,
    /// The index of the link this one sits on (`IFLA_LINK`), in the
    /// namespace the parent lives in.
    pub parent_index: Option<u32>,
    /// Hardware address.
    pub mac: Option<MacAddress>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`).
    pub lower_up: bool,
    /// The interface alias (`ip link set NAME alias TEXT`), if set.
    pub alias: Option<String>,
}

impl Link {
    pub(crate) fn from_message(message: LinkMessage) -> Result<Self> {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            kind: None,
            parent_index: None,
            mac: None,
            mtu: 0,
            up: message.header.flags.contains(LinkFlags::Up),
            lower_up: message.header.flags.contains(LinkFlags::LowerUp),
            alias: None,
        };
        let mut kind = None;
        let mut data = None;
        for attribute in message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::Mtu(mtu) => link.mtu = mtu,
                LinkAttribute::IfAlias(alias) if !alias.is_empty() => link.alias = Some(alias),
                LinkAttribute::Link(parent) if parent != 0 => link.parent_index = Some(parent),
                LinkAttribute::Address(bytes) => {
                    link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddress)
                }
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => kind = Some(k),
                            LinkInfo::Data(d) => data = Some(d),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link.kind = kind.map(|k| link_kind(k, data));
        if link.name.is_empty() {
            return Err(Error::Protocol(format!(
                "link #{} reported without a name",
                link.index
            )));
        }
        Ok(link)
    }
}

fn link_kind(kind: InfoKind, data: Option<InfoData>) -> LinkKind {
    match kind {
        InfoKind::MacVlan => {
            let mut mode = MacvlanMode::default();
            if let Some(InfoData::MacVlan(infos)) = data {
                for info in infos {
                    if let InfoMacVlan::Mode(m) = info {
                        mode = MacvlanMode::from_kernel(m).unwrap_or_default();
                    }
                }
            }
            LinkKind::Macvlan { mode }
        }
        InfoKind::IpVlan => {
            let mut mode = IpvlanMode::default();
            let mut flag = IpvlanFlag::default();
            if let Some(InfoData::IpVlan(infos)) = data {
                for info in infos {
                    match info {
                        InfoIpVlan::Mode(m) => {
                            mode = IpvlanMode::from_kernel(m).unwrap_or_default()
                        }
                        InfoIpVlan::Flags(f) => {
                            flag = IpvlanFlag::from_kernel(f).unwrap_or_default()
                        }
                        _ => {}
                    }
                }
            }
            LinkKind::Ipvlan { mode, flag }
        }
        InfoKind::Vlan => {
            let mut id = 0;
            if let Some(InfoData::Vlan(infos)) = data {
                for info in infos {
                    if let InfoVlan::Id(i) = info {
                        id = i;
                    }
                }
            }
            LinkKind::Vlan { id }
        }
        InfoKind::Dummy => LinkKind::Dummy,
        InfoKind::Veth => LinkKind::Veth,
        other => LinkKind::Other(other.to_string()),
    }
}

/// What to create: a link's kind with its kind-specific settings.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NewLinkKind {
    Macvlan(MacvlanMode),
    Ipvlan(IpvlanMode, IpvlanFlag),
    Vlan(u16),
    Dummy,
    Veth { peer: String },
}

impl NewLinkKind {
    fn feature(&self) -> KernelFeature {
        match self {
            NewLinkKind::Macvlan(_) => KernelFeature::Macvlan,
            NewLinkKind::Ipvlan(..) => KernelFeature::Ipvlan,
            NewLinkKind::Vlan(_) => KernelFeature::Vlan,
            NewLinkKind::Dummy => KernelFeature::Dummy,
            NewLinkKind::Veth { .. } => KernelFeature::Veth,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            NewLinkKind::Macvlan(_) => "macvlan",
            NewLinkKind::Ipvlan(..) => "ipvlan",
            NewLinkKind::Vlan(_) => "vlan",
            NewLinkKind::Dummy => "dummy",
            NewLinkKind::Veth { .. } => "veth",
        }
    }
}

/// A link to create, built with one of the kind constructors and refined
/// with the setters.
///
/// ```
/// use underlay::link::{IpvlanFlag, IpvlanMode, NewLink};
///
/// let spec = NewLink::ipvlan("eth0", 4, IpvlanMode::L3, IpvlanFlag::Bridge).mtu(1500).up();
/// assert_eq!(spec.name(), "eth0");
/// ```
#[derive(Debug, Clone)]
pub struct NewLink<'a> {
    name: String,
    kind: NewLinkKind,
    parent: Option<u32>,
    netns: Option<&'a NetNs>,
    peer_netns: Option<&'a NetNs>,
    mtu: Option<u32>,
    mac: Option<MacAddress>,
    index: Option<u32>,
    up: bool,
}

impl<'a> NewLink<'a> {
    fn new(name: &str, kind: NewLinkKind, parent: Option<u32>) -> Self {
        NewLink {
            name: name.to_owned(),
            kind,
            parent,
            netns: None,
            peer_netns: None,
            mtu: None,
            mac: None,
            index: None,
            up: false,
        }
    }

    /// A macvlan link on the link with index `parent`.
    ///
    /// ```
    /// use underlay::link::{MacvlanMode, NewLink};
    ///
    /// let spec = NewLink::macvlan("eth0", 2, MacvlanMode::Bridge);
    /// assert_eq!(spec.name(), "eth0");
    /// assert!(spec.encode(1).windows(7).any(|w| w == b"macvlan"));
    /// ```
    pub fn macvlan(name: &str, parent: u32, mode: MacvlanMode) -> Self {
        Self::new(name, NewLinkKind::Macvlan(mode), Some(parent))
    }

    /// An ipvlan link on the link with index `parent`.
    ///
    /// ```
    /// use underlay::link::{IpvlanFlag, IpvlanMode, NewLink};
    ///
    /// let spec = NewLink::ipvlan("eth0", 2, IpvlanMode::L3, IpvlanFlag::Bridge);
    /// assert_eq!(spec.name(), "eth0");
    /// assert!(spec.encode(1).windows(6).any(|w| w == b"ipvlan"));
    /// ```
    pub fn ipvlan(name: &str, parent: u32, mode: IpvlanMode, flag: IpvlanFlag) -> Self {
        Self::new(name, NewLinkKind::Ipvlan(mode, flag), Some(parent))
    }

    /// An 802.1q VLAN sub-interface with id `vlan_id` on `parent`. The kernel
    /// checks the id (1-4094).
    ///
    /// ```
    /// use underlay::link::NewLink;
    ///
    /// // eth0.50 on eth0 (index 2), tagged with VLAN 50.
    /// let spec = NewLink::vlan("eth0.50", 2, 50);
    /// assert_eq!(spec.name(), "eth0.50");
    /// assert!(spec.encode(1).windows(4).any(|w| w == b"vlan"));
    /// ```
    pub fn vlan(name: &str, parent: u32, vlan_id: u16) -> Self {
        Self::new(name, NewLinkKind::Vlan(vlan_id), Some(parent))
    }

    /// A dummy link.
    ///
    /// ```
    /// use underlay::link::NewLink;
    ///
    /// let spec = NewLink::dummy("dm-3f2a9c61d0b4");
    /// assert_eq!(spec.name(), "dm-3f2a9c61d0b4");
    /// assert!(spec.encode(1).windows(5).any(|w| w == b"dummy"));
    /// ```
    pub fn dummy(name: &str) -> Self {
        Self::new(name, NewLinkKind::Dummy, None)
    }

    /// A veth pair: `name` here, `peer` as its other end.
    ///
    /// ```
    /// use underlay::link::NewLink;
    ///
    /// let spec = NewLink::veth("veth-web1", "eth0");
    /// assert_eq!(spec.name(), "veth-web1");
    /// // The peer's name travels in the same request.
    /// assert!(spec.encode(1).windows(4).any(|w| w == b"eth0"));
    /// ```
    pub fn veth(name: &str, peer: &str) -> Self {
        Self::new(
            name,
            NewLinkKind::Veth {
                peer: peer.to_owned(),
            },
            None,
        )
    }

    /// Creates the link straight inside `netns` instead of the socket's own
    /// namespace. The parent stays where it is.
    ///
    /// ```no_run
    /// use underlay::link::{MacvlanMode, NewLink};
    /// use underlay::{netlink::Netlink, netns::NetNs};
    ///
    /// let nl = Netlink::open()?;
    /// let web1 = NetNs::open("/run/netns/web1")?;
    /// let parent = nl.link_by_name("eth0")?.index;
    /// nl.create_link(&NewLink::macvlan("eth0", parent, MacvlanMode::Bridge).netns(&web1))?;
    /// assert!(web1.netlink()?.link_by_name("eth0").is_ok());
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn netns(mut self, netns: &'a NetNs) -> Self {
        self.netns = Some(netns);
        self
    }

    /// For a veth pair: puts the peer end in `netns`.
    ///
    /// ```no_run
    /// use underlay::link::NewLink;
    /// use underlay::{netlink::Netlink, netns::NetNs};
    ///
    /// // veth-web1 on the host, its peer as eth0 inside web1.
    /// let web1 = NetNs::open("/run/netns/web1")?;
    /// Netlink::open()?.create_link(&NewLink::veth("veth-web1", "eth0").peer_netns(&web1))?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn peer_netns(mut self, netns: &'a NetNs) -> Self {
        self.peer_netns = Some(netns);
        self
    }

    /// Sets the MTU.
    ///
    /// ```
    /// use underlay::link::{MacvlanMode, NewLink};
    ///
    /// let plain = NewLink::macvlan("eth0", 2, MacvlanMode::Bridge);
    /// let jumbo = plain.clone().mtu(9000);
    /// // IFLA_MTU: a 4-byte attribute header and the u32.
    /// assert_eq!(jumbo.encode(1).len(), plain.encode(1).len() + 8);
    /// ```
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Sets the MAC address.
    ///
    /// ```
    /// use underlay::link::{MacvlanMode, NewLink};
    ///
    /// let plain = NewLink::macvlan("eth0", 2, MacvlanMode::Bridge);
    /// let fixed = plain.clone().mac("02:42:ac:10:56:0a".parse()?);
    /// // IFLA_ADDRESS: a 4-byte header and six bytes, padded to 12.
    /// assert_eq!(fixed.encode(1).len(), plain.encode(1).len() + 12);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn mac(mut self, mac: MacAddress) -> Self {
        self.mac = Some(mac);
        self
    }

    /// Asks for the interface index `index` (1 to 2^31 - 1) in the
    /// namespace the link is made in, instead of the kernel's next free
    /// one. The kernel refuses an index in use there, or in the namespace
    /// of the socket that asks (`EEXIST` or `EBUSY`).
    ///
    /// ```
    /// use underlay::link::{MacvlanMode, NewLink};
    ///
    /// let spec = NewLink::macvlan("eth0", 2, MacvlanMode::Bridge).index(1 << 24);
    /// // ifi_index follows the 16-byte netlink header and 4 bytes of ifinfomsg.
    /// let bytes = spec.encode(1);
    /// assert_eq!(i32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 1 << 24);
    /// ```
    pub fn index(mut self, index: u32) -> Self {
        self.index = Some(index);
        self
    }

    /// Creates the link administratively up.
    ///
    /// ```
    /// use underlay::link::NewLink;
    ///
    /// // ifi_flags follows the 16-byte netlink header and 8 bytes of ifinfomsg.
    /// let flags = |b: Vec<u8>| u32::from_ne_bytes(b[24..28].try_into().unwrap());
    /// assert_eq!(flags(NewLink::dummy("dummy0").encode(1)), 0);
    /// assert_eq!(flags(NewLink::dummy("dummy0").up().encode(1)), libc::IFF_UP as u32);
    /// ```
    pub fn up(mut self) -> Self {
        self.up = true;
        self
    }

    /// The name the link will have.
    ///
    /// ```
    /// use underlay::link::NewLink;
    ///
    /// assert_eq!(NewLink::vlan("eth0.50", 2, 50).mtu(1500).name(), "eth0.50");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The request as it goes on the wire (`RTM_NEWLINK` with
    /// `NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK`), for tracing and
    /// benchmarks.
    ///
    /// ```
    /// use underlay::link::{MacvlanMode, NewLink};
    ///
    /// let bytes = NewLink::macvlan("eth0", 2, MacvlanMode::Bridge).encode(1);
    /// assert_eq!(u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize, bytes.len());
    /// ```
    pub fn encode(&self, sequence: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        crate::netlink::serialize(
            &mut out,
            RouteNetlinkMessage::NewLink(self.message(&self.name)),
            NLM_F_CREATE | NLM_F_EXCL | netlink_packet_core::NLM_F_ACK,
            sequence,
        );
        out
    }

    /// Turns the kernel's "Unknown device type" into
    /// [`Error::Unsupported`] for this kind.
    fn explain(&self, result: Result<()>) -> Result<()> {
        match result {
            Err(Error::Kernel {
                errno: libc::EOPNOTSUPP,
                message,
                ..
            }) if message
                .as_deref()
                .is_none_or(|m| m.contains("Unknown device type")) =>
            {
                Err(Error::Unsupported {
                    feature: self.kind.feature(),
                })
            }
            other => other,
        }
    }

    fn message(&self, name: &str) -> LinkMessage {
        let mut message = LinkMessage::default();
        if self.up {
            message.header.flags = LinkFlags::Up;
            message.header.change_mask = LinkFlags::Up;
        }
        if let Some(index) = self.index {
            message.header.index = index;
        }
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        if let Some(parent) = self.parent {
            message.attributes.push(LinkAttribute::Link(parent));
        }
        if let Some(mtu) = self.mtu {
            message.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = self.mac {
            message
                .attributes
                .push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(ns) = self.netns {
            message
                .attributes
                .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        }
        let (kind, data) = match &self.kind {
            NewLinkKind::Macvlan(mode) => (
                InfoKind::MacVlan,
                Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(mode.to_kernel())])),
            ),
            NewLinkKind::Ipvlan(mode, flag) => (
                InfoKind::IpVlan,
                Some(InfoData::IpVlan(vec![
                    InfoIpVlan::Mode(mode.to_kernel()),
                    InfoIpVlan::Flags(flag.to_kernel()),
                ])),
            ),
            NewLinkKind::Vlan(id) => (
                InfoKind::Vlan,
                Some(InfoData::Vlan(vec![InfoVlan::Id(*id)])),
            ),
            NewLinkKind::Dummy => (InfoKind::Dummy, None),
            NewLinkKind::Veth { peer } => {
                let mut peer_message = LinkMessage::default();
                peer_message
                    .attributes
                    .push(LinkAttribute::IfName(peer.clone()));
                if let Some(ns) = self.peer_netns {
                    peer_message
                        .attributes
                        .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
                }
                (
                    InfoKind::Veth,
                    Some(InfoData::Veth(InfoVeth::Peer(peer_message))),
                )
            }
        };
        let mut info = vec![LinkInfo::Kind(kind)];
        info.extend(data.map(LinkInfo::Data));
        message.attributes.push(LinkAttribute::LinkInfo(info));
        message
    }
}

/// Checks an interface name as the kernel would, before anything is sent.
///
/// # Errors
/// [`Error::InvalidArgument`] naming what is wrong with the name.
///
/// ```
/// assert!(underlay::link::validate_name("eth0.50").is_ok());
/// assert!(underlay::link::validate_name("a-name-that-is-too-long").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!(
            "it is {} bytes long; Linux allows at most {MAX_NAME_LEN}",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("it is reserved".to_owned())
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        Some("it contains '/', ':', whitespace or a control character".to_owned())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::invalid("interface name", name, reason)),
        None => Ok(()),
    }
}

/// How many temporary names to try when creating a link inside another
/// namespace under a temporary name.
const TEMPORARY_NAME_TRIES: usize = 4;

impl Netlink {
    /// Lists every link in the socket's namespace.
    ///
    /// # Errors
    /// [`Error::Kernel`] when the dump is refused, [`Error::Protocol`] when a reply
    /// cannot be read.
    ///
    /// ```no_run
    /// use underlay::netlink::Netlink;
    ///
    /// // ip link show
    /// for link in Netlink::open()?.links()? {
    ///     println!("{}: {} {:?} mtu {}", link.index, link.name, link.kind, link.mtu);
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn links(&self) -> Result<Vec<Link>> {
        self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), || {
            "list links".into()
        })?
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
            _ => None,
        })
        .collect()
    }

    /// Looks a link up by name; [`Error::LinkNotFound`] when there is none.
    ///
    /// # Errors
    /// [`Error::LinkNotFound`] when there is no such link; [`Error::InvalidArgument`]
    /// for a name the kernel would refuse; [`Error::Kernel`] otherwise.
    ///
    /// ```no_run
    /// use underlay::{netlink::Netlink, Error};
    ///
    /// match Netlink::open()?.link_by_name("eth0.50") {
    ///     Ok(link) => println!("eth0.50 is #{}", link.index),
    ///     Err(Error::LinkNotFound { .. }) => println!("no eth0.50 yet"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn link_by_name(&self, name: &str) -> Result<Link> {
        validate_name(name)?;
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        self.get_link(message, name.to_owned())
    }

    /// The index of the link called `name` in this socket's namespace, by
    /// `SIOCGIFINDEX` (no netlink round trip, no message to parse).
    ///
    /// # Errors
    /// [`Error::LinkNotFound`] when no link has that name.
    pub(crate) fn index_of(&self, name: &str) -> Result<u32> {
        validate_name(name)?;
        rustix::net::netdevice::name_to_index(self.fd(), name).map_err(|e| match e {
            rustix::io::Errno::NODEV => Error::LinkNotFound {
                link: name.to_owned(),
            },
            e => Error::io(format!("look up link {name}"), e.into()),
        })
    }

    /// Looks a link up by index; [`Error::LinkNotFound`] when there is none.
    ///
    /// # Errors
    /// [`Error::LinkNotFound`] when there is no such link; [`Error::Kernel`] otherwise.
    ///
    /// ```no_run
    /// use underlay::netlink::Netlink;
    ///
    /// // The parent of a macvlan link, by the index it reports.
    /// let nl = Netlink::open()?;
    /// let parent_index = nl.link_by_name("mv0")?.parent_index.expect("a macvlan has a parent");
    /// println!("mv0 sits on {}", nl.link_by_index(parent_index)?.name);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn link_by_index(&self, index: u32) -> Result<Link> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.get_link(message, format!("#{index}"))
    }

    fn get_link(&self, message: LinkMessage, what: String) -> Result<Link> {
        match self.get(RouteNetlinkMessage::GetLink(message), || {
            format!("get link {what}")
        }) {
            Ok(RouteNetlinkMessage::NewLink(link)) => Link::from_message(link),
            Ok(other) => Err(Error::Protocol(format!(
                "get link {what}: unexpected reply {other:?}"
            ))),
            Err(e) if e.errno() == Some(libc::ENODEV) => Err(Error::LinkNotFound { link: what }),
            Err(e) => Err(e),
        }
    }

    /// Creates a link. It fails with `EEXIST` when the name is taken in the
    /// namespace the link goes to, and with [`Error::Unsupported`] when the
    /// kernel cannot make that kind of link.
    ///
    /// When the link goes into another namespace, older kernels (Debian's
    /// 6.1 among them) also refuse a name that exists in the *socket's*
    /// namespace; the link is then created under a temporary name and
    /// renamed inside its namespace, so that `eth0` can be made in a
    /// container while the host has an `eth0` too.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the kernel cannot make that kind of link;
    /// [`Error::Kernel`] (`EEXIST` for a name taken, `ENODEV` for a missing parent);
    /// [`Error::InvalidArgument`] for a name the kernel would refuse.
    ///
    /// ```no_run
    /// use underlay::link::NewLink;
    /// use underlay::netlink::Netlink;
    ///
    /// // ip link add link eth0 name eth0.50 type vlan id 50
    /// let nl = Netlink::open()?;
    /// let eth0 = nl.link_by_name("eth0")?;
    /// nl.create_link(&NewLink::vlan("eth0.50", eth0.index, 50).up())?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn create_link(&self, spec: &NewLink<'_>) -> Result<()> {
        validate_name(&spec.name)?;
        if let NewLinkKind::Veth { peer } = &spec.kind {
            validate_name(peer)?;
        }
        match (self.create_link_named(spec, &spec.name), spec.netns) {
            (Err(e), Some(netns)) if e.errno() == Some(libc::EEXIST) => {
                self.create_link_renamed(spec, netns, e)
            }
            (result, _) => result,
        }
    }

    fn create_link_named(&self, spec: &NewLink<'_>, name: &str) -> Result<()> {
        let result = self.request(
            RouteNetlinkMessage::NewLink(spec.message(name)),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("create {} link {name:?}", spec.kind.name()),
        );
        spec.explain(result)
    }

    /// Creates several links in one round trip (each in the socket's own
    /// namespace and under its own name) and returns one result per link.
    pub(crate) fn create_links(&self, specs: &[NewLink<'_>]) -> Result<Vec<Result<()>>> {
        for spec in specs {
            validate_name(&spec.name)?;
        }
        let requests = specs
            .iter()
            .map(|spec| Request {
                message: RouteNetlinkMessage::NewLink(spec.message(&spec.name)),
                flags: NLM_F_CREATE | NLM_F_EXCL,
                operation: format!("create {} link {:?}", spec.kind.name(), spec.name),
            })
            .collect();
        Ok(self
            .batch(requests)?
            .into_iter()
            .zip(specs)
            .map(|(result, spec)| spec.explain(result))
            .collect())
    }

    /// The slow path of [`create_link`](Self::create_link): the name is taken
    /// either in the target namespace (a real conflict) or only in ours.
    fn create_link_renamed(
        &self,
        spec: &NewLink<'_>,
        netns: &NetNs,
        conflict: Error,
    ) -> Result<()> {
        let inside = netns.netlink()?;
        match inside.link_by_name(&spec.name) {
            Ok(_) => return Err(conflict),
            Err(Error::LinkNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        log::debug!(
            "{:?} exists in the creating namespace only; creating under a temporary name",
            spec.name
        );
        let mut last = conflict;
        for _ in 0..TEMPORARY_NAME_TRIES {
            let temporary = temporary_name()?;
            match self.create_link_named(spec, &temporary) {
                Ok(()) => {
                    let link = inside.link_by_name(&temporary)?;
                    if let Err(e) = inside.rename_link(link.index, &spec.name) {
                        if let Err(cleanup) = inside.delete_link(link.index) {
                            log::warn!("could not remove temporary link {temporary}: {cleanup}");
                        }
                        return Err(e);
                    }
                    return Ok(());
                }
                Err(e) if e.errno() == Some(libc::EEXIST) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Renames a link. Most kernels refuse to rename a link that is up.
    ///
    /// # Errors
    /// [`Error::Kernel`] when the kernel refuses (`EEXIST`: the name is taken);
    /// [`Error::InvalidArgument`] for a name the kernel would refuse.
    ///
    /// ```no_run
    /// use underlay::netlink::Netlink;
    ///
    /// let nl = Netlink::open()?;
    /// let link = nl.link_by_name("mv0")?;
    /// nl.set_link_up_by_index(link.index, false)?; // most kernels refuse otherwise
    /// nl.rename_link(link.index, "macvlan50")?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn rename_link(&self, index: u32, name: &str) -> Result<()> {
        validate_name(name)?;
        let mut message = LinkMessage::default();
        message.header.index = index;
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        self.request(RouteNetlinkMessage::SetLink(message), 0, || {
            format!("rename link #{index} to {name:?}")
        })
    }

    /// Brings a link up or down.
    ///
    /// # Errors
    /// [`Error::LinkNotFound`] or [`Error::Kernel`] when the kernel refuses.
    ///
    /// ```no_run
    /// use underlay::netlink::Netlink;
    ///
    /// // ip link set eth0.50 up
    /// let nl = Netlink::open()?;
    /// let index = nl.link_by_name("eth0.50")?.index;
    /// nl.set_link_up_by_index(index, true)?;
    /// assert!(nl.link_by_index(index)?.up);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn set_link_up_by_index(&self, index: u32, up: bool) -> Result<()> {
        let mut request = up_request(index);
        if !up {
            let RouteNetlinkMessage::SetLink(message) = &mut request.message else {
                unreachable!("up_request builds a SetLink");
            };
            message.header.flags = LinkFlags::empty();
            request.operation = format!("set link #{index} down");
        }
        self.run(request)
    }

    /// Sets (or, with an empty string, clears) a link's alias. underlay
    /// marks the links it owns this way.
    ///
    /// # Errors
    /// [`Error::LinkNotFound`] or [`Error::Kernel`] when the kernel refuses.
    ///
    /// ```no_run
    /// use underlay::netlink::Netlink;
    ///
    /// let nl = Netlink::open()?;
    /// let index = nl.link_by_name("eth1")?.index; // not one of underlay's links
    /// nl.set_alias(index, "uplink to rack switch")?;
    /// assert_eq!(nl.link_by_index(index)?.alias.as_deref(), Some("uplink to rack switch"));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn set_alias(&self, index: u32, alias: &str) -> Result<()> {
        self.run(alias_request(index, alias))
    }

    /// Sends one [`Request`] and waits for its ACK.
    fn run(&self, request: Request) -> Result<()> {
        let operation = request.operation;
        self.request(request.message, request.flags, || operation)
    }

    /// Sets a link's MTU.
    ///
    /// # Errors
    /// [`Error::LinkNotFound`] or [`Error::Kernel`] when the kernel refuses (`EINVAL`
    /// for an MTU the link or its parent cannot carry).
    ///
    /// ```no_run
    /// use underlay::netlink::Netlink;
    ///
    /// let nl = Netlink::open()?;
    /// let index = nl.link_by_name("eth0.50")?.index;
    /// nl.set_mtu(index, 1400)?;
    /// assert_eq!(nl.link_by_index(index)?.mtu, 1400);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::Mtu(mtu));
        self.request(RouteNetlinkMessage::SetLink(message), 0, || {
            format!("set the MTU of link #{index} to {mtu}")
        })
    }

    /// Sets a link's MAC address.
    ///
    /// # Errors
    /// [`Error::LinkNotFound`] or [`Error::Kernel`] when the kernel refuses (ipvlan
    /// links refuse any MAC address of their own).
    ///
    /// ```no_run
    /// use underlay::link::MacAddress;
    /// use underlay::netlink::Netlink;
    ///
    /// let nl = Netlink::open()?;
    /// let index = nl.link_by_name("mv0")?.index;
    /// let mac: MacAddress = "02:42:ac:10:56:0a".parse()?;
    /// nl.set_mac(index, mac)?;
    /// assert_eq!(nl.link_by_index(index)?.mac, Some(mac));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn set_mac(&self, index: u32, mac: MacAddress) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message
            .attributes
            .push(LinkAttribute::Address(mac.0.to_vec()));
        self.request(RouteNetlinkMessage::SetLink(message), 0, || {
            format!("set the MAC address of link #{index} to {mac}")
        })
    }

    /// Turns `arp_notify` on for a link: the kernel then sends a gratuitous
    /// ARP when the link comes up or its address changes. This goes through
    /// netlink (`IFLA_AF_SPEC`), not `/proc/sys`.
    ///
    /// # Errors
    /// [`Error::LinkNotFound`] or [`Error::Kernel`] when the kernel refuses.
    ///
    /// ```no_run
    /// use underlay::netns::NetNs;
    ///
    /// // Announce web1's address to the LAN when its eth0 comes up.
    /// let nl = NetNs::open("/run/netns/web1")?.netlink()?;
    /// let eth0 = nl.link_by_name("eth0")?;
    /// nl.set_arp_notify(eth0.index)?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn set_arp_notify(&self, index: u32) -> Result<()> {
        self.run(arp_notify_request(index))
    }

    /// Deletes a link. Deleting a parent deletes its macvlan, ipvlan and
    /// VLAN children with it.
    ///
    /// # Errors
    /// [`Error::LinkNotFound`] when the link is gone already; [`Error::Kernel`]
    /// when the kernel refuses.
    ///
    /// ```no_run
    /// use underlay::netlink::Netlink;
    ///
    /// // ip link del eth0.50: its macvlan children go with it.
    /// let nl = Netlink::open()?;
    /// nl.delete_link(nl.link_by_name("eth0.50")?.index)?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn delete_link(&self, index: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(message), 0, || {
            format!("delete link #{index}")
        })
        .map_err(|e| match e.errno() {
            Some(libc::ENODEV) => Error::LinkNotFound {
                link: format!("#{index}"),
            },
            _ => e,
        })
    }
}

/// A request that sets a link's alias.
pub(crate) fn alias_request(index: u32, alias: &str) -> Request {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message
        .attributes
        .push(LinkAttribute::IfAlias(alias.to_owned()));
    Request {
        message: RouteNetlinkMessage::SetLink(message),
        flags: 0,
        operation: format!("set the alias of link #{index}"),
    }
}

/// A request that brings a link up.
pub(crate) fn up_request(index: u32) -> Request {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.change_mask = LinkFlags::Up;
    message.header.flags = LinkFlags::Up;
    Request {
        message: RouteNetlinkMessage::SetLink(message),
        flags: 0,
        operation: format!("set link #{index} up"),
    }
}

/// A request that sets a link "protocol down" (`ip link set protodown
/// on`): its carrier goes and it sends and receives nothing, with no wait
/// for the kernel (bringing a link down waits for an RCU grace period).
/// macvlan takes it; links that do not refuse it with `EOPNOTSUPP`.
pub(crate) fn protodown_request(index: u32) -> Request {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes.push(LinkAttribute::ProtoDown(1));
    Request {
        message: RouteNetlinkMessage::SetLink(message),
        flags: 0,
        operation: format!("set link #{index} protodown"),
    }
}

/// A request that turns `arp_notify` on for a link.
pub(crate) fn arp_notify_request(index: u32) -> Request {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes.push(LinkAttribute::Other(ipv4_devconf(
        IPV4_DEVCONF_ARP_NOTIFY,
        1,
    )));
    Request {
        message: RouteNetlinkMessage::SetLink(message),
        flags: 0,
        operation: format!("turn on arp_notify on link #{index}"),
    }
}

/// `IPV4_DEVCONF_ARP_NOTIFY` (1-based index in `IFLA_INET_CONF`).
const IPV4_DEVCONF_ARP_NOTIFY: u16 = 22;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_INET_CONF: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;

/// `IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { key: value } } }`: sets one
/// IPv4 device setting and leaves the others alone.
fn ipv4_devconf(key: u16, value: u32) -> DefaultNla {
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + value.len());
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }
    let setting = nla(key, &value.to_ne_bytes());
    let conf = nla(IFLA_INET_CONF | NLA_F_NESTED, &setting);
    let inet = nla(libc::AF_INET as u16 | NLA_F_NESTED, &conf);
    DefaultNla::new(IFLA_AF_SPEC | NLA_F_NESTED, inet)
}

fn temporary_name() -> Result<String> {
    let mut bytes = [0u8; 5];
    crate::random::fill(&mut bytes)?;
    Ok(format!(
        "ul{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Nla};
    use netlink_packet_route::link::MacVlanMode as NlMacVlanMode;

    #[test]
    fn mac_addresses_round_trip_and_reject_garbage() {
        let mac: MacAddress = "aa:bb:cc:0:1:ff".parse().unwrap();
        assert_eq!(mac.to_string(), "aa:bb:cc:00:01:ff");
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "zz:bb:cc:dd:ee:ff",
            "aaa:b:c:d:e:f",
        ] {
            let err = bad.parse::<MacAddress>().unwrap_err();
            assert!(err.to_string().contains("MAC address"), "{err}");
        }
        let random = MacAddress::random_local().unwrap();
        assert!(random.is_locally_administered() && random.is_unicast());
    }

    #[test]
    fn names_are_checked_like_the_kernel_does() {
        for good in ["eth0", "eth0.50", "a", "fifteen-chars-x"] {
            validate_name(good).unwrap();
        }
        for bad in ["", "sixteen-chars-xx", "a/b", "a b", ".", "..", "eth0:1"] {
            let err = validate_name(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { .. }));
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn macvlan_message_carries_mode_parent_and_netns_free() {
        let message = NewLink::macvlan("mv0", 7, MacvlanMode::Vepa)
            .mtu(1400)
            .message("mv0");
        assert!(message.attributes.contains(&LinkAttribute::Link(7)));
        assert!(message.attributes.contains(&LinkAttribute::Mtu(1400)));
        let info = message
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(info[0], LinkInfo::Kind(InfoKind::MacVlan));
        assert_eq!(
            info[1],
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                NlMacVlanMode::Vepa
            )]))
        );
        // Reading our own message back gives the same kind.
        let mut read = message.clone();
        read.header.index = 3;
        let link = Link::from_message(read).unwrap();
        assert_eq!(
            link.kind,
            Some(LinkKind::Macvlan {
                mode: MacvlanMode::Vepa
            })
        );
        assert_eq!(link.parent_index, Some(7));
    }

    #[test]
    fn ipvlan_flags_and_vlan_id_round_trip() {
        for (mode, flag) in [
            (IpvlanMode::L2, IpvlanFlag::Bridge),
            (IpvlanMode::L3, IpvlanFlag::Private),
            (IpvlanMode::L3s, IpvlanFlag::Vepa),
        ] {
            let mut m = NewLink::ipvlan("iv0", 2, mode, flag).message("iv0");
            m.header.index = 9;
            assert_eq!(
                Link::from_message(m).unwrap().kind,
                Some(LinkKind::Ipvlan { mode, flag })
            );
        }
        let mut m = NewLink::vlan("eth0.50", 2, 50).message("eth0.50");
        m.header.index = 9;
        assert_eq!(
            Link::from_message(m).unwrap().kind,
            Some(LinkKind::Vlan { id: 50 })
        );
    }

    #[test]
    fn arp_notify_attribute_is_nested_three_deep() {
        let nla = ipv4_devconf(IPV4_DEVCONF_ARP_NOTIFY, 1);
        let mut bytes = vec![0; nla.buffer_len()];
        nla.emit(&mut bytes);
        // AF_SPEC(20) > AF_INET(16) > INET_CONF(12) > ARP_NOTIFY(8) = u32 1
        assert_eq!(bytes.len(), 20);
        assert_eq!(
            u16::from_ne_bytes([bytes[2], bytes[3]]) & !NLA_F_NESTED,
            IFLA_AF_SPEC
        );
        assert_eq!(u16::from_ne_bytes([bytes[6], bytes[7]]) & !NLA_F_NESTED, 2);
        assert_eq!(
            u16::from_ne_bytes([bytes[14], bytes[15]]),
            IPV4_DEVCONF_ARP_NOTIFY
        );
        assert_eq!(u32::from_ne_bytes(bytes[16..20].try_into().unwrap()), 1);
        assert_eq!(nla.kind() & !NLA_F_NESTED, IFLA_AF_SPEC);
    }
}
