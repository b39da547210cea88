//! `/metrics` (OpenMetrics text), `/healthz` and `/readyz`.

use crate::engine::transport::CallLog;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What `prometheus-client` encodes: OpenMetrics text (`# EOF` at the end,
/// `_total` counters), said as such so that scrapers parse it as that.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub(crate) result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PoolLabels {
    pub(crate) namespace: String,
    pub(crate) binding: String,
    pub(crate) service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BindingLabels {
    pub(crate) namespace: String,
    pub(crate) binding: String,
}

/// One grant of a MacvlanNetwork (`spec.grants[grant]`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GrantLabels {
    pub(crate) network: String,
    pub(crate) grant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    node: String,
    verb: String,
    code: String,
}

/// Docker API calls by node, verb and HTTP code, read from the call log at
/// each scrape.
#[derive(Debug)]
struct Calls(Arc<CallLog>);

impl Collector for Calls {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.0.snapshot();
        let probe = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "mvconf_docker_api_calls",
            "Docker Engine API calls by node, verb and HTTP code (0: no answer)",
            None,
            probe.metric_type(),
        )?;
        for ((node, verb, code), n) in snapshot {
            let labels = CallLabels {
                node,
                verb: verb.to_owned(),
                code: code.to_string(),
            };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        let fenced = ConstCounter::new(self.0.fenced_count());
        fenced.encode(encoder.encode_descriptor(
            "mvconf_docker_mutations_fenced",
            "Docker mutations not sent because this replica no longer led",
            None,
            fenced.metric_type(),
        )?)?;
        let streams = ConstGauge::new(i64::try_from(self.0.streams()).unwrap_or(i64::MAX));
        streams.encode(encoder.encode_descriptor(
            "mvconf_docker_event_streams",
            "Docker event streams followed now (one per node per endpoint view)",
            None,
            streams.metric_type(),
        )?)?;
        // Seconds, with the milliseconds kept.
        let last = ConstGauge::new(self.0.last_mutation_ms() as f64 / 1000.0);
        last.encode(encoder.encode_descriptor(
            "mvconf_docker_last_mutation_timestamp_seconds",
            "When this replica last sent a Docker mutation (0: never)",
            None,
            last.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Every metric the operator exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) reconciles: Family<ResultLabels, Counter>,
    pub(crate) errors: Family<ReasonLabels, Counter>,
    pub(crate) reconcile_seconds: Histogram,
    pub(crate) round_passes: Histogram,
    pub(crate) pool_size: Family<PoolLabels, Gauge>,
    pub(crate) pool_allocated: Family<PoolLabels, Gauge>,
    pub(crate) pool_free: Family<PoolLabels, Gauge>,
    pub(crate) bound: Family<BindingLabels, Gauge>,
    pub(crate) desired: Family<BindingLabels, Gauge>,
    pub(crate) drift_repairs: Counter,
    pub(crate) drift_repair_seconds: Histogram,
    pub(crate) bind_seconds: Histogram,
    pub(crate) slice_writes: Counter,
    pub(crate) status_writes: Counter,
    pub(crate) leader: Gauge,
    pub(crate) swarms_led: Gauge,
    pub(crate) probes: Family<OutcomeLabels, Counter>,
    pub(crate) probed_addresses: Counter,
    pub(crate) unseen_holders: Family<BindingLabels, Gauge>,
    pub(crate) binding_ready: Family<BindingLabels, Gauge>,
    pub(crate) nodes_unreachable: Family<BindingLabels, Gauge>,
    pub(crate) foreign_holders: Family<BindingLabels, Gauge>,
    pub(crate) grant_addresses: Family<GrantLabels, Gauge>,
    pub(crate) grant_held: Family<GrantLabels, Gauge>,
    /// The grants each MacvlanNetwork has series for.
    grants: Mutex<HashMap<String, usize>>,
    /// The services each binding has pool series for, so that a binding's
    /// series go with it (and a service's with the service).
    pool_services: Mutex<HashMap<BindingLabels, BTreeSet<String>>>,
    ready: AtomicBool,
}

/// How a probe run ended: `clear` (nothing answered), `answered`, `failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) outcome: &'static str,
}

