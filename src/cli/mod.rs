//! The `mvconf` command line: one module per command family.

mod actions;
mod audit;
mod config;
mod docker_env;
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

/// The output of a command: for people, or one object for programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    #[default]
    Text,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML (`Text` prints JSON: callers print their
/// own text).
pub(crate) fn emit_as<T: serde::Serialize>(
    value: &T,
    format: Format,
    what: &'static str,
) -> Result<(), CliError> {
    let text = match format {
        Format::Yaml => serde_saphyr::to_string(value).map_err(CliError::serialize(what))?,
        Format::Text | Format::Json => {
            let mut t = serde_json::to_string_pretty(value).map_err(CliError::serialize(what))?;
            t.push('\n');
            t
        }
    };
    emit(&text)
}

/// Whether stderr is a person's terminal: a TTY, and not `TERM=dumb`.
pub(crate) fn interactive() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Whether logs on stderr may carry colours: on a terminal (not
/// `TERM=dumb`) unless `NO_COLOR` is set to anything but empty
/// (no-color.org).
fn colours(tty: bool, no_color: Option<&str>, term: Option<&str>) -> bool {
    tty && no_color.is_none_or(str::is_empty) && term != Some("dumb")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check the configuration file; print it normalized when valid.
    Config(config::DocArgs),
    /// Turn a conf.json into a MacvlanBinding manifest for `kubectl apply`.
    Convert(config::ConvertArgs),
    /// Print the MacvlanBinding CustomResourceDefinition.
    Crd(config::DocArgs),
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell),
    /// e.g. `mvconf completion bash > /etc/bash_completion.d/mvconf`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g.
    /// `mvconf man > /usr/local/share/man/man1/mvconf.1`.
    Man,
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

fn probe(args: &ProbeArgs) -> Result<Outcome, CliError> {
    let timing = crate::probe::Timing {
        probes: args.probes.max(1),
        interval: std::time::Duration::from_millis(args.interval_ms),
        wait: std::time::Duration::from_millis(args.wait_ms),
    };
    let report = crate::probe::wire::probe(&args.interface, &args.addresses, timing)
        .map_err(|e| CliError::Usage(format!("probe: {e}")))?;
    let text = serde_json::to_string(&report).map_err(CliError::serialize("the probe report"))?;
    emit(&format!("{text}\n"))?;
    Ok(Outcome::Done)
}

fn completion(shell: clap_complete::Shell) -> Result<Outcome, CliError> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "mvconf", &mut out);
    emit(&String::from_utf8_lossy(&out))?;
    Ok(Outcome::Done)
}

fn man() -> Result<Outcome, CliError> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(CliError::Output)?;
    emit(&String::from_utf8_lossy(&out))?;
    Ok(Outcome::Done)
}

/// Logs go to stderr. `DEBUG=1` (as in mvconf) or `RUST_LOG` raise the level.
pub fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let debug = std::env::var("DEBUG").is_ok_and(|v| !v.is_empty() && v != "0");
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = colours(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var("NO_COLOR").ok().as_deref(),
        std::env::var("TERM").ok().as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

/// How a command that ran to its end ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It did all it was asked.
    Done,
    /// Some actions failed or were left undone (a node unreachable, a pool
    /// exhausted, a dry run that plans an error).
    Incomplete,
    /// An audit found problems (`audit`, and `audit --fix` when some are
    /// left after the repair).
    Findings,
}

impl Outcome {
    /// `Done` when the audit is `clean`, else `Findings`.
    pub(crate) fn audited(clean: bool) -> Outcome {
        if clean {
            Outcome::Done
        } else {
            Outcome::Findings
        }
    }

    /// `Done` when `all` went well, else `Incomplete`.
    pub(crate) fn of(all: bool) -> Outcome {
        if all {
            Outcome::Done
        } else {
            Outcome::Incomplete
        }
    }
}

/// Runs one command and prints its error, if any; [`exit_code`] says what
/// the process exits with.
pub fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Config(args) => config::check(&cli.file, args.output).map(|()| Outcome::Done),
        Command::Convert(args) => config::convert(&cli.file, args).map(|()| Outcome::Done),
        Command::Crd(args) => config::crd(args.output).map(|()| Outcome::Done),
        Command::Probe(args) => probe(args),
        Command::Completion { shell } => completion(*shell),
        Command::Man => man(),
        _ => block_on(run_async(&cli)),
    };
    if let Err(e) = &result {
        eprintln!("error: {e}");
    }
    exit_code(&result)
}

