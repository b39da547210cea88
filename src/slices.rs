//! `MacvlanEndpointSlice`: a binding's per-container records, split into
//! objects that stay small whatever the binding's size, the way Kubernetes
//! splits a Service's endpoints into EndpointSlices.
//!
//! The binding's own status is a summary a person reads at a glance; the
//! records (which slot holds which address, on which node, in which
//! container) live here, at most [`PER_SLICE`] per object, one service per
//! slice, owned by the binding. They are the operator's memory: a restarted
//! operator reads them back before its first pass, so that every slot gets
//! its old address again. Everything here is pure; the operator's
//! `slices` module reads and writes them.

use crate::crd::{ContainerRecord, MacvlanBinding, MacvlanBindingStatus, RecordState};
use crate::reconcile::plan::Remembered;
use crate::reconcile::{Key, Memory, Slot};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Records per slice. A record is a few hundred bytes in JSON, so a full
/// slice is tens of KB: far below the API server's 1.5 MiB limit, and small
/// enough that rewriting one for a single changed container is cheap
/// (Kubernetes' EndpointSlices hold 100 endpoints by default, too).
pub const PER_SLICE: usize = 100;

/// Label with the name of the binding a slice belongs to.
pub const BINDING_LABEL: &str = "mvconf.io/binding";
/// Label with the swarm service of a slice.
pub const SERVICE_LABEL: &str = "mvconf.io/service";
/// Kubernetes' label for who manages an object.
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const MANAGER: &str = "mvconf-operator";

/// The per-container records of one service of a MacvlanBinding (at most
/// 100 per object), written by the operator. Do not edit: the operator
/// rewrites them on its next pass and reads them as its memory of which
/// slot holds which address.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "mvconf.io",
    version = "v1alpha1",
    kind = "MacvlanEndpointSlice",
    namespaced,
    shortname = "mves",
    category = "mvconf",
    doc = "MacvlanEndpointSlice holds the per-container records of one service of a MacvlanBinding (at most 100 per object), written by the operator.",
    printcolumn(name = "Binding", type_ = "string", json_path = ".spec.binding"),
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.service"),
    printcolumn(
        name = "Bound",
        type_ = "integer",
        json_path = ".spec.bound",
        description = "Records of containers bound to their address"
    ),
    printcolumn(
        name = "Records",
        type_ = "integer",
        json_path = ".spec.size",
        description = "Records in this slice"
    ),
    printcolumn(
        name = "First",
        type_ = "string",
        json_path = ".spec.records[0].ip",
        description = "Address of the first record",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MacvlanEndpointSliceSpec {
    /// Name of the MacvlanBinding (in the same namespace) these records
    /// belong to; it owns this object.
    pub binding: String,
    /// Swarm service of every record here.
    pub service: String,
    /// Records whose container is bound to its address.
    pub bound: i32,
    /// Records in this slice.
    pub size: i32,
    /// One record per container (or per task slot waiting for one), sorted
    /// by slot or node.
    #[schemars(length(max = 100))]
    pub records: Vec<ContainerRecord>,
}

/// FNV-1a, to make slice names of different (binding, service) pairs
/// distinct after the service name is made DNS-safe.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// `<binding>-<service>-<hash>-<index>`: a DNS subdomain name, stable for
/// the same binding, service and index, and distinct between bindings
/// whose names would otherwise run together (`a-b` + `c`, `a` + `b-c`).
pub fn slice_name(binding: &str, service: &str, index: usize) -> String {
    let svc: String = service
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | '-' => c,
            _ => '-',
        })
        .collect();
    let hash = format!("{:08x}", fnv1a(&format!("{binding}/{service}")));
    let tail = format!("-{hash}-{index}");
    let mut head = format!("{binding}-{svc}");
    head.truncate(253 - tail.len());
    let head = head.trim_end_matches(['-', '.']);
    format!("{head}{tail}")
}

