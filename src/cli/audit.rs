//! `mvconf audit`: reads every node and checks what the bindings promise.
//! Exit 0 only when clean.

use super::endpoint::{EndpointArgs, resolve};
use super::{CliError, Format, Outcome, emit, emit_as};
use crate::cluster::Cluster;
use crate::config::{self, Loaded};
use crate::crd::MacvlanBinding;
use crate::reconcile::audit::{AuditOptions, AuditReport, Subject, audit};
use crate::reconcile::observe;
use crate::tenancy::admit::{Check, EndpointChoice, Tenancy, admit};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AuditArgs {
    /// Audit this MacvlanBinding from the Kubernetes cluster (NAMESPACE/NAME;
    /// repeatable), status included, instead of the file.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub(crate) binding: Vec<String>,
    /// Audit every MacvlanBinding of the Kubernetes cluster; endpoints on
    /// networks mvconf created that none of them claims are then findings.
    #[arg(long, short = 'A', conflicts_with = "binding")]
    pub(crate) all_bindings: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    pub(crate) output: Format,
    /// Nodes read at once.
    #[arg(long, default_value_t = 32)]
    pub(crate) observe_concurrency: usize,
    /// ARP-probe the free addresses of every pool (up to 1,024 per network)
    /// on a node of its network, with this image (mvconf's own, present on
    /// the nodes): an address something answers for is an `UnseenHolder`
    /// finding (a host Docker does not show). Networks with `arpProbe:
    /// false` are not probed.
    #[arg(long, env = "MVCONF_PROBE_IMAGE", value_name = "IMAGE")]
    pub(crate) probe_image: Option<String>,
    /// Plan the repair of every finding and print it: disconnect what is
    /// wrong, bind what is unbound, release what a deleted binding left.
    /// Containers no binding manages are never touched. Changes nothing
    /// without --yes.
    #[arg(long)]
    pub(crate) fix: bool,
    /// With --fix: apply the plan, then audit again.
    #[arg(long, requires = "fix")]
    pub(crate) yes: bool,
    /// With --fix: repair exactly the findings of this earlier `audit -o
    /// json` report that still hold as written; refuse those that changed.
    #[arg(long, requires = "fix", value_name = "FILE")]
    pub(crate) from_report: Option<PathBuf>,
}

/// Free addresses probed per network at most by `audit --probe-image`.
const AUDIT_PROBE_MAX: usize = 1024;

