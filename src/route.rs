//! Routes in the main table: the default routes that endpoints need.
//!
//! Two forms of default route exist here, as in Docker's drivers:
//! `default via GATEWAY dev IF` for macvlan and ipvlan L2, and
//! `default dev IF scope link` for ipvlan L3, where there is no gateway to
//! resolve.
//!
//! ```no_run
//! use underlay::netlink::Netlink;
//! use underlay::route::{IpFamily, NewRoute};
//!
//! let nl = Netlink::open()?;
//! let eth0 = nl.link_by_name("eth0")?;
//! nl.add_route(&NewRoute::default_via("172.16.86.1".parse().unwrap(), eth0.index))?;
//! nl.add_route(&NewRoute::default_dev(IpFamily::V6, eth0.index).metric(1024))?;
//! for r in nl.routes(IpFamily::V4)? {
//!     println!("{r:?}");
//! }
//! # Ok::<(), underlay::Error>(())
//! ```

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::netlink::{Netlink, Request};
use crate::{Error, Result};

pub use crate::family::IpFamily;

/// The netlink address family of an IP family.
fn netlink_family(family: IpFamily) -> AddressFamily {
    match family {
        IpFamily::V4 => AddressFamily::Inet,
        IpFamily::V6 => AddressFamily::Inet6,
    }
}

/// A route to add or delete.
///
/// ```
/// use underlay::route::{IpFamily, NewRoute};
///
/// let via = NewRoute::default_via("2001:db8:abc2::22".parse().unwrap(), 2);
/// assert_eq!(via.family(), IpFamily::V6);
/// let dev = NewRoute::default_dev(IpFamily::V4, 2).metric(99);
/// assert_eq!(dev.family(), IpFamily::V4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoute {
    family: IpFamily,
    destination: Option<IpNet>,
    gateway: Option<IpAddr>,
    oif: u32,
    metric: Option<u32>,
    /// The routing protocol it is made (and deleted) as; `None`: `boot`,
    /// as `ip route` makes it.
    protocol: Option<u8>,
}

impl NewRoute {
    /// `default via GATEWAY dev IF`.
    ///
    /// ```
    /// use underlay::route::{IpFamily, NewRoute};
    ///
    /// // default via 172.16.86.1 dev #2
    /// let route = NewRoute::default_via("172.16.86.1".parse().unwrap(), 2);
    /// assert_eq!(route.family(), IpFamily::V4);
    /// // The gateway travels in the request as RTA_GATEWAY.
    /// assert!(route.encode(1).windows(4).any(|w| w == [172, 16, 86, 1]));
    /// ```
    pub fn default_via(gateway: IpAddr, oif: u32) -> Self {
        NewRoute {
            family: IpFamily::of(gateway),
            destination: None,
            gateway: Some(gateway),
            oif,
            metric: None,
            protocol: None,
        }
    }

    /// `default dev IF` (with link scope for IPv4): everything is sent
    /// straight out of the link, as ipvlan L3 needs.
    ///
    /// ```
    /// use underlay::route::{IpFamily, NewRoute};
    ///
    /// // ipvlan L3: default dev eth0, with no gateway to resolve.
    /// let dev = NewRoute::default_dev(IpFamily::V4, 2);
    /// let via = NewRoute::default_via("172.16.86.1".parse().unwrap(), 2);
    /// assert_eq!(dev.family(), IpFamily::V4);
    /// assert_eq!(dev.encode(1).len() + 8, via.encode(1).len()); // no RTA_GATEWAY
    /// ```
    pub fn default_dev(family: IpFamily, oif: u32) -> Self {
        NewRoute {
            family,
            destination: None,
            gateway: None,
            oif,
            metric: None,
            protocol: None,
        }
    }

