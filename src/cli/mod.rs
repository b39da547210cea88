//! The `mvconf` command line: one module per command family.

mod config;

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
}

/// Logs go to stderr. `DEBUG=1` (as in mvconf) or `RUST_LOG` raise the level.
pub fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let debug = std::env::var("DEBUG").is_ok_and(|v| !v.is_empty() && v != "0");
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

/// Runs one command; the exit code says whether it worked.
pub fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Config => config::check(&cli.file),
        Command::Convert(args) => config::convert(&cli.file, args),
        Command::Crd => config::crd(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
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
}
