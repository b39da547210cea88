//! Status: what a pass did, as the resource shows it. Pure functions from
//! the engine's results to `MacvlanBindingStatus`, and back to the memory
//! the next pass starts from.

use crate::crd::{
    ContainerRecord, MacvlanBindingStatus, NetworkStatus, NodeProblem, RecordState, ServiceStatus,
    reasons,
};
use crate::reconcile::{Plan, Problem, Record, Slot};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Status messages stay readable and bounded.
const MAX_MESSAGE: usize = 1024;

fn clip(s: String) -> String {
    if s.len() <= MAX_MESSAGE {
        return s;
    }
    let mut cut = MAX_MESSAGE - 1;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

fn saturating_i32(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One record as the resource stores it.
pub(crate) fn container_record(r: &Record) -> ContainerRecord {
    ContainerRecord {
        service: r.key.service.clone(),
        slot: match r.key.slot {
            Slot::Slot(n) => Some(n),
            Slot::Node(_) => None,
        },
        node_id: r.node_id.clone(),
        node: r.node.clone(),
        host_ip: r.host_ip.clone(),
        task: r.task.clone(),
        container: crate::reconcile::short(&r.container).to_owned(),
        ip: r.ip.map(|ip| ip.to_string()),
        ingress: r.ingress,
        state: r.state,
        message: r.message.clone().map(clip),
        since: r.since.map(Time),
        released: r.released.map(Time),
    }
}

/// A condition's status, as Kubernetes spells it in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    pub(crate) fn of(c: &Condition) -> Self {
        match c.status.as_str() {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }
}

/// Whether the binding's Ready condition is True.
pub(crate) fn is_ready(status: &MacvlanBindingStatus) -> bool {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == reasons::READY)
        .is_some_and(|c| ConditionStatus::of(c) == ConditionStatus::True)
}

/// A condition, keeping the previous transition time when nothing changed.
pub(crate) fn condition(
    previous: Option<&MacvlanBindingStatus>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    let last = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| ConditionStatus::of(c) == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_owned(),
        status: status.as_str().to_owned(),
        reason: reason.to_owned(),
        message: clip(message),
        last_transition_time: last,
        observed_generation: generation,
    }
}

