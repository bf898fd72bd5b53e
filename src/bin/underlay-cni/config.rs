//! What the runtime gives the plugin: the `CNI_*` environment variables and
//! the network configuration on stdin, checked before anything is touched.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;
use underlay::network::NetworkBuilder;
use underlay::Network;

use crate::reply::{AddResult, CniError, Code, SUPPORTED_VERSIONS};

/// The command in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

/// The `CNI_*` variables.
#[derive(Debug, Clone)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// Empty when the runtime sent none (containerd's `DEL` of a dead task).
    pub netns: String,
    pub ifname: String,
    /// From `CNI_ARGS`: `IP=` (one or more, comma-separated) and `MAC=`.
    pub ips: Vec<IpAddr>,
    pub mac: Option<String>,
    /// `CNI_PATH`, split.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the variables through `get` (the process environment, or a
    /// table in tests). Each command's required variables must be set.
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let bad = |msg: String| CniError::new(Code::InvalidEnvironment, msg);
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some("VERSION") => Command::Version,
            Some(other) => {
                return Err(bad(format!(
                    "CNI_COMMAND={other:?} is not a command: expected ADD, DEL, CHECK, STATUS, GC or VERSION"
                )))
            }
            None => return Err(bad("CNI_COMMAND is not set".into())),
        };
        let needs = |name: &str| -> Result<String, CniError> {
            match get(name) {
                Some(value) if !value.is_empty() => Ok(value),
                _ => Err(bad(format!(
                    "{name} is not set: the {command:?} command needs it"
                ))),
            }
        };
        let attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let mut env = Env {
            command,
            container_id: String::new(),
            netns: String::new(),
            ifname: String::new(),
            ips: Vec::new(),
            mac: None,
            path: get("CNI_PATH")
                .unwrap_or_default()
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        };
        if attachment {
            env.container_id = needs("CNI_CONTAINERID")?;
            check_container_id(&env.container_id)?;
            env.ifname = needs("CNI_IFNAME")?;
            underlay::link::validate_name(&env.ifname)
                .map_err(|e| bad(format!("CNI_IFNAME={:?}: {e}", env.ifname)))?;
            env.netns = if command == Command::Del {
                get("CNI_NETNS").unwrap_or_default()
            } else {
                needs("CNI_NETNS")?
            };
        }
        if let Some(args) = get("CNI_ARGS") {
            env.read_args(&args)?;
        }
        Ok(env)
    }

    /// `CNI_ARGS`: `K=V` pairs separated by `;`. `IP` and `MAC` are
    /// understood, `K8S_*` are the runtime's and ignored; any other key is
    /// refused unless `IgnoreUnknown` is true (as the reference plugins do).
    fn read_args(&mut self, args: &str) -> Result<(), CniError> {
        let bad = |msg: String| CniError::new(Code::InvalidEnvironment, msg);
        let mut ignore_unknown = false;
        let mut unknown = Vec::new();
        for pair in args.split(';').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(bad(format!(
                    "CNI_ARGS: {pair:?} is not KEY=VALUE (pairs are separated by ';')"
                )));
            };
            match key {
                "" => {
                    return Err(bad(format!(
                        "CNI_ARGS: {pair:?} has no key (pairs are KEY=VALUE)"
                    )))
                }
                "IgnoreUnknown" => {
                    ignore_unknown = matches!(value.to_ascii_lowercase().as_str(), "1" | "true")
                }
                "IP" => {
                    for ip in value.split(',').filter(|v| !v.is_empty()) {
                        // An address, or one with a prefix length (which the
                        // network's subnet decides, so it is only checked).
                        let parsed = ip
                            .parse::<IpAddr>()
                            .ok()
                            .or_else(|| ip.parse::<IpNet>().ok().map(|n| n.addr()));
                        let ip = parsed.ok_or_else(|| {
                            bad(format!("CNI_ARGS: IP={value:?} is not an IP address"))
                        })?;
                        self.ips.push(ip);
                    }
                }
                "MAC" => self.mac = Some(value.to_owned()),
                key if key.starts_with("K8S_") => {}
                key => unknown.push(key.to_owned()),
            }
        }
        if !unknown.is_empty() && !ignore_unknown {
            return Err(bad(format!(
                "CNI_ARGS: unknown key(s) {}: this plugin understands IP and MAC (add IgnoreUnknown=1 to pass others)",
                unknown.join(", ")
            )));
        }
        Ok(())
    }
}

