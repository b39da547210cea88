//! The mutating commands: `up`, `disconnect`, `rm`, `down`, `uningress`,
//! `reingress`. Each is one engine pass in a mode; they differ only in it.

use super::endpoint::{EndpointArgs, resolve};
use super::{CliError, emit};
use crate::cluster::Cluster;
use crate::config;
use crate::reconcile::apply::{ApplyOptions, Outcome};
use crate::reconcile::report::Summary;
use crate::reconcile::{Memory, Mode, Ownership, Pass, Plan, Watcher};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct OpArgs {
    /// Print the plan and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Calls in flight per node.
    #[arg(long, default_value_t = ApplyOptions::default().per_node)]
    pub(crate) per_node: usize,
    /// Nodes read at once when observing.
    #[arg(long, default_value_t = 32)]
    pub(crate) observe_concurrency: usize,
    /// Act on services a MacvlanBinding owns too (their operator will undo
    /// it): by default they, and the networks the operator made, are kept.
    #[arg(long)]
    pub(crate) force: bool,
    /// `up`: ARP-probe free addresses on the node before handing them out
    /// (duplicate-address detection), with this image: mvconf's own,
    /// present on every node. Networks with `arpProbe: false` are not
    /// probed.
    #[arg(long, env = "MVCONF_PROBE_IMAGE", value_name = "IMAGE")]
    pub(crate) probe_image: Option<String>,
}

/// Prints outcomes as they come: a bar on a terminal, lines otherwise.
struct Progress {
    total: usize,
    done: Mutex<usize>,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        // A bar is worth it only on a terminal and for more than a few actions.
        Self {
            total,
            done: Mutex::new(0),
            tty: std::io::stderr().is_terminal() && total > 10,
        }
    }

    fn see(&self, o: &Outcome) {
        let Ok(mut done) = self.done.lock() else {
            return;
        };
        *done += 1;
        if self.tty {
            let width = 30;
            let filled = width * *done / self.total.max(1);
            let mut err = std::io::stderr().lock();
            if o.failed() {
                let _ = writeln!(err, "\r\x1b[2K{o}");
            }
            let _ = write!(
                err,
                "\r\x1b[2K[{}{}] {}/{} {}",
                "=".repeat(filled),
                " ".repeat(width - filled),
                *done,
                self.total,
                o.action
            );
            let _ = err.flush();
        } else {
            let _ = emit(&format!("{o}\n"));
        }
    }

    fn finish(&self) {
        if self.tty {
            let _ = writeln!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

fn command_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Up => "up",
        Mode::Disconnect => "disconnect",
        Mode::Remove => "rm",
        Mode::Down => "down",
        Mode::Uningress => "uningress",
        Mode::Reingress => "reingress",
        Mode::Observe => "status",
    }
}

/// Loads the file and reaches its swarm.
pub(crate) async fn connect(
    file: &Path,
    endpoint: &EndpointArgs,
) -> Result<(config::Loaded, Cluster), CliError> {
    let loaded = config::load(file)?;
    for w in &loaded.warnings {
        tracing::warn!("{}: {w}", file.display());
    }
    let resolved = resolve(endpoint, Some(&loaded))?;
    tracing::info!("using {}", resolved.description);
    let cluster = Cluster::new(resolved.config)?;
    Ok((loaded, cluster))
}

/// What the command shows while its pass runs.
struct Shown {
    dry_run: bool,
    progress: OnceLock<Progress>,
}

impl Watcher for Shown {
    fn planned(&self, plan: &Plan) {
        if self.dry_run {
            return;
        }
        for problem in &plan.problems {
            if problem.is_error() {
                tracing::error!("{problem}");
            } else {
                tracing::warn!("{problem}");
            }
        }
        let _ = self.progress.set(Progress::new(plan.actions.len()));
    }

    fn outcome(&self, o: &Outcome) {
        if let Some(p) = self.progress.get() {
            p.see(o);
        }
    }
}

/// Runs one mutating command; `Ok(false)` when something failed.
pub(crate) async fn run(
    mode: Mode,
    file: &Path,
    endpoint: &EndpointArgs,
    args: &OpArgs,
) -> Result<bool, CliError> {
    let started = Instant::now();
    let (loaded, cluster) = connect(file, endpoint).await?;
    let memory = Memory::new();
    let probing = args
        .probe_image
        .as_ref()
        .filter(|_| mode == Mode::Up && !args.dry_run);
    let plan = crate::reconcile::PlanOptions {
        probe: probing
            .map(|_| {
                loaded
                    .desired
                    .networks
                    .iter()
                    .filter(|n| n.arp_probe)
                    .map(|n| (n.name.clone(), Default::default()))
                    .collect()
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    let pass = Pass {
        plan,
        probe_inline: probing.map(|image| crate::probe::container::ProbeSpec {
            image: image.clone(),
            timing: crate::probe::Timing::default(),
        }),
        apply: ApplyOptions {
            per_node: args.per_node,
            ..Default::default()
        },
        observe_concurrency: args.observe_concurrency,
        dry_run: args.dry_run,
        ownership: if args.force {
            Ownership::Ignore
        } else {
            Ownership::Respect
        },
        ..Pass::new(&loaded.desired, &memory, mode)
    };
    let shown = Shown {
        dry_run: args.dry_run,
        progress: OnceLock::new(),
    };
    let passed = pass.run(&cluster, &shown).await.map_err(CliError::Engine)?;
    let name = command_name(mode);
    for (service, owner) in &passed.kept {
        emit(&format!(
            "kept: {service}: owned by {owner} (--force to act on it anyway)\n"
        ))?;
    }
    let p = &passed.applied.plan;
    if args.dry_run {
        emit(&p.to_string())?;
        emit(&format!(
            "mvconf {name} --dry-run: {} action{}, nothing changed\n",
            p.actions.len(),
            if p.actions.len() == 1 { "" } else { "s" }
        ))?;
        return Ok(p.problems.iter().all(|x| !x.is_error()));
    }
    if let Some(progress) = shown.progress.get() {
        progress.finish();
    }
    let summary = Summary::of(&passed.applied);
    let calls = cluster.calls();
    tracing::debug!(
        total = calls.total(),
        mutating = calls.mutating(),
        "docker api calls"
    );
    emit(&format!(
        "mvconf {name}: {summary} ({:.1} s)\n",
        started.elapsed().as_secs_f64()
    ))?;
    Ok(summary.ok())
}
