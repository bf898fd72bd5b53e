//! What the plugin writes on stdout: results and errors in the CNI
//! specification's JSON shapes, for the version the configuration declared.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Value};

/// The versions this plugin speaks; results are written in the one the
/// configuration declares.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The version a reply is in when the input named none (or was unreadable).
pub const LATEST: &str = "1.1.0";

/// The specification's well-known error codes, and this plugin's own
/// (100 and up, listed in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1: the configuration's `cniVersion` is not one this plugin speaks.
    IncompatibleVersion = 1,
    /// 3: the container (attachment) does not exist.
    UnknownContainer = 3,
    /// 4: the network configuration is invalid.
    InvalidConfig = 4,
    /// 5: an I/O failure.
    Io = 5,
    /// 6: stdin could not be decoded.
    Decode = 6,
    /// 7: a `CNI_*` variable (or `CNI_ARGS` value) is invalid.
    InvalidEnvironment = 7,
    /// 11: a transient failure (a busy lock, an endpoint in the middle of an
    /// operation): try again later.
    TryAgainLater = 11,
    /// 50: `STATUS`: the plugin cannot serve `ADD` now.
    NotAvailable = 50,
    /// 100: any other failure (the kernel refused, a delegated IPAM plugin
    /// failed, ...); `msg` says what.
    Failed = 100,
    /// 101: a conflict: the address, name or interface is taken.
    Conflict = 101,
    /// 102: `CHECK` found the container's interface not as `prevResult`
    /// describes it.
    CheckFailed = 102,
    /// 103: the state directory holds a corrupt or unsafe file.
    BadState = 103,
    /// 104: the kernel lacks what the configuration needs.
    Unsupported = 104,
}

/// A failure, reported as the specification's error object.
#[derive(Debug)]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error object, in `version`'s shape.
    pub fn to_json(&self, version: &str) -> Value {
        let mut error = json!({
            "cniVersion": version,
            "code": self.code as u32,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            error["details"] = Value::String(self.details.clone());
        }
        error
    }
}

impl From<underlay::Error> for CniError {
    /// The nearest code for a library error; the message is the library's.
    fn from(error: underlay::Error) -> Self {
        use underlay::Error as E;
        let code = match &error {
            E::LockTimeout { .. } | E::EndpointBusy { .. } => Code::TryAgainLater,
            E::DefinitionDiffers { .. } => Code::InvalidConfig,
            E::NotANetworkNamespace { .. } => Code::InvalidEnvironment,
            E::CorruptState { .. } | E::UnsafeState { .. } => Code::BadState,
            E::Unsupported { .. } => Code::Unsupported,
            error if error.is_conflict() => Code::Conflict,
            _ => Code::Failed,
        };
        CniError::new(code, error.to_string())
    }
}

/// The interface an `ADD` made (or one a previous plugin reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub sandbox: String,
}

/// An address given to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into the result's interfaces.
    pub interface: Option<usize>,
}

/// A route in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
}

/// An `ADD` result: what a runtime records and passes back as
/// `prevResult`, and what the next plugin of a chain receives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<RouteConfig>,
    /// Passed through untouched from a previous plugin.
    pub dns: Option<Value>,
}

