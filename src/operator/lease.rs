//! The leader Lease, held the way client-go's leader election holds it: a
//! lease duration, a renew deadline shorter than it, and a retry period.
//!
//! - A standby takes the lease only when its record has not changed for a
//!   whole lease duration, measured on the standby's own clock from when it
//!   saw the change (no trust in other machines' clocks).
//! - The leader renews every retry period. Each success moves its fence to
//!   the start of that renewal plus the renew deadline; when the deadline
//!   passes without one, the fence closes, even while a request still hangs.
//!   The leader stops at least `duration - renew_deadline` before anyone else
//!   may lead.
//! - Every write carries the resourceVersion it read, so two replicas never
//!   both think they won.

use crate::fence::{Fence, Keeper};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Lease duration, renew deadline and retry period.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) duration: Duration,
    pub(crate) renew_deadline: Duration,
    pub(crate) retry: Duration,
}

/// client-go's defaults.
pub(crate) const TIMING: Timing = Timing {
    duration: Duration::from_secs(15),
    renew_deadline: Duration::from_secs(10),
    retry: Duration::from_secs(2),
};

/// What one attempt to take or renew the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// This replica holds it now.
    Held,
    /// Another replica holds it and has renewed within its duration.
    HeldBy(String),
    /// Another writer came first; try again.
    Raced,
}

/// Campaigns for the lease; holds it through a [`Leading`].
pub(crate) struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The last resourceVersion seen, and when (on this clock) it was first seen.
    seen: Option<(String, Instant)>,
    /// The lease as this replica last wrote it.
    written: Option<Lease>,
    /// Labels and annotations of a lease this replica creates.
    meta: ObjectMeta,
    /// Whether this replica may take a free lease now; when not, it takes
    /// one only after it stayed free for two lease durations (per-swarm
    /// leadership: the replicas under their fair share go first).
    eager: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// What an attempt should do with the lease it read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Wait: another holder's record changed less than its duration ago.
    Wait(String),
    /// Write it with this replica as holder; `taken` when the holder changes.
    Take { taken: bool },
}

