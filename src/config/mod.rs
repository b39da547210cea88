//! Reading configuration files: mvconf's `conf.json` or a MacvlanBinding
//! manifest (YAML or JSON), into one spec and one validator.

pub(crate) mod legacy;
pub mod validate;

use crate::crd::{MacvlanBinding, MacvlanBindingSpec};
use legacy::{LegacyAuth, LegacyConf};
use serde_json::Value;
use std::path::{Path, PathBuf};
pub(crate) use validate::{Desired, Dialect, Invalid, validate};

/// Files larger than this are refused before parsing: a configuration is a
/// few kilobytes, and parsing cost must stay bounded.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: {size} bytes is too large for a configuration file (at most {MAX_FILE_BYTES})"
    )]
    TooLarge { path: PathBuf, size: usize },
    #[error("{path}: not valid {format}: {message}")]
    Syntax {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("{path}: {field}: {message}")]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Content { path: PathBuf, message: String },
    #[error("{path}: {invalid}")]
    Invalid {
        path: PathBuf,
        #[source]
        invalid: Invalid,
    },
}

/// A configuration file, read and validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub(crate) path: PathBuf,
    pub(crate) dialect: Dialect,
    /// The spec as written.
    pub spec: MacvlanBindingSpec,
    /// The validated form.
    pub desired: Desired,
    /// For a manifest: its name and namespace.
    pub(crate) name: Option<String>,
    pub(crate) namespace: Option<String>,
    /// For a conf.json: its `auth` block.
    pub(crate) auth: Option<LegacyAuth>,
    /// Things worth telling the user that are not errors.
    pub(crate) warnings: Vec<String>,
    /// For a manifest read back from the cluster (`kubectl get -o yaml`):
    /// its status, which `mvconf audit` checks against Docker.
    pub(crate) status: Option<crate::crd::MacvlanBindingStatus>,
}

/// Reads and validates a file.
pub(crate) fn load(path: &Path) -> Result<Loaded, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            size: bytes.len(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| LoadError::Syntax {
        path: path.to_owned(),
        format: "UTF-8 text",
        message: e.utf8_error().to_string(),
    })?;
    parse(&text, path)
}

/// Parses and validates configuration text; `path` names it in messages and
/// its extension (`.yaml`, `.yml`) selects YAML.
pub fn parse(text: &str, path: &Path) -> Result<Loaded, LoadError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            size: text.len(),
        });
    }
    let is_yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    let looks_like_json = text.trim_start().starts_with(['{', '/']);
    if !is_yaml && looks_like_json {
        let value = parse_jsonc(text, path)?;
        if value.get("apiVersion").is_some() || value.get("kind").is_some() {
            return from_manifest(value, path);
        }
        return from_legacy(value, path);
    }
    let docs = parse_yaml(text, path)?;
    let mut bindings = docs
        .into_iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("MacvlanBinding"));
    match (bindings.next(), bindings.next()) {
        (Some(doc), None) => from_manifest(doc, path),
        (None, _) => Err(LoadError::Content {
            path: path.to_owned(),
            message: "no MacvlanBinding document found (expected `kind: MacvlanBinding`, or a mvconf conf.json)".into(),
        }),
        (Some(_), Some(_)) => Err(LoadError::Content {
            path: path.to_owned(),
            message: "more than one MacvlanBinding document: give one binding per file".into(),
        }),
    }
}

fn parse_jsonc(text: &str, path: &Path) -> Result<Value, LoadError> {
    // mvconf's manual writes `//` comments in its examples; accept them, and
    // nothing else beyond JSON.
    let options = jsonc_parser::ParseOptions {
        allow_comments: true,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_extended_string_escapes: false,
        allow_non_finite_numbers: false,
    };
    jsonc_parser::parse_to_serde_value::<Value>(text, &options).map_err(|e| LoadError::Syntax {
        path: path.to_owned(),
        format: "JSON",
        message: e.to_string(),
    })
}

fn parse_yaml(text: &str, path: &Path) -> Result<Vec<Value>, LoadError> {
    serde_saphyr::from_multiple::<Value>(text).map_err(|e| LoadError::Syntax {
        path: path.to_owned(),
        format: "YAML",
        message: e.to_string(),
    })
}

