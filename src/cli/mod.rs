//! The `mvconf` command line: one module per command family.

mod audit;
mod config;
pub(crate) mod endpoint;
mod login;
mod ops;
mod repair;
pub(crate) mod status;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Create macvlan networks on every node of a Docker Swarm / DCE cluster and
/// give the containers of services stable addresses on them.
#[derive(Debug, Parser)]
#[command(name = "mvconf", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file: a mvconf conf.json or a MacvlanBinding manifest
    /// (YAML or JSON).
    #[arg(
        short = 'f',
        long = "config-file",
        global = true,
        default_value = "conf.json",
        env = "MVCONF_CONFIG"
    )]
    pub(crate) file: PathBuf,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "MVCONF_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,

    #[command(flatten)]
    pub(crate) endpoint: endpoint::EndpointArgs,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check the configuration file; print it normalized when valid.
    Config,
    /// Turn a conf.json into a MacvlanBinding manifest for `kubectl apply`.
    Convert(config::ConvertArgs),
    /// Print the MacvlanBinding CustomResourceDefinition.
    Crd,
    /// Log in to a DCE controller and save the login (mode 0600) for later commands.
    Login(login::LoginArgs),
    /// Create the networks on every node and connect each service's containers.
    Up(ops::OpArgs),
    /// Disconnect the services' containers from their networks.
    Disconnect(ops::OpArgs),
    /// Remove the networks from every node.
    Rm(ops::OpArgs),
    /// Disconnect the containers, then remove the networks (disconnect + rm).
    Down(ops::OpArgs),
    /// Disconnect the services' containers from the swarm ingress network.
    Uningress(ops::OpArgs),
    /// Connect the services' containers to the swarm ingress network again.
    Reingress(ops::OpArgs),
    /// Show every container's macvlan address.
    Status(status::StatusArgs),
    /// Check every node against the bindings: duplicate addresses, containers
    /// outside their pool or network, unbound tasks, a status Docker
    /// contradicts, endpoints left behind. Exit 0 only when clean.
    Audit(audit::AuditArgs),
    /// Run the Kubernetes operator that keeps every MacvlanBinding true.
    Operator(Box<crate::operator::OperatorArgs>),
    /// ARP-probe addresses on an interface (RFC 5227 duplicate-address
    /// detection); prints one JSON report. What the probe container runs;
    /// needs CAP_NET_RAW.
    #[command(hide = true)]
    Probe(ProbeArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ProbeArgs {
    /// The interface on the segment (the macvlan network's parent).
    #[arg(long)]
    interface: String,
    /// Probes per address.
    #[arg(long, default_value_t = 3)]
    probes: u32,
    /// Milliseconds between probes.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// Milliseconds to wait for answers after the last probe.
    #[arg(long, default_value_t = 1000)]
    wait_ms: u64,
    /// The addresses.
    #[arg(required = true)]
    addresses: Vec<std::net::Ipv4Addr>,
}

fn probe(args: &ProbeArgs) -> Result<bool, CliError> {
    let timing = crate::probe::Timing {
        probes: args.probes.max(1),
        interval: std::time::Duration::from_millis(args.interval_ms),
        wait: std::time::Duration::from_millis(args.wait_ms),
    };
    let report = crate::probe::wire::probe(&args.interface, &args.addresses, timing)
        .map_err(|e| CliError::Usage(format!("probe: {e}")))?;
    let text = serde_json::to_string(&report).map_err(CliError::serialize("the probe report"))?;
    emit(&format!("{text}\n"))?;
    Ok(true)
}

/// Logs go to stderr. `DEBUG=1` (as in mvconf) or `RUST_LOG` raise the level.
pub fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let debug = std::env::var("DEBUG").is_ok_and(|v| !v.is_empty() && v != "0");
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

/// Runs one command and prints its error, if any; [`exit_code`] says what
/// the process exits with.
pub fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Config => config::check(&cli.file).map(|()| true),
        Command::Convert(args) => config::convert(&cli.file, args).map(|()| true),
        Command::Crd => config::crd().map(|()| true),
        Command::Probe(args) => probe(args),
        _ => block_on(run_async(&cli)),
    };
    if let Err(e) = &result {
        eprintln!("error: {e}");
    }
    exit_code(&result)
}

