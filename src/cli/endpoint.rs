//! Which swarm a command talks to, in mvconf's order: an explicit flag, the
//! file's own endpoint (`auth` in conf.json, `spec.endpoint` in a
//! manifest), the saved login, then the local engine; unless the local
//! engine is a DCE controller node, where the controller it names is used
//! (as the old mvconf did for `auth.url: "auto"` or no `auth`).

use super::CliError;
use crate::cluster::detect::Found;
use crate::cluster::{Cluster, ClusterConfig, Endpoint};
use crate::config::Loaded;
use crate::config::legacy::{LegacyAuth, normalize_controller_url};
use crate::crd::{EndpointKind, EndpointSpec};
use crate::credentials::{LoginFile, default_login_path};
use crate::engine::transport::{Auth, SecretBytes, Tls};
use std::path::PathBuf;

/// How to reach the engines; every flag is optional.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct EndpointArgs {
    /// DCE controller URL (e.g. http://192.168.56.102); wins over the file.
    #[arg(long, global = true, value_name = "URL", env = "MVCONF_DCE_URL")]
    pub(crate) dce: Option<String>,
    /// Docker swarm manager (tcp://HOST:2375, https://HOST:2376, unix:///PATH); wins over the file.
    #[arg(short = 'H', long = "host", global = true, value_name = "URL")]
    pub(crate) host: Option<String>,
    /// Engine port of each node when reached directly (default 2375, 2376 with TLS).
    #[arg(long, global = true, value_name = "PORT")]
    pub(crate) node_port: Option<u16>,
    /// DCE per-node proxy prefix: /api (default) or /dce.
    #[arg(long, global = true, default_value = crate::cluster::DCE_NODE_PREFIX, value_name = "PREFIX")]
    pub(crate) dce_prefix: String,
    /// Pin the Docker Engine API version (e.g. 1.30) instead of negotiating.
    #[arg(
        long,
        global = true,
        value_name = "VERSION",
        env = "MVCONF_DOCKER_API_VERSION"
    )]
    pub(crate) api_version: Option<String>,
    /// CA bundle (PEM) to trust for https endpoints.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for Docker TLS.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Client key (PEM) for Docker TLS.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Accept any server certificate (insecure; a warning is logged).
    #[arg(long, global = true)]
    pub(crate) insecure_skip_tls_verify: bool,
    /// The login file written by `mvconf login` (default ~/.mvconf/auth.json).
    #[arg(long, global = true, value_name = "FILE", env = "MVCONF_AUTH_FILE")]
    pub(crate) auth_file: Option<PathBuf>,
}

impl EndpointArgs {
    pub(crate) fn login_path(&self) -> Result<PathBuf, CliError> {
        match &self.auth_file {
            Some(p) => Ok(p.clone()),
            None => Ok(default_login_path()?),
        }
    }

    fn tls(&self) -> Result<Tls, CliError> {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|source| CliError::File {
                path: p.clone(),
                source,
            })
        };
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => {
                let mut pem = read(c)?;
                pem.push(b'\n');
                pem.extend(crate::credentials::read_private(k)?.unwrap_or_default());
                Some(SecretBytes(pem))
            }
            _ => None,
        };
        Ok(Tls {
            ca_pem: self.tls_ca.as_ref().map(read).transpose()?,
            identity_pem: identity,
            insecure_skip_verify: self.insecure_skip_tls_verify,
        })
    }
}

/// A resolved endpoint, and where its credentials came from (for the user;
/// never the credentials themselves).
pub(crate) struct Resolved {
    pub(crate) config: ClusterConfig,
    pub(crate) description: String,
}

/// Resolves the endpoint for a command on `loaded`. Where nothing names
/// one, the local engine is asked whether it is a DCE controller node.
pub(crate) async fn resolve(
    args: &EndpointArgs,
    loaded: Option<&Loaded>,
) -> Result<Resolved, CliError> {
    match choose(args, loaded)? {
        Choice::Named(resolved) => Ok(*resolved),
        Choice::Detect { file_auth, auto } => detect(args, file_auth, auto).await,
    }
}

/// What the command line and the file decide without asking any server.
enum Choice {
    Named(Box<Resolved>),
    /// Nothing names the endpoint: look for DCE on the local engine. With
    /// `auto` (the file's `auth` has no URL, or `"auto"`) the file asks for
    /// it: it comes before the saved login, and uses the local engine
    /// however Docker's CLI finds it, as the old mvconf did. Without, only
    /// the default socket is asked: `DOCKER_HOST` or a docker context name
    /// an engine as `-H` does. `file_auth`: that block's credentials.
    Detect {
        file_auth: Option<Auth>,
        auto: bool,
    },
}

