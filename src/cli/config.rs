//! `mvconf config`, `mvconf convert` and `mvconf crd`: no cluster needed.

use super::{CliError, Format, emit, emit_as};
use crate::config::legacy::{LegacyNetwork, LegacyService};
use crate::config::{self, Dialect, Loaded};
use crate::crd::{EndpointKind, EndpointSpec, MacvlanBinding, MacvlanBindingSpec, SecretRef};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `-o` of the commands that print a document.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DocArgs {
    /// Output: text (the document's own format: JSON for a conf.json, YAML
    /// for a manifest and the CRDs), json or yaml.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    pub(crate) output: Format,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ConvertArgs {
    /// Output: yaml (text, the default) or json (a List for several objects).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    pub(crate) output: Format,
    /// metadata.name of the binding (default: derived from the file name).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// metadata.namespace of the binding (and of its Secret).
    #[arg(long, short = 'n')]
    pub(crate) namespace: Option<String>,
    /// Write the `auth` block as a Secret manifest to this file, created with
    /// mode 0600. Without it the password is never written anywhere.
    #[arg(long)]
    pub(crate) secret_file: Option<PathBuf>,
    /// Multi-team output: a SwarmEndpoint and MacvlanNetworks (granting the
    /// binding's namespace its services and addresses) for the platform
    /// team, and a binding that names them. Needs --namespace.
    #[arg(long, requires = "namespace")]
    pub(crate) granted: bool,
    /// With --granted: the operator's namespace, where the SwarmEndpoint's
    /// Secret goes.
    #[arg(long, default_value = "mvconf-system")]
    pub(crate) operator_namespace: String,
}

/// conf.json as `mvconf config` prints it, keys in the manual's order.
#[derive(serde::Serialize)]
struct LegacyOut {
    networks: Vec<LegacyNetwork>,
    services: Vec<LegacyService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<AuthOut>,
}

#[derive(serde::Serialize)]
struct AuthOut {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    /// Masked: the password is never printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'static str>,
}

fn warn_all(loaded: &Loaded) {
    for w in &loaded.warnings {
        tracing::warn!("{}: {w}", loaded.path.display());
    }
}

