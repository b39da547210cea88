use super::*;
use crate::crd::MacvlanBindingSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn binding(name: &str, uid: &str) -> MacvlanBinding {
    let mut b = MacvlanBinding::new(name, MacvlanBindingSpec::default());
    b.metadata.namespace = Some("team".into());
    b.metadata.uid = Some(uid.into());
    b
}

fn record(service: &str, slot: u64, state: RecordState) -> ContainerRecord {
    ContainerRecord {
        service: service.into(),
        slot: Some(slot),
        node_id: format!("node-id-{}", slot % 1000),
        node: format!("dce-{}", slot % 1000),
        host_ip: "10.0.0.1".into(),
        task: format!("t{slot:024}"),
        container: format!("{slot:012}"),
        ip: Some(format!(
            "10.{}.{}.{}",
            slot >> 16,
            (slot >> 8) & 255,
            slot & 255
        )),
        ingress: false,
        state,
        message: None,
        since: "2026-11-22T10:00:00Z".parse().ok().map(Time),
        released: None,
    }
}

fn records(service: &str, n: u64) -> Vec<ContainerRecord> {
    (1..=n)
        .map(|k| record(service, k, RecordState::Bound))
        .collect()
}

/// As the API server would return them: with a resourceVersion.
fn stored(mut slices: Vec<MacvlanEndpointSlice>) -> Vec<MacvlanEndpointSlice> {
    for (i, s) in slices.iter_mut().enumerate() {
        s.metadata.resource_version = Some(format!("{}", 100 + i));
    }
    slices
}

#[test]
fn a_binding_of_20000_containers_writes_no_object_over_1_mib() {
    let b = binding("big", "u1");
    let all = records("web", 20_000);
    let slices = slices_for(&b, &all);
    assert_eq!(slices.len(), 200);
    for s in &slices {
        let bytes = serde_json::to_vec(s).unwrap().len();
        assert!(bytes < 1 << 20, "{} is {bytes} bytes", s.name_any());
        assert!(s.spec.records.len() <= PER_SLICE);
        assert_eq!(s.spec.size as usize, s.spec.records.len());
    }
    // Every record is in exactly one slice, and reads back in order.
    assert_eq!(records_of(&slices), all);
}

#[test]
fn the_memory_survives_a_round_trip_through_the_slices_at_any_size() {
    let b = binding("big", "u1");
    let mut all = records("web", 20_000);
    all[7].state = RecordState::Reserved;
    all[8].state = RecordState::Pending;
    all[8].ip = None;
    let slices = stored(slices_for(&b, &all));
    let m = memory_from(None, &slices);
    assert_eq!(
        m.len(),
        19_999,
        "the Pending slot without an address is not memory"
    );
    let k = Key {
        service: "web".into(),
        slot: Slot::Slot(8),
    };
    assert_eq!(m[&k].ip, "10.0.0.8".parse::<Ipv4Addr>().unwrap());
    assert_eq!(
        m[&k].since.map(|t| t.to_string()).as_deref(),
        Some("2026-11-22T10:00:00Z")
    );
}

#[test]
fn one_service_per_slice_and_a_global_service_keyed_by_node() {
    let b = binding("pay", "u1");
    let mut all = records("api", 3);
    let mut g = record("agent", 0, RecordState::Bound);
    g.slot = None;
    all.insert(0, g);
    let slices = slices_for(&b, &all);
    assert_eq!(slices.len(), 2);
    assert_eq!(
        slices
            .iter()
            .map(|s| (s.spec.service.as_str(), s.spec.records.len()))
            .collect::<Vec<_>>(),
        [("agent", 1), ("api", 3)]
    );
    let labels = slices[1].labels();
    assert_eq!(labels[BINDING_LABEL], "pay");
    assert_eq!(labels[SERVICE_LABEL], "api");
    let owner = &slices[1].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("MacvlanBinding", "u1")
    );
    assert_eq!(owner.controller, Some(true));
    let m = memory_from(None, &slices);
    assert!(m.contains_key(&Key {
        service: "agent".into(),
        slot: Slot::Node("node-id-0".into()),
    }));
}

