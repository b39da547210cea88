//! The MacvlanBinding controller: a thin reconcile around the engine
//! (validate -> conflicts -> endpoint -> one [`Pass`] -> status, Events and
//! metrics), and the finalizer that runs a pass in the deletion policy's
//! mode; under per-swarm leadership, only for the swarms this replica
//! leads. Docker events reach it through `router.rs`.

use super::conflict::conflict;
use super::context::{Context, Guarded, valid};
use super::endpoints::EndpointState;
use super::metrics::{ReasonLabels, ResultLabels};
use super::report::{publish, report};
use super::shards::Lead;
use super::slices::WriteError;
use super::status::{after_pass, is_ready, not_run};
use crate::config::validate::Desired;
use crate::crd::{
    DeletionPolicy, FINALIZER, MacvlanBinding, MacvlanBindingStatus, event_reasons, reasons,
};
use crate::engine::{EngineError, ErrorKind};
use crate::fence::Fenced;
use crate::reconcile::report::leftovers;
use crate::reconcile::{
    Memory, Mode, NodeCache, Observed, Owner, Ownership, Pass, Passed, PlanOptions, Problem,
    Watcher,
};
use crate::retry;
use crate::slices::memory_from;
use crate::tenancy::admit::Admitted;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

/// A pass at the end of a release cooldown runs this much after it, so that
/// the address is free by then whatever the clocks' rounding.
const COOLDOWN_SLACK: Duration = Duration::from_millis(100);

/// After a status write refused as stale: the watch brings the newer
/// binding within this, usually.
const STALE_RETRY: Duration = Duration::from_secs(1);

/// Field manager of everything the operator writes.
pub(crate) const MANAGER: &str = "mvconf-operator";

/// What a reconcile can fail with; all of them are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("kubernetes: {0}")]
    Kube(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("cleanup of {binding} not finished: {reason}")]
    CleanupPending { binding: String, reason: String },
    /// The API server refused the status write: the binding changed since
    /// this pass read it (another writer, or this replica's cache is behind).
    #[error("status of {binding} not written: the binding changed since resourceVersion {read}")]
    Stale { binding: String, read: String },
    #[error("records of {binding} not written: {source}")]
    Slices {
        binding: String,
        #[source]
        source: WriteError,
    },
    #[error("status of {binding} not written: {source}")]
    Fenced {
        binding: String,
        #[source]
        source: Fenced,
    },
}

fn key(b: &MacvlanBinding) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

/// Writes the status the pass found, only while this replica leads, and
/// only over the binding as this pass read it: the write carries its
/// resourceVersion, so the API server refuses it (409) when anyone wrote the
/// binding since, such as a new leader after this one was cut off.
async fn write_status(
    ctx: &Context,
    b: &MacvlanBinding,
    status: &MacvlanBindingStatus,
) -> Result<(), Error> {
    // What an alert on "not Ready for 10 minutes" reads, kept current
    // whether or not the status changes.
    ctx.metrics
        .binding_ready
        .get_or_create(&super::metrics::BindingLabels {
            namespace: b.namespace().unwrap_or_default(),
            binding: b.name_any(),
        })
        .set(i64::from(is_ready(status)));
    if b.status.as_ref() == Some(status) {
        return Ok(());
    }
    ctx.fence_for(b).check().map_err(|source| Error::Fenced {
        binding: key(b),
        source,
    })?;
    let api: Api<MacvlanBinding> =
        Api::namespaced(ctx.client.clone(), &b.namespace().unwrap_or_default());
    let now = put_status(&api, b, status).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 409 => Error::Stale {
            binding: key(b),
            read: b.resource_version().unwrap_or_default(),
        },
        e => Error::Kube(e),
    })?;
    ctx.metrics.status_writes.inc();
    // The next pass may come before the watch brings this write.
    ctx.written_bindings
        .wrote(key(b), b.resource_version(), Some(Arc::new(now)));
    Ok(())
}

/// PUT .../status of `b` as read (its resourceVersion included) with `status`.
pub(crate) async fn put_status(
    api: &Api<MacvlanBinding>,
    b: &MacvlanBinding,
    status: &MacvlanBindingStatus,
) -> Result<MacvlanBinding, kube::Error> {
    let mut next = b.clone();
    next.status = Some(status.clone());
    next.metadata.managed_fields = None;
    let params = PostParams {
        dry_run: false,
        field_manager: Some(MANAGER.to_owned()),
    };
    api.replace_status(&b.name_any(), &params, &next).await
}