impl AddResult {
    /// The result in `version`'s shape: 0.4.0 has a `version` in each IP
    /// entry; 1.0.0 and later do not.
    pub fn to_json(&self, version: &str) -> Value {
        let old = version.starts_with("0.");
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut v = json!({"name": i.name, "mac": i.mac});
                if !i.sandbox.is_empty() {
                    v["sandbox"] = Value::String(i.sandbox.clone());
                }
                v
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = json!({"address": ip.address.to_string()});
                if old {
                    v["version"] = json!(if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    });
                }
                if let Some(gw) = ip.gateway {
                    v["gateway"] = json!(gw.to_string());
                }
                if let Some(index) = ip.interface {
                    v["interface"] = json!(index);
                }
                v
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut v = json!({"dst": r.dst.to_string()});
                if let Some(gw) = r.gw {
                    v["gw"] = json!(gw.to_string());
                }
                v
            })
            .collect();
        let mut result = json!({
            "cniVersion": version,
            "interfaces": interfaces,
            "ips": ips,
        });
        if !routes.is_empty() {
            result["routes"] = Value::Array(routes);
        }
        result["dns"] = self.dns.clone().unwrap_or_else(|| json!({}));
        result
    }

    /// Reads a result (a `prevResult`, or a delegated IPAM plugin's) in any
    /// supported version's shape.
    pub fn from_json(value: &Value, what: &str) -> Result<Self, CniError> {
        let bad = |reason: String| {
            CniError::new(
                Code::Decode,
                format!("{what} is not a CNI result: {reason}"),
            )
        };
        let object = value
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let text = |v: &Value, field: &str| -> Result<String, CniError> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(bad(format!("{field} is not a string"))),
            }
        };
        let list = |field: &str| -> Result<Vec<Value>, CniError> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => Ok(items.clone()),
                Some(_) => Err(bad(format!("{field} is not a list"))),
            }
        };
        let mut result = AddResult::default();
        for i in list("interfaces")? {
            result.interfaces.push(Interface {
                name: text(&i, "name")?,
                mac: text(&i, "mac")?,
                sandbox: text(&i, "sandbox")?,
            });
        }
        for ip in list("ips")? {
            let address = text(&ip, "address")?;
            let address: IpNet = address
                .parse()
                .map_err(|_| bad(format!("ips: {address:?} is not an address/prefix")))?;
            let gateway = match text(&ip, "gateway")?.as_str() {
                "" => None,
                gw => Some(
                    gw.parse()
                        .map_err(|_| bad(format!("ips: gateway {gw:?} is not an address")))?,
                ),
            };
            let interface = match ip.get("interface") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .map(|n| n as usize)
                        .ok_or_else(|| bad("ips: interface is not an index".into()))?,
                ),
            };
            result.ips.push(IpConfig {
                address,
                gateway,
                interface,
            });
        }
        for r in list("routes")? {
            let dst = text(&r, "dst")?;
            let dst: IpNet = dst
                .parse()
                .map_err(|_| bad(format!("routes: {dst:?} is not a prefix")))?;
            let gw = match text(&r, "gw")?.as_str() {
                "" => None,
                gw => Some(
                    gw.parse()
                        .map_err(|_| bad(format!("routes: gw {gw:?} is not an address")))?,
                ),
            };
            result.routes.push(RouteConfig { dst, gw });
        }
        // An empty `dns` ({}) is what "none" looks like on the wire.
        result.dns = object
            .get("dns")
            .filter(|v| !v.as_object().is_some_and(|o| o.is_empty()) && !v.is_null())
            .cloned();
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AddResult {
        AddResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "02:42:0a:01:02:03".into(),
                sandbox: "/run/netns/c1".into(),
            }],
            ips: vec![IpConfig {
                address: "10.1.2.3/24".parse().unwrap(),
                gateway: Some("10.1.2.1".parse().unwrap()),
                interface: Some(0),
            }],
            routes: vec![RouteConfig {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.1.2.1".parse().unwrap()),
            }],
            dns: None,
        }
    }

    #[test]
    fn results_take_each_versions_shape_and_read_back() {
        let new = sample().to_json("1.1.0");
        assert_eq!(new["cniVersion"], "1.1.0");
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["ips"][0]["interface"], 0);
        assert_eq!(new["routes"][0]["gw"], "10.1.2.1");
        let old = sample().to_json("0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
        for v in [new, old] {
            assert_eq!(AddResult::from_json(&v, "prevResult").unwrap(), sample());
        }
    }

    #[test]
    fn a_malformed_result_is_a_decoding_error_naming_the_field() {
        let bad = json!({"ips": [{"address": "10.1.2.3"}]});
        let e = AddResult::from_json(&bad, "prevResult").unwrap_err();
        assert_eq!(e.code, Code::Decode);
        assert!(
            e.msg.contains("prevResult") && e.msg.contains("10.1.2.3"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn errors_carry_code_msg_and_details() {
        let e = CniError::new(Code::InvalidConfig, "bad").details("more");
        let v = e.to_json("1.0.0");
        assert_eq!(
            (v["code"].as_u64(), v["msg"].as_str()),
            (Some(4), Some("bad"))
        );
        assert_eq!(v["details"], "more");
    }
}
