//! Where logins live outside Kubernetes: the CLI's login file (what
//! `mvconf login` writes, like mvconf's `~/.dce_auth`) and the operator's
//! mounted credential files. Both must be private to their owner: a file
//! that others can read is refused, not used.

use crate::engine::transport::Auth;
use crate::secret::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a credential file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialError {
    #[error("{path}: readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot save the login to {path}: {source}")]
    Save {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid login file: {source}")]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "cannot find the home directory (HOME is not set); use --auth-file or MVCONF_AUTH_FILE"
    )]
    NoHome,
    /// The old mvconf's `~/.dce_auth` is not what it wrote.
    #[error("{path}: not a login file of the old mvconf: {reason}")]
    OldFormat { path: PathBuf, reason: String },
}

/// The login file: one login per controller URL, and which one is current.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct LoginFile {
    /// The URL of the last login, used when a command names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current: Option<String>,
    #[serde(default)]
    pub(crate) logins: BTreeMap<String, StoredLogin>,
}

/// One login. Stored as written (like docker's config.json), protected by
/// the file's mode.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredLogin {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for StoredLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StoredLogin {{ username: {:?}, password: <redacted> }}",
            self.username
        )
    }
}

impl StoredLogin {
    pub(crate) fn auth(&self) -> Auth {
        Auth::Basic {
            username: self.username.clone(),
            password: SecretString::new(self.password.clone()),
        }
    }
}

/// `$MVCONF_AUTH_FILE`, else `~/.mvconf/auth.json`.
pub(crate) fn default_login_path() -> Result<PathBuf, CredentialError> {
    if let Some(p) = std::env::var_os("MVCONF_AUTH_FILE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(CredentialError::NoHome)?;
    Ok(PathBuf::from(home).join(".mvconf").join("auth.json"))
}

/// The old mvconf's login file: `$MVCONF_DCE_AUTH_FILE`, else
/// `~/.dce_auth`; `None` without a home directory.
pub(crate) fn old_login_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MVCONF_DCE_AUTH_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".dce_auth"))
}

/// Reads the old mvconf's logins, `{"<controller url>": base64("user:password")}`,
/// keyed by the controller URL as `mvconf login` spells it. Empty when the
/// file does not exist; refused, like every credential file, when group or
/// others can read it.
pub(crate) fn read_old_logins(
    path: &Path,
) -> Result<BTreeMap<String, StoredLogin>, CredentialError> {
    use base64::Engine as _;
    let Some(bytes) = read_private(path)? else {
        return Ok(BTreeMap::new());
    };
    let bad = |reason: String| CredentialError::OldFormat {
        path: path.to_owned(),
        reason,
    };
    let map: BTreeMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (url, encoded) in map {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad(format!("the login of {url} is not base64 of user:password")))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad(format!("the login of {url} is not user:password")))?;
        out.insert(
            crate::config::legacy::normalize_controller_url(&url),
            StoredLogin {
                username: username.to_owned(),
                password: password.to_owned(),
            },
        );
    }
    Ok(out)
}

/// Reads a file that holds secrets, refusing it when group or others can
/// read it. `Ok(None)` when it does not exist.
pub(crate) fn read_private(path: &Path) -> Result<Option<Vec<u8>>, CredentialError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CredentialError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    std::fs::read(path)
        .map(Some)
        .map_err(|source| CredentialError::Read {
            path: path.to_owned(),
            source,
        })
}

impl LoginFile {
    pub(crate) fn load(path: &Path) -> Result<Self, CredentialError> {
        match read_private(path)? {
            None => Ok(Self::default()),
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| CredentialError::Format {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }

    /// Writes the file with mode 0600 (its directory 0700), replacing it
    /// atomically so a crash never leaves half a file.
    pub(crate) fn save(&self, path: &Path) -> Result<(), CredentialError> {
        let io = |source: std::io::Error| CredentialError::Save {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        let body = serde_json::to_vec_pretty(self).map_err(|source| CredentialError::Format {
            path: path.to_owned(),
            source,
        })?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }

    pub(crate) fn get(&self, url: &str) -> Option<&StoredLogin> {
        self.logins.get(url.trim_end_matches('/'))
    }

    pub(crate) fn set(&mut self, url: &str, login: StoredLogin) {
        let url = url.trim_end_matches('/').to_owned();
        self.current = Some(url.clone());
        self.logins.insert(url, login);
    }
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mvconf-cred-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_old_mvconfs_logins_are_read_and_an_open_file_refused() {
        use base64::Engine as _;
        let dir = tmpdir("old");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".dce_auth");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &path,
            format!(r#"{{"192.168.56.102": "{}"}}"#, b64("admin:p:w")),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let logins = read_old_logins(&path).unwrap();
        let url = crate::config::legacy::normalize_controller_url("192.168.56.102");
        let login = logins.get(&url).unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("admin", "p:w")
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_old_logins(&path),
            Err(CredentialError::TooOpen { .. })
        ));
        std::fs::write(&path, r#"{"x": "not base64!"}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read_old_logins(&path).unwrap_err().to_string();
        assert!(
            e.contains("not base64") && !e.contains("not base64!"),
            "{e}"
        );
        assert!(read_old_logins(&dir.join("absent")).unwrap().is_empty());
    }

    #[test]
    fn saves_0600_in_a_0700_directory_and_reads_back() {
        let dir = tmpdir("save");
        let path = dir.join("sub").join("auth.json");
        let mut f = LoginFile::default();
        f.set(
            "http://10.0.0.1/",
            StoredLogin {
                username: "admin".into(),
                password: "pw".into(),
            },
        );
        f.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let back = LoginFile::load(&path).unwrap();
        assert_eq!(back.current.as_deref(), Some("http://10.0.0.1"));
        assert_eq!(back.get("http://10.0.0.1").unwrap().username, "admin");
        assert!(!format!("{back:?}").contains("pw\""));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_a_file_others_can_read() {
        let dir = tmpdir("open");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("auth.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = LoginFile::load(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(LoginFile::load(&path).is_ok());
        assert!(
            LoginFile::load(&dir.join("absent"))
                .unwrap()
                .logins
                .is_empty()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