/// The reason and message that best explain a pass that is not ready;
/// `None` when everything is bound.
pub(crate) fn verdict(
    plan: &Plan,
    records: &[Record],
    failures: &[String],
) -> Option<(&'static str, String)> {
    let errors: Vec<&Problem> = plan.problems.iter().filter(|p| p.is_error()).collect();
    let pick = |want: fn(&Problem) -> bool| {
        errors
            .iter()
            .copied()
            .filter(|p| want(p))
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    let join = |v: Vec<String>| v.join("; ");
    let mismatches = pick(|p| matches!(p, Problem::NetworkMismatch { .. }));
    if !mismatches.is_empty() {
        return Some((reasons::CONFLICT, join(mismatches)));
    }
    let exhausted = pick(|p| matches!(p, Problem::PoolExhausted { .. }));
    if !exhausted.is_empty() {
        return Some((reasons::POOL_EXHAUSTED, join(exhausted)));
    }
    let down = pick(|p| matches!(p, Problem::NodeUnreachable { .. }));
    if !down.is_empty() {
        return Some((reasons::NODE_UNREACHABLE, join(down)));
    }
    if !failures.is_empty() {
        return Some((reasons::APPLY_FAILED, failures.join("; ")));
    }
    let missing = pick(|p| matches!(p, Problem::ServiceMissing { .. }));
    if !missing.is_empty() {
        return Some((reasons::SERVICE_NOT_FOUND, join(missing)));
    }
    let waiting: Vec<String> = records
        .iter()
        .filter(|r| r.state != RecordState::Bound && r.released.is_none())
        .map(|r| {
            format!(
                "{}: {}",
                r.key,
                r.message.as_deref().unwrap_or("not bound yet")
            )
        })
        .collect();
    if !waiting.is_empty() {
        return Some((reasons::PROGRESSING, waiting.join("; ")));
    }
    None
}

/// The status after a pass.
/// The addresses of `network` that answered a probe, once each.
fn unseen_holders(plan: &Plan, network: &str) -> Vec<crate::crd::UnseenHolder> {
    let mut out: Vec<crate::crd::UnseenHolder> = Vec::new();
    for p in &plan.problems {
        if let Problem::UnseenHolder {
            network: n,
            ip,
            mac,
            node,
        } = p
            && n == network
            && !out.iter().any(|u| u.address == ip.to_string())
        {
            out.push(crate::crd::UnseenHolder {
                address: ip.to_string(),
                mac: mac.clone(),
                node: node.clone(),
            });
        }
    }
    out
}

pub(crate) fn after_pass(
    previous: Option<&MacvlanBindingStatus>,
    generation: Option<i64>,
    plan: &Plan,
    records: &[Record],
    failures: &[String],
    now: Timestamp,
) -> MacvlanBindingStatus {
    let bound = records
        .iter()
        .filter(|r| r.state == RecordState::Bound)
        .count();
    // Slots that are gone, holding their address through the cooldown,
    // are not containers waiting to be bound.
    let slots = records.iter().filter(|r| r.released.is_none()).count();
    let ready = verdict(plan, records, failures);
    let (ok, reason, message) = match ready {
        None => (
            true,
            reasons::BOUND,
            format!("{bound}/{slots} containers bound"),
        ),
        Some((reason, message)) => (
            false,
            reason,
            format!("{bound}/{slots} containers bound; {message}"),
        ),
    };
    let services = plan
        .services
        .iter()
        .map(|c| {
            let mine = records.iter().filter(|r| r.key.service == c.name);
            ServiceStatus {
                name: c.name.clone(),
                desired: saturating_i32(c.desired),
                bound: saturating_i32(
                    mine.clone()
                        .filter(|r| r.state == RecordState::Bound)
                        .count() as u64,
                ),
                pool_size: saturating_i64(c.pool_size),
                allocated: saturating_i64(mine.filter(|r| r.ip.is_some()).count() as u64),
                free: saturating_i64(c.free),
                reserved: saturating_i64(c.reserved),
            }
        })
        .collect();
    let networks = plan
        .networks
        .iter()
        .map(|n| NetworkStatus {
            name: n.name.clone(),
            ready_nodes: saturating_i32(n.ready_nodes),
            total_nodes: saturating_i32(n.total_nodes),
            not_ready: n
                .not_ready
                .iter()
                .map(|(node, message)| NodeProblem {
                    node: node.clone(),
                    message: clip(message.clone()),
                })
                .collect(),
            unseen_holders: unseen_holders(plan, &n.name),
            probe_failed: plan.problems.iter().find_map(|p| match p {
                Problem::ProbeFailed {
                    network,
                    node,
                    message,
                } if network == &n.name => Some(clip(format!("node {node}: {message}"))),
                _ => None,
            }),
        })
        .collect();
    MacvlanBindingStatus {
        observed_generation: generation,
        conditions: vec![condition(
            previous,
            reasons::READY,
            ok,
            reason,
            message,
            generation,
            now,
        )],
        desired: saturating_i32(slots as u64),
        bound: saturating_i32(bound as u64),
        services,
        networks,
        endpoint_slices: 0,
        containers: Vec::new(),
    }
}

/// A pass that could not run (invalid spec, endpoint down, credentials
/// refused, conflict): the condition says why, and the records stay as
/// they were, because nothing was learned that contradicts them.
pub(crate) fn not_run(
    previous: Option<&MacvlanBindingStatus>,
    generation: Option<i64>,
    reason: &str,
    message: String,
    now: Timestamp,
) -> MacvlanBindingStatus {
    let mut s = previous.cloned().unwrap_or_default();
    s.observed_generation = generation;
    s.conditions = vec![condition(
        previous,
        reasons::READY,
        false,
        reason,
        message,
        generation,
        now,
    )];
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{NetworkState, ServiceCounts};
    use std::collections::BTreeMap;

    fn rec(service: &str, slot: u64, ip: Option<&str>, state: RecordState) -> Record {
        Record {
            key: crate::reconcile::Key {
                service: service.into(),
                slot: Slot::Slot(slot),
            },
            network: "mv".into(),
            node_id: "n1".into(),
            node: "node1".into(),
            host_ip: "10.0.0.1".into(),
            task: "t".into(),
            container: "0123456789abcdef".into(),
            ip: ip.map(|s| s.parse().unwrap()),
            ingress: false,
            state,
            message: None,
            since: "2026-11-22T10:00:00Z".parse().ok(),
            released: None,
        }
    }

    fn plan_with(problems: Vec<Problem>) -> Plan {
        Plan {
            probes: Default::default(),
            actions: vec![],
            records: vec![],
            problems,
            services: vec![ServiceCounts {
                name: "web".into(),
                desired: 2,
                bound: 2,
                pool_size: 10,
                allocated: 2,
                free: 8,
                reserved: 0,
            }],
            networks: vec![NetworkState {
                name: "mv".into(),
                ready_nodes: 3,
                total_nodes: 3,
                not_ready: vec![],
            }],
            allocators: BTreeMap::new(),
        }
    }

    #[test]
    fn all_bound_is_ready_with_counters() {
        let now: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        let records = vec![
            rec("web", 1, Some("192.168.8.10"), RecordState::Bound),
            rec("web", 2, Some("192.168.8.11"), RecordState::Bound),
        ];
        let s = after_pass(None, Some(3), &plan_with(vec![]), &records, &[], now);
        let c = &s.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("Ready", "True", "AllBound")
        );
        assert_eq!(c.message, "2/2 containers bound");
        assert_eq!((s.desired, s.bound, s.observed_generation), (2, 2, Some(3)));
        assert_eq!(s.services[0].allocated, 2);
        assert!(
            s.containers.is_empty(),
            "records live in MacvlanEndpointSlices"
        );
        assert_eq!(container_record(&records[0]).container, "0123456789ab");
        // The transition time survives a pass that changes nothing.
        let later: Timestamp = "2026-11-22T13:00:00Z".parse().unwrap();
        let s2 = after_pass(Some(&s), Some(3), &plan_with(vec![]), &records, &[], later);
        assert_eq!(s2.conditions[0].last_transition_time.0, now);
    }

    #[test]
    fn the_worst_problem_explains_not_ready() {
        let now = Timestamp::now();
        let records = vec![rec("web", 1, None, RecordState::Pending)];
        let p = plan_with(vec![
            Problem::NodeUnreachable {
                node: "node3".into(),
                message: "x".into(),
            },
            Problem::PoolExhausted {
                service: "web".into(),
                waiting: vec!["web.1".into()],
            },
        ]);
        let s = after_pass(None, None, &p, &records, &[], now);
        assert_eq!(s.conditions[0].reason, "PoolExhausted");
        assert!(
            s.conditions[0]
                .message
                .contains("0/1 containers bound; pool of service web exhausted"),
            "{}",
            s.conditions[0].message
        );
        let s = after_pass(
            None,
            None,
            &plan_with(vec![]),
            &[rec("web", 1, Some("192.168.8.10"), RecordState::Reserved)],
            &[],
            now,
        );
        assert_eq!(s.conditions[0].reason, "Progressing");
    }

    #[test]
    fn records_round_trip_into_memory() {
        let now = Timestamp::now();
        let records = vec![
            rec("web", 1, Some("192.168.8.10"), RecordState::Bound),
            rec("web", 2, None, RecordState::Pending),
        ];
        let s = after_pass(None, None, &plan_with(vec![]), &records, &[], now);
        let mut b = crate::crd::MacvlanBinding::new("b", Default::default());
        b.metadata.namespace = Some("ns".into());
        let stored: Vec<_> = records.iter().map(container_record).collect();
        let slices = crate::slices::slices_for(&b, &stored);
        let m = crate::slices::memory_from(Some(&s), &slices);
        assert_eq!(m.len(), 1);
        let r = &m[&crate::reconcile::Key {
            service: "web".into(),
            slot: Slot::Slot(1),
        }];
        assert_eq!(r.ip, "192.168.8.10".parse::<std::net::Ipv4Addr>().unwrap());
        assert_eq!(
            r.since.map(|t| t.to_string()).as_deref(),
            Some("2026-11-22T10:00:00Z")
        );
    }

    #[test]
    fn a_pass_that_could_not_run_keeps_the_records() {
        let now = Timestamp::now();
        let s = after_pass(
            None,
            Some(1),
            &plan_with(vec![]),
            &[rec("web", 1, Some("192.168.8.10"), RecordState::Bound)],
            &[],
            now,
        );
        let t = not_run(
            Some(&s),
            Some(2),
            "EndpointUnreachable",
            "GET /nodes on dce: unreachable".into(),
            now,
        );
        assert_eq!(t.containers, s.containers);
        assert_eq!(
            (t.conditions[0].status.as_str(), t.observed_generation),
            ("False", Some(2))
        );
    }

    #[test]
    fn the_status_of_a_binding_of_20000_containers_stays_under_1_mib() {
        let now = Timestamp::now();
        let records: Vec<Record> = (1..=20_000u64)
            .map(|n| {
                let ip = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255);
                rec("web", n, Some(&ip), RecordState::Bound)
            })
            .collect();
        let s = after_pass(None, Some(1), &plan_with(vec![]), &records, &[], now);
        let bytes = serde_json::to_vec(&s).unwrap().len();
        assert!(
            bytes < 1 << 20,
            "the status of 20,000 containers is {bytes} bytes"
        );
        assert_eq!((s.desired, s.bound), (20_000, 20_000));
    }
}