fn slices_error(b: &MacvlanBinding, source: WriteError) -> Error {
    match source {
        WriteError::Stale { name } => Error::Stale {
            binding: key(b),
            read: format!(
                "{} (MacvlanEndpointSlice {name})",
                b.resource_version().unwrap_or_default()
            ),
        },
        WriteError::Fenced(source) => Error::Fenced {
            binding: key(b),
            source,
        },
        source => Error::Slices {
            binding: key(b),
            source,
        },
    }
}

/// Other admitted bindings on the same swarm (by its cluster ID, whatever
/// URL each spells), with their admitted specs.
async fn neighbours(
    ctx: &Context,
    me: &MacvlanBinding,
    swarm: &str,
) -> Vec<(Arc<Guarded>, Arc<Admitted>)> {
    let me = key(me);
    let mut out = Vec::new();
    for g in ctx.bindings() {
        let Some(o) = valid(&g) else { continue };
        if key(o) == me {
            continue;
        }
        let Some(d) = ctx.desired_of(o) else { continue };
        if ctx.swarm_of(o, &d.endpoint).await.as_deref() == Some(swarm) {
            out.push((g, d));
        }
    }
    out
}

/// The delay before a binding's next try: one more consecutive failure
/// counted, and the reconcile retry policy.
fn backoff(ctx: &Context, b: &MacvlanBinding) -> Duration {
    backoff_for(ctx, key(b))
}

fn backoff_for(ctx: &Context, binding: String) -> Duration {
    let mut failures = ctx.failures.lock().unwrap_or_else(PoisonError::into_inner);
    let n = failures.entry(binding).or_default();
    *n = n.saturating_add(1);
    retry::RECONCILE.delay(*n)
}

fn recovered(ctx: &Context, b: &MacvlanBinding) {
    ctx.failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&key(b));
}

/// Cleanup cannot finish yet: say so in the status (best effort: the
/// finalizer is retried either way) and in the error that retries it.
async fn cleanup_pending(ctx: &Context, b: &MacvlanBinding, message: String) -> Error {
    if let Err(e) = not_ready(ctx, b, reasons::CLEANUP_INCOMPLETE, message.clone()).await {
        tracing::warn!(binding = %key(b), error = %e, "cannot write the status of a binding being deleted");
    }
    Error::CleanupPending {
        binding: key(b),
        reason: message,
    }
}

async fn not_ready(
    ctx: &Context,
    b: &MacvlanBinding,
    reason: &str,
    message: String,
) -> Result<(), Error> {
    ctx.metrics
        .errors
        .get_or_create(&ReasonLabels {
            reason: reason.to_owned(),
        })
        .inc();
    publish(ctx, b, true, reason, message.clone()).await;
    let status = not_run(
        b.status.as_ref(),
        b.metadata.generation,
        reason,
        message,
        Timestamp::now(),
    );
    write_status(ctx, b, &status).await
}

fn engine_reason(kind: ErrorKind) -> &'static str {
    if kind == ErrorKind::Auth {
        reasons::AUTH_FAILED
    } else {
        reasons::ENDPOINT_UNREACHABLE
    }
}

/// A pass that follows the Docker events of every node it reads.
struct Follow<'a>(&'a EndpointState);

impl Watcher for Follow<'_> {
    fn observed(&self, observed: &Observed) {
        self.0.ensure_watchers(&observed.engines);
        self.0.prober.note_engines(&observed.engines);
    }

    fn node_cache(&self) -> Option<&NodeCache> {
        Some(&self.0.reads)
    }
}

/// A live binding's pass, waiting for its view's next round.
#[derive(Debug, Clone)]
pub(crate) struct RoundRequest {
    admitted: Arc<Admitted>,
    memory: Arc<Memory>,
    owner: Owner,
}

/// How many times a binding asks again when the round that took its pass
/// was cancelled (its runner's reconcile went away).
const ROUND_TRIES: usize = 3;

