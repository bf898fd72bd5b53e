//! The names underlay accepts, one rule each, checked before a name is
//! used anywhere, least of all in a path.
//!
//! | name | rule |
//! |---|---|
//! | network | Docker's: 1 to 64 of `A-Z a-z 0-9 _ . -`, starting with a letter or digit |
//! | endpoint name, DNS name (`--alias`) | a DNS name: labels of 1 to 63 of `A-Z a-z 0-9 _ -`, not starting or ending with `-`, joined by dots, 253 bytes at most |
//! | interface | the kernel's: see [`crate::link::validate_name`] |
//! | network id | 64 lower-case hexadecimal digits |
//! | host (state directory) id | 16 lower-case hexadecimal digits |
//!
//! Underscores are allowed in DNS names because container names have them
//! (`my_db`) and Docker's resolver answers for them.
//!
//! ```
//! use underlay::names;
//!
//! assert!(names::validate_network_name("macvlan_50.lan").is_ok());
//! assert!(names::validate_network_name("../../etc/x").is_err());
//! assert!(names::validate_dns_name("endpoint name", "web-1.db").is_ok());
//! assert!(names::validate_dns_name("endpoint name", "web1\n10.0.0.9 bank").is_err());
//! ```

use crate::{Error, Result};

/// Checks a network name (Docker's rule).
///
/// # Errors
/// [`Error::InvalidArgument`] saying the rule.
pub fn validate_network_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "network name",
            name,
            "use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        ))
    }
}

/// Checks a DNS name: an endpoint's name or one of its other DNS names;
/// `what` says which, for the error.
///
/// # Errors
/// [`Error::InvalidArgument`] saying the rule.
pub fn validate_dns_name(what: &'static str, name: &str) -> Result<()> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
    };
    if !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            name,
            "expected a DNS name: labels of 1 to 63 letters, digits, '_' or '-' (not starting or ending with '-'), joined by dots, 253 characters at most",
        ))
    }
}

/// Whether `id` is a network id: 64 lower-case hexadecimal digits.
pub(crate) fn is_network_id(id: &str) -> bool {
    is_hex(id, 64)
}

/// Whether `id` is a host (state directory) id: 16 lower-case hexadecimal
/// digits.
pub(crate) fn is_host_id(id: &str) -> bool {
    is_hex(id, 16)
}

/// Checks a host (state directory) id: 16 lower-case hexadecimal digits.
///
/// ```
/// use underlay::names;
///
/// assert!(names::validate_host_id("3f2a9c61d0b4e5a7").is_ok());
/// assert!(names::validate_host_id("../x").is_err());
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] saying the rule.
pub fn validate_host_id(id: &str) -> Result<()> {
    if is_host_id(id) {
        Ok(())
    } else {
        Err(Error::invalid(
            "host id",
            id,
            "expected 16 lower-case hexadecimal digits (a state directory's id)",
        ))
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused_and_ordinary_ones_accepted() {
        for good in ["pub_net", "macvlan50", "ipnet.210", "a", "0-net"] {
            validate_network_name(good).unwrap();
        }
        let long = "n".repeat(65);
        for bad in [
            "", "..", "../x", "a/b", ".hidden", "-x", "_x", "a b", "a\nb", "é", &long,
        ] {
            assert!(validate_network_name(bad).is_err(), "{bad:?}");
        }
        for good in ["web1", "my_db", "web-1.example", "a", "x.y.z"] {
            validate_dns_name("endpoint name", good).unwrap();
        }
        let long_label = "a".repeat(64);
        let long_name = ["a"; 130].join(".");
        for bad in [
            "",
            "a\nb",
            "a b",
            "-web",
            "web-",
            "a..b",
            ".a",
            "a.",
            "a/b",
            "a:b",
            "ä",
            &long_label,
            &long_name,
            "a\tb",
            "a\0b",
        ] {
            let err = validate_dns_name("DNS name", bad).unwrap_err();
            assert!(err.to_string().contains("DNS name"), "{bad:?}: {err}");
        }
        assert!(is_network_id(&"ab".repeat(32)));
        assert!(!is_network_id(&"AB".repeat(32)));
        assert!(!is_network_id("../precious"));
        assert!(is_host_id("3f2a9c61d0b4e857"));
        assert!(!is_host_id("3f2a9c61d0b4e85"));
    }
}