/// The process exit code of a command's result; the only place one is
/// chosen.
///
/// - `0`: the command did all it was asked (`Ok(true)`).
/// - `1`: it ran but not everything worked (`Ok(false)`: an action failed,
///   an audit found something, a dry run planned an error), or it stopped
///   on an error (any [`CliError`], a usage error found after parsing
///   included).
///
/// A command line clap cannot parse never gets here: clap exits with `2`.
pub(crate) fn exit_code(result: &Result<bool, CliError>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) | Err(_) => ExitCode::FAILURE,
    }
}

fn block_on<F: std::future::Future<Output = Result<bool, CliError>>>(
    f: F,
) -> Result<bool, CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    rt.block_on(f)
}

async fn run_async(cli: &Cli) -> Result<bool, CliError> {
    use crate::reconcile::Mode;
    let op = |mode, args| ops::run(mode, &cli.file, &cli.endpoint, args);
    match &cli.command {
        Command::Login(args) => login::run(args, &cli.endpoint).await.map(|()| true),
        Command::Up(a) => op(Mode::Up, a).await,
        Command::Disconnect(a) => op(Mode::Disconnect, a).await,
        Command::Rm(a) => op(Mode::Remove, a).await,
        Command::Down(a) => op(Mode::Down, a).await,
        Command::Uningress(a) => op(Mode::Uningress, a).await,
        Command::Reingress(a) => op(Mode::Reingress, a).await,
        Command::Status(args) => status::run(&cli.file, &cli.endpoint, args)
            .await
            .map(|()| true),
        Command::Audit(args) => audit::run(&cli.file, &cli.endpoint, args).await,
        Command::Operator(args) => crate::operator::run((**args).clone())
            .await
            .map(|()| true)
            .map_err(CliError::Operator),
        Command::Config | Command::Convert(_) | Command::Crd | Command::Probe(_) => Ok(true),
    }
}

/// Writes to stdout; a closed pipe (`mvconf crd | head`) is not an error.
fn emit(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Output(e)),
        _ => Ok(()),
    }
}

/// What a command can fail with: what was being done, the cause kept as
/// the source.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The configuration file could not be read or is invalid.
    #[error(transparent)]
    Load(#[from] crate::config::LoadError),
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file the command line names (a TLS file, `--secret-file`).
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// What the user was prompted for could not be read.
    #[error("cannot read {what}: {source}")]
    Input {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The login file or a private key file.
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    /// The endpoint's clients could not be built (no request was made).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ConfigError),
    #[error("login to {url} failed: the controller refused the credentials of {username:?}")]
    LoginRefused { url: String, username: String },
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Operator(#[from] crate::operator::OperatorError),
    /// The command line asks for something that cannot be done: a bad value,
    /// an unknown field, the wrong command for the file.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

impl CliError {
    /// For `map_err`: serializing `what` failed.
    fn serialize<E>(what: &'static str) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |e| CliError::Serialize {
            what,
            source: Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_0_for_success_and_1_for_anything_else() {
        assert_eq!(exit_code(&Ok(true)), ExitCode::SUCCESS);
        assert_eq!(exit_code(&Ok(false)), ExitCode::FAILURE);
        assert_eq!(
            exit_code(&Err(CliError::Usage("bad flag".into()))),
            ExitCode::FAILURE
        );
    }

    #[test]
    fn errors_keep_their_cause_as_the_source() {
        use std::error::Error;
        let e = CliError::Runtime(std::io::Error::other("no threads"));
        assert_eq!(e.to_string(), "cannot start the async runtime: no threads");
        assert!(e.source().is_some());
        let dir = std::env::temp_dir().join(format!("mvconf-cli-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A directory where the login file should be: refused, path first.
        let e: CliError = crate::credentials::LoginFile::load(&dir)
            .unwrap_err()
            .into();
        assert!(matches!(e, CliError::Credentials(_)), "{e:?}");
        assert!(e.to_string().starts_with(&dir.display().to_string()), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