    /// A route to `destination` straight out of the link.
    ///
    /// ```
    /// use underlay::route::{IpFamily, NewRoute};
    ///
    /// // 192.168.50.0/24 dev #3
    /// let route = NewRoute::to_dev("192.168.50.0/24".parse().unwrap(), 3);
    /// assert_eq!(route.family(), IpFamily::V4);
    /// assert_ne!(route, NewRoute::default_dev(IpFamily::V4, 3));
    /// ```
    pub fn to_dev(destination: IpNet, oif: u32) -> Self {
        NewRoute {
            family: IpFamily::of(destination.addr()),
            destination: Some(destination),
            gateway: None,
            oif,
            metric: None,
            protocol: None,
        }
    }

    /// A route to `destination` through `gateway`.
    ///
    /// ```
    /// use underlay::route::{IpFamily, NewRoute};
    ///
    /// // 192.168.50.0/24 via 10.1.2.254 dev #3
    /// let route = NewRoute::to_via("192.168.50.0/24".parse().unwrap(), "10.1.2.254".parse().unwrap(), 3);
    /// assert_eq!(route.destination().unwrap().to_string(), "192.168.50.0/24");
    /// assert_eq!(route.gateway(), Some("10.1.2.254".parse().unwrap()));
    /// ```
    pub fn to_via(destination: IpNet, gateway: IpAddr, oif: u32) -> Self {
        NewRoute {
            family: IpFamily::of(destination.addr()),
            destination: Some(destination),
            gateway: Some(gateway),
            oif,
            metric: None,
            protocol: None,
        }
    }

    /// The destination; `None` for a default route.
    pub fn destination(&self) -> Option<IpNet> {
        self.destination
    }

    /// The next hop, if any.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.gateway
    }

    /// Sets the metric (priority); lower wins.
    ///
    /// ```
    /// use underlay::route::{IpFamily, NewRoute};
    ///
    /// let plain = NewRoute::default_dev(IpFamily::V6, 2);
    /// let backup = plain.clone().metric(1024);
    /// // RTA_PRIORITY: a 4-byte attribute header and the u32.
    /// assert_eq!(backup.encode(1).len(), plain.encode(1).len() + 8);
    /// ```
    pub fn metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    /// Makes it as routing protocol `protocol` (`proto` in `ip route`),
    /// and deletes only a route of that protocol: how the routes underlay
    /// owns are told from anyone else's to the same place.
    pub(crate) fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// The route's address family.
    ///
    /// ```
    /// use underlay::route::{IpFamily, NewRoute};
    ///
    /// let route = NewRoute::default_via("2001:db8:abc8::1".parse().unwrap(), 2);
    /// assert_eq!(route.family(), IpFamily::V6);
    /// ```
    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// The request that adds this route as it goes on the wire
    /// (`RTM_NEWROUTE`), for tracing and benchmarks.
    ///
    /// ```
    /// use underlay::route::{IpFamily, NewRoute};
    ///
    /// let bytes = NewRoute::default_dev(IpFamily::V4, 2).encode(1);
    /// assert!(bytes.len() > 16);
    /// ```
    pub fn encode(&self, sequence: u32) -> Vec<u8> {
        let request = self.request();
        let mut out = Vec::with_capacity(64);
        crate::netlink::serialize(
            &mut out,
            request.message,
            request.flags | netlink_packet_core::NLM_F_ACK,
            sequence,
        );
        out
    }

    /// The request that adds this route.
    pub(crate) fn request(&self) -> Request {
        Request {
            message: RouteNetlinkMessage::NewRoute(self.message()),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            operation: format!("add route {}", describe(self)),
        }
    }

    pub(crate) fn message(&self) -> RouteMessage {
        // A route without a gateway reaches hosts directly on the link; the
        // kernel ignores the scope of IPv6 routes.
        let scope = if self.gateway.is_none() && self.family == IpFamily::V4 {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
        let mut header = RouteHeader {
            address_family: netlink_family(self.family),
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: self
                .protocol
                .map_or(RouteProtocol::Boot, RouteProtocol::from),
            kind: RouteType::Unicast,
            scope,
            ..RouteHeader::default()
        };
        let mut message = RouteMessage::default();
        if let Some(destination) = self.destination {
            header.destination_prefix_length = destination.prefix_len();
            message
                .attributes
                .push(RouteAttribute::Destination(destination.addr().into()));
        }
        message.header = header;
        if let Some(gateway) = self.gateway {
            message
                .attributes
                .push(RouteAttribute::Gateway(gateway.into()));
        }
        message.attributes.push(RouteAttribute::Oif(self.oif));
        if let Some(metric) = self.metric {
            message.attributes.push(RouteAttribute::Priority(metric));
        }
        message
    }
}

