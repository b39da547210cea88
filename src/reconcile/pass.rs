//! One reconcile pass: observe -> plan -> apply, in this one place. Every
//! driver runs it: the CLI's commands (`up`, `disconnect`, `rm`, `down`,
//! `uningress`, `reingress`, `status`) and the operator's reconcile and
//! cleanup. A driver only chooses the inputs (desired state, memory, mode,
//! options) and renders what happened; it never calls Docker itself.

use super::apply::{Applied, ApplyOptions, NodeGates, Outcome, apply};
use super::observe::{NodeCache, Observed, observe};
use super::plan::{Memory, Mode, Plan, PlanOptions, Survey, plan_in};
use super::{Owner, Snapshot};
use crate::cluster::Cluster;
use crate::config::validate::Desired;
use crate::engine::EngineError;
use crate::probe::book::{Freshness, NetBook};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

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
    pub(crate) ownership: Ownership,
    /// Claim: the other bindings of this install that exist (`ns/name`),
    /// valid or not. A service one of them claimed stays theirs: an older
    /// binding with a typo in its spec still protects what it bound.
    pub(crate) live_bindings: Arc<BTreeSet<String>>,
    /// Release: do not give the claims up yet (the operator's cleanup
    /// does, once Docker shows the work done): a claim is what tells the
    /// next try which services are this binding's to undo.
    pub(crate) keep_claims: bool,
    /// The CLI: probe the free addresses a plan waits for before applying
    /// it (the operator probes ahead, outside its passes).
    pub(crate) probe_inline: Option<crate::probe::container::ProbeSpec>,
}

/// Probe rounds of one CLI pass at most.
const PROBE_ROUNDS: usize = 4;

/// Probes, on the node each network names, the addresses the plan wants
/// probed, and notes the results in `books`.
async fn probe_now(
    spec: &crate::probe::container::ProbeSpec,
    desired: &Desired,
    plan: &super::plan::Plan,
    engines: &std::collections::HashMap<String, crate::engine::Engine>,
    books: &mut std::collections::BTreeMap<String, NetBook>,
) {
    let runs = plan.probes.iter().filter_map(|(net, w)| {
        let parent = desired.networks.iter().find(|n| &n.name == net)?.parent.clone();
        let engine = engines.get(&w.node_id)?.clone();
        let addrs: Vec<std::net::Ipv4Addr> = w.addrs.iter().copied().collect();
        Some(async move {
            tracing::info!(network = %net, node = %engine.label(), addresses = addrs.len(), "probing free addresses (ARP)");
            let r = crate::probe::container::run(&engine, spec, net, &parent, &addrs).await;
            (net.clone(), engine.label().to_owned(), addrs, r)
        })
    });
    for (net, node, addrs, r) in futures::future::join_all(runs).await {
        let book = books.entry(net).or_default();
        let now = super::Timestamp::now();
        match r {
            Ok(report) => {
                book.record(&node, &addrs, &report, now);
            }
            Err(e) => book.fail(&node, &e.to_string(), now),
        }
    }
}

/// How a pass treats the operator's claims on services: the
/// `io.mvconf.owner` and `io.mvconf.install` labels of a service, which the
/// operator puts there before it changes anything for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// Claims do not matter (the CLI's `--force`, `status`, the audit).
    #[default]
    Ignore,
    /// The CLI: services a MacvlanBinding owns are kept as they are, and so
    /// are their networks and the networks the operator created.
    Respect,
    /// The operator: claim the spec's services for this binding before
    /// changing anything, unless another operator install holds one; then
    /// change nothing.
    Claim(Owner),
    /// The operator's cleanup: give this binding's claims up after the pass.
    Release(Owner),
}

/// What a driver hears while its pass runs, as it happens.
pub(crate) trait Watcher: Sync {
    /// The swarm was read (the operator follows the nodes' events from here).
    fn observed(&self, _observed: &Observed) {}
    /// The plan is made, before anything changes.
    fn planned(&self, _plan: &Plan) {}
    /// One action ended.
    fn outcome(&self, _outcome: &Outcome) {}
    /// Node reads kept between passes, if the driver keeps them current.
    fn node_cache(&self) -> Option<&NodeCache> {
        None
    }
}

