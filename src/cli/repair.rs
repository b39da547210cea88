//! `mvconf audit --fix`: prints the repair of the audit's findings and,
//! with `--yes`, applies it and audits again. The plan itself is pure
//! (`reconcile::repair`); this is its I/O edge.

use super::audit::{AuditArgs, Audited, audit_subjects};
use super::endpoint::EndpointArgs;
use super::{CliError, Format, Outcome, emit, emit_as};
use crate::config::Loaded;
use crate::reconcile::audit::AuditReport;
use crate::reconcile::repair::{Bindings, EarlierReport, Repair, Step, plan, still_holding};
use crate::reconcile::{Memory, Mode, Owner, Ownership, Pass};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What `audit --fix -o json` prints: one object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FixReport<'a> {
    plan: &'a Repair,
    /// Operators that may act on the same services at the same time.
    warnings: &'a [String],
    applied: bool,
    /// One line per change made, with its outcome.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    outcomes: Vec<String>,
    /// The audit after the repair.
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<&'a AuditReport>,
}

/// Runs `audit --fix`: `Done` when nothing is left to find, `Incomplete`
/// when an action of the repair failed, else `Findings`.
pub(crate) async fn run(
    subjects: &[(String, Loaded)],
    audited: Audited,
    endpoint: &EndpointArgs,
    args: &AuditArgs,
    from_kube: bool,
) -> Result<Outcome, CliError> {
    let Audited {
        report,
        observed,
        cluster,
        subjects: indices,
    } = audited;
    let chosen: Vec<&(String, Loaded)> = indices.iter().filter_map(|i| subjects.get(*i)).collect();
    let (findings, refused) = match &args.from_report {
        None => (report.findings.clone(), Vec::new()),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
                path: path.clone(),
                source,
            })?;
            let earlier: EarlierReport = serde_json::from_str(&text).map_err(|e| {
                CliError::Usage(format!(
                    "--from-report {}: not an `mvconf audit -o json` report: {e}",
                    path.display()
                ))
            })?;
            still_holding(&earlier.findings, &report.findings)
        }
    };
    let owners: BTreeMap<&str, &Owner> = observed
        .snapshot
        .services
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.owner.as_ref()?)))
        .collect();
    let mut bindings = Bindings::default();
    for (name, l) in &chosen {
        for s in &l.desired.services {
            bindings.service_of.insert(&s.name, name);
        }
        if let Some(st) = &l.status {
            bindings.records.insert(name, &st.containers);
        }
    }
    // A conf.json's repair keeps off what a MacvlanBinding owns, as `up`
    // does: that binding's operator repairs it (or `--fix --binding`).
    if !from_kube {
        for (service, owner) in &owners {
            bindings.owned_elsewhere.insert(
                service,
                format!(
                    "service {service} is owned by {owner}: its operator repairs it, or run `mvconf audit --fix --binding {}`",
                    owner.binding
                ),
            );
        }
    }
    let mut repair = plan(&findings, &bindings);
    repair.refused = refused;
    let warnings = operator_warnings(&chosen, &owners, from_kube).await;

    let mut outcomes = Vec::new();
    let mut after = None;
    if args.yes && !repair.is_empty() {
        for w in &warnings {
            tracing::warn!("{w}");
        }
        outcomes = apply(&repair, &chosen, &observed, &cluster, from_kube, args).await;
        let again =
            audit_subjects(subjects, endpoint, args, from_kube && args.all_bindings).await?;
        after = Some(again.report);
    }
    let clean = after.as_ref().map_or(report.clean(), AuditReport::clean);
    // Outcome lines say FAILED where an action of the repair failed (a
    // disconnect here, an action of a rebinding pass).
    let failed = outcomes.iter().any(|l| l.contains("FAILED"));
    match args.output {
        Format::Json | Format::Yaml => {
            let out = FixReport {
                plan: &repair,
                warnings: &warnings,
                applied: args.yes && !repair.is_empty(),
                outcomes,
                after: after.as_ref(),
            };
            emit_as(&out, args.output, "the repair")?;
        }
        Format::Text => {
            for w in &warnings {
                emit(&format!("WARNING {w}\n"))?;
            }
            emit(&format!("{repair}\n"))?;
            for o in &outcomes {
                emit(&format!("{o}\n"))?;
            }
            match &after {
                Some(a) => emit(&format!("after the repair:\n{a}\n"))?,
                None if repair.is_empty() => emit("nothing to repair\n")?,
                None => emit("nothing changed: run again with --yes to apply the plan\n")?,
            }
        }
    }
    Ok(if failed {
        Outcome::Incomplete
    } else {
        Outcome::audited(clean)
    })
}