/// A route in the main table, as the kernel reports it.
///
/// ```no_run
/// use underlay::{netns::NetNs, route::IpFamily};
///
/// // ip -6 route, inside web1
/// for r in NetNs::open("/run/netns/web1")?.netlink()?.routes(IpFamily::V6)? {
///     println!("{:?} via {:?} dev #{:?} metric {:?}", r.destination, r.gateway, r.oif, r.metric);
/// }
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    /// The family.
    pub family: IpFamily,
    /// The destination; `None` for a default route.
    pub destination: Option<IpNet>,
    /// The next hop, if any.
    pub gateway: Option<IpAddr>,
    /// The outgoing link.
    pub oif: Option<u32>,
    /// The metric.
    pub metric: Option<u32>,
    /// The preferred source address (`src`), as the kernel sets it on the
    /// routes of a link's own subnets.
    pub source: Option<IpAddr>,
    /// Link scope (`scope link`).
    pub link_scope: bool,
    /// The routing protocol that made it (`proto`): 2 the kernel, 3
    /// `boot` (`ip route`'s default), 4 `static`; underlay's host routes
    /// through a network's shim,
    /// [`HOST_ROUTE_PROTOCOL`](crate::shim::HOST_ROUTE_PROTOCOL).
    pub protocol: u8,
}

impl Route {
    /// Whether this is a default route.
    ///
    /// ```no_run
    /// use underlay::{netns::NetNs, route::IpFamily};
    ///
    /// let nl = NetNs::open("/run/netns/web1")?.netlink()?;
    /// let default = nl.routes(IpFamily::V4)?.into_iter().find(|r| r.is_default());
    /// assert_eq!(default.and_then(|r| r.gateway), Some("172.16.86.1".parse().unwrap()));
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn is_default(&self) -> bool {
        self.destination.is_none()
    }
}