/// A driver that only wants the result.
impl Watcher for () {}

/// What a pass saw and did.
#[derive(Debug, Clone)]
pub(crate) struct Passed {
    pub(crate) snapshot: Snapshot,
    /// The plan and each action's outcome (none for a dry run).
    pub(crate) applied: Applied,
    /// [`Ownership::Respect`], [`Ownership::Release`]: services left alone,
    /// and who owns them.
    pub(crate) kept: Vec<(String, Owner)>,
    /// [`Ownership::Claim`]: services another install holds; nothing was
    /// changed (the plan is an observation).
    pub(crate) held_elsewhere: Vec<(String, Owner)>,
    /// [`Ownership::Release`]: services nobody claims, left alone: a
    /// binding undoes only what it claimed (and so once changed).
    pub(crate) unclaimed: Vec<String>,
    /// Every network the pass kept from removal: the options' own, and
    /// those of kept services and of other owners.
    pub(crate) kept_networks: BTreeSet<String>,
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
            ownership: Ownership::Ignore,
            live_bindings: Arc::default(),
            keep_claims: false,
            probe_inline: None,
        }
    }

    /// Runs the pass. Fails only when the swarm's manager cannot be read;
    /// everything else is in the outcomes and the plan's problems.
    pub(crate) async fn run(
        &self,
        cluster: &Cluster,
        watcher: &dyn Watcher,
    ) -> Result<Passed, EngineError> {
        let mut results = Self::run_together(std::slice::from_ref(self), cluster, watcher).await;
        results.pop().unwrap_or_else(|| {
            Err(EngineError::new(
                crate::engine::ErrorKind::Unreachable,
                "",
                "pass",
                None,
                "no result",
            ))
        })
    }

    /// Runs several passes on one swarm as one round: one observation of
    /// the swarm with every pass's services, one survey of who holds which
    /// address, each pass planned on it (on its own services only), and
    /// every plan applied at once, `per_node` calls in flight per node
    /// across all of them. A result per pass, in order; a manager that
    /// cannot be read fails them all.
    pub(crate) async fn run_together(
        passes: &[Pass<'_>],
        cluster: &Cluster,
        watcher: &dyn Watcher,
    ) -> Vec<Result<Passed, EngineError>> {
        let mut names: Vec<String> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for p in passes {
            for s in &p.desired.services {
                if seen.insert(s.name.as_str()) {
                    names.push(s.name.clone());
                }
            }
        }
        let concurrency = passes
            .iter()
            .map(|p| p.observe_concurrency)
            .max()
            .unwrap_or(1);
        let cache = watcher.node_cache();
        let started = Instant::now();
        let observed = match observe(cluster, &names, concurrency, cache).await {
            Ok(o) => o,
            Err(e) => return passes.iter().map(|_| Err(e.clone())).collect(),
        };
        watcher.observed(&observed);
        let observed_at = Instant::now();
        let survey = Survey::of(&observed.snapshot);

        // Claims and plans, one pass after the other: labels are calls, a
        // plan is pure and short (it grows with its own services).
        let mut steps: Vec<Step> = Vec::with_capacity(passes.len());
        for p in passes {
            steps.push(p.prepare(&observed, &survey, cluster, watcher).await);
            tokio::task::yield_now().await;
        }
        let planned_at = Instant::now();

        // Every plan at once, sharing the nodes' call slots.
        let gates = (passes.len() > 1).then(|| {
            Arc::new(NodeGates::new(
                passes.iter().map(|p| p.apply.per_node).max().unwrap_or(1),
            ))
        });
        let progress = |o: &Outcome| watcher.outcome(o);
        let applies = steps.into_iter().zip(passes).map(|(step, p)| {
            let mut options = p.apply.clone();
            if let Ownership::Claim(me) = &p.ownership {
                options.owner = Some(me.clone());
            }
            options.gates = gates.clone();
            // Nodes worked on at once, shared out: the round as a whole
            // keeps about as many nodes busy as one pass does on its own
            // times four, not one pass's worth per pass (each waiting node
            // run is memory).
            if passes.len() > 1 {
                options.nodes_at_once = options
                    .nodes_at_once
                    .min((ROUND_NODE_RUNS / passes.len()).max(MIN_NODE_RUNS));
            }
            let engines = &observed.engines;
            let progress = &progress;
            async move {
                match step {
                    Step::Plan {
                        snapshot,
                        plan,
                        act,
                        claims,
                        keep_networks,
                    } => {
                        let applied = if act {
                            apply(plan, engines, &options, progress).await
                        } else {
                            Applied {
                                plan,
                                outcomes: Vec::new(),
                            }
                        };
                        Step::Applied {
                            snapshot,
                            applied,
                            claims,
                            keep_networks,
                        }
                    }
                    other => other,
                }
            }
        });
        let done = futures::future::join_all(applies).await;
        let applied_at = Instant::now();

        let mut results = Vec::with_capacity(passes.len());
        for (step, p) in done.into_iter().zip(passes) {
            results.push(p.finish(step, &observed, cluster, cache).await);
        }
        let ms = |a: Instant, b: Instant| b.duration_since(a).as_millis() as u64;
        tracing::debug!(
            passes = passes.len(),
            nodes = observed.snapshot.nodes.len(),
            observe_ms = ms(started, observed_at),
            plan_ms = ms(observed_at, planned_at),
            apply_ms = ms(planned_at, applied_at),
            finish_ms = ms(applied_at, Instant::now()),
            "passes run"
        );
        results
    }

    /// Claims and plan of this pass on a round's observation.
    async fn prepare(
        &self,
        observed: &Observed,
        survey: &Survey<'_>,
        cluster: &Cluster,
        watcher: &dyn Watcher,
    ) -> Step {
        let names: Vec<&str> = self
            .desired
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let snapshot = observed.snapshot.for_services(&names);
        let claims = Claims::of_live(&self.ownership, &snapshot, &self.live_bindings);
        if !claims.held_elsewhere.is_empty() {
            let plan = plan_in(
                survey,
                self.desired,
                &snapshot,
                self.memory,
                Mode::Observe,
                &self.plan,
            );
            return Step::HeldElsewhere {
                snapshot,
                plan,
                held: claims.held_elsewhere,
            };
        }
        if !self.dry_run {
            for (id, labels) in &claims.to_label {
                if let Err(e) = cluster.manager().label_service(id, labels).await {
                    return Step::Failed(e);
                }
            }
        }
        let kept_names: BTreeSet<&str> = claims
            .kept
            .iter()
            .map(|(s, _)| s.as_str())
            .chain(claims.unclaimed.iter().map(String::as_str))
            .collect();
        let trimmed;
        let desired = if kept_names.is_empty() {
            self.desired
        } else {
            trimmed = self.desired.without_services(&kept_names);
            &trimmed
        };
        let mut options = self.plan.clone();
        options
            .keep_networks
            .extend(claims.keep_networks(self.desired));
        let mut plan = plan_in(survey, desired, &snapshot, self.memory, self.mode, &options);
        if let Some(spec) = &self.probe_inline
            && self.mode == Mode::Up
            && !self.dry_run
        {
            // Each round probes what the slots still waiting want; a
            // round that finds every address answered asks for the next.
            let mut books = std::collections::BTreeMap::new();
            for _ in 0..PROBE_ROUNDS {
                if !plan.probes.values().any(|w| w.awaiting > 0) {
                    break;
                }
                probe_now(spec, desired, &plan, &observed.engines, &mut books).await;
                let now = super::Timestamp::now();
                for (net, book) in &books {
                    options
                        .probe
                        .insert(net.clone(), book.gate(now, Freshness::default()));
                }
                plan = plan_in(survey, desired, &snapshot, self.memory, self.mode, &options);
            }
        }
        watcher.planned(&plan);
        Step::Plan {
            snapshot,
            act: !self.dry_run && !plan.is_empty(),
            plan,
            claims,
            keep_networks: options.keep_networks,
        }
    }

    /// What a pass saw and did, once its plan was applied.
    async fn finish(
        &self,
        step: Step,
        observed: &Observed,
        cluster: &Cluster,
        cache: Option<&NodeCache>,
    ) -> Result<Passed, EngineError> {
        let (snapshot, applied, claims, keep_networks) = match step {
            Step::Failed(e) => return Err(e),
            Step::HeldElsewhere {
                snapshot,
                plan,
                held,
            } => {
                return Ok(Passed {
                    snapshot,
                    applied: Applied {
                        plan,
                        outcomes: Vec::new(),
                    },
                    kept: Vec::new(),
                    held_elsewhere: held,
                    unclaimed: Vec::new(),
                    kept_networks: self.plan.keep_networks.clone(),
                });
            }
            // Not applied: nothing was to be done (or a dry run).
            Step::Plan {
                snapshot,
                plan,
                claims,
                keep_networks,
                ..
            } => (
                snapshot,
                Applied {
                    plan,
                    outcomes: Vec::new(),
                },
                claims,
                keep_networks,
            ),
            Step::Applied {
                snapshot,
                applied,
                claims,
                keep_networks,
            } => (snapshot, applied, claims, keep_networks),
        };
        // What this pass changed is not in the kept reads any more, whether
        // or not the node's events said so yet.
        if let Some(cache) = cache {
            for o in &applied.outcomes {
                if let Some(e) = observed.engines.get(o.action.node_id()) {
                    cache.acted(e.label(), &o.action);
                }
            }
        }
        if !self.dry_run && !self.keep_claims {
            for (id, labels) in &claims.to_release {
                cluster.manager().label_service(id, labels).await?;
            }
        }
        Ok(Passed {
            snapshot,
            applied,
            kept: claims.kept,
            held_elsewhere: Vec::new(),
            unclaimed: claims.unclaimed,
            kept_networks: keep_networks,
        })
    }
}