/// The pure rule of one attempt: `quiet` is how long the lease's record
/// has not changed, on this replica's clock. A replica that is not `eager`
/// takes a free or expired lease only once it has been quiet for two of
/// this replica's lease durations.
pub(crate) fn decide(
    spec: &LeaseSpec,
    me: &str,
    quiet: Duration,
    default: Duration,
    eager: bool,
) -> Decision {
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default, Duration::from_secs);
    match holder {
        Some(h) if h == me => Decision::Take { taken: false },
        Some(h) if quiet < duration => Decision::Wait(h.to_owned()),
        _ if eager || quiet >= default * 2 => Decision::Take { taken: true },
        h => Decision::Wait(
            h.unwrap_or("nobody (left for a replica under its share)")
                .to_owned(),
        ),
    }
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    pub(crate) fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
            seen: None,
            written: None,
            meta: ObjectMeta::default(),
            eager: None,
        }
    }

    /// Labels and annotations for the lease when this replica creates it.
    pub(crate) fn with_meta(mut self, meta: ObjectMeta) -> Self {
        self.meta = meta;
        self
    }

    /// Takes a free lease at once only while `eager` says so.
    pub(crate) fn eager_when(mut self, eager: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.eager = Some(Arc::new(eager));
        self
    }

    fn spec(&self, taken: bool, old: &LeaseSpec) -> LeaseSpec {
        let now = micro_now();
        let seconds = i32::try_from(self.timing.duration.as_secs()).unwrap_or(i32::MAX);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: if taken {
                Some(now.clone())
            } else {
                old.acquire_time.clone()
            },
            renew_time: Some(now),
            lease_transitions: Some(
                old.lease_transitions.unwrap_or(0)
                    + i32::from(taken && old.holder_identity.is_some()),
            ),
            ..Default::default()
        }
    }

    /// One read and, when allowed, one write.
    pub(crate) async fn attempt(&mut self) -> Result<Attempt, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..self.meta.clone()
                },
                spec: Some(self.spec(true, &LeaseSpec::default())),
            };
            return self.write(self.api.create(&PostParams::default(), &fresh).await);
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let first_seen = match &self.seen {
            Some((seen, at)) if *seen == rv => *at,
            _ => {
                let now = Instant::now();
                self.seen = Some((rv, now));
                now
            }
        };
        let old = lease.spec.clone().unwrap_or_default();
        let eager = self.eager.as_ref().is_none_or(|e| e());
        match decide(
            &old,
            &self.identity,
            first_seen.elapsed(),
            self.timing.duration,
            eager,
        ) {
            Decision::Wait(holder) => Ok(Attempt::HeldBy(holder)),
            Decision::Take { taken } => {
                let next = Lease {
                    metadata: lease.metadata,
                    spec: Some(self.spec(taken, &old)),
                };
                if taken {
                    tracing::info!(lease = %self.name, previous = ?old.holder_identity, "taking the lease");
                }
                self.write(
                    self.api
                        .replace(&self.name, &PostParams::default(), &next)
                        .await,
                )
            }
        }
    }

    fn write(&mut self, r: Result<Lease, kube::Error>) -> Result<Attempt, kube::Error> {
        match r {
            Ok(l) => {
                self.seen = l
                    .metadata
                    .resource_version
                    .clone()
                    .map(|rv| (rv, Instant::now()));
                self.written = Some(l);
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Raced),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease, then keeps it from a task
    /// of its own.
    pub(crate) async fn campaign(mut self) -> Leading {
        loop {
            let sent = Instant::now();
            match tokio::time::timeout(self.timing.retry, self.attempt()).await {
                Ok(Ok(Attempt::Held)) => {
                    let (keeper, fence) = Keeper::new(sent + self.timing.renew_deadline);
                    tracing::info!(lease = %self.name, identity = %self.identity, "leading");
                    let (release, released) = oneshot::channel();
                    let task = tokio::spawn(self.keep(keeper, released));
                    return Leading {
                        fence,
                        release,
                        task,
                    };
                }
                Ok(Ok(Attempt::HeldBy(h))) => {
                    tracing::debug!(lease = %self.name, holder = %h, "standing by");
                }
                Ok(Ok(Attempt::Raced)) => {}
                Ok(Err(e)) => tracing::warn!(lease = %self.name, error = %e, "reading the lease"),
                Err(_) => {
                    tracing::warn!(lease = %self.name, "the API server did not answer in time")
                }
            }
            tokio::time::sleep(crate::retry::jitter(self.timing.retry)).await;
        }
    }

    /// Renews every retry period until the fence closes or the lease is
    /// released; gives the elector back for the next campaign.
    async fn keep(mut self, keeper: Keeper, mut released: oneshot::Receiver<()>) -> Elector {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry) => {}
                _ = &mut released => {
                    keeper.close();
                    self.release().await;
                    return self;
                }
            }
            let Some(until) = keeper.until().filter(|u| Instant::now() < *u) else {
                tracing::error!(lease = %self.name, "not renewed within the renew deadline: stopping");
                keeper.close();
                return self;
            };
            let sent = Instant::now();
            match tokio::time::timeout_at(until.into(), self.attempt()).await {
                Ok(Ok(Attempt::Held)) => keeper.extend(sent + self.timing.renew_deadline),
                Ok(Ok(Attempt::HeldBy(h))) => {
                    tracing::error!(lease = %self.name, holder = %h, "the lease was taken");
                    keeper.close();
                    return self;
                }
                Ok(Ok(Attempt::Raced)) => {
                    tracing::warn!(lease = %self.name, "renewal raced with another writer")
                }
                Ok(Err(e)) => {
                    let left = until.saturating_duration_since(Instant::now());
                    tracing::warn!(lease = %self.name, error = %e, left_ms = left.as_millis() as u64, "renewal failed");
                }
                Err(_) => {
                    tracing::error!(lease = %self.name, "no renewal within the renew deadline: stopping");
                    keeper.close();
                    return self;
                }
            }
        }
    }

    /// Gives the lease up (SIGTERM), so that a standby need not wait a
    /// whole duration. Best effort: if it fails, the lease expires.
    async fn release(&mut self) {
        let Some(mut lease) = self.written.take() else {
            return;
        };
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(micro_now());
        }
        let params = PostParams::default();
        let put = self.api.replace(&self.name, &params, &lease);
        match tokio::time::timeout(self.timing.retry, put).await {
            Ok(Ok(_)) => tracing::info!(lease = %self.name, "released the lease"),
            Ok(Err(e)) => tracing::warn!(lease = %self.name, error = %e, "releasing the lease"),
            Err(_) => tracing::warn!(lease = %self.name, "releasing the lease: no answer"),
        }
    }
}