fn choose(args: &EndpointArgs, loaded: Option<&Loaded>) -> Result<Choice, CliError> {
    if let Some(url) = &args.dce {
        return from_dce_flag(args, url, loaded).map(|r| Choice::Named(Box::new(r)));
    }
    if let Some(host) = &args.host {
        return from_host_flag(args, host).map(|r| Choice::Named(Box::new(r)));
    }
    if let Some(l) = loaded {
        if let Some(ep) = &l.desired.endpoint {
            return from_manifest(args, ep).map(|r| Choice::Named(Box::new(r)));
        }
        if let Some(auth) = &l.auth {
            return Ok(match auth.controller_url() {
                Some(url) => Choice::Named(Box::new(from_auth_block(args, auth, url)?)),
                None => Choice::Detect {
                    file_auth: legacy_auth(auth),
                    auto: true,
                },
            });
        }
    }
    if let Some(resolved) = from_current_login(args)? {
        return Ok(Choice::Named(Box::new(resolved)));
    }
    Ok(Choice::Detect {
        file_auth: None,
        auto: false,
    })
}

/// The local engine, or the DCE controller it names: one line says which
/// and why. Credentials for a detected controller: the file's, else the
/// login saved for it, else none (DCE may allow anonymous access; if it
/// does not, the error says how to log in).
async fn detect(
    args: &EndpointArgs,
    file_auth: Option<Auth>,
    auto: bool,
) -> Result<Resolved, CliError> {
    let local = local_engine(args)?;
    let default_socket = local
        .config
        .endpoint
        .as_ref()
        .is_some_and(Endpoint::is_default_socket);
    if !default_socket && !auto {
        return Ok(local);
    }
    let asked = crate::cluster::detect::ask(Cluster::new(local.config.clone())?.manager()).await;
    let why_not = match asked {
        Ok(Ok(Found::Dce { url, why })) => {
            let (auth, from) = dce_credentials(args, &url, file_auth, SameHost::Counts)?;
            let anonymous = matches!(auth, Auth::None);
            let mut resolved = dce(args, url.clone(), auth, from)?;
            resolved.description = format!("DCE {url}, detected: {why} ({from})");
            if anonymous {
                check_anonymous(&resolved, &url, &why).await?;
            }
            return Ok(resolved);
        }
        Ok(Ok(Found::NotDce { why })) => why,
        Ok(Err(refused)) => return Err(CliError::Usage(refused)),
        // The command's own first call to it will say the same, in context.
        Err(e) => format!("the local engine could not be asked ({e})"),
    };
    if auto && let Some(resolved) = from_current_login(args)? {
        return Ok(Resolved {
            description: format!("{} (no DCE detected: {why_not})", resolved.description),
            ..resolved
        });
    }
    Ok(Resolved {
        description: format!("{} (no DCE detected: {why_not})", local.description),
        ..local
    })
}

/// A detected controller reached without credentials must allow it: one
/// call to its node map, else an error that says how to log in.
async fn check_anonymous(resolved: &Resolved, url: &str, why: &str) -> Result<(), CliError> {
    let cluster = Cluster::new(resolved.config.clone())?;
    match cluster.dce_check_access().await {
        Err(e) if e.kind == crate::engine::ErrorKind::Auth => Err(CliError::Usage(format!(
            "DCE {url} (detected: {why}) refuses anonymous access: save a login with `mvconf login {url}`, \
             or give username and password in the file's auth block"
        ))),
        // Anything else is for the command to meet and report.
        _ => Ok(()),
    }
}

/// `--dce`: the file's auth block lends its credentials only when it names
/// the same controller, so that they never go to another.
fn from_dce_flag(
    args: &EndpointArgs,
    url: &str,
    loaded: Option<&Loaded>,
) -> Result<Resolved, CliError> {
    let url = normalize_controller_url(url);
    let file_auth = loaded
        .and_then(|l| l.auth.as_ref())
        .filter(|a| a.controller_url().as_deref() == Some(url.as_str()))
        .and_then(legacy_auth);
    let (auth, from) = dce_credentials(args, &url, file_auth, SameHost::DoesNot)?;
    dce(args, url, auth, from)
}

/// `-H`: a Docker manager authenticates by TLS client certificate, so there
/// is no login to look up.
fn from_host_flag(args: &EndpointArgs, host: &str) -> Result<Resolved, CliError> {
    let ep = Endpoint::Docker {
        manager: host.to_owned(),
        node_port: args.node_port,
        node_urls: Default::default(),
    };
    Ok(Resolved {
        config: config(args, ep, Auth::None)?,
        description: format!("Docker manager {host}"),
    })
}