/// Node runs in flight across the applies of one round, shared out among
/// its passes, each keeping at least [`MIN_NODE_RUNS`].
const ROUND_NODE_RUNS: usize = 256;
const MIN_NODE_RUNS: usize = 4;

/// One pass of a round, from its plan to its end.
enum Step {
    /// Another claim holds one of its services: nothing changes.
    HeldElsewhere {
        snapshot: Snapshot,
        plan: Plan,
        held: Vec<(String, Owner)>,
    },
    /// Claiming a service failed.
    Failed(EngineError),
    /// Planned; `act`: the plan is to be applied.
    Plan {
        snapshot: Snapshot,
        plan: Plan,
        act: bool,
        claims: Claims,
        keep_networks: BTreeSet<String>,
    },
    Applied {
        snapshot: Snapshot,
        applied: Applied,
        claims: Claims,
        keep_networks: BTreeSet<String>,
    },
}

/// Networks on any node whose owner label passes `keep`.
fn networks_owned(snapshot: &Snapshot, keep: impl Fn(&Owner) -> bool) -> BTreeSet<String> {
    snapshot
        .nodes
        .iter()
        .flat_map(|n| &n.networks)
        .filter(|n| n.owner.as_ref().is_some_and(&keep))
        .map(|n| n.name.clone())
        .collect()
}