impl Netlink {
    /// Adds a route; `EEXIST` if the same route is there already.
    ///
    /// # Errors
    /// [`Error::Kernel`] when the kernel refuses the route (`EEXIST` when it is there already,
    /// `ENODEV` when no link has the index); [`Error::Io`] or [`Error::Protocol`] when the
    /// netlink exchange fails.
    ///
    /// ```no_run
    /// use underlay::{netns::NetNs, route::NewRoute};
    ///
    /// // ip route add default via 172.16.86.1 dev eth0, inside web1
    /// let nl = NetNs::open("/run/netns/web1")?.netlink()?;
    /// let eth0 = nl.link_by_name("eth0")?;
    /// nl.add_route(&NewRoute::default_via("172.16.86.1".parse().unwrap(), eth0.index))?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn add_route(&self, route: &NewRoute) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewRoute(route.message()),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("add route {}", describe(route)),
        )
    }

    /// Deletes a route.
    ///
    /// # Errors
    /// [`Error::Kernel`] when the kernel refuses (`ESRCH` when no such route exists);
    /// [`Error::Io`] or [`Error::Protocol`] when the netlink exchange fails.
    ///
    /// ```no_run
    /// use underlay::{netns::NetNs, route::NewRoute};
    ///
    /// let nl = NetNs::open("/run/netns/web1")?.netlink()?;
    /// let eth0 = nl.link_by_name("eth0")?;
    /// nl.delete_route(&NewRoute::default_via("172.16.86.1".parse().unwrap(), eth0.index))?;
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn delete_route(&self, route: &NewRoute) -> Result<()> {
        self.request(RouteNetlinkMessage::DelRoute(route.message()), 0, || {
            format!("delete route {}", describe(route))
        })
    }

    /// Lists the unicast routes of the main table for one family.
    ///
    /// # Errors
    /// [`Error::Kernel`] when the kernel refuses the dump; [`Error::Io`] when the socket fails;
    /// [`Error::Protocol`] for a reply that does not parse or a dump interrupted too often.
    ///
    /// ```no_run
    /// use underlay::{netlink::Netlink, route::IpFamily};
    ///
    /// // ip route show table main
    /// for r in Netlink::open()?.routes(IpFamily::V4)? {
    ///     println!("{:?} via {:?} src {:?}", r.destination, r.gateway, r.source);
    /// }
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn routes(&self, family: IpFamily) -> Result<Vec<Route>> {
        let mut request = RouteMessage::default();
        request.header.address_family = netlink_family(family);
        let messages = self.dump(RouteNetlinkMessage::GetRoute(request), || {
            "list routes".into()
        })?;
        let mut out = Vec::new();
        for message in messages {
            let RouteNetlinkMessage::NewRoute(message) = message else {
                continue;
            };
            let mut table = u32::from(message.header.table);
            let mut route = Route {
                family,
                destination: None,
                gateway: None,
                oif: None,
                metric: None,
                source: None,
                link_scope: message.header.scope == RouteScope::Link,
                protocol: message.header.protocol.into(),
            };
            for attribute in message.attributes {
                match attribute {
                    RouteAttribute::Destination(a) => {
                        route.destination = Some(
                            IpNet::new(ip_of(a)?, message.header.destination_prefix_length)
                                .map_err(|e| Error::Protocol(format!("route destination: {e}")))?,
                        )
                    }
                    RouteAttribute::Gateway(a) => route.gateway = Some(ip_of(a)?),
                    RouteAttribute::Oif(i) => route.oif = Some(i),
                    RouteAttribute::Priority(p) => route.metric = Some(p),
                    RouteAttribute::PrefSource(a) => route.source = Some(ip_of(a)?),
                    RouteAttribute::Table(t) => table = t,
                    _ => {}
                }
            }
            if table == u32::from(RouteHeader::RT_TABLE_MAIN)
                && message.header.kind == RouteType::Unicast
            {
                out.push(route);
            }
        }
        Ok(out)
    }
}

fn ip_of(address: RouteAddress) -> Result<IpAddr> {
    match address {
        RouteAddress::Inet(a) => Ok(a.into()),
        RouteAddress::Inet6(a) => Ok(a.into()),
        other => Err(Error::Protocol(format!(
            "unexpected route address {other:?}"
        ))),
    }
}

fn describe(route: &NewRoute) -> String {
    let destination = route
        .destination
        .map_or_else(|| "default".to_owned(), |d| d.to_string());
    match route.gateway {
        Some(gw) => format!("{destination} via {gw} dev #{}", route.oif),
        None => format!("{destination} dev #{}", route.oif),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dev_v4_has_link_scope_and_v6_does_not() {
        let v4 = NewRoute::default_dev(IpFamily::V4, 5).message();
        assert_eq!(v4.header.scope, RouteScope::Link);
        assert_eq!(v4.header.destination_prefix_length, 0);
        assert!(v4.attributes.contains(&RouteAttribute::Oif(5)));
        let v6 = NewRoute::default_dev(IpFamily::V6, 5)
            .metric(1024)
            .message();
        assert_eq!(v6.header.scope, RouteScope::Universe);
        assert!(v6.attributes.contains(&RouteAttribute::Priority(1024)));
    }

    #[test]
    fn default_via_carries_the_gateway() {
        let m = NewRoute::default_via("172.16.86.1".parse().unwrap(), 2).message();
        assert_eq!(m.header.address_family, AddressFamily::Inet);
        assert!(m
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(RouteAddress::Inet(g)) if g.to_string() == "172.16.86.1")));
    }
}
