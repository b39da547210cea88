//! The mutating commands: `up`, `disconnect`, `rm`, `down`, `uningress`,
//! `reingress`. Each is one engine pass in a mode; they differ only in it.

use super::endpoint::{EndpointArgs, resolve};
use super::{CliError, Format, emit, emit_as};
use crate::cluster::Cluster;
use crate::config;
use crate::reconcile::apply::{ApplyOptions, Outcome};
use crate::reconcile::report::Summary;
use crate::reconcile::{Memory, Mode, Ownership, Pass, Plan, Watcher};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;
use std::sync::OnceLock;
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
    /// Output: a line per action and a summary (text), or one object with
    /// every action's outcome and the summary (json, yaml).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    pub(crate) output: Format,
}

/// Shows outcomes as they come: with text output a line per action; on a
/// terminal (not `TERM=dumb`) and for more than a few actions, a progress
/// bar with counts and ETA under those lines, on stderr.
struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
}

impl Progress {
    fn new(total: usize, lines: bool) -> Self {
        let bar = (super::interactive() && total > 10).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            // No colours in the template: NO_COLOR holds by construction.
            if let Ok(style) = ProgressStyle::with_template(
                "[{bar:30}] {pos}/{len} actions, {elapsed} (ETA {eta}) {wide_msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self { bar, lines }
    }

    fn see(&self, o: &Outcome) {
        let line = o.to_string();
        match &self.bar {
            Some(bar) => {
                if self.lines {
                    bar.suspend(|| emit(&format!("{line}\n")).ok());
                }
                bar.set_message(o.action.to_string());
                bar.inc(1);
            }
            None if self.lines => {
                let _ = emit(&format!("{line}\n"));
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
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
    let resolved = resolve(endpoint, Some(&loaded)).await?;
    tracing::info!("using {}", resolved.description);
    let cluster = Cluster::new(resolved.config)?;
    Ok((loaded, cluster))
}

/// What the command shows while its pass runs.
struct Shown {
    dry_run: bool,
    /// Text output: a line per action (else only the final object).
    lines: bool,
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
        let _ = self
            .progress
            .set(Progress::new(plan.actions.len(), self.lines));
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
        lines: args.output == Format::Text,
        progress: OnceLock::new(),
    };
    let passed = pass.run(&cluster, &shown).await.map_err(CliError::Engine);
    if let Some(progress) = shown.progress.get() {
        progress.finish();
    }
    let passed = passed?;
    let name = command_name(mode);
    let summary = Summary::of(&passed.applied);
    if args.output != Format::Text {
        let p = &passed.applied.plan;
        let ok = if args.dry_run {
            p.problems.iter().all(|x| !x.is_error())
        } else {
            summary.ok()
        };
        let report = super::actions::report(
            name,
            args.dry_run,
            p,
            &passed.applied.outcomes,
            &summary,
            &passed.kept,
            started.elapsed().as_secs_f64(),
        );
        emit_as(&report, args.output, "the report")?;
        return Ok(ok);
    }
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
