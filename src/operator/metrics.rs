//! `/metrics` (Prometheus text), `/healthz` and `/readyz`.

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
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    pub(crate) slice_writes: Counter,
    pub(crate) status_writes: Counter,
    pub(crate) leader: Gauge,
    pub(crate) swarms_led: Gauge,
    ready: AtomicBool,
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
        let leader = Gauge::default();
        let swarms_led = Gauge::default();
        let slice_writes = Counter::default();
        let status_writes = Counter::default();
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
            slice_writes,
            status_writes,
            leader,
            swarms_led,
            ready: AtomicBool::new(false),
        }
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
                        "/metrics" => respond(
                            StatusCode::OK,
                            "text/plain; version=0.0.4; charset=utf-8",
                            metrics.render(),
                        ),
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
}
