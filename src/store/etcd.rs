//! Address claims in etcd (feature `etcd`), through its v3 JSON gateway
//! (`/v3/kv/range`, `/v3/kv/txn`): one key per address, claimed with a
//! create-if-absent transaction and released with a compare on the claim's
//! value. No side index, no pool document: the claim is the uniqueness.
//!
//! Keys: `/underlay/v1/claims/NETWORK/ADDRESS` (hosts share a network by
//! its name); values: the [`Claim`]
//! as JSON. Keys and values travel base64-encoded, as the gateway wants.
//! Several endpoints are tried in turn, so one member down is survived.

use std::net::IpAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::shared::{Claim, SharedStore};
use crate::{Error, Result};

/// How long one request may take on one endpoint.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where the claims live.
const PREFIX: &str = "/underlay/v1/claims/";

/// Where the networks live: `NETWORK/definition` and `NETWORK/hosts/HOST`.
const NETWORKS: &str = "/underlay/v1/networks/";

/// Claims kept in an etcd cluster.
///
/// ```no_run
/// use underlay::store::EtcdStore;
/// use underlay::Host;
///
/// let etcd = EtcdStore::new(&["http://10.0.0.5:2379", "http://10.0.0.6:2379"])?;
/// let host = Host::options().state_dir("/var/lib/underlay").shared_store(etcd).open()?;
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug)]
pub struct EtcdStore {
    endpoints: Vec<String>,
    agent: ureq::Agent,
}

impl EtcdStore {
    /// A client of the cluster at `endpoints` (`http://HOST:PORT`, tried in
    /// this order).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no endpoint or one that is not an
    /// `http://` URL.
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Result<Self> {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.as_ref().trim().trim_end_matches('/').to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(Error::invalid(
                "etcd endpoints",
                "",
                "give at least one, such as http://10.0.0.5:2379",
            ));
        }
        if let Some(bad) = endpoints.iter().find(|e| {
            !e.starts_with("http://")
                || e.len() == "http://".len()
                || e.contains(char::is_whitespace)
        }) {
            return Err(Error::invalid(
                "etcd endpoint",
                bad.clone(),
                "expected http://HOST:PORT (the v3 JSON gateway; TLS is not supported)",
            ));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2))
            .timeout(TIMEOUT)
            .build();
        Ok(EtcdStore { endpoints, agent })
    }

    /// Posts `body` to `path` on the first endpoint that answers.
    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let mut tried = Vec::new();
        for endpoint in &self.endpoints {
            let url = format!("{endpoint}{path}");
            match self.agent.post(&url).send_json(body) {
                Ok(response) => {
                    return response.into_json::<Value>().map_err(|e| {
                        Error::SharedStoreUnavailable {
                            tried: format!("{url}: the answer is not JSON ({e})"),
                        }
                    })
                }
                // A member that cannot serve now (no leader yet, shutting
                // down): the next one may.
                Err(ureq::Error::Status(code, response)) if code >= 500 => {
                    let text = response.into_string().unwrap_or_default();
                    tried.push(format!("{url}: HTTP {code}: {}", text.trim()));
                }
                // Refused by etcd itself: another member would say the same.
                Err(ureq::Error::Status(code, response)) => {
                    let text = response.into_string().unwrap_or_default();
                    return Err(Error::SharedStoreUnavailable {
                        tried: format!("{url}: HTTP {code}: {}", text.trim()),
                    });
                }
                Err(ureq::Error::Transport(e)) => tried.push(format!("{url}: {e}")),
            }
        }
        Err(Error::SharedStoreUnavailable {
            tried: tried.join("; "),
        })
    }

    fn key(network: &str, address: IpAddr) -> String {
        format!("{PREFIX}{network}/{address}")
    }

    fn claim_try(
        &self,
        network: &str,
        address: IpAddr,
        claim: &Claim,
        tries: u32,
    ) -> Result<Option<Claim>> {
        let key = encode(&Self::key(network, address));
        let value = encode(&value_of(claim)?);
        // Only for a host that has the network: one whose part went (the
        // network removed everywhere, perhaps defined anew; the host
        // forgotten) claims nothing more under its name.
        let member = encode(&format!("{NETWORKS}{network}/hosts/{}", claim.host));
        let answer = self.post(
            "/v3/kv/txn",
            &json!({
                "compare": [
                    {"target": "CREATE", "key": key, "create_revision": "0"},
                    {"target": "CREATE", "key": member, "result": "GREATER", "create_revision": "0"},
                ],
                "success": [{"request_put": {"key": key, "value": value}}],
                "failure": [{"request_range": {"key": key}}, {"request_range": {"key": member}}],
            }),
        )?;
        // proto3 JSON leaves `false` out: no `succeeded` is a failure.
        if answer["succeeded"].as_bool() == Some(true) {
            return Ok(None);
        }
        let held = &answer["responses"][0]["response_range"]["kvs"][0]["value"];
        if answer["responses"][1]["response_range"]["kvs"][0]["value"].is_null() {
            // Not a member: only a claim it holds already stands (made
            // again by a rebuild of its records, say).
            if !held.is_null() && claim_of(held)?.same_holder(claim) {
                return Ok(None);
            }
            return Err(Error::NoLongerShared {
                network: network.to_owned(),
            });
        }
        if held.is_null() {
            // Released between the compare and the read: try again (a
            // claim that keeps vanishing is someone else's churn; give up
            // after a few).
            return match tries {
                0..=7 => self.claim_try(network, address, claim, tries + 1),
                _ => Err(Error::SharedStoreUnavailable {
                    tried: format!("the claim on {address} keeps changing; try again"),
                }),
            };
        }
        let holder = claim_of(held)?;
        Ok(if holder.same_holder(claim) {
            None
        } else {
            Some(holder)
        })
    }

    /// Every key and value under `prefix`.
    fn range_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>> {
        let (key, end) = prefix_range(prefix);
        let answer = self.post("/v3/kv/range", &json!({"key": key, "range_end": end}))?;
        let mut out = Vec::new();
        for kv in answer["kvs"].as_array().into_iter().flatten() {
            out.push((decode(&kv["key"], "key")?, kv["value"].clone()));
        }
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.post("/v3/kv/deleterange", &json!({"key": encode(key)}))?;
        Ok(())
    }
}

