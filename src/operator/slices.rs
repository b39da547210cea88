//! A binding's MacvlanEndpointSlices, as the operator reads and writes
//! them: caches filled before the first pass of a term (the memory every
//! slot's address is restored from), and writes of only the slices that
//! changed, each over the version this pass read.

use super::OperatorError;
use super::context::Context;
use super::status::container_record;
use super::written::Written;
use crate::crd::MacvlanBinding;
use crate::fence::Fenced;
use crate::slices::{
    BINDING_LABEL, Changes, MacvlanEndpointSlice, belongs_to, changes, slices_for,
};
use futures::{StreamExt, TryStreamExt};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Slice writes in flight per binding.
const WRITES_IN_FLIGHT: usize = 8;

/// Why a binding's slices were not written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// Someone wrote the slice since this pass read it (another leader, or
    /// this replica's cache is behind): the pass runs again.
    #[error("MacvlanEndpointSlice {name} changed since this pass read it")]
    Stale { name: String },
    #[error("MacvlanEndpointSlice {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Fenced(#[from] Fenced),
}

/// The slices of every watched namespace, with this replica's own latest
/// writes over them until the stores show them.
#[derive(Clone, Default)]
pub(crate) struct SliceCache {
    stores: Vec<Store<MacvlanEndpointSlice>>,
    written: Arc<Written<MacvlanEndpointSlice>>,
}

impl SliceCache {
    /// Follows the slices of `namespaces` (every namespace when empty) and
    /// returns once every cache holds the full list: before that, a pass
    /// would not know the addresses its slots hold.
    pub(crate) async fn start(
        client: &Client,
        namespaces: &[String],
    ) -> Result<(Self, Vec<JoinHandle<()>>), OperatorError> {
        let apis: Vec<Api<MacvlanEndpointSlice>> = if namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        };
        let mut cache = SliceCache::default();
        let mut tasks = Vec::new();
        for api in apis {
            super::tenancy::preflight(api.clone(), "MacvlanEndpointSlice").await?;
            let (reader, writer) = reflector::store();
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer);
            tasks.push(tokio::spawn(stream.for_each(|r| {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "watching MacvlanEndpointSlices");
                }
                futures::future::ready(())
            })));
            cache.stores.push(reader);
        }
        for s in &cache.stores {
            if s.wait_until_ready().await.is_err() {
                return Err(OperatorError::Config(
                    "the MacvlanEndpointSlice cache stopped before it was filled".into(),
                ));
            }
        }
        Ok((cache, tasks))
    }

    /// Every slice labelled with `b`'s name in its namespace (its own and
    /// any left by an earlier binding of that name).
    pub(crate) fn labelled(&self, b: &MacvlanBinding) -> Vec<Arc<MacvlanEndpointSlice>> {
        let ns = b.namespace();
        let name = b.name_any();
        let of_b = |o: &MacvlanEndpointSlice| {
            o.namespace() == ns && o.labels().get(BINDING_LABEL) == Some(&name)
        };
        let cached = self
            .stores
            .iter()
            .flat_map(|s| s.state_filter(of_b))
            .collect();
        self.written.settle(|key| self.version_of(key));
        self.written.view_all(cached, of_b)
    }

    /// The cached version of the slice `namespace/name`.
    fn version_of(&self, key: &str) -> Option<String> {
        let (ns, name) = key.split_once('/')?;
        let r = ObjectRef::<MacvlanEndpointSlice>::new(name).within(ns);
        self.stores
            .iter()
            .find_map(|s| s.get(&r))
            .and_then(|o| o.resource_version())
    }

    /// The slices that are `b`'s memory.
    pub(crate) fn of(&self, b: &MacvlanBinding) -> Vec<Arc<MacvlanEndpointSlice>> {
        self.labelled(b)
            .into_iter()
            .filter(|s| belongs_to(s, b))
            .collect()
    }
}