/// A manifest's `spec.endpoint`, mapped as the operator maps it; the
/// flags fill only what it leaves unset, its own settings win.
fn from_manifest(args: &EndpointArgs, ep: &EndpointSpec) -> Result<Resolved, CliError> {
    let endpoint = Endpoint::from_spec(&EndpointSpec {
        dce_node_prefix: ep
            .dce_node_prefix
            .clone()
            .or_else(|| Some(args.dce_prefix.clone())),
        node_port: ep.node_port.or(args.node_port),
        ..ep.clone()
    });
    let what = match ep.kind {
        EndpointKind::Dce => "DCE",
        EndpointKind::Docker => "Docker manager",
    };
    // The manifest names a Secret the CLI cannot read: use the saved login for that URL.
    let (auth, from) = match saved_logins(args)?.get(&ep.url) {
        Some(login) => (login.auth(), "saved login"),
        None => (Auth::None, "anonymous; `mvconf login` to save one"),
    };
    let mut config = config(args, endpoint, auth)?;
    config.tls.insecure_skip_verify |= ep.insecure_skip_tls_verify;
    Ok(Resolved {
        config,
        description: format!("{what} {} from the manifest ({from})", ep.url),
    })
}

/// conf.json's `auth` block: a DCE controller, with the block's own
/// credentials when it has them.
fn from_auth_block(
    args: &EndpointArgs,
    auth: &LegacyAuth,
    url: String,
) -> Result<Resolved, CliError> {
    let (creds, from) = dce_credentials(args, &url, legacy_auth(auth), SameHost::DoesNot)?;
    dce(args, url, creds, from)
}

/// The controller `mvconf login` made current, if it is still saved.
fn from_current_login(args: &EndpointArgs) -> Result<Option<Resolved>, CliError> {
    let saved = saved_logins(args)?;
    let Some(url) = saved.current.clone() else {
        return Ok(None);
    };
    let Some(login) = saved.get(&url) else {
        return Ok(None);
    };
    let auth = login.auth();
    dce(args, url, auth, "saved login").map(Some)
}

/// The engine Docker's own CLI would use: `DOCKER_HOST` (with
/// `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`), else the docker context, else
/// the default socket. TLS flags given on the command line win over the
/// context's files.
fn local_engine(args: &EndpointArgs) -> Result<Resolved, CliError> {
    let docker =
        super::docker_env::local(&super::docker_env::Env::read()).map_err(CliError::Usage)?;
    let description = format!(
        "the local engine {} ({})",
        docker
            .host
            .as_deref()
            .unwrap_or("unix:///var/run/docker.sock"),
        docker.from
    );
    let ep = Endpoint::Local {
        docker_host: docker.host.clone(),
        node_port: args.node_port,
    };
    let mut config = config(args, ep, Auth::None)?;
    if let Some(dir) = &docker.tls_dir {
        let file = |name: &str| {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(CliError::File { path, source }),
            }
        };
        if args.tls_ca.is_none() {
            config.tls.ca_pem = file("ca.pem")?;
        }
        if args.tls_cert.is_none()
            && let (Some(mut pem), Some(key)) = (file("cert.pem")?, file("key.pem")?)
        {
            pem.push(b'\n');
            pem.extend(key);
            config.tls.identity_pem = Some(SecretBytes(pem));
        }
    }
    config.tls.insecure_skip_verify |= docker.skip_verify;
    Ok(Resolved {
        config,
        description,
    })
}

/// Whether a login saved for the same host on another port or scheme
/// serves a controller: for a detected one (`mvconf login IP` saves
/// `http://IP`, the controller may listen on another port); never for a
/// URL the user wrote.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SameHost {
    Counts,
    DoesNot,
}

/// A DCE's credentials: those from the file when it has them, else the
/// login saved for `url` (or its host, see [`SameHost`]), else none; and
/// where they came from.
fn dce_credentials(
    args: &EndpointArgs,
    url: &str,
    file_auth: Option<Auth>,
    same_host: SameHost,
) -> Result<(Auth, &'static str), CliError> {
    if let Some(a) = file_auth {
        return Ok((a, "login from the file's auth block"));
    }
    let saved = saved_logins(args)?;
    let host = |u: &str| {
        reqwest::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
    };
    let login = saved.get(url).or_else(|| {
        let want = host(url).filter(|_| same_host == SameHost::Counts)?;
        saved
            .logins
            .iter()
            .find(|(k, _)| host(k).as_deref() == Some(want.as_str()))
            .map(|(_, l)| l)
    });
    Ok(match login {
        Some(l) => (l.auth(), "saved login"),
        None => (Auth::None, "anonymous"),
    })
}

