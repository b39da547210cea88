//! The `mvconf` command line: one module per command family.

mod audit;
mod config;
pub mod endpoint;
mod login;
mod ops;
pub mod status;

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
    pub file: PathBuf,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "MVCONF_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub endpoint: endpoint::EndpointArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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

/// Runs one command; the exit code says whether it worked: 0 yes, 1 no
/// (or partly), 2 wrong usage.
pub fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Config => config::check(&cli.file).map(|()| true),
        Command::Convert(args) => config::convert(&cli.file, args).map(|()| true),
        Command::Crd => config::crd().map(|()| true),
        _ => block_on(run_async(&cli)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F: std::future::Future<Output = Result<bool, CliError>>>(
    f: F,
) -> Result<bool, CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))?;
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
            .map_err(|e| CliError::Usage(e.to_string())),
        Command::Config | Command::Convert(_) | Command::Crd => Ok(true),
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

/// What a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] crate::config::LoadError),
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
    #[error("cannot serialize {what}: {message}")]
    Serialize { what: &'static str, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}
