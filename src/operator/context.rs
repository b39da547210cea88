//! What every reconcile shares: the Kubernetes client, the operator's
//! settings, the swarm views, the event recorder, metrics.

use super::endpoints::{EndpointState, Registry};
use super::index::BindingIndex;
use super::metrics::Metrics;
use super::shards::Shards;
use super::slices::SliceCache;
use super::tenancy::TenancyCache;
use super::written::Written;
use crate::cluster::{ClusterConfig, ConfigError, Endpoint};
use crate::config::validate::{Desired, Invalid};
use crate::crd::{EndpointSpec, MacvlanBinding};
use crate::credentials::CredentialError;
use crate::engine::transport::{Auth, Limits, SecretBytes, Tls};
use crate::fence::Fence;
use crate::reconcile::{ApplyOptions, Memory, Mode, Pass};
use crate::secret::SecretString;
use crate::tenancy::admit::{Admitted, Check, EndpointChoice, admit, endpoint_choice};
use k8s_openapi::api::core::v1::Secret;
use kube::core::DeserializeGuard;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Where the operator's own default credentials come from.
#[derive(Debug, Clone)]
pub(crate) enum CredentialSource {
    None,
    /// A Secret in the operator's namespace.
    Secret {
        namespace: String,
        name: String,
    },
    /// A directory of files named like a Secret's keys (a mounted Secret);
    /// each file must be private (no group or other permission bits).
    Dir(PathBuf),
}

/// The operator's settings, resolved from its command line.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) default_endpoint: Endpoint,
    pub(crate) default_credentials: CredentialSource,
    pub(crate) insecure_skip_tls_verify: bool,
    pub(crate) api_version: Option<String>,
    pub(crate) limits: Limits,
    pub(crate) resync: Duration,
    pub(crate) observe_concurrency: usize,
    pub(crate) apply_per_node: usize,
    /// How long the address of a slot scaled away goes to nobody else.
    pub(crate) release_cooldown: Duration,
    /// Duplicate-address detection: the probe image and pace (none: off).
    pub(crate) probe: Option<crate::probe::container::ProbeSpec>,
    pub(crate) probe_freshness: crate::probe::book::Freshness,
    /// This operator install, `namespace/lease`: the claim it puts on the
    /// services it binds, so that another install on the swarm refuses.
    pub(crate) install: String,
    /// The operator's own namespace: where SwarmEndpoints' Secrets live.
    pub(crate) namespace: String,
}

/// What a reconcile needs.
pub(crate) struct Context {
    pub(crate) client: Client,
    pub(crate) settings: Settings,
    pub(crate) recorder: Recorder,
    pub(crate) registry: Arc<Registry>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stores: OnceLock<Vec<Store<DeserializeGuard<MacvlanBinding>>>>,
    /// Docker start times of containers, for the drift-repair latency.
    pub(crate) started: Mutex<HashMap<String, i64>>,
    /// Consecutive failures per binding, for backoff.
    pub(crate) failures: Mutex<HashMap<String, u32>>,
    /// Admitted specs by binding UID, with the generation and the tenancy
    /// epoch they are of.
    pub(crate) validated: Mutex<HashMap<String, Validated>>,
    /// The platform's MacvlanNetworks, SwarmEndpoints and namespace labels.
    pub(crate) tenancy: Arc<TenancyCache>,
    /// Bindings by swarm and service, for the Docker event router.
    pub(crate) index: Mutex<BindingIndex>,
    /// This term of leadership: no status write once it is closed. Under
    /// per-swarm leadership, the coordinator's term: it covers the bindings
    /// whose swarm is not known ([`Context::fence_for`]) and tenancy status.
    pub(crate) fence: Fence,
    /// Swarm IDs by endpoint identity, learnt once per term.
    pub(crate) swarms: Mutex<HashMap<String, SwarmFound>>,
    /// Every binding's MacvlanEndpointSlices: the memory of its slots.
    pub(crate) slices: SliceCache,
    /// Status writes of this replica the binding stores may not show yet.
    pub(crate) written_bindings: Written<MacvlanBinding>,
    /// Per-swarm leadership: the swarms this replica leads. `None` under
    /// the install's one Lease (`fence` then covers every swarm).
    pub(crate) shards: Option<Arc<Shards>>,
}