/// A DCE controller at `url`, with the flags' per-node prefix.
fn dce(args: &EndpointArgs, url: String, auth: Auth, from: &str) -> Result<Resolved, CliError> {
    let description = format!("DCE {url} ({from})");
    let endpoint = Endpoint::Dce {
        url,
        node_prefix: args.dce_prefix.clone(),
    };
    Ok(Resolved {
        config: config(args, endpoint, auth)?,
        description,
    })
}

/// The logins `mvconf login` saved; when it saved none, those the old
/// mvconf saved in `~/.dce_auth`, as it used them (its only login is the
/// current one), said once per run with the command that moves them.
fn saved_logins(args: &EndpointArgs) -> Result<LoginFile, CliError> {
    let path = args.login_path()?;
    let file = LoginFile::load(&path)?;
    if !file.logins.is_empty() {
        return Ok(file);
    }
    Ok(old_logins(&path).unwrap_or(file))
}

fn old_logins(new_path: &std::path::Path) -> Option<LoginFile> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let old = crate::credentials::old_login_path()?;
    match crate::credentials::read_old_logins(&old) {
        Ok(logins) if logins.is_empty() => None,
        Ok(logins) => {
            SAID.call_once(|| {
                tracing::warn!(
                    "using the login the old mvconf saved in {}; `mvconf login --import-old` moves it into {} (mode 0600)",
                    old.display(),
                    new_path.display()
                );
            });
            let current = (logins.len() == 1)
                .then(|| logins.keys().next().cloned())
                .flatten();
            Some(LoginFile { current, logins })
        }
        Err(e) => {
            SAID.call_once(|| tracing::warn!("{e}: the old mvconf's login is not used"));
            None
        }
    }
}

/// The flags' TLS and API version apply whichever source named the endpoint.
fn config(args: &EndpointArgs, endpoint: Endpoint, auth: Auth) -> Result<ClusterConfig, CliError> {
    Ok(ClusterConfig {
        endpoint: Some(endpoint),
        auth,
        tls: args.tls()?,
        api_version: args.api_version.clone(),
        ..Default::default()
    })
}

fn legacy_auth(a: &crate::config::legacy::LegacyAuth) -> Option<Auth> {
    match (&a.username, &a.password) {
        (Some(u), Some(p)) if !u.is_empty() => Some(Auth::Basic {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: EndpointKind, url: &str) -> EndpointSpec {
        EndpointSpec {
            kind,
            url: url.into(),
            secret_ref: None,
            insecure_skip_tls_verify: false,
            dce_node_prefix: None,
            node_port: None,
            node_urls: Default::default(),
        }
    }

    fn args(dce_prefix: &str, node_port: Option<u16>) -> EndpointArgs {
        EndpointArgs {
            dce_prefix: dce_prefix.into(),
            node_port,
            // No saved login: a file that does not exist.
            auth_file: Some(std::env::temp_dir().join(format!(
                "mvconf-endpoint-test-{}/absent.json",
                std::process::id()
            ))),
            ..Default::default()
        }
    }

    #[test]
    fn a_manifest_endpoint_maps_as_the_operators_does() {
        let ep = spec(EndpointKind::Dce, "https://dce-a/");
        let r = from_manifest(&args("/api", None), &ep).unwrap();
        assert_eq!(r.config.endpoint, Some(Endpoint::from_spec(&ep)));
    }

    #[test]
    fn flags_fill_what_the_manifest_leaves_unset_and_no_more() {
        let ep = spec(EndpointKind::Dce, "https://dce-a");
        let r = from_manifest(&args("/dce", None), &ep).unwrap();
        assert!(
            matches!(r.config.endpoint, Some(Endpoint::Dce { node_prefix, .. }) if node_prefix == "/dce")
        );
        let own = EndpointSpec {
            dce_node_prefix: Some("/api".into()),
            ..ep
        };
        let r = from_manifest(&args("/dce", None), &own).unwrap();
        assert!(
            matches!(r.config.endpoint, Some(Endpoint::Dce { node_prefix, .. }) if node_prefix == "/api")
        );

        let docker = spec(EndpointKind::Docker, "tcp://10.0.0.1:2375");
        let r = from_manifest(&args("/api", Some(2380)), &docker).unwrap();
        assert!(matches!(
            r.config.endpoint,
            Some(Endpoint::Docker {
                node_port: Some(2380),
                ..
            })
        ));
        let own = EndpointSpec {
            node_port: Some(2376),
            ..docker
        };
        let r = from_manifest(&args("/api", Some(2380)), &own).unwrap();
        assert!(matches!(
            r.config.endpoint,
            Some(Endpoint::Docker {
                node_port: Some(2376),
                ..
            })
        ));
    }
}