fn field_error(
    path: &Path,
    err: serde_path_to_error::Error<serde_json::Error>,
    prefix: &str,
) -> LoadError {
    let at = err.path().to_string();
    let field = match (prefix.is_empty(), at.as_str()) {
        (_, ".") => {
            if prefix.is_empty() {
                "(top level)".to_owned()
            } else {
                prefix.trim_end_matches('.').to_owned()
            }
        }
        (true, _) => at,
        (false, _) => format!("{prefix}{at}"),
    };
    LoadError::Field {
        path: path.to_owned(),
        field,
        message: err.into_inner().to_string(),
    }
}

/// A MacvlanBinding object (as read from the apiserver), validated;
/// `label` names it in messages.
pub(crate) fn from_object(value: Value, label: &Path) -> Result<Loaded, LoadError> {
    from_manifest(value, label)
}

fn from_manifest(value: Value, path: &Path) -> Result<Loaded, LoadError> {
    let api = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if api != "mvconf.io/v1alpha1" {
        return Err(LoadError::Field {
            path: path.to_owned(),
            field: "apiVersion".into(),
            message: format!("{api:?} is not supported (expected mvconf.io/v1alpha1)"),
        });
    }
    let binding: MacvlanBinding =
        serde_path_to_error::deserialize(value).map_err(|e| field_error(path, e, ""))?;
    let desired =
        validate(&binding.spec, Dialect::Manifest).map_err(|invalid| LoadError::Invalid {
            path: path.to_owned(),
            invalid,
        })?;
    Ok(Loaded {
        path: path.to_owned(),
        dialect: Dialect::Manifest,
        spec: binding.spec,
        desired,
        name: binding.metadata.name,
        namespace: binding.metadata.namespace,
        auth: None,
        warnings: Vec::new(),
        status: binding.status,
    })
}

