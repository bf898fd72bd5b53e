//! IP address families.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// An IP address family.
///
/// ```
/// use std::net::IpAddr;
/// use underlay::IpFamily;
///
/// let addr: IpAddr = "fd11::3".parse().unwrap();
/// assert_eq!(IpFamily::of(addr), IpFamily::V6);
/// assert_eq!(IpFamily::V4.to_string(), "IPv4");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of an address.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use underlay::IpFamily;
    ///
    /// assert_eq!(IpFamily::of(Ipv4Addr::LOCALHOST.into()), IpFamily::V4);
    /// ```
    pub fn of(address: IpAddr) -> IpFamily {
        match address {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// The family of a prefix.
    ///
    /// ```
    /// use underlay::IpFamily;
    ///
    /// let subnet: ipnet::IpNet = "192.168.1.0/24".parse().unwrap();
    /// assert_eq!(IpFamily::of_prefix(&subnet), IpFamily::V4);
    /// ```
    pub fn of_prefix(prefix: &IpNet) -> IpFamily {
        IpFamily::of(prefix.addr())
    }

    /// The number of bits in an address of this family (32 or 128).
    ///
    /// ```
    /// use underlay::IpFamily;
    ///
    /// assert_eq!(IpFamily::V6.bits(), 128);
    /// ```
    pub fn bits(self) -> u8 {
        match self {
            IpFamily::V4 => 32,
            IpFamily::V6 => 128,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            IpFamily::V4 => 0,
            IpFamily::V6 => 1,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}