fn saturating_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The slices that hold `records` (sorted by service, then slot or node,
/// as a pass produces them) for binding `b`: one service per slice, at
/// most [`PER_SLICE`] records each, named by their position.
pub fn slices_for(b: &MacvlanBinding, records: &[ContainerRecord]) -> Vec<MacvlanEndpointSlice> {
    let binding = b.name_any();
    let owner = owner_of(b);
    let mut by_service: BTreeMap<&str, Vec<&ContainerRecord>> = BTreeMap::new();
    for r in records {
        by_service.entry(r.service.as_str()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (service, mine) in by_service {
        for (index, chunk) in mine.chunks(PER_SLICE).enumerate() {
            let mut labels = BTreeMap::new();
            labels.insert(BINDING_LABEL.to_owned(), binding.clone());
            labels.insert(SERVICE_LABEL.to_owned(), service.to_owned());
            labels.insert(MANAGED_BY.to_owned(), MANAGER.to_owned());
            let records: Vec<ContainerRecord> = chunk.iter().map(|r| (*r).clone()).collect();
            let spec = MacvlanEndpointSliceSpec {
                binding: binding.clone(),
                service: service.to_owned(),
                bound: saturating_i32(
                    records
                        .iter()
                        .filter(|r| r.state == RecordState::Bound)
                        .count(),
                ),
                size: saturating_i32(records.len()),
                records,
            };
            out.push(MacvlanEndpointSlice {
                metadata: ObjectMeta {
                    name: Some(slice_name(&binding, service, index)),
                    namespace: b.namespace(),
                    labels: Some(labels),
                    owner_references: owner.clone().map(|o| vec![o]),
                    ..Default::default()
                },
                spec,
            });
        }
    }
    out
}

/// The binding as the owner of its slices: deleting it deletes them (the
/// garbage collector's backstop; the operator deletes them itself at the
/// end of cleanup).
fn owner_of(b: &MacvlanBinding) -> Option<OwnerReference> {
    let mut o = b.controller_owner_ref(&())?;
    // Setting blockOwnerDeletion needs the right to update the binding's
    // finalizers subresource; foreground deletion is not needed here.
    o.block_owner_deletion = None;
    Some(o)
}

/// Whether slice `s` belongs to binding `b` (by name and, once known, UID:
/// a binding deleted and created again under the same name does not
/// inherit the old one's memory).
pub fn belongs_to(s: &MacvlanEndpointSlice, b: &MacvlanBinding) -> bool {
    if s.spec.binding != b.name_any() || s.namespace() != b.namespace() {
        return false;
    }
    match (&b.metadata.uid, &s.metadata.owner_references) {
        (Some(uid), Some(owners)) => owners.iter().any(|o| &o.uid == uid),
        _ => true,
    }
}

/// The writes that turn `existing` (every slice labelled with the binding)
/// into `wanted`.
#[derive(Debug, Default)]
pub struct Changes {
    pub create: Vec<MacvlanEndpointSlice>,
    /// New content, with the existing object's resourceVersion.
    pub replace: Vec<MacvlanEndpointSlice>,
    /// (name, resourceVersion) of slices no longer wanted.
    pub delete: Vec<(String, Option<String>)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.replace.is_empty() && self.delete.is_empty()
    }

    pub fn len(&self) -> usize {
        self.create.len() + self.replace.len() + self.delete.len()
    }
}

/// Only what differs is written: a pass that changed nothing writes
/// nothing, and one changed container rewrites one slice.
pub fn changes(existing: &[&MacvlanEndpointSlice], wanted: Vec<MacvlanEndpointSlice>) -> Changes {
    let mut by_name: BTreeMap<String, &MacvlanEndpointSlice> =
        existing.iter().map(|s| (s.name_any(), *s)).collect();
    let mut out = Changes::default();
    for mut w in wanted {
        match by_name.remove(&w.name_any()) {
            None => out.create.push(w),
            Some(old) => {
                let same = old.spec == w.spec
                    && old.metadata.labels == w.metadata.labels
                    && old.metadata.owner_references == w.metadata.owner_references;
                if !same {
                    w.metadata.resource_version = old.metadata.resource_version.clone();
                    out.replace.push(w);
                }
            }
        }
    }
    out.delete = by_name
        .into_values()
        .map(|s| (s.name_any(), s.metadata.resource_version.clone()))
        .collect();
    out
}

/// Every record of `slices`, sorted by service, then slot or node.
pub fn records_of<'a>(
    slices: impl IntoIterator<Item = &'a MacvlanEndpointSlice>,
) -> Vec<ContainerRecord> {
    let mut out: Vec<ContainerRecord> = slices
        .into_iter()
        .flat_map(|s| s.spec.records.iter().cloned())
        .collect();
    out.sort_by(|a, b| (&a.service, a.slot, &a.node_id).cmp(&(&b.service, b.slot, &b.node_id)));
    out
}

/// The memory a pass starts from: every slot's address (bound or
/// reserved), from the slices, or, before the first one is written, from
/// the records an operator of an older version kept in the binding's
/// status (an upgrade forgets nothing).
pub fn memory_from<'a>(
    legacy: Option<&MacvlanBindingStatus>,
    slices: impl IntoIterator<Item = &'a MacvlanEndpointSlice>,
) -> Memory {
    let mut m = Memory::new();
    let slices: Vec<&MacvlanEndpointSlice> = slices.into_iter().collect();
    // The status's records are read only until the first slice exists:
    // from then on the slices are the whole memory.
    let old = match legacy {
        Some(s) if slices.is_empty() => s.containers.as_slice(),
        _ => &[],
    };
    let new = slices.iter().flat_map(|s| s.spec.records.iter());
    for r in old.iter().chain(new) {
        if !matches!(r.state, RecordState::Bound | RecordState::Reserved) {
            continue;
        }
        let Some(ip) = r.ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        let slot = match r.slot {
            Some(n) => Slot::Slot(n),
            None => Slot::Node(r.node_id.clone()),
        };
        m.insert(
            Key {
                service: r.service.clone(),
                slot,
            },
            Remembered {
                ip,
                since: r.since.as_ref().map(|t| t.0),
                released: r.released.as_ref().map(|t| t.0),
            },
        );
    }
    m
}

#[cfg(test)]
mod tests;
