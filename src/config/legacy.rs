//! mvconf's `conf.json`, read exactly as its manual shows it.

use crate::crd::{IngressMode, MacvlanBindingSpec, NetworkSpec, PoolEntry, ServiceSpec};
use crate::secret::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The whole file. Unknown top-level keys are an error, as in mvconf.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LegacyConf {
    #[serde(default)]
    pub(crate) networks: Vec<LegacyNetwork>,
    #[serde(default)]
    pub(crate) services: Vec<LegacyService>,
    #[serde(default)]
    pub(crate) auth: Option<LegacyAuth>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct LegacyNetwork {
    pub(crate) name: String,
    pub(crate) subnet: String,
    pub(crate) gateway: String,
    pub(crate) parent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ip_range: Option<String>,
    /// mvconf's own addition: addresses no container may get.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) reserved: Vec<String>,
    /// mvconf's own addition: `false` turns ARP duplicate-address
    /// detection off for this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) arp_probe: Option<bool>,
    /// Keys mvconf ignored; reported as warnings.
    #[serde(flatten, skip_serializing)]
    pub(crate) unknown: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct LegacyService {
    pub(crate) name: String,
    pub(crate) network: String,
    pub(crate) ip_pool: Vec<String>,
    #[serde(flatten, skip_serializing)]
    pub(crate) unknown: BTreeMap<String, Value>,
}

/// mvconf's `auth` block: the DCE controller and an administrator login.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LegacyAuth {
    /// Controller address (`192.168.56.102`, a URL, or `auto`).
    #[serde(default)]
    pub(crate) url: Option<String>,
    #[serde(default)]
    pub(crate) username: Option<String>,
    #[serde(default)]
    pub(crate) password: Option<SecretString>,
}

impl LegacyAuth {
    /// The controller URL, with `http://` added to a bare address as mvconf
    /// did; `None` for `auto` or empty, meaning "detect / use the default".
    pub(crate) fn controller_url(&self) -> Option<String> {
        let raw = self.url.as_deref()?.trim();
        if raw.is_empty() || raw.eq_ignore_ascii_case("auto") {
            return None;
        }
        Some(normalize_controller_url(raw))
    }
}

/// `192.168.56.102` -> `http://192.168.56.102`; URLs keep their scheme; no
/// trailing slash.
pub(crate) fn normalize_controller_url(raw: &str) -> String {
    let raw = raw.trim().trim_end_matches('/');
    if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    }
}

impl LegacyConf {
    /// Keys mvconf would have ignored, as `services[0].foo` paths.
    pub(crate) fn unknown_keys(&self) -> Vec<String> {
        let nets = self
            .networks
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.unknown.keys().map(move |k| format!("networks[{i}].{k}")));
        let svcs = self
            .services
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.unknown.keys().map(move |k| format!("services[{i}].{k}")));
        nets.chain(svcs).collect()
    }

    /// The same configuration as a MacvlanBinding spec. `auth` is not part
    /// of it: credentials never go into a spec.
    pub(crate) fn to_spec(&self) -> MacvlanBindingSpec {
        MacvlanBindingSpec {
            networks: self
                .networks
                .iter()
                .map(|n| NetworkSpec {
                    name: n.name.clone(),
                    subnet: n.subnet.clone(),
                    gateway: n.gateway.clone(),
                    parent: n.parent.clone(),
                    // mvconf treated an empty ip_range as absent.
                    ip_range: n.ip_range.clone().filter(|r| !r.trim().is_empty()),
                    reserved: n.reserved.iter().map(|e| PoolEntry(e.clone())).collect(),
                    arp_probe: n.arp_probe,
                })
                .collect(),
            services: self
                .services
                .iter()
                .map(|s| ServiceSpec {
                    name: s.name.clone(),
                    network: s.network.clone(),
                    ip_pool: s.ip_pool.iter().map(|e| PoolEntry(e.clone())).collect(),
                    ingress: IngressMode::Keep,
                })
                .collect(),
            ..Default::default()
        }
    }
}