/// The process exit code of a command's result; the only place one is
/// chosen (README, "Exit codes").
///
/// - `0`: the command did all it was asked.
/// - `1`: some actions failed or were left undone, or the command stopped
///   on an error of the cluster or the API server (unreachable, refused).
/// - `2`: a usage or configuration error: the command line, the
///   configuration file, a file it names, the login. Clap's own parse
///   errors exit with `2` too, before a command runs.
/// - `3`: an audit found problems.
pub(crate) fn exit_code(result: &Result<Outcome, CliError>) -> ExitCode {
    ExitCode::from(match result {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::Incomplete) => 1,
        Ok(Outcome::Findings) => 3,
        Err(e) if e.is_usage() => 2,
        Err(_) => 1,
    })
}

fn block_on<F: std::future::Future<Output = Result<Outcome, CliError>>>(
    f: F,
) -> Result<Outcome, CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    rt.block_on(f)
}

async fn run_async(cli: &Cli) -> Result<Outcome, CliError> {
    use crate::reconcile::Mode;
    let op = |mode, args| async move {
        ops::run(mode, &cli.file, &cli.endpoint, args)
            .await
            .map(Outcome::of)
    };
    match &cli.command {
        Command::Login(args) => login::run(args, &cli.endpoint)
            .await
            .map(|()| Outcome::Done),
        Command::Up(a) => op(Mode::Up, a).await,
        Command::Disconnect(a) => op(Mode::Disconnect, a).await,
        Command::Rm(a) => op(Mode::Remove, a).await,
        Command::Down(a) => op(Mode::Down, a).await,
        Command::Uningress(a) => op(Mode::Uningress, a).await,
        Command::Reingress(a) => op(Mode::Reingress, a).await,
        Command::Status(args) => status::run(&cli.file, &cli.endpoint, args)
            .await
            .map(|()| Outcome::Done),
        Command::Audit(args) => audit::run(&cli.file, &cli.endpoint, args).await,
        Command::Operator(args) => crate::operator::run((**args).clone())
            .await
            .map(|()| Outcome::Done)
            .map_err(CliError::Operator),
        Command::Config(_)
        | Command::Convert(_)
        | Command::Crd(_)
        | Command::Probe(_)
        | Command::Completion { .. }
        | Command::Man => Ok(Outcome::Done),
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
    /// Whether the user's input is at fault (exit code 2): the command
    /// line, the configuration file, a file it names, the saved login, the
    /// endpoint's settings. Not what a server answered.
    pub(crate) fn is_usage(&self) -> bool {
        match self {
            CliError::Load(_)
            | CliError::Usage(_)
            | CliError::File { .. }
            | CliError::Input { .. }
            | CliError::Credentials(_)
            | CliError::Cluster(_) => true,
            CliError::Output(_)
            | CliError::Serialize { .. }
            | CliError::LoginRefused { .. }
            | CliError::Kube { .. }
            | CliError::Runtime(_)
            | CliError::Operator(_)
            | CliError::Engine(_) => false,
        }
    }

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
    fn colours_only_on_a_terminal_without_no_color_or_a_dumb_term() {
        assert!(colours(true, None, Some("xterm-256color")));
        assert!(colours(true, Some(""), None));
        assert!(!colours(false, None, Some("xterm")));
        assert!(!colours(true, Some("1"), Some("xterm")));
        assert!(!colours(true, Some("yes"), None));
        assert!(!colours(true, None, Some("dumb")));
    }

    #[test]
    fn exit_codes_are_0_done_1_incomplete_2_usage_3_findings() {
        assert_eq!(exit_code(&Ok(Outcome::Done)), ExitCode::from(0));
        assert_eq!(exit_code(&Ok(Outcome::Incomplete)), ExitCode::from(1));
        assert_eq!(exit_code(&Ok(Outcome::Findings)), ExitCode::from(3));
        assert_eq!(
            exit_code(&Err(CliError::Usage("bad flag".into()))),
            ExitCode::from(2)
        );
        let unreachable = CliError::Engine(crate::engine::EngineError::new(
            crate::engine::ErrorKind::Unreachable,
            "node1",
            "GET /info",
            None,
            "connection refused",
        ));
        assert_eq!(exit_code(&Err(unreachable)), ExitCode::from(1));
        assert_eq!(
            exit_code(&Err(CliError::Runtime(std::io::Error::other("x")))),
            ExitCode::from(1)
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
