//! Leadership per swarm (`--leadership per-swarm`): one Lease per swarm,
//! so that N replicas share M swarms and no single process is the ceiling.
//!
//! - Every replica follows every binding (its caches stay warm) and runs a
//!   pass only for the swarms whose Lease it holds. Each swarm's Lease is
//!   held as [`super::lease`] holds the install's: renew deadline, fence,
//!   resourceVersion on every write; that swarm's Docker mutations and the
//!   status and slice writes of its bindings check that swarm's fence.
//! - Fair share: a replica takes a free swarm Lease at once only while it
//!   leads fewer than `ceil(swarms / live replicas)`; others take it after
//!   it stayed free for two lease durations (so a swarm is never orphaned
//!   by the arithmetic). A replica over its share for a whole lease
//!   duration hands one swarm over: no new pass starts there, the passes
//!   under way finish (up to the renew deadline), then the Lease is
//!   released and a replica under its share takes it at once.
//! - Live replicas are counted by their own member Leases, renewed every
//!   retry period and judged on this replica's clock, as the swarm Leases
//!   are. A member Lease quiet for ten durations is deleted.
//! - The install's own Lease (`--lease-name`) still elects one
//!   coordinator: it writes the status of bindings whose swarm is not
//!   known (an invalid spec, an endpoint never reached) and the tenancy
//!   status.

use super::lease::{Elector, Timing};
use crate::fence::Fence;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::{Api, Client};
use prometheus_client::metrics::gauge::Gauge;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;
use tokio::sync::{OwnedRwLockReadGuard, RwLock, mpsc, watch};
use tokio::task::JoinHandle;

/// Label on every Lease of per-swarm leadership: the install's lease name.
const LEASE_OF: &str = "mvconf.io/lease-of";
/// Label: `member` (a replica) or `swarm`.
const ROLE: &str = "mvconf.io/role";
/// Annotation: the swarm's cluster ID, in full.
const SWARM: &str = "mvconf.io/swarm";

/// The fair share of `swarms` among `live` replicas.
pub(crate) fn fair_share(swarms: usize, live: usize) -> usize {
    swarms.div_ceil(live.max(1))
}

/// Which of the swarms a replica leads it hands over first when over its
/// share: the one ranked last for it (rendezvous hashing), so replicas
/// do not all give up the same swarm.
pub(crate) fn to_hand_over<'a>(led: &[&'a str], me: &str) -> Option<&'a str> {
    led.iter()
        .copied()
        .max_by_key(|s| mix(fnv64(&format!("{s}\u{0}{me}"))))
}

/// SplitMix64's finalizer: every input bit moves every output bit (FNV
/// alone barely orders strings that differ in their last bytes).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The Lease of one swarm: DNS-safe whatever the swarm's ID.
pub(crate) fn swarm_lease(prefix: &str, swarm: &str) -> String {
    format!("{prefix}-swarm-{:016x}", fnv64(swarm))
}

fn member_lease(prefix: &str, identity: &str) -> String {
    format!("{prefix}-member-{:016x}", fnv64(identity))
}

/// One swarm as this replica sees it.
struct Shard {
    /// The current term when leading; shut otherwise.
    fence: Fence,
    leading: bool,
    /// Passes hold it shared; a hand-over takes it exclusively.
    passes: Arc<RwLock<()>>,
    task: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    swarms: BTreeMap<String, Shard>,
    /// Live replicas, this one included.
    live: usize,
    /// Since when this replica leads more than its fair share.
    over_since: Option<Instant>,
}

impl State {
    fn led(&self) -> Vec<&str> {
        self.swarms
            .iter()
            .filter(|(_, s)| s.leading)
            .map(|(k, _)| k.as_str())
            .collect()
    }

    fn over_share(&self) -> bool {
        self.led().len() > fair_share(self.swarms.len(), self.live)
    }
}