/// Writes `changes` in `b`'s namespace, each only while this replica
/// leads and only over the version read (a create fails if the name
/// exists, a replace or delete if the object changed).
async fn write(ctx: &Context, b: &MacvlanBinding, changes: Changes) -> Result<(), WriteError> {
    let fence = &ctx.fence_for(b);
    let written = &ctx.slices.written;
    let ns = b.namespace().unwrap_or_default();
    let ns = &ns;
    let api: Api<MacvlanEndpointSlice> =
        Api::namespaced(ctx.client.clone(), &b.namespace().unwrap_or_default());
    let params = PostParams {
        dry_run: false,
        field_manager: Some(super::controller::MANAGER.to_owned()),
    };
    enum Write {
        Create(MacvlanEndpointSlice),
        Replace(MacvlanEndpointSlice),
        Delete(String, Option<String>),
    }
    let writes = changes
        .create
        .into_iter()
        .map(Write::Create)
        .chain(changes.replace.into_iter().map(Write::Replace))
        .chain(
            changes
                .delete
                .into_iter()
                .map(|(name, rv)| Write::Delete(name, rv)),
        );
    futures::stream::iter(writes)
        .map(|w| {
            let (api, params) = (&api, &params);
            async move {
                fence.check()?;
                let key = |name: &str| format!("{ns}/{name}");
                let (name, result) = match w {
                    Write::Create(s) => {
                        let name = s.name_any();
                        let r = api.create(params, &s).await.map(|now| {
                            written.wrote(key(&name), None, Some(Arc::new(now)));
                        });
                        (name, r)
                    }
                    Write::Replace(s) => {
                        let name = s.name_any();
                        let over = s.resource_version();
                        let r = api.replace(&name, params, &s).await.map(|now| {
                            written.wrote(key(&name), over, Some(Arc::new(now)));
                        });
                        (name, r)
                    }
                    Write::Delete(name, rv) => {
                        let dp = DeleteParams {
                            preconditions: Some(Preconditions {
                                resource_version: rv.clone(),
                                uid: None,
                            }),
                            ..DeleteParams::default()
                        };
                        let r = match api.delete(&name, &dp).await {
                            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                            r => r.map(|_| ()),
                        };
                        if r.is_ok() {
                            written.wrote(key(&name), rv, None);
                        }
                        (name, r)
                    }
                };
                result.map_err(|e| match e {
                    kube::Error::Api(s) if s.code == 409 => WriteError::Stale { name },
                    source => WriteError::Kube { name, source },
                })
            }
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

/// Writes the records of a pass into the binding's MacvlanEndpointSlices
/// (only the slices that changed); returns how many slices hold them.
pub(crate) async fn write_records(
    ctx: &Context,
    b: &MacvlanBinding,
    records: &[crate::reconcile::Record],
) -> Result<i32, WriteError> {
    let stored: Vec<_> = records.iter().map(container_record).collect();
    let wanted = slices_for(b, &stored);
    let count = i32::try_from(wanted.len()).unwrap_or(i32::MAX);
    sync(ctx, b, wanted).await?;
    Ok(count)
}

/// The end of a cleanup: the binding's records go with it (the garbage
/// collector would delete them too, as their owner is gone, but not every
/// cluster runs it promptly, and a binding created again under the same
/// name must start from a clean slate).
pub(crate) async fn forget_records(ctx: &Context, b: &MacvlanBinding) -> Result<(), WriteError> {
    sync(ctx, b, Vec::new()).await
}

/// Makes the binding's slices `wanted`, writing only what differs.
async fn sync(
    ctx: &Context,
    b: &MacvlanBinding,
    wanted: Vec<MacvlanEndpointSlice>,
) -> Result<(), WriteError> {
    let labelled = ctx.slices.labelled(b);
    let existing: Vec<_> = labelled.iter().map(AsRef::as_ref).collect();
    let todo = changes(&existing, wanted);
    if todo.is_empty() {
        return Ok(());
    }
    ctx.metrics.slice_writes.inc_by(todo.len() as u64);
    write(ctx, b, todo).await
}