/// A term of leadership, kept by its own task.
#[derive(Debug)]
pub(crate) struct Leading {
    pub(crate) fence: Fence,
    release: oneshot::Sender<()>,
    task: JoinHandle<Elector>,
}

impl Leading {
    /// Gives the lease up and waits for the keeper to stop.
    pub(crate) async fn release(self) {
        let _ = self.release.send(());
        let _ = self.task.await;
    }

    /// Gives the lease up and hands the elector back, for the next campaign.
    pub(crate) async fn hand_over(self) -> Option<Elector> {
        let _ = self.release.send(());
        self.task.await.ok()
    }

    /// After the fence closed: the elector, for the next campaign.
    pub(crate) async fn ended(self) -> Option<Elector> {
        let Leading { release, task, .. } = self;
        let elector = task.await.ok();
        drop(release);
        elector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(seconds),
            ..Default::default()
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn a_standby_waits_a_whole_duration_of_quiet_on_its_own_clock() {
        let s = spec(Some("a"), 15);
        assert_eq!(
            decide(&s, "b", Duration::from_secs(14), D, true),
            Decision::Wait("a".into())
        );
        assert_eq!(
            decide(&s, "b", Duration::from_secs(15), D, true),
            Decision::Take { taken: true }
        );
    }

    #[test]
    fn the_holders_own_duration_counts_not_ours() {
        let s = spec(Some("a"), 60);
        assert_eq!(
            decide(&s, "b", Duration::from_secs(30), D, true),
            Decision::Wait("a".into())
        );
    }

    #[test]
    fn a_released_or_absent_holder_is_taken_at_once_and_the_holder_renews() {
        assert_eq!(
            decide(&spec(None, 1), "b", Duration::ZERO, D, true),
            Decision::Take { taken: true }
        );
        assert_eq!(
            decide(&spec(Some(""), 15), "b", Duration::ZERO, D, true),
            Decision::Take { taken: true }
        );
        assert_eq!(
            decide(&spec(Some("b"), 15), "b", Duration::ZERO, D, false),
            Decision::Take { taken: false }
        );
    }

    #[test]
    fn a_replica_over_its_share_leaves_a_free_lease_to_others_for_two_durations() {
        let released = spec(None, 1);
        assert!(matches!(
            decide(&released, "b", Duration::from_secs(29), D, false),
            Decision::Wait(_)
        ));
        assert_eq!(
            decide(&released, "b", Duration::from_secs(30), D, false),
            Decision::Take { taken: true }
        );
        // A live holder is waited for whatever the share.
        assert_eq!(
            decide(&spec(Some("a"), 15), "b", Duration::from_secs(14), D, true),
            Decision::Wait("a".into())
        );
    }

    #[test]
    fn the_renew_deadline_ends_a_term_before_any_standby_may_take_it() {
        assert!(TIMING.renew_deadline < TIMING.duration);
        assert!(TIMING.retry < TIMING.renew_deadline);
    }
}