fn from_legacy(value: Value, path: &Path) -> Result<Loaded, LoadError> {
    if let Some(obj) = value.as_object() {
        let unknown: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| !["networks", "services", "auth"].contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(LoadError::Field {
                path: path.to_owned(),
                field: unknown.join(", "),
                message: "unknown top-level key (allowed: networks, services, auth)".into(),
            });
        }
    }
    let conf: LegacyConf =
        serde_path_to_error::deserialize(value).map_err(|e| field_error(path, e, ""))?;
    let spec = conf.to_spec();
    let desired = validate(&spec, Dialect::Legacy).map_err(|invalid| LoadError::Invalid {
        path: path.to_owned(),
        invalid,
    })?;
    let warnings = conf
        .unknown_keys()
        .into_iter()
        .map(|k| format!("{k}: unknown key, ignored"))
        .chain(desired.notes.iter().cloned())
        .collect();
    Ok(Loaded {
        path: path.to_owned(),
        dialect: Dialect::Legacy,
        spec,
        desired,
        name: None,
        namespace: None,
        auth: conf.auth,
        warnings,
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of mvconf's manual, comments and all.
    pub(crate) const MANUAL_EXAMPLE: &str = r#"{
  "networks": [                           // MACVLAN 网络配置
    {
      "name": "macvlan",				  // 网络名称
      "subnet": "192.168.8.0/24",         // 网段
      "gateway": "192.168.8.1",           // 网关
      "parent": "eth1",                   // 绑定网卡
      "ip_range": "192.168.8.0/24"        // 可分配 IP 段【可不填】
    }
  ],
  "services": [                           // 要操作的服务
    {
      "name": "2048",                     // 服务名
      "network": "macvlan",               // MACVLAN 网络名
      "ip_pool": [                        // IP 池
        "192.168.8.136-192.168.8.137",
        "192.168.8.139"
      ]
    }
  ],
  "auth": {
    "url": "192.168.56.102",              // DCE 控制器 IP 地址
    "username": "admin",                  // 管理员账号
    "password": "admin"		              // 管理员密码
  }
}"#;

    fn p() -> &'static Path {
        Path::new("conf.json")
    }

    #[test]
    fn reads_the_manuals_conf_json_with_its_comments() {
        let l = parse(MANUAL_EXAMPLE, p()).unwrap();
        assert_eq!(l.dialect, Dialect::Legacy);
        assert_eq!(l.desired.services[0].pool.size(), 3);
        assert_eq!(
            l.spec.networks[0].ip_range.as_deref(),
            Some("192.168.8.0/24")
        );
        let auth = l.auth.unwrap();
        assert_eq!(
            auth.controller_url().as_deref(),
            Some("http://192.168.56.102")
        );
        assert_eq!(auth.password.unwrap().expose(), "admin");
        // Read as it is, with one warning: its ip_range (the whole subnet)
        // lets Docker's own auto-assign hand out the pool's addresses.
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert!(
            l.warnings[0].starts_with("networks[0].ip_range: 192.168.8.0/24 overlaps the pool"),
            "{}",
            l.warnings[0]
        );
    }

    #[test]
    fn unknown_top_level_keys_are_an_error() {
        let err = parse(r#"{"networks": [], "servcies": []}"#, p()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("servcies") && msg.contains("unknown top-level key"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_nested_keys_are_warnings() {
        let l = parse(
            r#"{"networks":[{"name":"m","subnet":"10.0.0.0/24","gateway":"10.0.0.1","parent":"eth1","note":"x"}]}"#,
            p(),
        )
        .unwrap();
        assert_eq!(l.warnings, ["networks[0].note: unknown key, ignored"]);
    }

    #[test]
    fn type_errors_name_the_field() {
        let err = parse(
            r#"{"services":[{"name":"a","network":"m","ip_pool":"10.0.0.1"}]}"#,
            p(),
        )
        .unwrap_err();
        match err {
            LoadError::Field { field, .. } => assert_eq!(field, "services[0].ip_pool"),
            other => panic!("{other}"),
        }
        let err = parse(r#"{"networks":[{"name":"m"}]}"#, p()).unwrap_err();
        assert!(
            err.to_string().contains("networks[0]") && err.to_string().contains("subnet"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = parse("{\"networks\": [", p()).unwrap_err();
        assert!(
            matches!(err, LoadError::Syntax { format: "JSON", .. }),
            "{err}"
        );
    }

    #[test]
    fn legacy_validation_speaks_legacy_field_names() {
        let text = MANUAL_EXAMPLE.replace("\"192.168.8.139\"", "\"192.168.9.139\"");
        let err = parse(&text, p()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("services[0].ip_pool[1]: 192.168.9.139 is not inside"),
            "{msg}"
        );
    }

    const MANIFEST: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: dce}
---
apiVersion: mvconf.io/v1alpha1
kind: MacvlanBinding
metadata:
  name: web
  namespace: prod
spec:
  networks:
    - name: macvlan
      subnet: 192.168.8.0/24
      gateway: 192.168.8.1
      parent: eth1.101
  services:
    - name: web
      network: macvlan
      ipPool: ["192.168.8.10-192.168.8.20"]
      ingress: Detach
"#;

    #[test]
    fn reads_a_manifest_among_other_documents() {
        let l = parse(MANIFEST, Path::new("b.yaml")).unwrap();
        assert_eq!(l.dialect, Dialect::Manifest);
        assert_eq!(l.name.as_deref(), Some("web"));
        assert_eq!(l.namespace.as_deref(), Some("prod"));
        assert_eq!(
            l.desired.services[0].ingress,
            crate::crd::IngressMode::Detach
        );
    }

    #[test]
    fn manifest_type_errors_name_the_field() {
        let text = MANIFEST.replace("ingress: Detach", "ingress: Sometimes");
        let err = parse(&text, Path::new("b.yaml")).unwrap_err();
        match err {
            LoadError::Field { field, message, .. } => {
                assert_eq!(field, "spec.services[0].ingress");
                assert!(message.contains("Sometimes"), "{message}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn manifest_validation_names_the_field() {
        let text = MANIFEST.replace("gateway: 192.168.8.1", "gateway: 10.1.1.1");
        let err = parse(&text, Path::new("b.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .contains("spec.networks[0].gateway: 10.1.1.1 is outside"),
            "{err}"
        );
    }

    #[test]
    fn other_kinds_or_versions_are_refused() {
        let err = parse(
            "kind: Deployment\napiVersion: apps/v1\n",
            Path::new("x.yaml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no MacvlanBinding"), "{err}");
        let text = MANIFEST.replace("mvconf.io/v1alpha1", "mvconf.io/v2");
        let err = parse(&text, Path::new("b.yaml")).unwrap_err();
        assert!(err.to_string().contains("apiVersion"), "{err}");
    }

    #[test]
    fn a_json_manifest_is_a_manifest() {
        let text = r#"{"apiVersion":"mvconf.io/v1alpha1","kind":"MacvlanBinding","metadata":{"name":"x"},"spec":{}}"#;
        let l = parse(text, p()).unwrap();
        assert_eq!(l.dialect, Dialect::Manifest);
    }
}