/// Label changes: (service ID, (label, value or `None` to remove)).
type Labelling = Vec<(String, Vec<(&'static str, Option<String>)>)>;

/// What the claims on the spec's services mean for one pass. Pure.
#[derive(Debug, Default)]
struct Claims {
    kept: Vec<(String, Owner)>,
    held_elsewhere: Vec<(String, Owner)>,
    unclaimed: Vec<String>,
    to_label: Labelling,
    to_release: Labelling,
    /// Networks the operator created (Respect).
    owned_networks: BTreeSet<String>,
}

impl Claims {
    #[cfg(test)]
    fn of(ownership: &Ownership, snapshot: &Snapshot) -> Claims {
        Self::of_live(ownership, snapshot, &BTreeSet::new())
    }

    /// The claims a pass acts on; `live` are the other bindings of this
    /// install that exist.
    fn of_live(ownership: &Ownership, snapshot: &Snapshot, live: &BTreeSet<String>) -> Claims {
        let mut c = Claims::default();
        let owned = snapshot
            .services
            .iter()
            .filter_map(|s| Some((s, s.owner.as_ref()?)));
        match ownership {
            Ownership::Ignore => {}
            Ownership::Respect => {
                c.kept = owned.map(|(s, o)| (s.name.clone(), o.clone())).collect();
                c.owned_networks = networks_owned(snapshot, |_| true);
            }
            Ownership::Claim(me) => {
                // Another install's claim, or a sibling binding's while
                // that binding exists; a claim of a binding that is gone
                // (its finalizer removed by hand) is stale.
                c.held_elsewhere = owned
                    .filter(|(_, o)| {
                        o.install != me.install
                            || (o.binding != me.binding && live.contains(&o.binding))
                    })
                    .map(|(s, o)| (s.name.clone(), o.clone()))
                    .collect();
                let set = || me.labels().map(|(k, v)| (k, Some(v.to_owned()))).to_vec();
                c.to_label = snapshot
                    .services
                    .iter()
                    .filter(|s| s.owner.as_ref() != Some(me))
                    .map(|s| (s.id.clone(), set()))
                    .collect();
            }
            Ownership::Release(me) => {
                // Whatever another binding owns is not this cleanup's, nor
                // what nobody claims: this binding never changed it (it
                // claims before it changes anything), whatever its spec
                // names now.
                let unset = || me.labels().map(|(k, _)| (k, None)).to_vec();
                for s in &snapshot.services {
                    match &s.owner {
                        Some(o) if o == me => c.to_release.push((s.id.clone(), unset())),
                        Some(o) => c.kept.push((s.name.clone(), o.clone())),
                        None => c.unclaimed.push(s.name.clone()),
                    }
                }
                // Networks too: only those it created go.
                c.owned_networks = snapshot
                    .nodes
                    .iter()
                    .flat_map(|n| &n.networks)
                    .filter(|n| n.owner.as_ref() != Some(me))
                    .map(|n| n.name.clone())
                    .collect();
            }
        }
        c
    }

    /// Networks a pass must not remove: those of the kept services, and
    /// those the operator created (for another binding, on cleanup).
    fn keep_networks(&self, desired: &Desired) -> BTreeSet<String> {
        let kept: BTreeSet<&str> = self
            .kept
            .iter()
            .map(|(s, _)| s.as_str())
            .chain(self.unclaimed.iter().map(String::as_str))
            .collect();
        desired
            .services
            .iter()
            .filter(|s| kept.contains(s.name.as_str()))
            .map(|s| s.network.clone())
            .chain(self.owned_networks.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{NetView, NodeView, ServiceView};

    fn owner(binding: &str, install: &str) -> Owner {
        Owner {
            binding: binding.into(),
            install: install.into(),
        }
    }

    fn snapshot(services: &[(&str, Option<Owner>)], net_owner: Option<Owner>) -> Snapshot {
        Snapshot {
            nodes: std::sync::Arc::new(vec![NodeView {
                id: "n1".into(),
                networks: vec![NetView {
                    name: "mv".into(),
                    owner: net_owner,
                    ..Default::default()
                }],
                ..Default::default()
            }]),
            services: services
                .iter()
                .map(|(name, o)| ServiceView {
                    id: format!("id-{name}"),
                    name: (*name).into(),
                    owner: o.clone(),
                    ..Default::default()
                })
                .collect(),
            missing_services: vec![],
        }
    }

    #[test]
    fn the_cli_keeps_owned_services_and_the_operators_networks() {
        let me = owner("prod/bank", "mvconf/lease");
        let s = snapshot(
            &[("web", Some(me.clone())), ("free", None)],
            Some(me.clone()),
        );
        let c = Claims::of(&Ownership::Respect, &s);
        assert_eq!(c.kept, vec![("web".to_owned(), me)]);
        assert!(c.owned_networks.contains("mv"));
        assert!(c.to_label.is_empty() && c.to_release.is_empty());
        let ignored = Claims::of(&Ownership::Ignore, &s);
        assert!(ignored.kept.is_empty() && ignored.owned_networks.is_empty());
    }

    #[test]
    fn the_operator_claims_what_is_free_or_its_own_installs_and_refuses_another_installs() {
        let me = owner("prod/bank", "mvconf/lease");
        let sibling = owner("prod/old", "mvconf/lease");
        let stranger = owner("team/app", "team/lease");
        let s = snapshot(
            &[("a", None), ("b", Some(me.clone())), ("c", Some(sibling))],
            None,
        );
        let c = Claims::of(&Ownership::Claim(me.clone()), &s);
        assert!(c.held_elsewhere.is_empty());
        let labelled: Vec<&str> = c.to_label.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            labelled,
            ["id-a", "id-c"],
            "its own label is not written again"
        );
        let s = snapshot(&[("a", None), ("d", Some(stranger.clone()))], None);
        let c = Claims::of(&Ownership::Claim(me), &s);
        assert_eq!(c.held_elsewhere, vec![("d".to_owned(), stranger)]);
    }

    #[test]
    fn a_sibling_that_still_exists_keeps_its_claim_whatever_its_spec() {
        let me = owner("team-b/new", "mvconf/lease");
        let sibling = owner("team-a/old", "mvconf/lease");
        let s = snapshot(&[("web", Some(sibling.clone())), ("free", None)], None);
        let live: BTreeSet<String> = ["team-a/old".to_owned()].into();
        let c = Claims::of_live(&Ownership::Claim(me.clone()), &s, &live);
        assert_eq!(c.held_elsewhere, vec![("web".to_owned(), sibling)]);
        // Gone: its claim is stale and taken over.
        let c = Claims::of_live(&Ownership::Claim(me), &s, &BTreeSet::new());
        assert!(c.held_elsewhere.is_empty());
    }

    #[test]
    fn cleanup_releases_its_own_claims_and_leaves_the_others_services_alone() {
        let me = owner("prod/bank", "mvconf/lease");
        let other = owner("prod/first", "mvconf/lease");
        let s = snapshot(
            &[("mine", Some(me.clone())), ("theirs", Some(other.clone()))],
            Some(other.clone()),
        );
        let c = Claims::of(&Ownership::Release(me), &s);
        let released: Vec<&str> = c.to_release.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(released, ["id-mine"]);
        assert!(c.to_release[0].1.iter().all(|(_, v)| v.is_none()));
        assert_eq!(c.kept, vec![("theirs".to_owned(), other)]);
        assert!(c.owned_networks.contains("mv"));
    }

    #[test]
    fn cleanup_leaves_what_nobody_claims_and_networks_it_did_not_create() {
        let me = owner("team-x/refused", "mvconf/lease");
        let s = snapshot(&[("by-hand", None), ("mine", Some(me.clone()))], None);
        let c = Claims::of(&Ownership::Release(me.clone()), &s);
        assert_eq!(c.unclaimed, ["by-hand"]);
        assert!(c.kept.is_empty());
        assert!(
            c.owned_networks.contains("mv"),
            "an unlabelled network stays"
        );
        let s = snapshot(&[("mine", Some(me.clone()))], Some(me.clone()));
        let c = Claims::of(&Ownership::Release(me), &s);
        assert!(!c.owned_networks.contains("mv"), "its own network may go");
    }
}