/// The per-swarm leases of this replica.
pub(crate) struct Shards {
    client: Client,
    namespace: String,
    prefix: String,
    identity: String,
    timing: Timing,
    state: Mutex<State>,
    gained: mpsc::UnboundedSender<String>,
    stop: watch::Sender<bool>,
    member: Mutex<Option<JoinHandle<()>>>,
    me: Weak<Shards>,
    /// `mvconf_swarms_led`.
    led_gauge: Gauge,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Shards")
            .field("identity", &self.identity)
            .field("swarms", &state.swarms.len())
            .field("live", &state.live)
            .finish_non_exhaustive()
    }
}

/// Leadership of one swarm for the length of one pass.
pub(crate) struct Lead {
    pub(crate) fence: Fence,
    _pass: Option<OwnedRwLockReadGuard<()>>,
}

impl Lead {
    /// Under a fence of its own, with no swarm to hand over (the
    /// coordinator's work, or every pass under global leadership).
    pub(crate) fn under(fence: Fence) -> Lead {
        Lead { fence, _pass: None }
    }
}

impl Shards {
    /// Starts counting live replicas; swarms join as bindings name them.
    /// The receiver gets each swarm this replica starts to lead.
    pub(crate) fn start(
        client: Client,
        namespace: &str,
        prefix: &str,
        identity: &str,
        timing: Timing,
        led_gauge: Gauge,
    ) -> (Arc<Shards>, mpsc::UnboundedReceiver<String>) {
        let (gained, gained_rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let shards = Arc::new_cyclic(|me| Shards {
            client,
            namespace: namespace.to_owned(),
            prefix: prefix.to_owned(),
            identity: identity.to_owned(),
            timing,
            state: Mutex::new(State {
                live: 1,
                ..Default::default()
            }),
            gained,
            stop,
            member: Mutex::new(None),
            me: me.clone(),
            led_gauge,
        });
        let task = tokio::spawn(membership(shards.clone()));
        *shards.member.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        (shards, gained_rx)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fence of `swarm`'s current term here (shut when another replica
    /// leads it); `None` for a swarm no binding has named yet.
    pub(crate) fn fence_of(&self, swarm: &str) -> Option<Fence> {
        self.state().swarms.get(swarm).map(|s| s.fence.clone())
    }

    /// Leadership of `swarm` for one pass, when this replica leads it and
    /// is not handing it over. A swarm seen for the first time joins the
    /// campaign.
    pub(crate) fn lead(&self, swarm: &str) -> Option<Lead> {
        let passes = {
            let mut state = self.state();
            match state.swarms.get(swarm) {
                Some(s) if s.leading && s.fence.check().is_ok() => {
                    Some((s.fence.clone(), s.passes.clone()))
                }
                Some(_) => None,
                None => {
                    let task = self
                        .me
                        .upgrade()
                        .map(|me| tokio::spawn(campaign(me, swarm.to_owned())));
                    state.swarms.insert(
                        swarm.to_owned(),
                        Shard {
                            fence: Fence::shut(),
                            leading: false,
                            passes: Arc::new(RwLock::new(())),
                            task,
                        },
                    );
                    None
                }
            }
        }?;
        let (fence, lock) = passes;
        let guard = lock.try_read_owned().ok()?;
        Some(Lead {
            fence,
            _pass: Some(guard),
        })
    }

    /// Whether this replica may take a free swarm Lease at once.
    fn eager(&self) -> bool {
        let state = self.state();
        state.led().len() < fair_share(state.swarms.len(), state.live)
    }

    /// Whether `swarm` is the one this replica hands over now: it has led
    /// more than its fair share for a whole lease duration (one swarm at a
    /// time, each after the one before is gone).
    fn should_hand_over(&self, swarm: &str) -> bool {
        let mut state = self.state();
        if !state.over_share() {
            state.over_since = None;
            return false;
        }
        let since = *state.over_since.get_or_insert_with(Instant::now);
        since.elapsed() >= self.timing.duration
            && to_hand_over(&state.led(), &self.identity) == Some(swarm)
    }

    fn set(&self, swarm: &str, fence: Option<Fence>) -> Arc<RwLock<()>> {
        let mut state = self.state();
        let passes = Arc::new(RwLock::new(()));
        let shard = state.swarms.entry(swarm.to_owned()).or_insert(Shard {
            fence: Fence::shut(),
            leading: false,
            passes,
            task: None,
        });
        shard.leading = fence.is_some();
        shard.fence = fence.unwrap_or_else(Fence::shut);
        let passes = shard.passes.clone();
        let led = state.led().len();
        self.led_gauge.set(i64::try_from(led).unwrap_or(i64::MAX));
        passes
    }

    /// SIGTERM, after the passes under way finished: every swarm Lease is
    /// released (a standby takes it at once) and the member Lease deleted.
    pub(crate) async fn release_all(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = {
            let mut state = self.state();
            state
                .swarms
                .values_mut()
                .filter_map(|s| s.task.take())
                .collect()
        };
        for t in tasks {
            let _ = t.await;
        }
        let member = self
            .member
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = member {
            let _ = t.await;
        }
    }
}

/// How one term of a swarm's leadership ended.
enum TermEnd {
    Lost,
    Stop,
    HandOver,
}

/// Campaigns for one swarm's Lease, leads, hands over, and again, until
/// SIGTERM.
async fn campaign(shards: Arc<Shards>, swarm: String) {
    let name = swarm_lease(&shards.prefix, &swarm);
    let meta = ObjectMeta {
        labels: Some(
            [
                (LEASE_OF.to_owned(), shards.prefix.clone()),
                (ROLE.to_owned(), "swarm".to_owned()),
            ]
            .into(),
        ),
        annotations: Some([(SWARM.to_owned(), swarm.clone())].into()),
        ..Default::default()
    };
    let weak = shards.me.clone();
    let mut elector = Elector::new(
        shards.client.clone(),
        &shards.namespace,
        &name,
        &shards.identity,
        shards.timing,
    )
    .with_meta(meta)
    .eager_when(move || weak.upgrade().is_some_and(|s| s.eager()));
    let mut stop = shards.stop.subscribe();
    loop {
        let leading = tokio::select! {
            l = elector.campaign() => l,
            _ = stop.wait_for(|s| *s) => return,
        };
        tracing::info!(%swarm, lease = %name, "leading this swarm");
        let passes = shards.set(&swarm, Some(leading.fence.clone()));
        let _ = shards.gained.send(swarm.clone());
        let end = loop {
            tokio::select! {
                _ = leading.fence.closed() => break TermEnd::Lost,
                _ = stop.wait_for(|s| *s) => break TermEnd::Stop,
                _ = tokio::time::sleep(shards.timing.retry) => {
                    if shards.should_hand_over(&swarm) {
                        break TermEnd::HandOver;
                    }
                }
            }
        };
        // No new pass starts here from now on.
        shards.set(&swarm, None);
        let next = match end {
            TermEnd::Lost => {
                tracing::error!(%swarm, "lost this swarm's lease: its passes were cancelled");
                leading.ended().await
            }
            TermEnd::Stop => {
                leading.release().await;
                return;
            }
            TermEnd::HandOver => {
                // The passes under way finish first, up to the renew deadline.
                let wait = passes.write_owned();
                let _ = tokio::time::timeout(shards.timing.renew_deadline, wait).await;
                tracing::info!(%swarm, "over the fair share: handing this swarm over");
                leading.hand_over().await
            }
        };
        let Some(next) = next else {
            tracing::error!(%swarm, "the lease keeper of this swarm failed");
            return;
        };
        elector = next;
    }
}

/// Keeps this replica's member Lease and counts the live ones.
async fn membership(shards: Arc<Shards>) {
    let api: Api<Lease> = Api::namespaced(shards.client.clone(), &shards.namespace);
    let name = member_lease(&shards.prefix, &shards.identity);
    let selector = format!("{LEASE_OF}={},{ROLE}=member", shards.prefix);
    let mut seen: HashMap<String, (String, Instant)> = HashMap::new();
    let mut stop = shards.stop.subscribe();
    loop {
        if let Err(e) = renew_member(&api, &name, &shards).await {
            tracing::warn!(lease = %name, error = %e, "renewing this replica's member lease");
        }
        match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => {
                let now = Instant::now();
                let mut live = 0;
                let mut gone = Vec::new();
                for l in list.items {
                    let (Some(n), Some(rv)) = (l.metadata.name, l.metadata.resource_version) else {
                        continue;
                    };
                    let since = match seen.get(&n) {
                        Some((old, at)) if *old == rv => *at,
                        _ => now,
                    };
                    seen.insert(n.clone(), (rv.clone(), since));
                    let quiet = now.saturating_duration_since(since);
                    if n == name || quiet < shards.timing.duration {
                        live += 1;
                    } else if quiet >= shards.timing.duration * 10 {
                        gone.push((n, rv));
                    }
                }
                shards.state().live = live.max(1);
                for (n, rv) in gone {
                    let dp = DeleteParams {
                        preconditions: Some(Preconditions {
                            resource_version: Some(rv),
                            uid: None,
                        }),
                        ..Default::default()
                    };
                    if api.delete(&n, &dp).await.is_ok() {
                        tracing::info!(lease = %n, "deleted the member lease of a replica long gone");
                        seen.remove(&n);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing the member leases"),
        }
        tokio::select! {
            _ = tokio::time::sleep(shards.timing.retry) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let _ = api.delete(&name, &DeleteParams::default()).await;
}

async fn renew_member(api: &Api<Lease>, name: &str, shards: &Shards) -> Result<(), kube::Error> {
    let spec = LeaseSpec {
        holder_identity: Some(shards.identity.clone()),
        lease_duration_seconds: i32::try_from(shards.timing.duration.as_secs()).ok(),
        renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        ..Default::default()
    };
    match api.get_opt(name).await? {
        Some(mut l) => {
            l.spec = Some(spec);
            api.replace(name, &PostParams::default(), &l).await?;
        }
        None => {
            let l = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    labels: Some(
                        [
                            (LEASE_OF.to_owned(), shards.prefix.clone()),
                            (ROLE.to_owned(), "member".to_owned()),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &l).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_swarm_fits_in_the_fair_share_of_the_live_replicas() {
        assert_eq!(fair_share(10, 3), 4);
        assert_eq!(fair_share(10, 1), 10);
        assert_eq!(fair_share(3, 5), 1);
        assert_eq!(fair_share(0, 2), 0);
        assert_eq!(fair_share(4, 0), 4, "never divides by zero");
        for swarms in 0..40 {
            for live in 1..8 {
                assert!(fair_share(swarms, live) * live >= swarms);
            }
        }
    }

    #[test]
    fn replicas_over_their_share_do_not_all_hand_over_the_same_swarm() {
        let led = ["s1", "s2", "s3", "s4", "s5", "s6"];
        let picks: std::collections::BTreeSet<&str> = ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .filter_map(|me| to_hand_over(&led, me))
            .collect();
        assert!(picks.len() > 1, "{picks:?}");
        assert_eq!(to_hand_over(&[], "a"), None);
        assert_eq!(to_hand_over(&led, "a"), to_hand_over(&led, "a"));
    }

    #[test]
    fn lease_names_are_dns_safe_and_distinct_per_swarm() {
        let a = swarm_lease("mvconf-operator", "4f6s8dk2ms0a8bq6xwz1");
        let b = swarm_lease("mvconf-operator", "4f6s8dk2ms0a8bq6xwz2");
        assert_ne!(a, b);
        assert!(a.len() < 64 && a.starts_with("mvconf-operator-swarm-"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_ne!(member_lease("x", "pod-1"), member_lease("x", "pod-2"));
    }
}