/// Says when an operator may be acting on the same services: the install
/// that claims them, and whether its Lease is held now (when Kubernetes
/// can be asked).
async fn operator_warnings(
    chosen: &[&(String, Loaded)],
    owners: &BTreeMap<&str, &Owner>,
    from_kube: bool,
) -> Vec<String> {
    let listed: BTreeSet<&str> = chosen
        .iter()
        .flat_map(|(_, l)| l.desired.services.iter().map(|s| s.name.as_str()))
        .collect();
    let installs: BTreeSet<&str> = owners
        .iter()
        .filter(|(s, _)| listed.contains(*s))
        .map(|(_, o)| o.install.as_str())
        .filter(|i| !i.is_empty())
        .collect();
    let mut out = Vec::new();
    for install in installs {
        let leading = if from_kube {
            lease_holder(install).await
        } else {
            None
        };
        out.push(match leading {
            Some(Ok(holder)) => format!(
                "operator install {install} leads this swarm now (Lease held by {holder}): it repairs these services too, and --fix changes Docker beside it"
            ),
            Some(Err(why)) => format!(
                "operator install {install} claims these services; {why}: if it runs, --fix changes Docker beside it"
            ),
            None => format!(
                "operator install {install} claims these services; whether it leads is not known here: if it runs, --fix changes Docker beside it"
            ),
        });
    }
    out
}

/// `Some(Ok(holder))` when the install's Lease (`namespace/name`) is held
/// and renewed within its duration; `Some(Err(why))` otherwise.
async fn lease_holder(install: &str) -> Option<Result<String, String>> {
    use k8s_openapi::api::coordination::v1::Lease;
    let (ns, name) = install.split_once('/')?;
    let client = kube::Client::try_default().await.ok()?;
    let api: kube::Api<Lease> = kube::Api::namespaced(client, ns);
    let lease = match api.get_opt(name).await {
        Ok(Some(l)) => l,
        Ok(None) => return Some(Err(format!("its Lease {install} does not exist"))),
        Err(e) => return Some(Err(format!("its Lease {install} cannot be read ({e})"))),
    };
    let spec = lease.spec.unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let fresh = spec.renew_time.is_some_and(|t| {
        let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
        age.as_secs() <= duration
    });
    Some(if !holder.is_empty() && fresh {
        Ok(holder)
    } else {
        Err(format!("its Lease {install} is not held now"))
    })
}

/// Applies the plan: the disconnects, then one pass per binding for the
/// services to bind again. Returns a line per change.
async fn apply(
    repair: &Repair,
    chosen: &[&(String, Loaded)],
    observed: &crate::reconcile::Observed,
    cluster: &crate::cluster::Cluster,
    from_kube: bool,
    args: &AuditArgs,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut rebind: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for step in &repair.steps {
        match step {
            Step::Disconnect {
                node,
                container,
                network,
                ..
            } => {
                let engine = observed
                    .snapshot
                    .nodes
                    .iter()
                    .find(|n| n.label() == node)
                    .and_then(|n| observed.engines.get(&n.id));
                let result = match engine {
                    Some(e) => e
                        .disconnect(network, container, false)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(format!("node {node} is not reachable")),
                };
                out.push(match result {
                    Ok(()) => format!("done: {step}"),
                    Err(e) => format!("FAILED: {step}: {e}"),
                });
            }
            Step::Rebind { binding, service } => {
                rebind.entry(binding).or_default().insert(service);
            }
        }
    }
    for (binding, services) in rebind {
        let Some((_, l)) = chosen.iter().find(|(n, _)| n == binding) else {
            continue;
        };
        let others: BTreeSet<&str> = l
            .desired
            .services
            .iter()
            .map(|s| s.name.as_str())
            .filter(|s| !services.contains(s))
            .collect();
        let desired = l.desired.without_services(&others);
        let memory: Memory = crate::slices::memory_from(l.status.as_ref(), std::iter::empty());
        let pass = Pass {
            observe_concurrency: args.observe_concurrency,
            ownership: if from_kube {
                Ownership::Ignore
            } else {
                Ownership::Respect
            },
            ..Pass::new(&desired, &memory, Mode::Up)
        };
        match pass.run(cluster, &()).await {
            Ok(passed) => {
                for o in &passed.applied.outcomes {
                    out.push(format!("{binding}: {o}"));
                }
                if passed.applied.outcomes.is_empty() {
                    out.push(format!("{binding}: nothing left to bind"));
                }
            }
            Err(e) => out.push(format!("FAILED: rebind of {binding}: {e}")),
        }
    }
    out
}
