//! The platform's tenancy objects (MacvlanNetworks, SwarmEndpoints and the
//! labels of namespaces), cached for admission. Any change that can alter
//! what a binding is granted moves the epoch; every binding is then
//! admitted again.

use super::OperatorError;
use crate::tenancy::admit::{Inline, Tenancy};
use crate::tenancy::{MacvlanNetwork, SwarmEndpoint};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The caches, shared by every term of leadership of this replica.
pub(crate) struct TenancyCache {
    inline: Inline,
    networks: Store<MacvlanNetwork>,
    endpoints: Store<SwarmEndpoint>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    epoch: watch::Receiver<u64>,
    snapshot: Mutex<Option<(u64, Arc<Tenancy>)>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TenancyCache {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::fmt::Debug for TenancyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancyCache")
            .field("inline", &self.inline)
            .field("epoch", &*self.epoch.borrow())
            .finish_non_exhaustive()
    }
}

/// Lists one object of `api`, so that a missing CRD or missing RBAC stops
/// the operator at start with the fix, instead of a watch retrying forever.
pub(crate) async fn preflight<K>(api: Api<K>, what: &str) -> Result<(), OperatorError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(OperatorError::Config(format!(
            "the {what} CRD is not installed: kubectl apply --server-side -f crds/mvconf.yaml (Helm installs CRDs but never upgrades them)"
        ))),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(OperatorError::Config(format!(
            "not allowed to list {what}: the operator's ClusterRole needs get, list and watch on it (the chart grants them)"
        ))),
        Err(e) => Err(OperatorError::Client(e)),
    }
}

fn bump(tx: &watch::Sender<u64>) {
    tx.send_modify(|e| *e = e.wrapping_add(1));
}

/// Follows every object of `api` into a store. The epoch moves when an
/// object comes, goes, or its `fingerprint` changes (the generation of a
/// spec, the labels of a namespace): never for a status write, which would
/// otherwise make every binding pass again.
fn follow<K, F>(api: Api<K>, tx: watch::Sender<u64>, fingerprint: F) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(&K) -> String + Send + 'static,
{
    let (reader, writer) = reflector::store();
    let mut seen: HashMap<String, String> = HashMap::new();
    // During a (re)list the store shows the old objects until InitDone:
    // remember what changed, and move the epoch only once it shows them.
    let mut listed: Vec<String> = Vec::new();
    let mut changed_in_list = true;
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(stream.for_each(move |r| {
        let moved = match r {
            Ok(watcher::Event::Apply(o)) => {
                let print = fingerprint(&o);
                seen.insert(o.name_any(), print.clone()) != Some(print)
            }
            Ok(watcher::Event::InitApply(o)) => {
                let print = fingerprint(&o);
                listed.push(o.name_any());
                changed_in_list |= seen.insert(o.name_any(), print.clone()) != Some(print);
                false
            }
            Ok(watcher::Event::Delete(o)) => seen.remove(&o.name_any()).is_some(),
            Ok(watcher::Event::Init) => {
                listed.clear();
                false
            }
            Ok(watcher::Event::InitDone) => {
                let before = seen.len();
                let keep: std::collections::HashSet<String> = listed.drain(..).collect();
                seen.retain(|name, _| keep.contains(name));
                // The first list always counts: the caches are ready.
                std::mem::take(&mut changed_in_list) || seen.len() != before
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching the tenancy objects");
                false
            }
        };
        if moved {
            bump(&tx);
        }
        futures::future::ready(())
    }));
    (reader, task)
}

fn generation<K: kube::Resource>(o: &K) -> String {
    format!("{:?}", o.meta().generation)
}

impl TenancyCache {
    /// Checks that the kinds can be read, starts following them, and
    /// returns once every cache holds the whole current state.
    pub(crate) async fn start(client: &Client, inline: Inline) -> Result<Self, OperatorError> {
        let networks_api: Api<MacvlanNetwork> = Api::all(client.clone());
        let endpoints_api: Api<SwarmEndpoint> = Api::all(client.clone());
        let namespaces_api: Api<Namespace> = Api::all(client.clone());
        let checked = async {
            preflight(networks_api.clone(), "MacvlanNetwork").await?;
            preflight(endpoints_api.clone(), "SwarmEndpoint").await?;
            preflight(namespaces_api.clone(), "Namespace").await
        };
        match checked.await {
            Ok(()) => {}
            // A single-team install upgraded without its new CRDs (Helm
            // never upgrades them) keeps working with inline bindings.
            Err(OperatorError::Config(why)) if inline == Inline::Allow => {
                tracing::warn!("{why}; bindings that name MacvlanNetworks are refused until then");
                return Ok(Self::absent(inline));
            }
            Err(e) => return Err(e),
        }
        let (tx, epoch) = watch::channel(0u64);
        let (networks, t1) = follow(networks_api, tx.clone(), generation);
        let (endpoints, t2) = follow(endpoints_api, tx.clone(), generation);
        // Namespaces change often; only their labels matter here.
        let ns_meta: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let (namespaces, t3) = follow(ns_meta, tx, |n: &PartialObjectMeta<Namespace>| {
            format!("{:?}", n.labels())
        });
        let cache = Self {
            inline,
            networks,
            endpoints,
            namespaces,
            epoch,
            snapshot: Mutex::new(None),
            tasks: vec![t1, t2, t3],
        };
        for ready in [
            cache.networks.wait_until_ready().await,
            cache.endpoints.wait_until_ready().await,
            cache.namespaces.wait_until_ready().await,
        ] {
            ready.map_err(|e| OperatorError::Config(format!("tenancy caches: {e}")))?;
        }
        Ok(cache)
    }

