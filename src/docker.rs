//! Docker's command-line vocabulary, so runtimes and tools can pass `docker
//! network create` arguments through unchanged.
//!
//! ```
//! use underlay::docker::network_create_args;
//!
//! let spec = network_create_args([
//!     "-d", "macvlan",
//!     "--subnet=172.16.86.0/24",
//!     "--gateway=172.16.86.1",
//!     "-o", "parent=eth0",
//!     "pub_net",
//! ])?
//! .build()?;
//! assert_eq!(spec.name(), "pub_net");
//! assert_eq!(spec.parent(), Some("eth0"));
//! # Ok::<(), underlay::Error>(())
//! ```

use crate::network::{Network, NetworkBuilder};
use crate::{Error, Result};

/// The flags [`network_create_args`] understands.
///
/// ```
/// use underlay::docker::{network_create_args, NETWORK_CREATE_FLAGS};
///
/// assert!(NETWORK_CREATE_FLAGS.contains(&"--subnet"));
/// // An unknown flag is refused with the list of these.
/// let err = network_create_args(["--colour=red", "pub_net"]).unwrap_err();
/// assert!(err.to_string().contains("--ip-range"));
/// ```
pub const NETWORK_CREATE_FLAGS: &[&str] = &[
    "-d/--driver",
    "--subnet",
    "--gateway",
    "--ip-range",
    "--aux-address",
    "--ipv6",
    "--ipv4",
    "--internal",
    "-o/--opt",
    "--label",
];

/// Parses the arguments of `docker network create` (everything after
/// `create`) into a [`NetworkBuilder`]. Both `--flag=value` and `--flag value`
/// are accepted; `--ipv6`, `--ipv4` and `--internal` take an optional
/// `=true`/`=false`. Exactly one network name must be given. Unknown flags
/// are errors that name them.
///
/// # Errors
/// [`Error::InvalidArgument`] for an unknown flag, a flag missing its value, a `--ipv6`,
/// `--ipv4` or `--internal` value other than `true`/`false`, an `--aux-address` or `-o` not
/// written `NAME=VALUE`, or no network name or more than one. Values are checked later, by
/// [`NetworkBuilder::build`].
///
/// ```
/// use underlay::docker::network_create_args;
///
/// // docker network create -d ipvlan --subnet=192.168.1.0/24 --gateway=192.168.1.1
/// //   -o ipvlan_mode=l2 -o parent=eth0 db_net
/// let args = "-d ipvlan --subnet=192.168.1.0/24 --gateway 192.168.1.1 \
///             -o ipvlan_mode=l2 -o parent=eth0 db_net";
/// let spec = network_create_args(args.split_whitespace())?.build()?;
/// assert_eq!((spec.name(), spec.driver().name()), ("db_net", "ipvlan"));
/// assert_eq!(spec.parent(), Some("eth0"));
/// # Ok::<(), underlay::Error>(())
/// ```
pub fn network_create_args<I, S>(args: I) -> Result<NetworkBuilder>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut name: Option<String> = None;
    // Collected first, applied in order once the name is known.
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if !arg.starts_with('-') || arg == "-" {
            if let Some(first) = &name {
                return Err(Error::invalid(
                    "argument",
                    arg,
                    format!("a network name ({first}) was given already; give exactly one"),
                ));
            }
            name = Some(arg.clone());
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let canonical = match flag.as_str() {
            "-d" | "--driver" => "driver",
            "--subnet" => "subnet",
            "--gateway" => "gateway",
            "--ip-range" => "ip-range",
            "--aux-address" => "aux-address",
            "-o" | "--opt" => "opt",
            "--label" => "label",
            "--ipv6" | "--ipv4" | "--internal" => {
                let value = inline.unwrap_or_else(|| "true".to_owned());
                if value != "true" && value != "false" {
                    return Err(Error::invalid(
                        flag_name(&flag),
                        value,
                        "expected true or false",
                    ));
                }
                settings.push((flag.trim_start_matches('-').to_owned(), value));
                continue;
            }
            _ => {
                return Err(Error::invalid(
                    "flag",
                    flag,
                    format!(
                        "not a flag of network create; valid flags are: {}",
                        NETWORK_CREATE_FLAGS.join(", ")
                    ),
                ))
            }
        };
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .filter(|v| !v.starts_with('-'))
                    .cloned()
                    .ok_or_else(|| Error::invalid("flag", flag.clone(), "needs a value"))?;
                i += 1;
                v
            }
        };
        settings.push((canonical.to_owned(), value));
    }
    let name = name.ok_or_else(|| Error::invalid("argument", "", "a network name is required"))?;
    let mut builder = Network::builder(&name);
    for (key, value) in settings {
        builder = match key.as_str() {
            "driver" => builder.driver(&value),
            "subnet" => builder.subnet(&value),
            "gateway" => builder.gateway(&value),
            "ip-range" => builder.ip_range(&value),
            "aux-address" => match value.split_once('=') {
                Some((n, ip)) => builder.aux_address(n, ip),
                None => {
                    return Err(Error::invalid(
                        "aux-address",
                        value,
                        "expected NAME=ADDRESS, for example my-router=192.168.32.129",
                    ))
                }
            },
            "opt" => match value.split_once('=') {
                Some((k, v)) => builder.option(k, v),
                None => {
                    return Err(Error::invalid(
                        "option",
                        value,
                        "expected KEY=VALUE, for example parent=eth0.50",
                    ))
                }
            },
            "label" => {
                let (k, v) = value.split_once('=').unwrap_or((&value, ""));
                builder.label(k, v)
            }
            "ipv6" => builder.ipv6(value == "true"),
            "ipv4" => builder.ipv4(value == "true"),
            "internal" => builder.internal(value == "true"),
            _ => builder,
        };
    }
    Ok(builder)
}

fn flag_name(flag: &str) -> &'static str {
    match flag {
        "--ipv6" => "--ipv6",
        "--ipv4" => "--ipv4",
        _ => "--internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Driver;

    #[test]
    fn both_flag_forms_and_repeated_flags() {
        let spec = network_create_args([
            "-d",
            "ipvlan",
            "--subnet",
            "192.168.210.0/24",
            "--subnet=192.168.212.0/24",
            "--gateway=192.168.210.254",
            "--gateway",
            "192.168.212.254",
            "-o",
            "ipvlan_mode=l3",
            "--opt=parent=eth0",
            "--label",
            "team=net",
            "ipnet210",
        ])
        .unwrap()
        .build()
        .unwrap();
        assert!(spec.driver().is_l3());
        assert_eq!(spec.ipam().subnets().len(), 2);
        assert_eq!(spec.parent(), Some("eth0"));
        assert!(matches!(spec.driver(), Driver::Ipvlan { .. }));
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, needle) in [
            (vec!["--colour=red", "n"], "--colour"),
            (vec!["-d", "macvlan"], "network name is required"),
            (vec!["-d", "macvlan", "a", "b"], "\"b\""),
            (vec!["-d", "macvlan", "-o", "parent", "n"], "KEY=VALUE"),
            (
                vec!["-d", "macvlan", "--aux-address", "10.0.0.1", "n"],
                "NAME=ADDRESS",
            ),
            (vec!["-d", "macvlan", "--ipv6=maybe", "n"], "true or false"),
            (vec!["-d", "macvlan", "n", "--subnet"], "needs a value"),
        ] {
            let err = network_create_args(args.clone())
                .and_then(|b| b.build())
                .unwrap_err();
            assert!(err.to_string().contains(needle), "{args:?}: {err}");
        }
    }
}