/// The specification's rule for container ids: not empty, letters, digits,
/// `_`, `.` and `-`, starting with a letter or digit.
fn check_container_id(id: &str) -> Result<(), CniError> {
    let ok = id.len() <= 1024
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            Code::InvalidEnvironment,
            format!("CNI_CONTAINERID={id:?} is not a container id: letters, digits, '_', '.' and '-', starting with a letter or digit"),
        ))
    }
}

/// One subnet of the configuration, in Docker's `--subnet`, `--gateway`,
/// `--ip-range`, `--aux-address` words.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubnetConf {
    pub subnet: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, String>,
}

/// `runtimeConfig`: what the runtime passes for the capabilities this
/// plugin declares (`ips`, `mac`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

/// A `cni.dev/valid-attachments` entry of `GC`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The network configuration on stdin.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
    #[serde(default)]
    pub subnets: Vec<SubnetConf>,
    #[serde(default)]
    pub ipv6: Option<bool>,
    #[serde(default)]
    pub internal: Option<bool>,
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub runtime_dir: Option<PathBuf>,
    #[serde(default)]
    pub ipam: Option<Value>,
    #[serde(default)]
    pub prev_result: Option<Value>,
    #[serde(default)]
    pub runtime_config: Option<RuntimeConfig>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// Every other key: the specification's own (`dns`, `args`,
    /// `capabilities`, `disableCheck`, `disableGC`) are accepted, others
    /// refused so that a misspelt key is not silently ignored.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Keys of the specification this plugin accepts and has no use for.
const SPEC_KEYS: [&str; 6] = [
    "dns",
    "args",
    "capabilities",
    "disableCheck",
    "disableGC",
    "runtimeConfig",
];