/// The binding's pass, run in a round with every other binding of its
/// view that waits for one.
async fn pass_in_round(
    ctx: &Context,
    endpoint: &EndpointState,
    request: RoundRequest,
) -> Result<Passed, EngineError> {
    for _ in 0..ROUND_TRIES {
        let round = |requests: Vec<RoundRequest>| round(ctx, endpoint, requests);
        if let Some(answer) = endpoint.rounds.run(request.clone(), round).await {
            return answer;
        }
    }
    Err(EngineError::new(
        ErrorKind::Unreachable,
        &endpoint.identity,
        "pass",
        None,
        "the rounds that took this pass were cancelled",
    ))
}

/// One round: the passes of `requests`, together.
async fn round(
    ctx: &Context,
    endpoint: &EndpointState,
    requests: Vec<RoundRequest>,
) -> Vec<Result<Passed, EngineError>> {
    let live = Arc::new(ctx.binding_keys());
    let now = Timestamp::now();
    let release = ctx.release(now);
    let probing = ctx.settings.probe.as_ref();
    let passes: Vec<Pass<'_>> = requests
        .iter()
        .map(|r| Pass {
            plan: PlanOptions {
                restore_ingress: true,
                release: Some(release),
                probe: probing
                    .map(|_| {
                        endpoint.prober.gates(
                            &r.admitted.desired,
                            now,
                            ctx.settings.probe_freshness,
                        )
                    })
                    .unwrap_or_default(),
                ..Default::default()
            },
            ownership: Ownership::Claim(r.owner.clone()),
            live_bindings: live.clone(),
            ..ctx.pass(&r.admitted.desired, &r.memory, Mode::Up)
        })
        .collect();
    ctx.metrics.round_passes.observe(passes.len() as f64);
    let started = Instant::now();
    let done = Pass::run_together(&passes, &endpoint.cluster, &Follow(endpoint)).await;
    if let Some(spec) = probing {
        probe_ahead(ctx, endpoint, spec, &requests, &done);
    }
    tracing::debug!(
        endpoint = %endpoint.identity,
        passes = passes.len(),
        ms = started.elapsed().as_millis() as u64,
        "round"
    );
    done
}

/// Starts the probes the round's plans want, and forgets the probes of the
/// addresses they handed out (probed again before they are next free).
fn probe_ahead(
    ctx: &Context,
    endpoint: &EndpointState,
    spec: &crate::probe::container::ProbeSpec,
    requests: &[RoundRequest],
    done: &[Result<Passed, EngineError>],
) {
    use crate::reconcile::plan::Action as PlanAction;
    for (r, passed) in requests.iter().zip(done) {
        let Ok(passed) = passed else { continue };
        let plan = &passed.applied.plan;
        for a in &plan.actions {
            if let PlanAction::Connect { network, ip, .. } = a {
                endpoint.prober.handed_out(network, [*ip]);
            }
        }
        if plan.probes.is_empty() {
            continue;
        }
        let (metrics, nudger) = (ctx.metrics.clone(), endpoint.nudger());
        endpoint.prober.start(
            spec,
            ctx.settings.probe_freshness,
            &r.admitted.desired,
            &plan.probes,
            move |network, ended, new| {
                let outcome = match ended {
                    super::prober::Ended::Ran { answered: 0, probed } => {
                        metrics.probed_addresses.inc_by(probed as u64);
                        "clear"
                    }
                    super::prober::Ended::Ran { probed, .. } => {
                        metrics.probed_addresses.inc_by(probed as u64);
                        "answered"
                    }
                    super::prober::Ended::Failed => "failed",
                };
                metrics
                    .probes
                    .get_or_create(&super::metrics::OutcomeLabels { outcome })
                    .inc();
                for (ip, seen) in &new {
                    tracing::warn!(%network, %ip, mac = %seen.mac, node = %seen.node, "an address of a pool answered an ARP probe: something Docker does not show holds it");
                }
                nudger.nudge(network);
            },
        );
    }
}

