//! IP addresses on links.
//!
//! ```no_run
//! use underlay::netlink::Netlink;
//!
//! let nl = Netlink::open()?;
//! let eth0 = nl.link_by_name("eth0")?;
//! nl.add_address(eth0.index, "192.168.1.10/24".parse().unwrap())?;
//! // IPv6 without duplicate address detection: usable at once.
//! nl.add_address_nodad(eth0.index, "fd11::10/64".parse().unwrap())?;
//! for a in nl.addresses(Some(eth0.index))? {
//!     println!("{} tentative={}", a.address, a.tentative);
//! }
//! # Ok::<(), underlay::Error>(())
//! ```

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::netlink::Netlink;
use crate::{Error, Result};

/// An address as the kernel reports it.
///
/// ```no_run
/// use underlay::netlink::Netlink;
///
/// let nl = Netlink::open()?;
/// let eth0 = nl.link_by_name("eth0")?;
/// for a in nl.addresses(Some(eth0.index))? {
///     assert_eq!(a.link_index, eth0.index);
///     println!("{} tentative={} dad_failed={}", a.address, a.tentative, a.dad_failed);
/// }
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Address {
    /// The link it is on.
    pub link_index: u32,
    /// The address with its prefix length.
    pub address: IpNet,
    /// Added without duplicate address detection (`IFA_F_NODAD`).
    pub nodad: bool,
    /// Still undergoing duplicate address detection, so not yet usable.
    pub tentative: bool,
    /// Duplicate address detection failed.
    pub dad_failed: bool,
    /// Link-local scope (`fe80::/64` and the like).
    pub link_scope: bool,
}

/// Builds the request that adds (or deletes) `address` on link `index`.
pub(crate) fn address_message(index: u32, address: IpNet, nodad: bool) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.index = index;
    message.header.prefix_len = address.prefix_len();
    message.header.family = match address {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    let ip = address.addr();
    if ip.is_ipv4() {
        message.attributes.push(AddressAttribute::Local(ip));
    }
    message.attributes.push(AddressAttribute::Address(ip));
    if nodad {
        message.header.flags = AddressHeaderFlags::Nodad;
        message
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    message
}

impl Netlink {
    /// Adds an address to a link.
    ///
    /// # Errors
    /// [`Error::Kernel`] when the kernel refuses the address (`EEXIST` when the link has it
    /// already, `ENODEV` when no link has that index); [`Error::Io`] or [`Error::Protocol`]
    /// when the netlink exchange itself fails.
    ///
    /// ```no_run
    /// use underlay::netns::NetNs;
    ///
    /// let nl = NetNs::open("/run/netns/web1")?.netlink()?;
    /// let eth0 = nl.link_by_name("eth0")?;
    /// nl.add_address(eth0.index, "172.16.86.10/24".parse().unwrap())?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn add_address(&self, index: u32, address: IpNet) -> Result<()> {
        self.add_address_with(index, address, false)
    }

    /// Adds an address without duplicate address detection, so that an IPv6
    /// address is usable at once instead of after a second or two.
    ///
    /// # Errors
    /// As [`add_address`](Self::add_address): [`Error::Kernel`] when the kernel refuses the
    /// address (`EEXIST`, `ENODEV`); [`Error::Io`] or [`Error::Protocol`] when the netlink
    /// exchange fails.
    ///
    /// ```no_run
    /// use underlay::netns::NetNs;
    ///
    /// let nl = NetNs::open("/run/netns/web1")?.netlink()?;
    /// let eth0 = nl.link_by_name("eth0")?;
    /// nl.add_address_nodad(eth0.index, "2001:db8:abc8::10/64".parse().unwrap())?;
    /// let addresses = nl.addresses(Some(eth0.index))?;
    /// assert!(addresses.iter().any(|a| a.nodad && !a.tentative));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn add_address_nodad(&self, index: u32, address: IpNet) -> Result<()> {
        self.add_address_with(index, address, true)
    }

    fn add_address_with(&self, index: u32, address: IpNet, nodad: bool) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewAddress(address_message(index, address, nodad)),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("add address {address} to link #{index}"),
        )
    }

    /// Removes an address from a link.
    ///
    /// # Errors
    /// [`Error::Kernel`] when the kernel refuses (`EADDRNOTAVAIL` when the link does not have
    /// the address, `ENODEV` when no link has that index); [`Error::Io`] or [`Error::Protocol`]
    /// when the netlink exchange fails.
    ///
    /// ```no_run
    /// use ipnet::IpNet;
    /// use underlay::netns::NetNs;
    ///
    /// let nl = NetNs::open("/run/netns/web1")?.netlink()?;
    /// let eth0 = nl.link_by_name("eth0")?;
    /// let address: IpNet = "172.16.86.10/24".parse().unwrap();
    /// nl.delete_address(eth0.index, address)?;
    /// assert!(nl.addresses(Some(eth0.index))?.iter().all(|a| a.address != address));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn delete_address(&self, index: u32, address: IpNet) -> Result<()> {
        self.request(
            RouteNetlinkMessage::DelAddress(address_message(index, address, false)),
            0,
            || format!("delete address {address} from link #{index}"),
        )
    }

    /// Lists addresses, of one link or of all.
    ///
    /// # Errors
    /// [`Error::Kernel`] when the kernel refuses the dump; [`Error::Io`] when the socket fails;
    /// [`Error::Protocol`] for a reply that does not parse or a dump interrupted too often.
    ///
    /// ```no_run
    /// use underlay::netlink::Netlink;
    ///
    /// // Every IPv4 address on the host, like `ip -4 addr`.
    /// for a in Netlink::open()?.addresses(None)? {
    ///     if a.address.addr().is_ipv4() {
    ///         println!("#{} {}", a.link_index, a.address);
    ///     }
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn addresses(&self, link_index: Option<u32>) -> Result<Vec<Address>> {
        let mut request = AddressMessage::default();
        if let Some(index) = link_index {
            request.header.index = index;
        }
        let messages = self.dump(RouteNetlinkMessage::GetAddress(request), || {
            "list addresses".into()
        })?;
        let mut out = Vec::new();
        for message in messages {
            let RouteNetlinkMessage::NewAddress(message) = message else {
                continue;
            };
            if link_index.is_some_and(|i| i != message.header.index) {
                continue;
            }
            if let Some(address) = parse_address(message)? {
                out.push(address);
            }
        }
        Ok(out)
    }
}