/// `audit --probe-image`: probes the free addresses of each subject's pools
/// and adds what answered to the report.
async fn probe_free(
    subjects: &[Subject<'_>],
    observed: &crate::reconcile::Observed,
    image: &str,
    report: &mut AuditReport,
) {
    use crate::reconcile::audit::Finding;
    use std::collections::BTreeSet;
    let spec = crate::probe::container::ProbeSpec {
        image: image.to_owned(),
        timing: crate::probe::Timing::default(),
    };
    let snapshot = &observed.snapshot;
    // Every address any container holds or asked for, on any network.
    let held: BTreeSet<std::net::Ipv4Addr> = snapshot
        .nodes
        .iter()
        .flat_map(|n| n.containers.iter())
        .flat_map(|c| c.endpoints.iter())
        .flat_map(|e| e.ip.into_iter().chain(e.requested))
        .collect();
    for sub in subjects {
        for net in sub.desired.networks.iter().filter(|n| n.arp_probe) {
            let mut free: Vec<std::net::Ipv4Addr> = Vec::new();
            for s in sub
                .desired
                .services
                .iter()
                .filter(|s| s.network == net.name)
            {
                for r in s.pool.ranges() {
                    let (a, b) = (u32::from(r.start()), u32::from(r.end()));
                    for v in a..=b {
                        let ip = std::net::Ipv4Addr::from(v);
                        if !held.contains(&ip) && free.len() < AUDIT_PROBE_MAX {
                            free.push(ip);
                        }
                    }
                }
            }
            if free.is_empty() {
                continue;
            }
            let node = snapshot
                .nodes
                .iter()
                .find(|n| n.reachable() && n.networks.iter().any(|x| x.name == net.name));
            let Some((node, engine)) = node.and_then(|n| Some((n, observed.engines.get(&n.id)?)))
            else {
                report.notes.push(format!(
                    "{}: network {} is on no readable node: its free addresses were not probed",
                    sub.name, net.name
                ));
                continue;
            };
            match crate::probe::container::run(engine, &spec, &net.name, &net.parent, &free).await {
                Ok(r) => {
                    report.notes.push(format!(
                        "{}: probed {} free address{} of network {} from node {} (ARP)",
                        sub.name,
                        r.probed,
                        if r.probed == 1 { "" } else { "es" },
                        net.name,
                        node.label()
                    ));
                    for a in r.answered {
                        report.findings.push(Finding::UnseenHolder {
                            binding: sub.name.to_owned(),
                            network: net.name.clone(),
                            ip: a.address.to_string(),
                            mac: a.mac,
                            node: node.label().to_owned(),
                        });
                    }
                }
                Err(e) => report.notes.push(format!(
                    "{}: could not probe network {}: {e}",
                    sub.name, net.name
                )),
            }
        }
    }
    report.findings.sort();
    report.findings.dedup();
}

/// Runs the audit; `Done` only when clean, else `Findings`.
pub(crate) async fn run(
    file: &Path,
    endpoint: &EndpointArgs,
    args: &AuditArgs,
) -> Result<Outcome, CliError> {
    let from_kube = args.all_bindings || !args.binding.is_empty();
    let subjects: Vec<(String, Loaded)> = if from_kube {
        kube_bindings(args).await?
    } else {
        let loaded = config::load(file)?;
        vec![(file.display().to_string(), loaded)]
    };
    let complete = from_kube && args.all_bindings;
    let audited = audit_subjects(&subjects, endpoint, args, complete).await?;
    if args.fix {
        return super::repair::run(&subjects, audited, endpoint, args, from_kube).await;
    }
    print_report(&audited.report, args.output)?;
    Ok(Outcome::audited(audited.report.clean()))
}

fn print_report(report: &AuditReport, output: Format) -> Result<(), CliError> {
    match output {
        Format::Text => emit(&format!("{report}\n")),
        Format::Json | Format::Yaml => emit_as(report, output, "the audit report"),
    }
}

/// What an audit read and found.
pub(crate) struct Audited {
    pub(crate) report: AuditReport,
    pub(crate) observed: crate::reconcile::Observed,
    pub(crate) cluster: Cluster,
    /// Indices of the subjects audited (those on the swarm audited).
    pub(crate) subjects: Vec<usize>,
}

pub(crate) async fn audit_subjects(
    subjects: &[(String, Loaded)],
    endpoint: &EndpointArgs,
    args: &AuditArgs,
    complete: bool,
) -> Result<Audited, CliError> {
    // One swarm: the flags' (the operator's default endpoint), unless every
    // binding names its own; then the first one's.
    let chosen = subjects
        .iter()
        .find(|(_, l)| l.desired.endpoint.is_none())
        .or(subjects.first());
    let resolved = resolve(endpoint, chosen.map(|(_, l)| l)).await?;
    tracing::info!("auditing {} on {}", names(subjects), resolved.description);
    let cluster = Cluster::new(resolved.config)?;
    let mut services: Vec<String> = subjects
        .iter()
        .flat_map(|(_, l)| l.desired.services.iter().map(|s| s.name.clone()))
        .collect();
    services.sort();
    services.dedup();
    let observed = observe(&cluster, &services, args.observe_concurrency, None)
        .await
        .map_err(CliError::Engine)?;
    let first_endpoint = chosen.and_then(|(_, l)| l.desired.endpoint.clone());
    let mut skipped = Vec::new();
    let mut indices = Vec::new();
    let subs: Vec<Subject<'_>> = subjects
        .iter()
        .enumerate()
        .filter(|(i, (name, l))| {
            let same = l.desired.endpoint == first_endpoint;
            if same {
                indices.push(*i);
            } else {
                skipped.push(name.clone());
            }
            same
        })
        .map(|(_, (name, l))| Subject {
            name,
            desired: &l.desired,
            status: l.status.as_ref(),
        })
        .collect();
    // With some bindings skipped, what they claim is unknown here.
    let mut report = audit(
        &subs,
        &observed.snapshot,
        AuditOptions {
            complete: complete && skipped.is_empty(),
        },
    );
    for name in skipped {
        report.notes.push(format!(
            "{name}: skipped, it names another endpoint; audit it with --binding {name}"
        ));
    }
    if let Some(image) = &args.probe_image {
        probe_free(&subs, &observed, image, &mut report).await;
    }
    Ok(Audited {
        report,
        observed,
        cluster,
        subjects: indices,
    })
}

/// Each binding's per-container records, read from its
/// MacvlanEndpointSlices into its status, where the audit compares them
/// with Docker (a binding of an older operator has them there already).
async fn records_into_status(
    client: &kube::Client,
    all: bool,
    objects: &mut [MacvlanBinding],
) -> Result<(), CliError> {
    use crate::slices::{BINDING_LABEL, MacvlanEndpointSlice, belongs_to, records_of};
    let cannot = |source| CliError::Kube {
        what: "cannot list MacvlanEndpointSlices".into(),
        source,
    };
    let mut slices: Vec<MacvlanEndpointSlice> = Vec::new();
    if all {
        let api: kube::Api<MacvlanEndpointSlice> = kube::Api::all(client.clone());
        slices = api.list(&Default::default()).await.map_err(cannot)?.items;
    } else {
        for o in objects.iter() {
            let ns = o.metadata.namespace.as_deref().unwrap_or_default();
            let api: kube::Api<MacvlanEndpointSlice> = kube::Api::namespaced(client.clone(), ns);
            let selector = format!(
                "{BINDING_LABEL}={}",
                o.metadata.name.as_deref().unwrap_or_default()
            );
            let lp = kube::api::ListParams::default().labels(&selector);
            slices.extend(api.list(&lp).await.map_err(cannot)?.items);
        }
    }
    for o in objects.iter_mut() {
        let records = records_of(slices.iter().filter(|s| belongs_to(s, o)));
        if !records.is_empty() {
            o.status.get_or_insert_default().containers = records;
        }
    }
    Ok(())
}

fn names(subjects: &[(String, Loaded)]) -> String {
    match subjects.len() {
        1 => subjects[0].0.clone(),
        n => format!("{n} bindings"),
    }
}

fn uses_grants(b: &MacvlanBinding) -> bool {
    b.spec.networks.is_empty() && !b.spec.services.is_empty()
}

/// The platform's MacvlanNetworks and SwarmEndpoints; what cannot be read
/// leaves the bindings that use them unaudited, with a warning.
async fn platform_objects(client: &kube::Client) -> Tenancy {
    use crate::tenancy::{MacvlanNetwork, SwarmEndpoint};
    let mut t = Tenancy::default();
    match kube::Api::<MacvlanNetwork>::all(client.clone())
        .list(&Default::default())
        .await
    {
        Ok(list) => {
            for n in list.items {
                t.networks
                    .insert(n.metadata.name.unwrap_or_default(), n.spec);
            }
        }
        Err(e) => tracing::warn!("cannot list MacvlanNetworks: {e}"),
    }
    match kube::Api::<SwarmEndpoint>::all(client.clone())
        .list(&Default::default())
        .await
    {
        Ok(list) => {
            for e in list.items {
                t.endpoints
                    .insert(e.metadata.name.unwrap_or_default(), e.spec);
            }
        }
        Err(e) => tracing::warn!("cannot list SwarmEndpoints: {e}"),
    }
    t
}

async fn kube_bindings(args: &AuditArgs) -> Result<Vec<(String, Loaded)>, CliError> {
    let client = kube::Client::try_default()
        .await
        .map_err(|source| CliError::Kube {
            what: "cannot reach Kubernetes (KUBECONFIG)".into(),
            source,
        })?;
    let kube_err = |what: String, source: kube::Error| CliError::Kube { what, source };
    let mut objects: Vec<MacvlanBinding> = Vec::new();
    if args.all_bindings {
        let api: kube::Api<MacvlanBinding> = kube::Api::all(client.clone());
        let list = api
            .list(&Default::default())
            .await
            .map_err(|e| kube_err("cannot list MacvlanBindings".into(), e))?;
        objects.extend(list.items);
    } else {
        for b in &args.binding {
            let Some((ns, name)) = b.split_once('/') else {
                return Err(CliError::Usage(format!(
                    "--binding {b:?}: expected NAMESPACE/NAME"
                )));
            };
            let api: kube::Api<MacvlanBinding> = kube::Api::namespaced(client.clone(), ns);
            objects.push(
                api.get(name)
                    .await
                    .map_err(|e| kube_err(format!("cannot read MacvlanBinding {b}"), e))?,
            );
        }
    }
    records_into_status(&client, args.all_bindings, &mut objects).await?;
    let tenancy = if objects.iter().any(uses_grants) {
        platform_objects(&client).await
    } else {
        Default::default()
    };
    let mut out = Vec::with_capacity(objects.len());
    for mut o in objects {
        if uses_grants(&o) {
            // Its networks are the platform's MacvlanNetworks: audit it as
            // if it had written them inline.
            let ns = o.metadata.namespace.clone().unwrap_or_default();
            match admit(&o.spec, &ns, &tenancy, Check::Resolve) {
                Ok(a) => {
                    o.spec = a.desired.to_spec();
                    // Audited on its own swarm: the SwarmEndpoint's URL
                    // (reached with this CLI's login, or -H / --dce).
                    o.spec.endpoint = match a.endpoint {
                        EndpointChoice::Default => None,
                        EndpointChoice::Inline(e) | EndpointChoice::Swarm { spec: e, .. } => {
                            Some(e)
                        }
                    };
                }
                Err(e) => {
                    tracing::warn!(
                        "{ns}/{}: not audited: {e}",
                        o.metadata.name.as_deref().unwrap_or_default()
                    );
                    continue;
                }
            }
        }
        let label = format!(
            "{}/{}",
            o.metadata.namespace.as_deref().unwrap_or_default(),
            o.metadata.name.as_deref().unwrap_or_default()
        );
        let mut value =
            serde_json::to_value(&o).map_err(CliError::serialize("a MacvlanBinding"))?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("apiVersion".into(), "mvconf.io/v1alpha1".into());
            obj.insert("kind".into(), "MacvlanBinding".into());
        }
        // An invalid binding promises nothing; say so and go on.
        match config::from_object(value, &PathBuf::from(&label)) {
            Ok(l) => out.push((label, l)),
            Err(e) => tracing::warn!("{label}: not audited: {e}"),
        }
    }
    Ok(out)
}