impl Metrics {
    pub(crate) fn new(calls: Arc<CallLog>) -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ResultLabels, Counter>::default();
        let errors = Family::<ReasonLabels, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        let round_passes = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        let pool_size = Family::<PoolLabels, Gauge>::default();
        let pool_allocated = Family::<PoolLabels, Gauge>::default();
        let pool_free = Family::<PoolLabels, Gauge>::default();
        let bound = Family::<BindingLabels, Gauge>::default();
        let desired = Family::<BindingLabels, Gauge>::default();
        let drift_repairs = Counter::default();
        let drift_repair_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 10));
        let bind_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "mvconf_bind_seconds",
            "From a container's Docker start event to it being bound, new containers and replacements alike",
            bind_seconds.clone(),
        );
        let leader = Gauge::default();
        let swarms_led = Gauge::default();
        let slice_writes = Counter::default();
        let status_writes = Counter::default();
        let probes = Family::<OutcomeLabels, Counter>::default();
        let probed_addresses = Counter::default();
        let unseen_holders = Family::<BindingLabels, Gauge>::default();
        let binding_ready = Family::<BindingLabels, Gauge>::default();
        let nodes_unreachable = Family::<BindingLabels, Gauge>::default();
        let foreign_holders = Family::<BindingLabels, Gauge>::default();
        let grant_addresses = Family::<GrantLabels, Gauge>::default();
        let grant_held = Family::<GrantLabels, Gauge>::default();
        registry.register(
            "mvconf_binding_ready",
            "1 when the binding's Ready condition is True, 0 otherwise",
            binding_ready.clone(),
        );
        registry.register(
            "mvconf_nodes_unreachable",
            "Nodes whose engine the binding's last pass could not reach",
            nodes_unreachable.clone(),
        );
        registry.register(
            "mvconf_foreign_holders",
            "Pool addresses held by containers the binding does not manage (Docker shows them)",
            foreign_holders.clone(),
        );
        registry.register(
            "mvconf_grant_addresses",
            "Addresses in a MacvlanNetwork grant's ranges (written by the install with --tenancy-status)",
            grant_addresses.clone(),
        );
        registry.register(
            "mvconf_grant_held",
            "Addresses of a MacvlanNetwork grant held by the bindings' task slots",
            grant_held.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "mvconf_build_info",
            "The running build: 1, labelled with its version",
            build_info,
        );
        registry.register(
            "mvconf_probes",
            "ARP probe runs (duplicate-address detection), by outcome: clear, answered, failed",
            probes.clone(),
        );
        registry.register(
            "mvconf_probed_addresses",
            "Addresses ARP-probed before being handed out",
            probed_addresses.clone(),
        );
        registry.register(
            "mvconf_unseen_holders",
            "Free pool addresses something Docker does not show answered an ARP probe for, per binding",
            unseen_holders.clone(),
        );
        registry.register(
            "mvconf_reconciles",
            "Reconcile passes by result",
            reconciles.clone(),
        );
        registry.register(
            "mvconf_reconcile_errors",
            "Passes that did not make the binding ready, by reason",
            errors.clone(),
        );
        registry.register(
            "mvconf_reconcile_duration_seconds",
            "Duration of a reconcile pass",
            reconcile_seconds.clone(),
        );
        registry.register(
            "mvconf_round_passes",
            "Bindings' passes run together in one round (one observation of their swarm)",
            round_passes.clone(),
        );
        registry.register(
            "mvconf_pool_size",
            "Addresses in a service's pool",
            pool_size.clone(),
        );
        registry.register(
            "mvconf_pool_allocated",
            "Pool addresses held by a service's slots",
            pool_allocated.clone(),
        );
        registry.register("mvconf_pool_free", "Pool addresses free", pool_free.clone());
        registry.register(
            "mvconf_binding_bound",
            "Containers bound, per binding",
            bound.clone(),
        );
        registry.register(
            "mvconf_binding_desired",
            "Running containers to bind, per binding",
            desired.clone(),
        );
        registry.register(
            "mvconf_drift_repairs",
            "Replacement containers given their slot's address back",
            drift_repairs.clone(),
        );
        registry.register(
            "mvconf_drift_repair_seconds",
            "From a replacement container's Docker start event to it being bound",
            drift_repair_seconds.clone(),
        );
        registry.register(
            "mvconf_endpoint_slice_writes",
            "MacvlanEndpointSlices created, replaced or deleted",
            slice_writes.clone(),
        );
        registry.register(
            "mvconf_status_writes",
            "MacvlanBinding status writes (a pass that changed nothing writes none)",
            status_writes.clone(),
        );
        registry.register(
            "mvconf_leader",
            "1 when this replica leads (under per-swarm leadership: coordinates)",
            leader.clone(),
        );
        registry.register(
            "mvconf_swarms_led",
            "Swarms this replica leads (per-swarm leadership)",
            swarms_led.clone(),
        );
        registry.register_collector(Box::new(Calls(calls)));
        // The label values known in advance start at 0, so that an alert's
        // rate() sees the first one and the series exist from the start.
        for outcome in ["clear", "answered", "failed"] {
            probes.get_or_create(&OutcomeLabels { outcome }).inc_by(0);
        }
        // Every reason a binding can be not Ready for.
        {
            use crate::crd::reasons::{ALL, BOUND, READY};
            for reason in ALL.iter().filter(|r| ![READY, BOUND].contains(r)) {
                errors
                    .get_or_create(&ReasonLabels {
                        reason: (*reason).to_owned(),
                    })
                    .inc_by(0);
            }
        }
        Self {
            registry,
            reconciles,
            errors,
            reconcile_seconds,
            round_passes,
            pool_size,
            pool_allocated,
            pool_free,
            bound,
            desired,
            drift_repairs,
            drift_repair_seconds,
            bind_seconds,
            slice_writes,
            status_writes,
            leader,
            swarms_led,
            probes,
            probed_addresses,
            unseen_holders,
            binding_ready,
            nodes_unreachable,
            foreign_holders,
            grant_addresses,
            grant_held,
            grants: Mutex::new(HashMap::new()),
            pool_services: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// A binding's pool series are now exactly those of `services`: the
    /// series of a service no longer in it go.
    pub(crate) fn pools_of(&self, binding: &BindingLabels, services: BTreeSet<String>) {
        let mut all = self
            .pool_services
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let before = all
            .insert(binding.clone(), services.clone())
            .unwrap_or_default();
        for gone in before.difference(&services) {
            self.remove_pool(binding, gone);
        }
    }

    fn remove_pool(&self, binding: &BindingLabels, service: &str) {
        let l = PoolLabels {
            namespace: binding.namespace.clone(),
            binding: binding.binding.clone(),
            service: service.to_owned(),
        };
        self.pool_size.remove(&l);
        self.pool_allocated.remove(&l);
        self.pool_free.remove(&l);
    }

    /// A binding is gone: so are its series.
    pub(crate) fn forget_binding(&self, namespace: &str, name: &str) {
        let b = BindingLabels {
            namespace: namespace.to_owned(),
            binding: name.to_owned(),
        };
        self.bound.remove(&b);
        self.desired.remove(&b);
        self.unseen_holders.remove(&b);
        self.binding_ready.remove(&b);
        self.nodes_unreachable.remove(&b);
        self.foreign_holders.remove(&b);
        let services = self
            .pool_services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&b)
            .unwrap_or_default();
        for s in &services {
            self.remove_pool(&b, s);
        }
    }

    /// This replica stopped leading: the series of every binding are the
    /// next leader's to export (a standby's stale ones would fire alerts).
    pub(crate) fn forget_all_bindings(&self) {
        for f in [
            &self.bound,
            &self.desired,
            &self.unseen_holders,
            &self.binding_ready,
            &self.nodes_unreachable,
            &self.foreign_holders,
        ] {
            f.clear();
        }
        for f in [&self.pool_size, &self.pool_allocated, &self.pool_free] {
            f.clear();
        }
        self.pool_services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The grants' use now: `(network, [(granted, held)] per grant)`; the
    /// series of a network or grant no longer there go.
    pub(crate) fn grants_are(&self, networks: &[(String, Vec<(u64, u64)>)]) {
        let mut known = self.grants.lock().unwrap_or_else(PoisonError::into_inner);
        let label = |network: &str, i: usize| GrantLabels {
            network: network.to_owned(),
            grant: i.to_string(),
        };
        let mut next: HashMap<String, usize> = HashMap::new();
        for (network, grants) in networks {
            for (i, (granted, held)) in grants.iter().enumerate() {
                let l = label(network, i);
                self.grant_addresses
                    .get_or_create(&l)
                    .set(i64::try_from(*granted).unwrap_or(i64::MAX));
                self.grant_held
                    .get_or_create(&l)
                    .set(i64::try_from(*held).unwrap_or(i64::MAX));
            }
            next.insert(network.clone(), grants.len());
        }
        for (network, count) in known.iter() {
            let now = next.get(network).copied().unwrap_or(0);
            for i in now..*count {
                let l = label(network, i);
                self.grant_addresses.remove(&l);
                self.grant_held.remove(&l);
            }
        }
        *known = next;
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Serves the endpoints until the task is dropped.
pub(crate) async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a metrics connection");
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(match req.uri().path() {
                        "/metrics" => respond(StatusCode::OK, CONTENT_TYPE, metrics.render()),
                        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
                        "/readyz" if metrics.ready.load(Ordering::Relaxed) => {
                            respond(StatusCode::OK, "text/plain", "ok\n".into())
                        }
                        "/readyz" => respond(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "text/plain",
                            "starting\n".into(),
                        ),
                        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
                    })
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_docker_calls() {
        let calls = Arc::new(CallLog::default());
        let m = Metrics::new(calls.clone());
        m.reconciles
            .get_or_create(&ResultLabels {
                result: "ok".into(),
            })
            .inc();
        m.pool_free
            .get_or_create(&PoolLabels {
                namespace: "ns".into(),
                binding: "b".into(),
                service: "web".into(),
            })
            .set(7);
        let text = m.render();
        assert!(
            text.contains("mvconf_reconciles_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mvconf_pool_free{namespace=\"ns\",binding=\"b\",service=\"web\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE mvconf_docker_api_calls counter"),
            "{text}"
        );
    }

    #[test]
    fn the_readme_names_every_metric() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        )
        .unwrap();
        // The names registered: every "mvconf_..." literal of this file
        // before its tests (a family with no series is not rendered).
        let source = include_str!("metrics.rs");
        let code = source.split("#[cfg(test)]").next().unwrap();
        let names: Vec<&str> = code
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("mvconf_") && !s.contains(' '))
            .collect();
        assert!(names.len() > 20, "{names:?}");
        let missing: Vec<&&str> = names
            .iter()
            .filter(|n| !readme.contains(&format!("`{n}")))
            .collect();
        assert!(missing.is_empty(), "README.md does not name {missing:?}");
    }

    #[test]
    fn the_text_is_openmetrics_and_says_so_with_the_build() {
        let m = Metrics::new(Arc::new(CallLog::default()));
        m.bind_seconds.observe(0.3);
        let text = m.render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("mvconf_bind_seconds_count 1"), "{text}");
        assert!(CONTENT_TYPE.starts_with("application/openmetrics-text; version=1.0.0"));
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            text.contains(&format!("mvconf_build_info{{version=\"{version}\"}} 1")),
            "{text}"
        );
    }

    #[test]
    fn a_deleted_bindings_series_go_with_it_and_a_removed_services_with_it() {
        let m = Metrics::new(Arc::new(CallLog::default()));
        let set = |ns: &str, b: &str, services: &[&str]| {
            let bl = BindingLabels {
                namespace: ns.into(),
                binding: b.into(),
            };
            m.bound.get_or_create(&bl).set(1);
            m.unseen_holders.get_or_create(&bl).set(0);
            m.binding_ready.get_or_create(&bl).set(1);
            m.nodes_unreachable.get_or_create(&bl).set(0);
            m.foreign_holders.get_or_create(&bl).set(0);
            for s in services {
                let l = PoolLabels {
                    namespace: ns.into(),
                    binding: b.into(),
                    service: (*s).into(),
                };
                m.pool_free.get_or_create(&l).set(3);
            }
            m.pools_of(&bl, services.iter().map(|s| (*s).to_owned()).collect());
        };
        set("a", "gone", &["web", "api"]);
        set("a", "kept", &["web"]);
        // api leaves the binding's spec: its series go.
        set("a", "gone", &["web"]);
        assert!(!m.render().contains("service=\"api\""), "{}", m.render());
        m.forget_binding("a", "gone");
        let text = m.render();
        assert!(!text.contains("binding=\"gone\""), "{text}");
        assert!(
            text.contains("mvconf_binding_ready{namespace=\"a\",binding=\"kept\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mvconf_pool_free{namespace=\"a\",binding=\"kept\",service=\"web\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("mvconf_binding_bound{namespace=\"a\",binding=\"kept\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn grant_series_follow_the_networks_grants() {
        let m = Metrics::new(Arc::new(CallLog::default()));
        m.grants_are(&[
            ("office".into(), vec![(100, 80), (20, 1)]),
            ("lab".into(), vec![(10, 0)]),
        ]);
        let text = m.render();
        assert!(
            text.contains("mvconf_grant_held{network=\"office\",grant=\"0\"} 80"),
            "{text}"
        );
        assert!(
            text.contains("mvconf_grant_addresses{network=\"office\",grant=\"1\"} 20"),
            "{text}"
        );
        // office loses its second grant, lab goes.
        m.grants_are(&[("office".into(), vec![(100, 81)])]);
        let text = m.render();
        assert!(!text.contains("grant=\"1\""), "{text}");
        assert!(!text.contains("network=\"lab\""), "{text}");
        assert!(
            text.contains("mvconf_grant_held{network=\"office\",grant=\"0\"} 81"),
            "{text}"
        );
    }

    #[test]
    fn every_metric_the_charts_alerts_and_dashboard_query_is_exported() {
        let m = Metrics::new(Arc::new(CallLog::default()));
        // A binding with a pool, a grant, a pass: every family has a series
        // (an empty family is not rendered at all).
        let bl = BindingLabels {
            namespace: "ns".into(),
            binding: "b".into(),
        };
        let pl = PoolLabels {
            namespace: "ns".into(),
            binding: "b".into(),
            service: "web".into(),
        };
        for g in [&m.pool_size, &m.pool_allocated, &m.pool_free] {
            g.get_or_create(&pl).set(1);
        }
        for g in [
            &m.bound,
            &m.desired,
            &m.unseen_holders,
            &m.binding_ready,
            &m.nodes_unreachable,
            &m.foreign_holders,
        ] {
            g.get_or_create(&bl).set(0);
        }
        m.grants_are(&[("office".into(), vec![(10, 1)])]);
        m.reconciles
            .get_or_create(&ResultLabels {
                result: "ok".into(),
            })
            .inc();
        let text = m.render();
        for file in [
            include_str!("../../charts/mvconf/files/prometheus-rules.yaml"),
            include_str!("../../charts/mvconf/files/dashboard.json"),
        ] {
            for (i, _) in file.match_indices("mvconf_") {
                let name: String = file[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let base = ["_total", "_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name);
                assert!(
                    text.contains(&format!("# TYPE {base} ")),
                    "{name} is queried by the chart but not exported"
                );
            }
        }
    }

    #[test]
    fn a_replica_that_stops_leading_exports_no_binding_series() {
        let m = Metrics::new(Arc::new(CallLog::default()));
        let bl = BindingLabels {
            namespace: "a".into(),
            binding: "b".into(),
        };
        m.binding_ready.get_or_create(&bl).set(0);
        m.bound.get_or_create(&bl).set(3);
        m.pool_free
            .get_or_create(&PoolLabels {
                namespace: "a".into(),
                binding: "b".into(),
                service: "web".into(),
            })
            .set(2);
        m.forget_all_bindings();
        let text = m.render();
        assert!(!text.contains("binding=\"b\""), "{text}");
    }
}