impl NetConf {
    /// Parses stdin. Malformed JSON is a decoding error (6); a version this
    /// plugin does not speak is 1; a missing or misspelt field is 4.
    pub fn parse(input: &[u8]) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(input).map_err(|e| {
            CniError::new(
                Code::Decode,
                format!("the network configuration on stdin is not JSON: {e}"),
            )
        })?;
        // The version first: a newer configuration may have fields this
        // plugin does not know, and the right error is then "version".
        if let Some(version) = value.get("cniVersion") {
            let version = version.as_str().unwrap_or_default();
            if !SUPPORTED_VERSIONS.contains(&version) {
                return Err(CniError::new(
                    Code::IncompatibleVersion,
                    format!(
                        "cniVersion {version:?} is not supported: this plugin speaks {}",
                        SUPPORTED_VERSIONS.join(", ")
                    ),
                ));
            }
        }
        let conf: NetConf = serde_json::from_value(value).map_err(|e| {
            CniError::new(
                Code::InvalidConfig,
                format!("invalid network configuration: {e}"),
            )
        })?;
        if let Some(key) = conf
            .other
            .keys()
            .find(|k| !SPEC_KEYS.contains(&k.as_str()) && !k.starts_with("cni.dev/"))
        {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "invalid network configuration: unknown key {key:?} (this plugin reads driver, options, subnets, ipv6, internal, ipam, stateDir and runtimeDir)"
                ),
            ));
        }
        for (key, dir) in [
            ("stateDir", &conf.state_dir),
            ("runtimeDir", &conf.runtime_dir),
        ] {
            if dir.as_ref().is_some_and(|d| !d.is_absolute()) {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    format!(
                        "invalid network configuration: {key} {:?} is not an absolute path",
                        dir.as_ref()
                            .map(|d| d.display().to_string())
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        if conf.ipam.is_some() && !conf.subnets.is_empty() {
            return Err(CniError::new(
                Code::InvalidConfig,
                "invalid network configuration: both subnets and ipam are set: give subnets for underlay's own address management, or an ipam section to delegate it to an IPAM plugin",
            ));
        }
        Ok(conf)
    }

    /// An empty configuration of network `name` (the sweeper's).
    pub fn named(name: &str) -> NetConf {
        NetConf {
            cni_version: crate::reply::LATEST.to_owned(),
            name: name.to_owned(),
            plugin_type: String::new(),
            driver: None,
            options: BTreeMap::new(),
            subnets: Vec::new(),
            ipv6: None,
            internal: None,
            state_dir: None,
            runtime_dir: None,
            ipam: None,
            prev_result: None,
            runtime_config: None,
            valid_attachments: None,
            other: BTreeMap::new(),
        }
    }

    /// The delegated IPAM plugin's name, when the configuration has an
    /// `ipam` section with a `type`.
    pub fn ipam_type(&self) -> Result<Option<String>, CniError> {
        let Some(ipam) = &self.ipam else {
            return Ok(None);
        };
        match ipam.get("type") {
            Some(Value::String(t)) if valid_plugin_name(t) => Ok(Some(t.clone())),
            Some(Value::String(t)) => Err(CniError::new(
                Code::InvalidConfig,
                format!("invalid ipam type {t:?}: a plugin's file name (letters, digits, '-', '_', '.')"),
            )),
            _ => Err(CniError::new(
                Code::InvalidConfig,
                "invalid network configuration: the ipam section has no type (the IPAM plugin to run, such as host-local)",
            )),
        }
    }

    /// The network this configuration describes, in the library's words.
    /// With a delegated IPAM plugin the network has no address management
    /// of its own: the plugin's addresses are given to each attach.
    pub fn builder(&self) -> Result<NetworkBuilder, CniError> {
        let invalid = |msg: String| CniError::new(Code::InvalidConfig, msg);
        let driver = self.driver.as_deref().ok_or_else(|| {
            invalid("invalid network configuration: driver is missing (macvlan or ipvlan)".into())
        })?;
        if !matches!(driver, "macvlan" | "ipvlan") {
            return Err(invalid(format!(
                "invalid driver {driver:?}: choose macvlan or ipvlan"
            )));
        }
        let mut builder = Network::builder(&self.name).driver(driver);
        for (key, value) in &self.options {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(invalid(format!(
                        "invalid option {key:?}: its value must be a string or a number"
                    )))
                }
            };
            builder = builder.option(key, &value);
        }
        if self.ipam.is_some() {
            // Addresses come from the IPAM plugin: the network has no
            // address family of its own, and records what it is given.
            builder = builder.ipv4(false);
        }
        for subnet in &self.subnets {
            builder = builder.subnet(&subnet.subnet);
            if let Some(gateway) = &subnet.gateway {
                builder = builder.gateway(gateway);
            }
            if let Some(range) = &subnet.ip_range {
                builder = builder.ip_range(range);
            }
            for (name, address) in &subnet.aux_addresses {
                builder = builder.aux_address(name, address);
            }
        }
        if let Some(ipv6) = self.ipv6 {
            builder = builder.ipv6(ipv6);
        }
        if let Some(internal) = self.internal {
            builder = builder.internal(internal);
        }
        builder
            .build()
            .map_err(|e| invalid(format!("invalid network configuration: {e}")))?;
        Ok(builder)
    }

    /// `prevResult`, read.
    pub fn prev_result(&self) -> Result<Option<AddResult>, CniError> {
        self.prev_result
            .as_ref()
            .map(|v| AddResult::from_json(v, "prevResult"))
            .transpose()
    }

    /// The addresses asked for: `runtimeConfig.ips` (with the `ips`
    /// capability), then `CNI_ARGS` `IP=`.
    pub fn requested_ips(&self, env: &Env) -> Result<Vec<IpAddr>, CniError> {
        let mut ips = Vec::new();
        for ip in self.runtime_config.iter().flat_map(|r| &r.ips) {
            let parsed = ip
                .parse::<IpAddr>()
                .ok()
                .or_else(|| ip.parse::<IpNet>().ok().map(|n| n.addr()));
            let address: IpAddr = parsed.ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    format!("runtimeConfig.ips: {ip:?} is not an IP address"),
                )
            })?;
            ips.push(address);
        }
        ips.extend(env.ips.iter().copied());
        let mut seen = BTreeSet::new();
        ips.retain(|ip| seen.insert(*ip));
        if let Some(v4) = ips.iter().filter(|ip| ip.is_ipv4()).nth(1) {
            return Err(CniError::new(
                Code::InvalidEnvironment,
                format!("two IPv4 addresses requested (the second is {v4}): an interface gets one address per family"),
            ));
        }
        if let Some(v6) = ips.iter().filter(|ip| ip.is_ipv6()).nth(1) {
            return Err(CniError::new(
                Code::InvalidEnvironment,
                format!("two IPv6 addresses requested (the second is {v6}): an interface gets one address per family"),
            ));
        }
        Ok(ips)
    }

    /// The MAC address asked for: `runtimeConfig.mac`, then `CNI_ARGS` `MAC=`.
    pub fn requested_mac(&self, env: &Env) -> Option<String> {
        self.runtime_config
            .as_ref()
            .and_then(|r| r.mac.clone())
            .or_else(|| env.mac.clone())
    }
}

