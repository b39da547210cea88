//! `mvconf login URL`: check a DCE login and save it for later commands.

use super::CliError;
use super::endpoint::EndpointArgs;
use crate::cluster::{Cluster, ClusterConfig, Endpoint};
use crate::config::legacy::normalize_controller_url;
use crate::credentials::{LoginFile, StoredLogin};
use crate::engine::ErrorKind;
use crate::engine::transport::Auth;
use crate::secret::SecretString;
use std::io::{BufRead, IsTerminal, Write};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoginArgs {
    /// DCE controller address: an IP, a host or a URL.
    #[arg(required_unless_present = "import_old")]
    pub(crate) url: Option<String>,
    /// Move the logins the old mvconf saved in ~/.dce_auth
    /// (`MVCONF_DCE_AUTH_FILE`) into this mvconf's login file (mode 0600),
    /// without asking the controller; ~/.dce_auth can then be deleted.
    #[arg(long, conflicts_with_all = ["url", "username", "password", "password_stdin"])]
    pub(crate) import_old: bool,
    /// Output: a line (text), or one object (json, yaml): the controller
    /// URLs saved, the user and the file. Never the password.
    #[arg(short = 'o', long, value_enum, default_value_t = super::Format::Text)]
    pub(crate) output: super::Format,
    /// Administrator account (prompted for when missing).
    #[arg(short = 'u', long)]
    pub(crate) username: Option<String>,
    /// Password (visible to other users in the process list: prefer the
    /// prompt or --password-stdin).
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    pub(crate) password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub(crate) password_stdin: bool,
}

/// Reads one line from stdin after `prompt`; `what` names it in errors.
fn read_line(prompt: &str, what: &'static str) -> Result<String, CliError> {
    let mut err = std::io::stderr();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| CliError::Input { what, source })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// `login --import-old`.
fn import_old(endpoint: &EndpointArgs, output: super::Format) -> Result<(), CliError> {
    let old =
        crate::credentials::old_login_path().ok_or(crate::credentials::CredentialError::NoHome)?;
    let logins = crate::credentials::read_old_logins(&old)?;
    if logins.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: no login of the old mvconf to import",
            old.display()
        )));
    }
    let path = endpoint.login_path()?;
    let mut file = LoginFile::load(&path)?;
    let n = logins.len();
    let current = file.current.clone();
    for (url, login) in logins {
        file.set(&url, login);
    }
    // The current login stays; without one, the old file's only login is.
    file.current = current.or_else(|| (n == 1).then(|| file.current.clone()).flatten());
    file.save(&path)?;
    if output != super::Format::Text {
        let urls: Vec<&String> = file.logins.keys().collect();
        return saved(&urls, None, &path, output);
    }
    println!(
        "Imported {n} login{} from {} into {} (mode 0600); {} can be deleted",
        if n == 1 { "" } else { "s" },
        old.display(),
        path.display(),
        old.display()
    );
    Ok(())
}

pub(crate) async fn run(args: &LoginArgs, endpoint: &EndpointArgs) -> Result<(), CliError> {
    let Some(url) = args.url.as_deref().filter(|_| !args.import_old) else {
        return import_old(endpoint, args.output);
    };
    let url = normalize_controller_url(url);
    let username = match &args.username {
        Some(u) => u.clone(),
        None => read_line("Username: ", "the username")?,
    };
    let password = if let Some(p) = &args.password {
        if std::io::stderr().is_terminal() {
            eprintln!(
                "warning: a password on the command line is visible to other users; prefer --password-stdin"
            );
        }
        p.clone()
    } else if args.password_stdin || !std::io::stdin().is_terminal() {
        read_line("", "the password")?
    } else {
        rpassword::prompt_password("Password: ").map_err(|source| CliError::Input {
            what: "the password",
            source,
        })?
    };
    if username.is_empty() {
        return Err(CliError::Usage("the username must not be empty".into()));
    }
    let cluster = Cluster::new(ClusterConfig {
        endpoint: Some(Endpoint::Dce {
            url: url.clone(),
            node_prefix: endpoint.dce_prefix.clone(),
        }),
        auth: Auth::Basic {
            username: username.clone(),
            password: SecretString::new(password.clone()),
        },
        api_version: endpoint.api_version.clone(),
        ..Default::default()
    })?;
    // What mvconf did: list the swarm's nodes with these credentials.
    match cluster.manager().nodes().await {
        Ok(nodes) => tracing::debug!(nodes = nodes.len(), "login verified"),
        Err(e) if e.kind == ErrorKind::Auth => {
            return Err(CliError::LoginRefused { url, username });
        }
        Err(e) => return Err(CliError::Engine(e)),
    }
    let path = endpoint.login_path()?;
    let mut file = LoginFile::load(&path)?;
    file.set(
        &url,
        StoredLogin {
            username: username.clone(),
            password,
        },
    );
    file.save(&path)?;
    if args.output != super::Format::Text {
        return saved(&[&url], Some(&username), &path, args.output);
    }
    println!(
        "Login succeeded: {url}; saved to {} (mode 0600)",
        path.display()
    );
    Ok(())
}

/// `-o json|yaml` of a login: what was saved where.
fn saved(
    urls: &[&String],
    username: Option<&str>,
    path: &std::path::Path,
    output: super::Format,
) -> Result<(), CliError> {
    let mut v = serde_json::json!({"saved": urls, "file": path.display().to_string()});
    if let Some(u) = username {
        v["username"] = serde_json::json!(u);
    }
    super::emit_as(&v, output, "the login")
}
