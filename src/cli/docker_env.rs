//! Where the docker CLI itself would go, for the CLI's last resort (no
//! flag, no endpoint in the file, no saved login): `DOCKER_HOST` with
//! `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`; else the context that
//! `DOCKER_CONTEXT` or `currentContext` of `config.json` names (in
//! `DOCKER_CONFIG`, default `~/.docker`); else the local socket. The docker
//! CLI's order: `DOCKER_HOST` wins over any context.

use std::path::{Path, PathBuf};

/// The environment the docker CLI reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Env {
    pub(crate) host: Option<String>,
    pub(crate) tls_verify: bool,
    pub(crate) cert_path: Option<PathBuf>,
    pub(crate) context: Option<String>,
    /// `DOCKER_CONFIG`, else `~/.docker`.
    pub(crate) config_dir: Option<PathBuf>,
}

impl Env {
    pub(crate) fn read() -> Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            host: var("DOCKER_HOST"),
            tls_verify: var("DOCKER_TLS_VERIFY").is_some(),
            cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
            context: var("DOCKER_CONTEXT"),
            config_dir: var("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| Path::new(&h).join(".docker"))),
        }
    }
}

/// The engine to use and its TLS files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Local {
    /// `None`: the default socket.
    pub(crate) host: Option<String>,
    /// A directory with `ca.pem`, `cert.pem` and `key.pem` (those present).
    pub(crate) tls_dir: Option<PathBuf>,
    pub(crate) skip_verify: bool,
    /// Where it came from, for the one line that says so.
    pub(crate) from: String,
}

/// Resolves as the docker CLI does; `Err` names what is wrong (an unknown
/// context, an unreadable file).
pub(crate) fn local(env: &Env) -> Result<Local, String> {
    if let Some(host) = &env.host {
        let tls_dir = env.tls_verify.then(|| {
            env.cert_path
                .clone()
                .or_else(|| env.config_dir.clone())
                .unwrap_or_default()
        });
        let from = if tls_dir.is_some() {
            "DOCKER_HOST, DOCKER_TLS_VERIFY"
        } else {
            "DOCKER_HOST"
        };
        return Ok(Local {
            host: Some(host.clone()),
            tls_dir,
            skip_verify: false,
            from: from.into(),
        });
    }
    let (name, source) = match (&env.context, &env.config_dir) {
        (Some(c), _) => (Some(c.clone()), "DOCKER_CONTEXT"),
        (None, Some(dir)) => (current_context(dir)?, "the current docker context"),
        (None, None) => (None, ""),
    };
    match (name, &env.config_dir) {
        (Some(name), Some(dir)) if name != "default" => context(dir, &name, source),
        (Some(name), None) if name != "default" => Err(format!(
            "{source} {name:?}: no docker configuration directory (set DOCKER_CONFIG or HOME)"
        )),
        _ => Ok(Local {
            from: "the default socket".into(),
            ..Local::default()
        }),
    }
}

fn current_context(dir: &Path) -> Result<Option<String>, String> {
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(v["currentContext"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned))
}

/// The context `name`: its `meta.json` (found by name, so without hashing
/// it) and its TLS files.
fn context(dir: &Path, name: &str, source: &str) -> Result<Local, String> {
    let meta_dir = dir.join("contexts").join("meta");
    let entries = std::fs::read_dir(&meta_dir).map_err(|e| {
        format!(
            "{source} {name:?}: no docker contexts in {}: {e}",
            meta_dir.display()
        )
    })?;
    for entry in entries.flatten() {
        let path = entry.path().join("meta.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if meta["Name"].as_str() != Some(name) {
            continue;
        }
        let docker = &meta["Endpoints"]["docker"];
        let host = docker["Host"]
            .as_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{}: context {name:?} has no docker host", path.display()))?;
        let tls = dir
            .join("contexts")
            .join("tls")
            .join(entry.file_name())
            .join("docker");
        return Ok(Local {
            host: Some(host.to_owned()),
            tls_dir: tls.is_dir().then_some(tls),
            skip_verify: docker["SkipTLSVerify"].as_bool().unwrap_or(false),
            from: format!("{source} {name}"),
        });
    }
    Err(format!(
        "{source} {name:?}: no such docker context in {} (`docker context ls`)",
        meta_dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("mvconf-docker-env-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn with_context(d: &Path, id: &str, name: &str, host: &str, tls: bool) {
        let meta = d.join("contexts/meta").join(id);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
            ),
        )
        .unwrap();
        if tls {
            std::fs::create_dir_all(d.join("contexts/tls").join(id).join("docker")).unwrap();
        }
    }

    #[test]
    fn docker_host_wins_and_tls_verify_takes_the_cert_path() {
        let env = Env {
            host: Some("tcp://10.0.0.11:2376".into()),
            tls_verify: true,
            cert_path: Some("/certs".into()),
            context: Some("prod".into()),
            config_dir: Some("/nowhere".into()),
        };
        let l = local(&env).unwrap();
        assert_eq!(l.host.as_deref(), Some("tcp://10.0.0.11:2376"));
        assert_eq!(l.tls_dir, Some(PathBuf::from("/certs")));
        // Without DOCKER_CERT_PATH: the configuration directory, as docker does.
        let l = local(&Env {
            cert_path: None,
            ..env.clone()
        })
        .unwrap();
        assert_eq!(l.tls_dir, Some(PathBuf::from("/nowhere")));
        let l = local(&Env {
            tls_verify: false,
            ..env
        })
        .unwrap();
        assert_eq!(l.tls_dir, None);
    }

    #[test]
    fn a_context_named_by_env_or_config_gives_its_host_and_tls() {
        let d = dir("ctx");
        with_context(&d, "abc123", "lab", "unix:///run/lab.sock", false);
        with_context(&d, "def456", "prod", "tcp://10.0.0.11:2376", true);
        let env = Env {
            context: Some("prod".into()),
            config_dir: Some(d.clone()),
            ..Env::default()
        };
        let l = local(&env).unwrap();
        assert_eq!(l.host.as_deref(), Some("tcp://10.0.0.11:2376"));
        assert_eq!(l.tls_dir, Some(d.join("contexts/tls/def456/docker")));
        assert_eq!(l.from, "DOCKER_CONTEXT prod");
        std::fs::write(d.join("config.json"), r#"{"currentContext":"lab"}"#).unwrap();
        let l = local(&Env {
            context: None,
            ..env.clone()
        })
        .unwrap();
        assert_eq!(l.host.as_deref(), Some("unix:///run/lab.sock"));
        assert_eq!(l.tls_dir, None);
        let e = local(&Env {
            context: Some("gone".into()),
            ..env
        })
        .unwrap_err();
        assert!(
            e.contains("\"gone\"") && e.contains("docker context ls"),
            "{e}"
        );
    }

    #[test]
    fn no_context_or_the_default_one_is_the_default_socket() {
        let d = dir("none");
        for env in [
            Env::default(),
            Env {
                config_dir: Some(d.clone()),
                ..Env::default()
            },
            Env {
                context: Some("default".into()),
                config_dir: Some(d.clone()),
                ..Env::default()
            },
        ] {
            assert_eq!(local(&env).unwrap().host, None, "{env:?}");
        }
    }
}