/// An IPAM plugin's name must be a plain file name: it is looked up in
/// `CNI_PATH`, never a path of its own.
fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let table: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::read(|k| table.get(k).cloned())
    }

    const ADD: [(&str, &str); 4] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
    ];

    #[test]
    fn each_command_needs_its_variables() {
        assert!(env(&ADD).is_ok());
        for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let pairs: Vec<_> = ADD.iter().copied().filter(|(k, _)| *k != missing).collect();
            let e = env(&pairs).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnvironment);
            assert!(e.msg.contains(missing), "{}", e.msg);
        }
        // DEL may have an empty CNI_NETNS; STATUS, GC and VERSION need none.
        let del = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", ""),
        ];
        assert!(env(&del).is_ok());
        for command in ["STATUS", "GC", "VERSION"] {
            assert!(env(&[("CNI_COMMAND", command)]).is_ok());
        }
        assert_eq!(
            env(&[("CNI_COMMAND", "ADDD")]).unwrap_err().code,
            Code::InvalidEnvironment
        );
    }

    #[test]
    fn hostile_ids_and_interface_names_are_refused() {
        for (key, value) in [
            ("CNI_CONTAINERID", "../../etc"),
            ("CNI_CONTAINERID", "-x"),
            ("CNI_IFNAME", "../eth0"),
            ("CNI_IFNAME", "a-name-longer-than-15"),
        ] {
            let mut pairs: Vec<_> = ADD.iter().copied().filter(|(k, _)| *k != key).collect();
            pairs.push((key, value));
            let e = env(&pairs).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnvironment, "{key}={value}");
        }
    }

    #[test]
    fn cni_args_give_ip_and_mac_and_refuse_unknown_keys() {
        let mut pairs = ADD.to_vec();
        pairs.push((
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.1.2.3;MAC=02:00:00:00:00:01;X=1",
        ));
        let e = env(&pairs).unwrap();
        assert_eq!(e.ips, vec!["10.1.2.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(e.mac.as_deref(), Some("02:00:00:00:00:01"));
        let mut pairs = ADD.to_vec();
        pairs.push(("CNI_ARGS", "X=1"));
        assert!(env(&pairs).unwrap_err().msg.contains("X"));
        let mut pairs = ADD.to_vec();
        pairs.push(("CNI_ARGS", "IP=10.1.2"));
        assert_eq!(env(&pairs).unwrap_err().code, Code::InvalidEnvironment);
    }

    fn conf(json: &str) -> Result<NetConf, CniError> {
        NetConf::parse(json.as_bytes())
    }

    #[test]
    fn configurations_are_checked_with_the_right_code() {
        let good = r#"{"cniVersion":"1.0.0","name":"n1","type":"underlay-cni","driver":"macvlan",
            "options":{"parent":"eth0","mtu":1400},"subnets":[{"subnet":"10.1.2.0/24","gateway":"10.1.2.1"}]}"#;
        let c = conf(good).unwrap();
        assert!(c.builder().is_ok());
        assert_eq!(conf("{").unwrap_err().code, Code::Decode);
        assert_eq!(
            conf(r#"{"cniVersion":"9.9.9","name":"n","type":"t"}"#)
                .unwrap_err()
                .code,
            Code::IncompatibleVersion
        );
        assert_eq!(
            conf(r#"{"cniVersion":"1.0.0","name":"n","type":"t","subnet":"x"}"#)
                .unwrap_err()
                .code,
            Code::InvalidConfig
        );
        for bad in [
            r#"{"cniVersion":"1.0.0","name":"n","type":"t","driver":"bridge"}"#,
            r#"{"cniVersion":"1.0.0","name":"n","type":"t","driver":"macvlan","options":{"colour":"red"}}"#,
            r#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#,
            r#"{"cniVersion":"1.0.0","name":"../n","type":"t","driver":"macvlan"}"#,
            r#"{"cniVersion":"1.0.0","name":"n","type":"t","driver":"macvlan","subnets":[{"subnet":"10.1.2.0/33"}]}"#,
        ] {
            let e = conf(bad).and_then(|c| c.builder().map(|_| ())).unwrap_err();
            assert_eq!(e.code, Code::InvalidConfig, "{bad}: {}", e.msg);
        }
        let both = r#"{"cniVersion":"1.0.0","name":"n","type":"t","driver":"macvlan",
            "subnets":[{"subnet":"10.1.2.0/24"}],"ipam":{"type":"host-local"}}"#;
        assert_eq!(conf(both).unwrap_err().code, Code::InvalidConfig);
        let traversal = r#"{"cniVersion":"1.0.0","name":"n","type":"t","driver":"macvlan","ipam":{"type":"../x"}}"#;
        assert_eq!(
            conf(traversal).unwrap().ipam_type().unwrap_err().code,
            Code::InvalidConfig
        );
    }
}