/// The keys under `prefix` (which ends in '/') as an etcd range, both
/// ends base64: the prefix, and the prefix with its '/' raised to '0'.
fn prefix_range(prefix: &str) -> (String, String) {
    let end = format!("{}0", prefix.trim_end_matches('/'));
    (encode(prefix), encode(&end))
}

fn encode(text: &str) -> String {
    BASE64.encode(text.as_bytes())
}

fn decode(value: &Value, what: &str) -> Result<String> {
    let text = value.as_str().unwrap_or_default();
    let bytes = BASE64
        .decode(text)
        .map_err(|e| Error::SharedStoreUnavailable {
            tried: format!("etcd answered a {what} that is not base64: {e}"),
        })?;
    String::from_utf8(bytes).map_err(|_| Error::SharedStoreUnavailable {
        tried: format!("etcd answered a {what} that is not UTF-8"),
    })
}

fn claim_of(value: &Value) -> Result<Claim> {
    let text = decode(value, "claim")?;
    serde_json::from_str(&text).map_err(|e| Error::SharedStoreUnavailable {
        tried: format!("a claim in etcd does not read back ({e}): {text}"),
    })
}

fn value_of(claim: &Claim) -> Result<String> {
    serde_json::to_string(claim).map_err(|e| Error::StateEncoding {
        what: "address claim".into(),
        reason: e.to_string(),
    })
}

impl SharedStore for EtcdStore {
    fn claim(&self, network: &str, address: IpAddr, claim: &Claim) -> Result<Option<Claim>> {
        self.claim_try(network, address, claim, 0)
    }

    fn release(&self, network: &str, address: IpAddr, claim: &Claim) -> Result<bool> {
        // Read, then delete only if the key is unchanged since (its
        // mod_revision) and held by this claim's host and endpoint: never
        // another holder's claim.
        let key = encode(&Self::key(network, address));
        let answer = self.post("/v3/kv/range", &json!({"key": key}))?;
        let kv = &answer["kvs"][0];
        if kv.is_null() {
            return Ok(false);
        }
        let holder = claim_of(&kv["value"])?;
        if !holder.same_holder(claim) {
            return Err(Error::AddressClaimed {
                address,
                network: network.to_owned(),
                host: holder.host,
                endpoint: holder.name,
            });
        }
        let revision = kv["mod_revision"].as_str().unwrap_or("0");
        let answer = self.post(
            "/v3/kv/txn",
            &json!({
                "compare": [{"target": "MOD", "key": key, "mod_revision": revision}],
                "success": [{"request_delete_range": {"key": key}}],
                "failure": [],
            }),
        )?;
        Ok(answer["succeeded"].as_bool() == Some(true))
    }

    fn claims(&self, network: &str) -> Result<Vec<(IpAddr, Claim)>> {
        let prefix = format!("{PREFIX}{network}/");
        let mut out = Vec::new();
        for (key, value) in self.range_prefix(&prefix)? {
            let Some(address) = key
                .strip_prefix(&prefix)
                .and_then(|a| a.parse::<IpAddr>().ok())
            else {
                continue;
            };
            out.push((address, claim_of(&value)?));
        }
        Ok(out)
    }

    fn define(&self, network: &str, proposal: &str) -> Result<Option<String>> {
        let key = encode(&format!("{NETWORKS}{network}/definition"));
        let answer = self.post(
            "/v3/kv/txn",
            &json!({
                "compare": [{"target": "CREATE", "key": key, "create_revision": "0"}],
                "success": [{"request_put": {"key": key, "value": encode(proposal)}}],
                "failure": [{"request_range": {"key": key}}],
            }),
        )?;
        if answer["succeeded"].as_bool() == Some(true) {
            return Ok(None);
        }
        let stored = &answer["responses"][0]["response_range"]["kvs"][0]["value"];
        if stored.is_null() {
            // Removed between the compare and the read: again.
            return self.define(network, proposal);
        }
        decode(stored, "definition").map(Some)
    }