/// What asking an endpoint for its swarm ID found.
#[derive(Debug, Clone)]
pub(crate) enum SwarmFound {
    Id(String),
    /// It could not be asked; not asked again before [`SWARM_RETRY`].
    Failed(Instant),
}

/// How long a failed swarm lookup stands: a broken endpoint of one binding
/// does not slow every other binding's pass.
const SWARM_RETRY: Duration = Duration::from_secs(30);

/// A binding as the reflector stores it: possibly unreadable.
pub(crate) type Guarded = DeserializeGuard<MacvlanBinding>;

/// What admitting a binding found: its spec as the grants allow it, or
/// every reason it is refused.
pub(crate) type Verdict = Result<Arc<Admitted>, Arc<Invalid>>;

/// A verdict with the generation and tenancy epoch it is of.
pub(crate) type Validated = ((Option<i64>, u64), Verdict);

/// The binding inside a store entry, when it could be read.
pub(crate) fn valid(g: &Guarded) -> Option<&MacvlanBinding> {
    g.0.as_ref().ok()
}

/// Why a binding's endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EndpointError {
    #[error("Secret {namespace}/{name} not found")]
    SecretMissing { namespace: String, name: String },
    #[error("not allowed to read Secret {namespace}/{name}: add it to the chart's secrets.names")]
    SecretForbidden { namespace: String, name: String },
    #[error("reading Secret {namespace}/{name}: {source}")]
    SecretRead {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: key {key} is not UTF-8 text")]
    NotText { what: String, key: String },
    #[error("{what}: give both username and password (or token)")]
    HalfCredentials { what: String },
    #[error(transparent)]
    CredentialFile(#[from] CredentialError),
    #[error(transparent)]
    Cluster(#[from] ConfigError),
}

impl EndpointError {
    /// Whether the credentials are at fault (condition AuthFailed), rather
    /// than the endpoint's configuration.
    pub(crate) fn is_auth(&self) -> bool {
        matches!(
            self,
            EndpointError::SecretMissing { .. }
                | EndpointError::SecretForbidden { .. }
                | EndpointError::CredentialFile(_)
        )
    }
}

/// The endpoint a binding uses: its own, else the operator's default.
pub(crate) fn endpoint_of(spec: Option<&EndpointSpec>, default: &Endpoint) -> Endpoint {
    spec.map_or_else(|| default.clone(), Endpoint::from_spec)
}

/// The endpoint spec an admission chose; `None` for the default.
fn chosen(choice: &EndpointChoice) -> Option<&EndpointSpec> {
    match choice {
        EndpointChoice::Default => None,
        EndpointChoice::Inline(spec) | EndpointChoice::Swarm { spec, .. } => Some(spec),
    }
}

/// Credentials read from a Secret's data (or a directory of files).
fn auth_from(
    data: &BTreeMap<String, Vec<u8>>,
    what: &str,
) -> Result<(Auth, Tls, u64), EndpointError> {
    let text = |k: &str| -> Result<Option<String>, EndpointError> {
        data.get(k)
            .map(|v| {
                String::from_utf8(v.clone()).map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            })
            .transpose()
            .map_err(|_| EndpointError::NotText {
                what: what.to_owned(),
                key: k.to_owned(),
            })
    };
    let auth = match (text("username")?, text("password")?, text("token")?) {
        (_, _, Some(t)) if !t.is_empty() => Auth::Token(SecretString::new(t)),
        (Some(u), Some(p), _) if !u.is_empty() => Auth::Basic {
            username: u,
            password: SecretString::new(p),
        },
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(EndpointError::HalfCredentials {
                what: what.to_owned(),
            });
        }
        _ => Auth::None,
    };
    let identity = match (data.get("tls.crt"), data.get("tls.key")) {
        (Some(c), Some(k)) => {
            let mut pem = c.clone();
            pem.push(b'\n');
            pem.extend_from_slice(k);
            Some(SecretBytes(pem))
        }
        _ => None,
    };
    let tls = Tls {
        ca_pem: data.get("ca.crt").cloned(),
        identity_pem: identity,
        insecure_skip_verify: false,
    };
    // Change detection only; never shown.
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    Ok((auth, tls, h.finish()))
}

/// The data of Secret `namespace/name`, or why it cannot be read.
pub(crate) async fn read_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, EndpointError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(s)) => Ok(s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()),
        Ok(None) => Err(EndpointError::SecretMissing {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(EndpointError::SecretForbidden {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
        Err(source) => Err(EndpointError::SecretRead {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        }),
    }
}

/// The credentials of the operator's default endpoint, as its settings
/// name them: a Secret, a directory of files, or none.
pub(crate) async fn default_credentials(
    client: &kube::Client,
    settings: &Settings,
) -> Result<ClusterConfig, EndpointError> {
    let data = match &settings.default_credentials {
        CredentialSource::Secret { namespace, name } => {
            read_secret(client, namespace, name).await?
        }
        CredentialSource::Dir(dir) => Context::read_dir(dir)?,
        CredentialSource::None => BTreeMap::new(),
    };
    let (auth, mut tls, _) = auth_from(&data, "credentials")?;
    tls.insecure_skip_verify = settings.insecure_skip_tls_verify;
    Ok(ClusterConfig {
        endpoint: Some(settings.default_endpoint.clone()),
        auth,
        tls,
        limits: settings.limits.clone(),
        api_version: settings.api_version.clone(),
    })
}

impl Context {
    async fn read_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, EndpointError> {
        read_secret(&self.client, namespace, name).await
    }

    fn read_dir(dir: &std::path::Path) -> Result<BTreeMap<String, Vec<u8>>, EndpointError> {
        let mut out = BTreeMap::new();
        for key in [
            "username", "password", "token", "ca.crt", "tls.crt", "tls.key",
        ] {
            let path = dir.join(key);
            // ca.crt is public; everything else must be private to us.
            let bytes = if key == "ca.crt" {
                std::fs::read(&path).ok()
            } else {
                crate::credentials::read_private(&path)?
            };
            if let Some(b) = bytes {
                out.insert(key.to_owned(), b);
            }
        }
        Ok(out)
    }

    /// The swarm view a binding uses, through the endpoint its admission
    /// chose, with its current credentials: an inline endpoint's Secret
    /// is in the binding's namespace, a SwarmEndpoint's in the operator's.
    pub(crate) async fn endpoint_for(
        &self,
        b: &MacvlanBinding,
        choice: &EndpointChoice,
    ) -> Result<Arc<EndpointState>, EndpointError> {
        let spec = chosen(choice);
        let endpoint = endpoint_of(spec, &self.settings.default_endpoint);
        let identity = endpoint.identity();
        let ns = b.namespace().unwrap_or_default();
        let data = match (choice, &self.settings.default_credentials) {
            (EndpointChoice::Inline(ep), _) => match &ep.secret_ref {
                Some(r) => self.read_secret(&ns, &r.name).await?,
                None => BTreeMap::new(),
            },
            (EndpointChoice::Swarm { spec, .. }, _) => match &spec.secret_ref {
                Some(r) => self.read_secret(&self.settings.namespace, &r.name).await?,
                None => BTreeMap::new(),
            },
            (EndpointChoice::Default, CredentialSource::Secret { namespace, name }) => {
                self.read_secret(namespace, name).await?
            }
            (EndpointChoice::Default, CredentialSource::Dir(dir)) => Self::read_dir(dir)?,
            (EndpointChoice::Default, CredentialSource::None) => BTreeMap::new(),
        };
        let what = "credentials";
        let (auth, mut tls, fingerprint) = auth_from(&data, what)?;
        tls.insecure_skip_verify = self.settings.insecure_skip_tls_verify
            || spec.is_some_and(|e| e.insecure_skip_tls_verify);
        let config = ClusterConfig {
            endpoint: Some(endpoint),
            auth,
            tls,
            limits: self.settings.limits.clone(),
            api_version: self.settings.api_version.clone(),
        };
        // The whole effective configuration picks the view: an edit of any
        // of it applies at once, and two bindings with different
        // credentials on one URL each keep theirs.
        let mut h = DefaultHasher::new();
        (
            &config.endpoint,
            fingerprint,
            config.tls.insecure_skip_verify,
            &config.api_version,
        )
            .hash(&mut h);
        let binding = format!("{ns}/{}", b.name_any());
        Ok(self.registry.get(&binding, &identity, h.finish(), config)?)
    }

    /// Every binding the operator sees that could be read, shared with the
    /// reflector stores: no binding (nor its status) is copied.
    pub(crate) fn bindings(&self) -> Vec<Arc<Guarded>> {
        let Some(stores) = self.stores.get() else {
            return Vec::new();
        };
        stores
            .iter()
            .flat_map(|s| s.state())
            .filter(|g| g.0.is_ok())
            .collect()
    }

    /// `namespace/name` of every binding stored, readable or not: each one
    /// that exists keeps its claims.
    pub(crate) fn binding_keys(&self) -> std::collections::BTreeSet<String> {
        let Some(stores) = self.stores.get() else {
            return Default::default();
        };
        stores
            .iter()
            .flat_map(|s| s.state())
            .map(|g| format!("{}/{}", g.namespace().unwrap_or_default(), g.name_any()))
            .collect()
    }

    /// Whether a reflector store holds this binding.
    pub(crate) fn knows(&self, r: &ObjectRef<Guarded>) -> bool {
        self.stores
            .get()
            .is_some_and(|stores| stores.iter().any(|s| s.get(r).is_some()))
    }

    /// A binding admitted against the grants, or every reason it is not;
    /// once per generation and tenancy epoch, not on every neighbour's
    /// reconcile.
    pub(crate) fn admitted(&self, b: &MacvlanBinding) -> Verdict {
        let uid =
            b.metadata.uid.clone().unwrap_or_else(|| {
                format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
            });
        let (epoch, tenancy) = self.tenancy.snapshot();
        let version = (b.metadata.generation, epoch);
        let mut cache = self
            .validated
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((v, d)) = cache.get(&uid)
            && *v == version
        {
            return d.clone();
        }
        let ns = b.namespace().unwrap_or_default();
        let d = admit(&b.spec, &ns, &tenancy, Check::Grants)
            .map(Arc::new)
            .map_err(Arc::new);
        // Deleted bindings' entries go with the next overflow.
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(uid, (version, d.clone()));
        d
    }

    /// What a binding made, found without checking its grants: a deleted
    /// binding undoes its work even after its grant was revoked.
    pub(crate) fn resolved(&self, b: &MacvlanBinding) -> Result<Admitted, Invalid> {
        let (_, tenancy) = self.tenancy.snapshot();
        admit(
            &b.spec,
            &b.namespace().unwrap_or_default(),
            &tenancy,
            Check::Resolve,
        )
    }

    /// A binding's admitted spec, or `None` when it is refused.
    pub(crate) fn desired_of(&self, b: &MacvlanBinding) -> Option<Arc<Admitted>> {
        self.admitted(b).ok()
    }

    /// A pass with the operator's settings.
    pub(crate) fn pass<'a>(
        &self,
        desired: &'a Desired,
        memory: &'a Memory,
        mode: Mode,
    ) -> Pass<'a> {
        Pass {
            apply: ApplyOptions {
                per_node: self.settings.apply_per_node,
                ..Default::default()
            },
            observe_concurrency: self.settings.observe_concurrency,
            ..Pass::new(desired, memory, mode)
        }
    }

    /// The claim this install puts on a binding's services.
    pub(crate) fn owner(&self, b: &MacvlanBinding) -> crate::reconcile::Owner {
        crate::reconcile::Owner {
            binding: format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any()),
            install: self.settings.install.clone(),
        }
    }

    /// The endpoint a binding uses, as text: one connection view each.
    /// Not the swarm: two spellings may reach the same one ([`Context::swarm_of`]).
    pub(crate) fn identity_of(&self, b: &MacvlanBinding) -> String {
        let choice = self.endpoint_choice(b);
        endpoint_of(chosen(&choice), &self.settings.default_endpoint).identity()
    }

    /// The endpoint a binding would use, without admitting it.
    pub(crate) fn endpoint_choice(&self, b: &MacvlanBinding) -> EndpointChoice {
        endpoint_choice(&b.spec, &self.tenancy.snapshot().1)
    }

    /// What the event router knows a binding's swarm by: its cluster ID
    /// once learnt, its endpoint's text before.
    pub(crate) fn swarm_key(&self, b: &MacvlanBinding) -> String {
        let identity = self.identity_of(b);
        match self
            .swarms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&identity)
        {
            Some(SwarmFound::Id(id)) => id.clone(),
            _ => identity,
        }
    }

    /// The fence of `b`'s writes: its swarm's term under per-swarm
    /// leadership (shut where another replica leads it), else this term.
    pub(crate) fn fence_for(&self, b: &MacvlanBinding) -> Fence {
        self.shards
            .as_ref()
            .and_then(|s| s.fence_of(&self.swarm_key(b)))
            .unwrap_or_else(|| self.fence.clone())
    }

    /// The release cooldown as a pass at `now` applies it.
    pub(crate) fn release(
        &self,
        now: crate::reconcile::Timestamp,
    ) -> crate::reconcile::plan::Release {
        crate::reconcile::plan::Release {
            now,
            cooldown: self.settings.release_cooldown,
        }
    }

    /// A binding is gone: out of the event router's index, and its endpoint
    /// view closed unless another binding uses it.
    pub(crate) fn forget(&self, key: (String, String)) {
        self.registry.forget(&format!("{}/{}", key.0, key.1));
        self.metrics.forget_binding(&key.0, &key.1);
        self.index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }

    /// Indexes a binding for the Docker event router under `swarm`.
    pub(crate) fn index_binding(&self, b: &MacvlanBinding, swarm: String) {
        self.index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set(
                (b.namespace().unwrap_or_default(), b.name_any()),
                swarm,
                b.spec.services.iter().map(|s| s.name.clone()).collect(),
                b.spec.services.iter().map(|s| s.network.clone()).collect(),
            );
    }

    /// The swarm `endpoint` reaches: its cluster ID, remembered for every
    /// binding that spells the endpoint the same way.
    pub(crate) async fn swarm_id(
        &self,
        endpoint: &EndpointState,
    ) -> Result<String, crate::engine::EngineError> {
        let found = endpoint.cluster.swarm_id().await.map(str::to_owned);
        if let Ok(id) = &found {
            endpoint.learnt(id);
        }
        let entry = match &found {
            Ok(id) => SwarmFound::Id(id.clone()),
            Err(_) => SwarmFound::Failed(Instant::now()),
        };
        self.swarms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(endpoint.identity.clone(), entry);
        found
    }

    /// The swarm another binding is on, whatever URL it spells: asked
    /// once per endpoint; `None` when its endpoint cannot be reached now
    /// (then it cannot act either).
    pub(crate) async fn swarm_of(
        &self,
        b: &MacvlanBinding,
        choice: &EndpointChoice,
    ) -> Option<String> {
        let identity = endpoint_of(chosen(choice), &self.settings.default_endpoint).identity();
        let cached = self
            .swarms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&identity)
            .cloned();
        match cached {
            Some(SwarmFound::Id(id)) => return Some(id),
            Some(SwarmFound::Failed(at)) if at.elapsed() < SWARM_RETRY => return None,
            _ => {}
        }
        let Ok(endpoint) = self.endpoint_for(b, choice).await else {
            self.swarms
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(identity, SwarmFound::Failed(Instant::now()));
            return None;
        };
        self.swarm_id(&endpoint).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_basic_token_and_tls_from_secret_data() {
        let mut d = BTreeMap::new();
        d.insert("username".to_owned(), b"admin".to_vec());
        d.insert("password".to_owned(), b"pw\n".to_vec());
        let (auth, tls, f1) = auth_from(&d, "s").unwrap();
        assert!(
            matches!(auth, Auth::Basic { ref username, ref password } if username == "admin" && password.expose() == "pw")
        );
        assert!(tls.ca_pem.is_none());
        d.insert("password".to_owned(), b"rotated".to_vec());
        let (_, _, f2) = auth_from(&d, "s").unwrap();
        assert_ne!(f1, f2, "a rotated password is a new fingerprint");
        d.insert("token".to_owned(), b"tok".to_vec());
        assert!(matches!(auth_from(&d, "s").unwrap().0, Auth::Token(_)));
        let only_user: BTreeMap<String, Vec<u8>> = [("username".to_owned(), b"u".to_vec())].into();
        assert!(auth_from(&only_user, "s").is_err());
    }
}