/// `mvconf config`: validate, then print the normalized configuration.
pub(crate) fn check(file: &Path, output: Format) -> Result<(), CliError> {
    let loaded = config::load(file)?;
    tracing::debug!(file = %file.display(), dialect = ?loaded.dialect, "configuration loaded");
    warn_all(&loaded);
    let spec = loaded.desired.to_spec();
    let text = match loaded.dialect {
        Dialect::Legacy => {
            let out = LegacyOut {
                networks: spec
                    .networks
                    .iter()
                    .map(|n| LegacyNetwork {
                        name: n.name.clone(),
                        subnet: n.subnet.clone(),
                        gateway: n.gateway.clone(),
                        parent: n.parent.clone(),
                        ip_range: n.ip_range.clone(),
                        reserved: n.reserved.iter().map(|e| e.0.clone()).collect(),
                        arp_probe: n.arp_probe,
                        unknown: Default::default(),
                    })
                    .collect(),
                services: spec
                    .services
                    .iter()
                    .map(|s| LegacyService {
                        name: s.name.clone(),
                        network: s.network.clone(),
                        ip_pool: s.ip_pool.iter().map(|e| e.0.clone()).collect(),
                        unknown: Default::default(),
                    })
                    .collect(),
                auth: loaded.auth.as_ref().map(|a| AuthOut {
                    url: a.controller_url().unwrap_or_else(|| "auto".into()),
                    username: a.username.clone(),
                    password: a.password.as_ref().map(|_| "******"),
                }),
            };
            match output {
                Format::Yaml => to_yaml(&out, "configuration")?,
                Format::Text | Format::Json => {
                    let mut s = serde_json::to_string_pretty(&out)
                        .map_err(CliError::serialize("configuration"))?;
                    s.push('\n');
                    s
                }
            }
        }
        Dialect::Manifest => {
            let mut b = MacvlanBinding::new(loaded.name.as_deref().unwrap_or_default(), spec);
            b.metadata.namespace = loaded.namespace.clone();
            match output {
                Format::Json => {
                    let mut s =
                        serde_json::to_string_pretty(&b).map_err(CliError::serialize("binding"))?;
                    s.push('\n');
                    s
                }
                Format::Text | Format::Yaml => to_yaml(&b, "binding")?,
            }
        }
    };
    emit(&text)?;
    let d = &loaded.desired;
    let addresses: u64 = d.services.iter().map(|s| s.pool.size()).sum();
    eprintln!(
        "{}: valid ({} network{}, {} service{}, {addresses} pool address{})",
        file.display(),
        d.networks.len(),
        plural(d.networks.len()),
        d.services.len(),
        plural(d.services.len()),
        if addresses == 1 { "" } else { "es" }
    );
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn to_yaml<T: serde::Serialize>(value: &T, what: &'static str) -> Result<String, CliError> {
    serde_saphyr::to_string(value).map_err(CliError::serialize(what))
}

/// A DNS-1123 name from a file stem: `conf.json` -> `conf`, `My_Conf` -> `my-conf`.
fn name_from_path(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("mvconf");
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_owned();
    name.truncate(63);
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() {
        "mvconf".into()
    } else {
        name
    }
}

/// `mvconf convert`: conf.json to a MacvlanBinding manifest.
/// The index of network `name` in the file.
fn index_of(loaded: &config::Loaded, name: &str) -> usize {
    loaded
        .desired
        .networks
        .iter()
        .position(|n| n.name == name)
        .unwrap_or_default()
}

pub(crate) fn convert(file: &Path, args: &ConvertArgs) -> Result<(), CliError> {
    let loaded = config::load(file)?;
    warn_all(&loaded);
    if loaded.dialect == Dialect::Manifest {
        return Err(CliError::Usage(format!(
            "{} is already a MacvlanBinding manifest; `mvconf config -f` checks it",
            file.display()
        )));
    }
    let name = args.name.clone().unwrap_or_else(|| name_from_path(file));
    let mut spec = loaded.desired.to_spec();
    let mut notes = Vec::new();
    // An ip_range over a pool is refused in a manifest: the manifest leaves
    // it out (mvconf derives one outside the pools); an existing network
    // keeps the range it has.
    for (n, net) in spec.networks.iter_mut().zip(&loaded.desired.networks) {
        if net.ip_range.is_some()
            && loaded
                .desired
                .notes
                .iter()
                .any(|w| w.starts_with(&format!("networks[{}]", index_of(&loaded, &net.name))))
        {
            notes.push(format!(
                "network {}: ip_range {} overlaps a pool; left out (mvconf gives Docker's auto-assign a range outside the pools; an existing network keeps its own)",
                net.name,
                n.ip_range.take().unwrap_or_default()
            ));
        }
    }
    let secret_name = format!("{name}-dce-auth");
    // A SwarmEndpoint's Secret lives with the operator, a binding's with it.
    let secret_ns = if args.granted {
        Some(args.operator_namespace.clone())
    } else {
        args.namespace.clone()
    };
    if let Some(auth) = &loaded.auth {
        match auth.controller_url() {
            None => notes.push(
                "auth.url is \"auto\": the binding uses the operator's default endpoint".to_owned(),
            ),
            Some(url) => {
                let has_login = auth.username.is_some() || auth.password.is_some();
                spec.endpoint = Some(EndpointSpec {
                    kind: EndpointKind::Dce,
                    url,
                    secret_ref: has_login.then(|| SecretRef {
                        name: secret_name.clone(),
                    }),
                    insecure_skip_tls_verify: false,
                    dce_node_prefix: None,
                    node_port: None,
                    node_urls: Default::default(),
                });
                if has_login {
                    match &args.secret_file {
                        Some(path) => {
                            write_secret(path, &secret_name, secret_ns.as_deref(), auth)?;
                            notes.push(format!(
                                "the auth block's login is in {} (mode 0600): apply it, and keep it out of version control",
                                path.display()
                            ));
                        }
                        None => {
                            let ns = secret_ns
                                .as_deref()
                                .map(|n| format!(" -n {n}"))
                                .unwrap_or_default();
                            let user = auth.username.as_deref().unwrap_or("admin");
                            notes.push(format!(
                                "the auth block's password is not copied. Create the Secret its secretRef names with:\n    \
                                 kubectl{ns} create secret generic {secret_name} --from-literal=username={user} --from-file=password=/dev/stdin\n  \
                                 (type the password, then Ctrl-D), or rerun with --secret-file FILE"
                            ));
                        }
                    }
                }
            }
        }
    }
    if args.output == Format::Json {
        let objects = match (&args.granted, &args.namespace) {
            (true, Some(ns)) => granted_objects(&name, ns, &spec)?,
            _ => {
                let mut binding = MacvlanBinding::new(&name, spec);
                binding.metadata.namespace = args.namespace.clone();
                vec![serde_json::to_value(&binding).map_err(CliError::serialize("binding"))?]
            }
        };
        let doc = match <[serde_json::Value; 1]>::try_from(objects) {
            Ok([one]) => one,
            Err(items) => json!({"apiVersion": "v1", "kind": "List", "items": items}),
        };
        emit_as(&doc, Format::Json, "the manifest")?;
    } else {
        let text = match (&args.granted, &args.namespace) {
            (true, Some(ns)) => granted_yaml(&name, ns, &spec)?,
            _ => {
                let mut binding = MacvlanBinding::new(&name, spec);
                binding.metadata.namespace = args.namespace.clone();
                to_yaml(&binding, "binding")?
            }
        };
        emit(&format!(
            "# Converted from {} by mvconf convert.\n{text}",
            file.display()
        ))?;
    }
    for n in notes {
        eprintln!("note: {n}");
    }
    Ok(())
}

/// The platform team's objects, then the team's binding, as JSON values.
fn granted_objects(
    name: &str,
    ns: &str,
    spec: &MacvlanBindingSpec,
) -> Result<Vec<serde_json::Value>, CliError> {
    let split = crate::tenancy::convert::split(name, ns, spec);
    let value = |v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(CliError::serialize("the manifest"))
    };
    let mut out = Vec::new();
    if let Some(e) = &split.endpoint {
        out.push(value(serde_json::to_value(e))?);
    }
    for n in &split.networks {
        out.push(value(serde_json::to_value(n))?);
    }
    out.push(value(serde_json::to_value(&split.binding))?);
    Ok(out)
}

