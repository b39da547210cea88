//! One reconcile pass: observe -> plan -> apply, in this one place. Every
//! driver runs it: the CLI's commands (`up`, `disconnect`, `rm`, `down`,
//! `uningress`, `reingress`, `status`) and the operator's reconcile and
//! cleanup. A driver only chooses the inputs (desired state, memory, mode,
//! options) and renders what happened; it never calls Docker itself.

use super::Snapshot;
use super::apply::{Applied, ApplyOptions, Outcome, apply};
use super::observe::{Observed, observe};
use super::plan::{Memory, Mode, Plan, PlanOptions, plan};
use crate::cluster::Cluster;
use crate::config::validate::Desired;
use crate::engine::EngineError;

/// The inputs of one pass.
#[derive(Debug, Clone)]
pub(crate) struct Pass<'a> {
    pub(crate) desired: &'a Desired,
    /// What is remembered of each slot (the operator's status records); the
    /// CLI has none.
    pub(crate) memory: &'a Memory,
    pub(crate) mode: Mode,
    pub(crate) plan: PlanOptions,
    pub(crate) apply: ApplyOptions,
    /// Nodes read at once when observing.
    pub(crate) observe_concurrency: usize,
    /// Plan only: Docker is not changed.
    pub(crate) dry_run: bool,
}

/// What a driver hears while its pass runs, as it happens.
pub(crate) trait Watcher: Sync {
    /// The swarm was read (the operator follows the nodes' events from here).
    fn observed(&self, _observed: &Observed) {}
    /// The plan is made, before anything changes.
    fn planned(&self, _plan: &Plan) {}
    /// One action ended.
    fn outcome(&self, _outcome: &Outcome) {}
}

/// A driver that only wants the result.
impl Watcher for () {}

/// What a pass saw and did.
#[derive(Debug, Clone)]
pub(crate) struct Passed {
    pub(crate) snapshot: Snapshot,
    /// The plan and each action's outcome (none for a dry run).
    pub(crate) applied: Applied,
}

impl<'a> Pass<'a> {
    /// A pass in `mode` with the defaults: no memory, default options.
    pub(crate) fn new(desired: &'a Desired, memory: &'a Memory, mode: Mode) -> Self {
        Self {
            desired,
            memory,
            mode,
            plan: PlanOptions::default(),
            apply: ApplyOptions::default(),
            observe_concurrency: 32,
            dry_run: false,
        }
    }

    /// Runs the pass. Fails only when the swarm's manager cannot be read;
    /// everything else is in the outcomes and the plan's problems.
    pub(crate) async fn run(
        &self,
        cluster: &Cluster,
        watcher: &dyn Watcher,
    ) -> Result<Passed, EngineError> {
        let names: Vec<String> = self
            .desired
            .services
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let observed = observe(cluster, &names, self.observe_concurrency).await?;
        watcher.observed(&observed);
        let plan = plan(
            self.desired,
            &observed.snapshot,
            self.memory,
            self.mode,
            &self.plan,
        );
        watcher.planned(&plan);
        let applied = if self.dry_run || plan.is_empty() {
            Applied {
                plan,
                outcomes: Vec::new(),
            }
        } else {
            apply(plan, &observed.engines, &self.apply, &|o| {
                watcher.outcome(o)
            })
            .await
        };
        Ok(Passed {
            snapshot: observed.snapshot,
            applied,
        })
    }
}