fn parse_address(message: AddressMessage) -> Result<Option<Address>> {
    let mut flags = AddressFlags::from_bits_retain(message.header.flags.bits() as u32);
    let mut ip: Option<IpAddr> = None;
    let mut local: Option<IpAddr> = None;
    for attribute in message.attributes {
        match attribute {
            AddressAttribute::Address(a) => ip = Some(a),
            AddressAttribute::Local(a) => local = Some(a),
            AddressAttribute::Flags(f) => flags = f,
            _ => {}
        }
    }
    // For IPv4, IFA_LOCAL is the interface's own address (IFA_ADDRESS is the
    // peer on point-to-point links).
    let Some(ip) = local.or(ip) else {
        return Ok(None);
    };
    let address = IpNet::new(ip, message.header.prefix_len).map_err(|_| {
        Error::Protocol(format!(
            "address {ip} with prefix length {}",
            message.header.prefix_len
        ))
    })?;
    Ok(Some(Address {
        link_index: message.header.index,
        address,
        nodad: flags.contains(AddressFlags::Nodad),
        tentative: flags.contains(AddressFlags::Tentative),
        dad_failed: flags.contains(AddressFlags::Dadfailed),
        link_scope: message.header.scope == AddressScope::Link,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_sets_local_and_ipv6_nodad_sets_both_flag_fields() {
        let v4 = address_message(3, "10.0.0.2/24".parse().unwrap(), false);
        assert_eq!(v4.header.prefix_len, 24);
        assert!(v4
            .attributes
            .contains(&AddressAttribute::Local("10.0.0.2".parse().unwrap())));
        let v6 = address_message(3, "fd11::3/64".parse().unwrap(), true);
        assert_eq!(v6.header.family, AddressFamily::Inet6);
        assert!(v6.header.flags.contains(AddressHeaderFlags::Nodad));
        assert!(v6
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
        let parsed = parse_address(v6).unwrap().unwrap();
        assert!(parsed.nodad && !parsed.tentative);
        assert_eq!(parsed.address, "fd11::3/64".parse::<IpNet>().unwrap());
    }
}