/// The platform team's objects, then the team's binding, as one stream.
fn granted_yaml(name: &str, ns: &str, spec: &MacvlanBindingSpec) -> Result<String, CliError> {
    let split = crate::tenancy::convert::split(name, ns, spec);
    let mut out = String::from("# For the platform team (cluster-scoped objects):\n");
    if let Some(e) = &split.endpoint {
        out.push_str(&to_yaml(e, "SwarmEndpoint")?);
        out.push_str("---\n");
    }
    for n in &split.networks {
        out.push_str(&to_yaml(n, "MacvlanNetwork")?);
        out.push_str("---\n");
    }
    out.push_str(&format!("# For the team of namespace {ns}:\n"));
    out.push_str(&to_yaml(&split.binding, "binding")?);
    Ok(out)
}

fn write_secret(
    path: &Path,
    name: &str,
    namespace: Option<&str>,
    auth: &config::legacy::LegacyAuth,
) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut meta = json!({ "name": name });
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    let mut data = serde_json::Map::new();
    if let Some(u) = &auth.username {
        data.insert("username".into(), json!(u));
    }
    if let Some(p) = &auth.password {
        data.insert("password".into(), json!(p.expose()));
    }
    let secret = json!({ "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "stringData": data });
    let text = to_yaml(&secret, "secret")?;
    let fail = |source: std::io::Error| CliError::File {
        path: path.to_owned(),
        source,
    };
    // create_new: never overwrite, never follow a pre-made file with looser mode.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    Ok(())
}

/// `mvconf crd`.
pub(crate) fn crd(output: Format) -> Result<(), CliError> {
    if output == Format::Json {
        let items = crate::crd::crds()
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()
            .map_err(CliError::serialize("CRD"))?;
        return emit_as(
            &json!({"apiVersion": "v1", "kind": "List", "items": items}),
            Format::Json,
            "CRD",
        );
    }
    let yaml = crate::crd::crd_yaml().map_err(CliError::serialize("CRD"))?;
    emit(&yaml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_file_stems() {
        assert_eq!(name_from_path(Path::new("conf.json")), "conf");
        assert_eq!(
            name_from_path(Path::new("/x/My_Conf.v2.json")),
            "my-conf-v2"
        );
        assert_eq!(name_from_path(Path::new("___.json")), "mvconf");
    }
}