/// One pass for a live binding.
async fn apply_binding(b: Arc<MacvlanBinding>, ctx: &Context) -> Result<Action, Error> {
    let admitted = match ctx.admitted(&b) {
        Ok(a) => a,
        Err(invalid) => {
            not_ready(ctx, &b, reasons::INVALID_SPEC, invalid.summary(10)).await?;
            // Nothing changes until the spec or the grants do.
            return Ok(Action::await_change());
        }
    };
    let desired = &admitted.desired;
    let endpoint = match ctx.endpoint_for(&b, &admitted.endpoint).await {
        Ok(e) => e,
        Err(e) => {
            let reason = if e.is_auth() {
                reasons::AUTH_FAILED
            } else {
                reasons::ENDPOINT_UNREACHABLE
            };
            not_ready(ctx, &b, reason, e.to_string()).await?;
            return Ok(Action::requeue(backoff(ctx, &b)));
        }
    };
    let swarm = match ctx.swarm_id(&endpoint).await {
        Ok(s) => s,
        Err(e) => {
            not_ready(ctx, &b, engine_reason(e.kind), e.to_string()).await?;
            return Ok(Action::requeue(backoff(ctx, &b)));
        }
    };
    ctx.index_binding(&b, swarm.clone());
    let neighbours = neighbours(ctx, &b, &swarm).await;
    let others: Vec<(&MacvlanBinding, &Desired)> = neighbours
        .iter()
        .filter_map(|(g, a)| Some((valid(g)?, &a.desired)))
        .collect();
    if let Some(why) = conflict(&b, desired, &others) {
        not_ready(
            ctx,
            &b,
            reasons::CONFLICT,
            format!("touching nothing: {why}"),
        )
        .await?;
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    let mine = ctx.slices.of(&b);
    let memory = Arc::new(memory_from(
        b.status.as_ref(),
        mine.iter().map(AsRef::as_ref),
    ));
    let request = RoundRequest {
        admitted: admitted.clone(),
        memory: memory.clone(),
        owner: ctx.owner(&b),
    };
    let applied = match pass_in_round(ctx, &endpoint, request).await {
        Ok(passed) if !passed.held_elsewhere.is_empty() => {
            let install = &ctx.settings.install;
            let held: Vec<String> = passed
                .held_elsewhere
                .iter()
                .map(|(s, o)| {
                    if &o.install == install {
                        format!("service {s} is claimed by MacvlanBinding {}, which still exists (valid or not): fix or delete it first", o.binding)
                    } else {
                        format!("service {s} is owned by {o}; one operator install per swarm")
                    }
                })
                .collect();
            let message = format!("touching nothing: {}", held.join("; "));
            not_ready(ctx, &b, reasons::CONFLICT, message).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        Ok(passed) => passed.applied,
        Err(e) => {
            not_ready(ctx, &b, engine_reason(e.kind), e.to_string()).await?;
            return Ok(Action::requeue(backoff(ctx, &b)));
        }
    };
    let now = Timestamp::now();
    let records = applied.records(now);
    let failures: Vec<String> = applied.failures().map(ToString::to_string).collect();
    let slices = super::slices::write_records(ctx, &b, &records)
        .await
        .map_err(|source| slices_error(&b, source))?;
    let mut status = after_pass(
        b.status.as_ref(),
        b.metadata.generation,
        &applied.plan,
        &records,
        &failures,
        now,
    );
    status.endpoint_slices = slices;
    // An older operator's records stay in the status until the slices that
    // replace them are seen, so that no pass starts without them.
    if !records.is_empty() && mine.is_empty() {
        status.containers = b
            .status
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
    }
    write_status(ctx, &b, &status).await?;
    report(ctx, &b, &applied, &memory, &status).await;
    tracing::debug!(
        binding = %key(&b),
        actions = applied.outcomes.len(),
        bound = status.bound,
        ready = is_ready(&status),
        "pass written"
    );

    // An address held through the release cooldown is free when it ends:
    // a pass then, not at the next resync, gives it to whoever waits.
    let cooled = records
        .iter()
        .filter_map(|r| r.released)
        .map(|at| ctx.release(now).until(at))
        .min()
        .and_then(|t| Duration::try_from(t.duration_since(now)).ok())
        .map(|d| d + COOLDOWN_SLACK);
    if is_ready(&status) {
        recovered(ctx, &b);
        let resync = ctx.settings.resync;
        Ok(Action::requeue(cooled.map_or(resync, |d| d.min(resync))))
    } else {
        let reason = status
            .conditions
            .first()
            .map(|c| c.reason.clone())
            .unwrap_or_default();
        ctx.metrics
            .errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
        Ok(Action::requeue(backoff(ctx, &b)))
    }
}

/// Retain, and the end of every cleanup: the services are no longer claimed.
async fn release_claims(ctx: &Context, b: &MacvlanBinding) -> Result<(), String> {
    let Ok(resolved) = ctx.resolved(b) else {
        // An invalid spec never reached Docker.
        return Ok(());
    };
    let desired = resolved.desired;
    let endpoint = ctx
        .endpoint_for(b, &resolved.endpoint)
        .await
        .map_err(|e| e.to_string())?;
    let memory = Memory::new();
    let pass = Pass {
        ownership: Ownership::Release(ctx.owner(b)),
        ..ctx.pass(&desired, &memory, Mode::Observe)
    };
    pass.run(&endpoint.cluster, &())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Whether a pass of this binding ever changed or recorded anything: its
/// status holds records of networks or containers.
fn acted(ctx: &Context, b: &MacvlanBinding) -> bool {
    b.status
        .as_ref()
        .is_some_and(|s| !s.networks.is_empty() || !s.containers.is_empty())
        || !ctx.slices.of(b).is_empty()
}

/// The finalizer: applies the deletion policy on every node, and lets go
/// only when it is done everywhere (a node that is down is retried).
async fn cleanup(b: Arc<MacvlanBinding>, ctx: &Context) -> Result<Action, Error> {
    let mode = match b.spec.deletion_policy {
        DeletionPolicy::Retain => {
            if let Err(e) = release_claims(ctx, &b).await {
                let m = format!("cannot give up the claim on its services yet: {e}");
                return Err(cleanup_pending(ctx, &b, m).await);
            }
            publish(
                ctx,
                &b,
                false,
                event_reasons::RETAINED,
                "deletionPolicy Retain: containers and networks left as they are".into(),
            )
            .await;
            return Ok(Action::await_change());
        }
        DeletionPolicy::Disconnect => Mode::Disconnect,
        DeletionPolicy::DisconnectAndRemoveNetworks => Mode::Down,
    };
    let resolved = match ctx.resolved(&b) {
        Ok(r) => r,
        Err(invalid)
            if b.spec.networks.is_empty() && !b.spec.services.is_empty() && acted(ctx, &b) =>
        {
            // A MacvlanNetwork it used is gone (or broken): what it made
            // cannot be found until the platform team brings it back.
            let m = format!(
                "cannot find what to clean up: {}; restore the MacvlanNetwork, or remove the finalizer {FINALIZER} to leave the containers as they are",
                invalid.summary(3)
            );
            return Err(cleanup_pending(ctx, &b, m).await);
        }
        // An invalid spec never reached Docker.
        Err(_) => return Ok(Action::await_change()),
    };
    let desired = resolved.desired;
    let endpoint = match ctx.endpoint_for(&b, &resolved.endpoint).await {
        Ok(e) => e,
        Err(e) => {
            return Err(cleanup_pending(ctx, &b, format!("cannot clean up yet: {e}")).await);
        }
    };
    let swarm = match ctx.swarm_id(&endpoint).await {
        Ok(s) => s,
        Err(e) => {
            return Err(cleanup_pending(ctx, &b, format!("cannot clean up yet: {e}")).await);
        }
    };
    // Networks another binding on this swarm still declares stay.
    let keep: BTreeSet<String> = neighbours(ctx, &b, &swarm)
        .await
        .iter()
        .filter(|(o, _)| valid(o).is_some_and(|o| o.metadata.deletion_timestamp.is_none()))
        .flat_map(|(_, a)| a.desired.networks.iter().map(|n| n.name.clone()))
        .collect();
    let memory = Memory::new();
    let pass = Pass {
        plan: PlanOptions {
            keep_networks: keep,
            ..Default::default()
        },
        ownership: Ownership::Release(ctx.owner(&b)),
        keep_claims: true,
        ..ctx.pass(&desired, &memory, mode)
    };
    let (applied, kept, unclaimed, keep_networks) = match pass.run(&endpoint.cluster, &()).await {
        Ok(passed) => (
            passed.applied,
            passed.kept,
            passed.unclaimed,
            passed.kept_networks,
        ),
        Err(e) => {
            return Err(cleanup_pending(ctx, &b, format!("cannot clean up yet: {e}")).await);
        }
    };
    // Services another binding owns were left alone: not this cleanup's.
    for (service, owner) in &kept {
        let note = format!("service {service} left as it is: owned by {owner}");
        publish(ctx, &b, false, event_reasons::KEPT_OWNED, note).await;
    }
    let kept_names: BTreeSet<&str> = kept
        .iter()
        .map(|(s, _)| s.as_str())
        .chain(unclaimed.iter().map(String::as_str))
        .collect();
    let desired = desired.without_services(&kept_names);
    // Any failure keeps the finalizer: a refusal we do not understand is
    // no proof that nothing is left.
    let mut blocking: Vec<String> = applied.failures().map(ToString::to_string).collect();
    blocking.extend(
        applied
            .plan
            .problems
            .iter()
            .filter(|p| matches!(p, Problem::NodeUnreachable { .. }))
            .map(ToString::to_string),
    );
    for o in applied.failures() {
        publish(ctx, &b, true, reasons::CLEANUP_INCOMPLETE, o.to_string()).await;
    }
    if !blocking.is_empty() {
        let m = blocking.join("; ");
        return Err(cleanup_pending(ctx, &b, format!("waiting to finish cleanup: {m}")).await);
    }
    // Only what Docker shows now releases the finalizer.
    let check = Pass {
        dry_run: true,
        ..ctx.pass(&desired, &memory, Mode::Observe)
    };
    let left = match check.run(&endpoint.cluster, &()).await {
        Ok(seen) => leftovers(
            &desired,
            &seen.snapshot,
            &seen.applied.plan,
            mode == Mode::Down,
            &keep_networks,
        ),
        Err(e) => vec![format!("cannot confirm: {e}")],
    };
    if !left.is_empty() {
        let m = left.join("; ");
        return Err(cleanup_pending(ctx, &b, format!("not clean yet: {m}")).await);
    }
    // Done: only now the claims go, so that a cleanup cut short finds its
    // services again on the next try.
    if let Err(e) = release_claims(ctx, &b).await {
        let m = format!("cleaned up, but cannot give up the claim on its services yet: {e}");
        return Err(cleanup_pending(ctx, &b, m).await);
    }
    let done = applied.outcomes.iter().filter(|o| o.changed()).count();
    publish(
        ctx,
        &b,
        false,
        event_reasons::CLEANED_UP,
        format!(
            "deletionPolicy {:?}: {done} change{} made",
            b.spec.deletion_policy,
            if done == 1 { "" } else { "s" }
        ),
    )
    .await;
    Ok(Action::await_change())
}

/// Whether this replica works on `b` now. Under per-swarm leadership only
/// when it leads `b`'s swarm, or when `b`'s swarm is not known (an invalid
/// spec, an endpoint not reached) and it coordinates.
async fn lead(ctx: &Context, b: &MacvlanBinding) -> Option<Lead> {
    let Some(shards) = &ctx.shards else {
        return Some(Lead::under(ctx.fence.clone()));
    };
    let choice = ctx.endpoint_choice(b);
    match ctx.swarm_of(b, &choice).await {
        Some(swarm) => {
            ctx.index_binding(b, swarm.clone());
            shards.lead(&swarm)
        }
        None => ctx
            .fence
            .check()
            .is_ok()
            .then(|| Lead::under(ctx.fence.clone())),
    }
}

/// The reconcile entry point.
pub(crate) async fn reconcile(obj: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let b = match &obj.0 {
        Ok(b) => ctx.written_bindings.view(Arc::new(b.clone())),
        Err(e) => {
            // A malformed object is reported and skipped; the others go on.
            tracing::warn!(object = %obj.name_any(), error = %e, "cannot read a MacvlanBinding");
            ctx.forget((obj.namespace().unwrap_or_default(), obj.name_any()));
            ctx.metrics
                .reconciles
                .get_or_create(&ResultLabels {
                    result: "malformed".into(),
                })
                .inc();
            return Ok(Action::await_change());
        }
    };
    let Some(lead) = lead(&ctx, &b).await else {
        // Another replica leads this binding's swarm: it is looked at
        // again when this one comes to lead it, or at the resync. Its
        // series are the leader's to export.
        ctx.metrics
            .forget_binding(&b.namespace().unwrap_or_default(), &b.name_any());
        return Ok(Action::requeue(ctx.settings.resync));
    };
    let ns = b.namespace().unwrap_or_default();
    let index_key = (ns.clone(), b.name_any());
    let deleting = b.metadata.deletion_timestamp.is_some();
    // Under its swarm's cluster ID once known (the pass indexes it again
    // as soon as it learns it), its endpoint's text until then.
    ctx.index_binding(&b, ctx.swarm_key(&b));
    let api: Api<MacvlanBinding> = Api::namespaced(ctx.client.clone(), &ns);
    let binding = key(&b);
    let work = finalizer(&api, FINALIZER, b, |event| async {
        match event {
            Finalizer::Apply(b) => apply_binding(b, &ctx).await,
            Finalizer::Cleanup(b) => {
                let done = cleanup(b.clone(), &ctx).await?;
                super::slices::forget_records(&ctx, &b)
                    .await
                    .map_err(|source| slices_error(&b, source))?;
                Ok(done)
            }
        }
    });
    // A swarm lost mid-pass: the pass stops here (its Docker calls and
    // writes are refused by the fence anyway).
    let result = tokio::select! {
        r = work => r.map_err(|e| Error::Finalizer(Box::new(e))),
        _ = lead.fence.closed() => Err(Error::Fenced { binding, source: Fenced::Lost }),
    };
    if deleting && result.is_ok() {
        // Cleaned up: its containers' events concern it no more.
        ctx.forget(index_key);
    }
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    let label = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabels {
            result: label.into(),
        })
        .inc();
    result
}

/// Every error that reaches here is transient: an invalid spec is not an
/// error (its reconcile waits for a change of the spec), and a pass that
/// left something undone requeues itself. So each is retried with the
/// reconcile retry policy, counted with the binding's other failures.
pub(crate) fn error_policy(obj: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let binding = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    if let Error::Stale { .. } = error {
        // Not a failure: read the binding again soon.
        tracing::debug!(%binding, error = %error, "status write refused; reading again");
        return Action::requeue(STALE_RETRY);
    }
    tracing::warn!(object = %obj.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(backoff_for(&ctx, binding))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::Client;
    use kube::CustomResourceExt;
    use kube::api::{DeleteParams, Patch, PatchParams};

    /// The control plane of `scripts/envtest up`, or `None` (skipped) when
    /// it is not up and MVCONF_REQUIRE_ENVTEST is not set.
    async fn envtest() -> Option<Client> {
        if std::env::var_os("KUBECONFIG").is_none() {
            assert!(
                std::env::var_os("MVCONF_REQUIRE_ENVTEST").is_none(),
                "MVCONF_REQUIRE_ENVTEST is set but KUBECONFIG is not"
            );
            return None;
        }
        Some(Client::try_default().await.unwrap())
    }

    // "Never two writers", 1: status used to be written by server-side apply
    // with force and no version, so a deposed leader overwrote the records
    // its successor had written. Now the write carries the resourceVersion
    // the pass read, and the API server refuses it.
    #[tokio::test]
    async fn a_status_write_over_an_older_read_is_refused_by_the_apiserver() {
        let Some(client) = envtest().await else {
            return;
        };
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.patch(
            "macvlanbindings.mvconf.io",
            &PatchParams::apply("mvconf-tests").force(),
            &Patch::Apply(MacvlanBinding::crd()),
        )
        .await
        .unwrap();
        let ns = format!("fence-status-{}", std::process::id());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let _ = namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await;
        let api: Api<MacvlanBinding> = Api::namespaced(client.clone(), &ns);
        let binding: MacvlanBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "mvconf.io/v1alpha1",
            "kind": "MacvlanBinding",
            "metadata": {"name": "fence"},
            "spec": {
                "networks": [{"name": "n", "subnet": "192.168.9.0/24", "gateway": "192.168.9.1", "parent": "mv0"}],
                "services": [{"name": "web", "network": "n", "ipPool": ["192.168.9.10"]}]
            }
        }))
        .unwrap();
        // The CRD may take a moment to be served.
        let mut created = None;
        for _ in 0..50 {
            match api.create(&PostParams::default(), &binding).await {
                Ok(b) => {
                    created = Some(b);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let read_by_the_old_leader = created.expect("create the binding");
        let status = |bound| MacvlanBindingStatus {
            bound,
            ..Default::default()
        };
        let by_the_new_leader = put_status(&api, &read_by_the_old_leader, &status(7))
            .await
            .unwrap();
        let refused = put_status(&api, &read_by_the_old_leader, &status(1)).await;
        assert!(
            matches!(&refused, Err(kube::Error::Api(s)) if s.code == 409),
            "{refused:?}"
        );
        let now = api.get("fence").await.unwrap();
        assert_eq!(now.status.map(|s| s.bound), Some(7));
        // The new leader's own next write, over what it read, goes through.
        put_status(&api, &by_the_new_leader, &status(8))
            .await
            .unwrap();
        let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    }
}