    /// No tenancy objects: every binding must define its networks inline.
    fn absent(inline: Inline) -> Self {
        let (_tx, epoch) = watch::channel(0u64);
        Self {
            inline,
            networks: reflector::store().0,
            endpoints: reflector::store().0,
            namespaces: reflector::store().0,
            epoch,
            snapshot: Mutex::new(None),
            tasks: Vec::new(),
        }
    }

    /// Moves whenever something a grant depends on changed.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.epoch.clone()
    }

    pub(crate) fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }

    /// What the platform declared now, built once per epoch.
    pub(crate) fn snapshot(&self) -> (u64, Arc<Tenancy>) {
        let epoch = self.epoch();
        let mut cached = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((e, t)) = &*cached
            && *e == epoch
        {
            return (epoch, t.clone());
        }
        let t = Arc::new(Tenancy {
            inline: self.inline,
            networks: self
                .networks
                .state()
                .iter()
                .map(|n| (n.name_any(), n.spec.clone()))
                .collect(),
            endpoints: self
                .endpoints
                .state()
                .iter()
                .map(|e| (e.name_any(), e.spec.clone()))
                .collect(),
            namespace_labels: self
                .namespaces
                .state()
                .iter()
                .map(|n| (n.name_any(), n.labels().clone()))
                .collect(),
        });
        *cached = Some((epoch, t.clone()));
        (epoch, t)
    }
}

/// How often the platform's objects get their status, at most.
const USAGE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl TenancyCache {
    /// The objects as cached, for the status writer.
    fn objects(&self) -> (Vec<Arc<MacvlanNetwork>>, Vec<Arc<SwarmEndpoint>>) {
        (self.networks.state(), self.endpoints.state())
    }
}

/// While this replica leads: writes each MacvlanNetwork's and
/// SwarmEndpoint's status (who may use it, who does, how full it is) when
/// it changed, every [`USAGE_EVERY`] and soon after the platform edits one.
pub(crate) async fn publish_usage(ctx: Arc<super::context::Context>) {
    let mut changes = ctx.tenancy.changes();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(USAGE_EVERY) => {},
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        changes.mark_unchanged();
        if let Err(e) = write_usage(&ctx).await {
            tracing::warn!(error = %e, "cannot write the status of a MacvlanNetwork or SwarmEndpoint");
        }
    }
}

async fn write_usage(ctx: &super::context::Context) -> Result<(), kube::Error> {
    use crate::tenancy::usage::{Use, endpoint_status, network_status};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::{Patch, PatchParams};
    let bindings = ctx.bindings();
    let admitted: Vec<_> = bindings
        .iter()
        .filter_map(|g| {
            let b = super::context::valid(g)?;
            let mine = ctx.slices.of(b);
            let records = if mine.is_empty() {
                b.status
                    .as_ref()
                    .map(|s| s.containers.clone())
                    .unwrap_or_default()
            } else {
                crate::slices::records_of(mine.iter().map(AsRef::as_ref))
            };
            Some((ctx.admitted(b).ok()?, records))
        })
        .collect();
    let uses: Vec<Use<'_>> = admitted
        .iter()
        .map(|(a, records)| Use {
            admitted: a,
            records,
        })
        .collect();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let params = PatchParams {
        field_manager: Some(super::controller::MANAGER.to_owned()),
        ..Default::default()
    };
    let (networks, endpoints) = ctx.tenancy.objects();
    // Each grant's use, for the alerts (whether or not a status changes).
    ctx.metrics.grants_are(
        &networks
            .iter()
            .map(|n| {
                let name = n.name_any();
                let grants = crate::tenancy::usage::grant_usage(&name, &n.spec, &uses);
                (name, grants)
            })
            .collect::<Vec<_>>(),
    );
    let api: Api<MacvlanNetwork> = Api::all(ctx.client.clone());
    for n in networks {
        let name = n.name_any();
        let g = n.metadata.generation;
        let next = network_status(&name, &n.spec, n.status.as_ref(), g, &uses, &now);
        if n.status.as_ref() != Some(&next) && ctx.fence.check().is_ok() {
            let patch = serde_json::json!({"status": next});
            api.patch_status(&name, &params, &Patch::Merge(&patch))
                .await?;
        }
    }
    let api: Api<SwarmEndpoint> = Api::all(ctx.client.clone());
    for e in endpoints {
        let name = e.name_any();
        let g = e.metadata.generation;
        let next = endpoint_status(&name, &e.spec, e.status.as_ref(), g, &uses, &now);
        if e.status.as_ref() != Some(&next) && ctx.fence.check().is_ok() {
            let patch = serde_json::json!({"status": next});
            api.patch_status(&name, &params, &Patch::Merge(&patch))
                .await?;
        }
    }
    Ok(())
}