#[test]
fn a_pass_that_changed_nothing_writes_nothing_and_one_change_rewrites_one_slice() {
    let b = binding("big", "u1");
    let all = records("web", 1_000);
    let existing = stored(slices_for(&b, &all));
    let refs: Vec<&MacvlanEndpointSlice> = existing.iter().collect();
    assert!(changes(&refs, slices_for(&b, &all)).is_empty());

    let mut moved = all.clone();
    moved[450].container = "aaaaaaaaaaaa".into();
    let c = changes(&refs, slices_for(&b, &moved));
    assert_eq!((c.create.len(), c.replace.len(), c.delete.len()), (0, 1, 0));
    assert_eq!(c.replace[0].name_any(), slice_name("big", "web", 4));
    assert_eq!(
        c.replace[0].metadata.resource_version.as_deref(),
        Some("104"),
        "a replace carries the version read, so a stale writer is refused"
    );

    // Scaled down to 150: slices 2..9 go, slice 1 is rewritten.
    let c = changes(&refs, slices_for(&b, &all[..150]));
    assert_eq!((c.create.len(), c.replace.len(), c.delete.len()), (0, 1, 8));
    // Scaled up to 1,050: one more.
    let c = changes(&refs, slices_for(&b, &records("web", 1_050)));
    assert_eq!((c.create.len(), c.replace.len(), c.delete.len()), (1, 0, 0));
    // The binding gone: every slice goes.
    assert_eq!(changes(&refs, Vec::new()).delete.len(), 10);
}

#[test]
fn slice_names_are_dns_names_distinct_per_binding_and_service() {
    let a = slice_name("a-b", "c", 0);
    let b = slice_name("a", "b-c", 0);
    assert_ne!(a, b);
    assert_ne!(slice_name("x", "Web", 0), slice_name("x", "web", 0));
    assert_ne!(slice_name("x", "a_b", 0), slice_name("x", "a-b", 0));
    let long = slice_name(&"b".repeat(253), "stack_service", 12);
    for n in [a, b, long, slice_name("x", "Web_1", 3)] {
        assert!(n.len() <= 253, "{n}");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'),
            "{n}"
        );
        assert!(n.starts_with(|c: char| c.is_ascii_alphanumeric()), "{n}");
        assert!(n.ends_with(|c: char| c.is_ascii_alphanumeric()), "{n}");
    }
    assert_eq!(slice_name("pay", "web", 2), slice_name("pay", "web", 2));
}

#[test]
fn an_upgrade_reads_the_old_status_records_until_the_first_slice_exists() {
    let b = binding("pay", "u1");
    let legacy = MacvlanBindingStatus {
        containers: vec![record("web", 1, RecordState::Reserved)],
        ..Default::default()
    };
    let m = memory_from(Some(&legacy), &[]);
    assert_eq!(m.len(), 1, "an older operator's records are remembered");
    let slices = slices_for(&b, &records("web", 2)[1..]);
    let m = memory_from(Some(&legacy), &slices);
    assert_eq!(
        m.keys().map(ToString::to_string).collect::<Vec<_>>(),
        ["web.2"],
        "once slices exist they are the whole memory"
    );
}

#[test]
fn a_binding_created_again_under_the_same_name_does_not_inherit_old_slices() {
    let old = binding("pay", "u1");
    let new = binding("pay", "u2");
    let slices = slices_for(&old, &records("web", 2));
    assert!(slices.iter().all(|s| belongs_to(s, &old)));
    assert!(!slices.iter().any(|s| belongs_to(s, &new)));
    // Its slices replace the old ones in place, under the new owner.
    let existing = stored(slices);
    let refs: Vec<&MacvlanEndpointSlice> = existing.iter().collect();
    let c = changes(&refs, slices_for(&new, &records("web", 2)));
    assert_eq!((c.create.len(), c.replace.len(), c.delete.len()), (0, 1, 0));
}