    fn definition(&self, network: &str) -> Result<Option<String>> {
        let key = encode(&format!("{NETWORKS}{network}/definition"));
        let answer = self.post("/v3/kv/range", &json!({"key": key}))?;
        let stored = &answer["kvs"][0]["value"];
        if stored.is_null() {
            return Ok(None);
        }
        decode(stored, "definition").map(Some)
    }

    fn join(&self, network: &str, host: &str, definition: &str) -> Result<bool> {
        // Only while the definition is the one this host read: a last host
        // leaving, or a removal everywhere and a new definition, between
        // that read and this join is not joined.
        let key = encode(&format!("{NETWORKS}{network}/definition"));
        let member = encode(&format!("{NETWORKS}{network}/hosts/{host}"));
        let answer = self.post(
            "/v3/kv/txn",
            &json!({
                "compare": [{"target": "VALUE", "key": key, "result": "EQUAL", "value": encode(definition)}],
                "success": [{"request_put": {"key": member, "value": encode(host)}}],
                "failure": [],
            }),
        )?;
        Ok(answer["succeeded"].as_bool() == Some(true))
    }

    fn leave(&self, network: &str, host: &str) -> Result<bool> {
        self.delete(&format!("{NETWORKS}{network}/hosts/{host}"))?;
        // The definition goes only if no host has the network, in one
        // transaction: a compare over the whole `hosts/` range (every key
        // of it at version 0, which holds only when there is none).
        let (hosts, end) = prefix_range(&format!("{NETWORKS}{network}/hosts/"));
        let definition = encode(&format!("{NETWORKS}{network}/definition"));
        let answer = self.post(
            "/v3/kv/txn",
            &json!({
                "compare": [{"target": "VERSION", "key": hosts, "range_end": end, "result": "EQUAL", "version": "0"}],
                "success": [{"request_delete_range": {"key": definition}}],
                "failure": [],
            }),
        )?;
        Ok(answer["succeeded"].as_bool() == Some(true))
    }

    fn undefine(&self, network: &str, only_if_unclaimed: bool) -> Result<bool> {
        let (hosts, hosts_end) = prefix_range(&format!("{NETWORKS}{network}/hosts/"));
        let (claims, claims_end) = prefix_range(&format!("{PREFIX}{network}/"));
        let compare = if only_if_unclaimed {
            // Every key of the claims range at version 0: there is none.
            json!([{"target": "VERSION", "key": claims, "range_end": claims_end, "result": "EQUAL", "version": "0"}])
        } else {
            json!([])
        };
        let answer = self.post(
            "/v3/kv/txn",
            &json!({
                "compare": compare,
                "success": [
                    {"request_delete_range": {"key": encode(&format!("{NETWORKS}{network}/definition"))}},
                    {"request_delete_range": {"key": hosts, "range_end": hosts_end}},
                ],
                "failure": [],
            }),
        )?;
        Ok(answer["succeeded"].as_bool() == Some(true))
    }

    fn forget_host(&self, host: &str) -> Result<usize> {
        let mut released = 0;
        for (key, value) in self.range_prefix(PREFIX)? {
            let claim = claim_of(&value)?;
            if claim.host != host {
                continue;
            }
            let Some((network, address)) = key
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.rsplit_once('/'))
                .and_then(|(n, a)| Some((n.to_owned(), a.parse::<IpAddr>().ok()?)))
            else {
                continue;
            };
            if self.release(&network, address, &claim)? {
                released += 1;
            }
        }
        let suffix = format!("/hosts/{host}");
        for (key, _) in self.range_prefix(NETWORKS)? {
            if let Some(network) = key
                .strip_prefix(NETWORKS)
                .and_then(|rest| rest.strip_suffix(&suffix))
            {
                self.leave(network, host)?;
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert!(EtcdStore::new(&["http://10.0.0.5:2379", "http://10.0.0.6:2379/"]).is_ok());
        for bad in [
            &[][..],
            &["10.0.0.5:2379"],
            &["https://a:2379"],
            &["http://"],
        ] {
            assert!(EtcdStore::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_unreachable_cluster_names_every_endpoint_tried() {
        // Port 9 (discard) on loopback: refused at once.
        let etcd = EtcdStore::new(&["http://127.0.0.1:9", "http://127.0.0.1:9/x"]).unwrap();
        let claim = Claim {
            host: "h".into(),
            network: "n".into(),
            endpoint: "0".repeat(16),
            name: "e".into(),
            container: "/run/netns/c".into(),
        };
        let e = etcd
            .claim("id", "10.0.0.2".parse().unwrap(), &claim)
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::SharedStoreUnavailable { .. }), "{text}");
        assert!(text.contains("http://127.0.0.1:9/v3/kv/txn"), "{text}");
        assert!(text.contains("http://127.0.0.1:9/x/v3/kv/txn"), "{text}");
    }
}
