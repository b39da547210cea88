//! Hostile input for the loaders, the validator and the pool parser: random
//! text, mutations of real files, deep nesting, alias bombs, huge pools,
//! very long names and odd Unicode. Each is refused with an error that names
//! the field (or the place in the file), or accepted correctly; nothing
//! panics, and the cost stays bounded by construction (size limits checked
//! before work that grows with the input).

use mvconf::config::{LoadError, MAX_FILE_BYTES, parse};
use mvconf::crd::limits;
use proptest::prelude::*;
use std::path::Path;

const MANUAL: &str = include_str!("../examples/conf.json");
const MANIFEST: &str = include_str!("../examples/binding.yaml");

fn json(text: &str) -> Result<mvconf::config::Loaded, LoadError> {
    parse(text, Path::new("conf.json"))
}

fn yaml(text: &str) -> Result<mvconf::config::Loaded, LoadError> {
    parse(text, Path::new("binding.yaml"))
}

/// A conf.json with one network and one service, with `patch` applied to
/// the service object.
fn conf_with(service: serde_json::Value, network_name: &str, parent: &str) -> String {
    serde_json::json!({
        "networks": [{"name": network_name, "subnet": "10.0.0.0/8", "gateway": "10.0.0.1", "parent": parent}],
        "services": [service],
    })
    .to_string()
}

fn err_text(r: Result<mvconf::config::Loaded, LoadError>) -> String {
    match r {
        Ok(l) => panic!("accepted: {:?}", l.spec),
        Err(e) => e.to_string(),
    }
}

/// Errors quote what they refuse, but never a whole hostile value.
fn assert_bounded(msg: &str) {
    assert!(msg.len() < 2_000, "an error of {} bytes", msg.len());
}

#[test]
fn the_shipped_examples_load() {
    json(MANUAL).unwrap();
    yaml(MANIFEST).unwrap();
}

#[test]
fn a_slash_eight_pool_is_one_range_and_validates() {
    let text = conf_with(
        serde_json::json!({"name": "web", "network": "mv", "ip_pool": ["10.0.0.2-10.255.255.254"]}),
        "mv",
        "eth1",
    );
    let loaded = json(&text).unwrap();
    let pool = &loaded.desired.services[0].pool;
    assert_eq!(pool.ranges().len(), 1);
    assert_eq!(pool.size(), (1 << 24) - 3);
}

#[test]
fn thousands_of_pool_entries_up_to_the_limit_and_a_clear_refusal_beyond() {
    let entries = |n: usize| -> Vec<String> {
        (0..n as u32)
            .map(|i| std::net::Ipv4Addr::from(0x0A01_0000 + 2 * i).to_string())
            .collect()
    };
    let ok = conf_with(
        serde_json::json!({"name": "web", "network": "mv", "ip_pool": entries(limits::MAX_POOL_ENTRIES)}),
        "mv",
        "eth1",
    );
    let loaded = json(&ok).unwrap();
    assert_eq!(
        loaded.desired.services[0].pool.size(),
        limits::MAX_POOL_ENTRIES as u64
    );
    let too_many = conf_with(
        serde_json::json!({"name": "web", "network": "mv", "ip_pool": entries(limits::MAX_POOL_ENTRIES + 1)}),
        "mv",
        "eth1",
    );
    let msg = err_text(json(&too_many));
    assert!(msg.contains("services[0].ip_pool"), "{msg}");
    assert!(msg.contains(&limits::MAX_POOL_ENTRIES.to_string()), "{msg}");
    assert_bounded(&msg);
}

#[test]
fn ten_thousand_character_names_are_refused_naming_the_field() {
    let long = "a".repeat(10_000);
    let cases = [
        (
            conf_with(
                serde_json::json!({"name": long, "network": "mv", "ip_pool": ["10.0.0.5"]}),
                "mv",
                "eth1",
            ),
            "services[0].name",
        ),
        (
            conf_with(
                serde_json::json!({"name": "web", "network": long, "ip_pool": ["10.0.0.5"]}),
                &long,
                "eth1",
            ),
            "networks[0].name",
        ),
        (
            conf_with(
                serde_json::json!({"name": "web", "network": "mv", "ip_pool": ["10.0.0.5"]}),
                "mv",
                &long,
            ),
            "networks[0].parent",
        ),
        (
            conf_with(
                serde_json::json!({"name": "web", "network": "mv", "ip_pool": [long]}),
                "mv",
                "eth1",
            ),
            "services[0].ip_pool[0]",
        ),
    ];
    for (text, field) in cases {
        let msg = err_text(json(&text));
        assert!(msg.contains(field), "{field}: {msg}");
        assert!(msg.len() < 2_000, "{field}: {}", &msg[..300]);
    }
}

#[test]
fn odd_unicode_is_refused_naming_the_field_and_never_split_mid_character() {
    let names = [
        "ｗｅｂ",                        // fullwidth letters
        "web\u{202e}gnp.exe",            // right-to-left override
        "we\u{200b}b",                   // zero-width space
        "🚀-web",                        // emoji
        "e\u{301}cole",                  // combining accent
        "веб",                           // Cyrillic lookalikes
        &format!("{}é", "x".repeat(63)), // a multi-byte character at the cut
    ];
    for name in names {
        let text = conf_with(
            serde_json::json!({"name": name, "network": "mv", "ip_pool": ["10.0.0.5"]}),
            "mv",
            "eth1",
        );
        let msg = err_text(json(&text));
        assert!(msg.contains("services[0].name"), "{name:?}: {msg}");
        assert_bounded(&msg);
    }
    for (subnet, field) in [
        ("１０.0.0.0/8", "networks[0].subnet"),
        ("10.0.0.0/８", "networks[0].subnet"),
    ] {
        let text = serde_json::json!({
            "networks": [{"name": "mv", "subnet": subnet, "gateway": "10.0.0.1", "parent": "eth1"}],
            "services": [],
        })
        .to_string();
        let msg = err_text(json(&text));
        assert!(msg.contains(field), "{subnet}: {msg}");
    }
    let pool = conf_with(
        serde_json::json!({"name": "web", "network": "mv", "ip_pool": ["10.0.0.5\u{2013}10.0.0.9"]}),
        "mv",
        "eth1",
    );
    let msg = err_text(json(&pool));
    assert!(msg.contains("services[0].ip_pool[0]"), "{msg}");
}

#[test]
fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
    for depth in [1_000usize, 100_000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let _ = json(&format!("{{\"networks\": {arrays}}}"));
        let _ = yaml(&format!(
            "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: x}}\nspec: {{networks: {arrays}}}\n"
        ));
        let objects = format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let _ = json(&objects);
    }
}

#[test]
fn alias_bombs_are_refused() {
    let mut bomb = String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    for (i, c) in ('b'..='j').enumerate() {
        let prev = (b'a' + i as u8) as char;
        bomb.push_str(&format!(
            "{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    bomb.push_str("apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {name: x}\nspec: {networks: *j}\n");
    let msg = err_text(yaml(&bomb));
    assert_bounded(&msg);
}

#[test]
fn oversized_files_are_refused_before_parsing() {
    let text = format!(
        "{{\"networks\": [], \"services\": [], \"x\": \"{}\"}}",
        "a".repeat(MAX_FILE_BYTES)
    );
    match json(&text) {
        Err(LoadError::TooLarge { .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// A JSON value shaped like a configuration: known keys, plausible and
/// implausible leaves.
fn arb_config_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop::sample::select(vec![
        "networks",
        "services",
        "name",
        "subnet",
        "gateway",
        "parent",
        "ip_range",
        "ipRange",
        "network",
        "ip_pool",
        "ipPool",
        "ingress",
        "auth",
        "url",
        "username",
        "password",
        "apiVersion",
        "kind",
        "metadata",
        "spec",
        "deletionPolicy",
        "endpoint",
        "x",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        prop::sample::select(vec![
            "192.168.8.0/24",
            "192.168.8.1",
            "192.168.8.136-192.168.8.137",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "255.255.255.255",
            "eth1",
            "eth1.101",
            "web",
            "mvconf.io/v1alpha1",
            "MacvlanBinding",
            "Detach",
            "Keep",
            "1.2.3.4-1.2.3.3",
            "::1/128",
            "",
            "-",
            "/",
            "192.168.8.10-",
            "ｗｅｂ",
            "\u{202e}",
        ])
        .prop_map(serde_json::Value::from),
        "\\PC{0,24}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        let _ = json(&s);
        let _ = yaml(&s);
    }

    #[test]
    fn mutated_real_files_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, "\\PC{0,3}"), 1..8),
        which in any::<bool>(),
    ) {
        let mut text: Vec<char> = if which { MANUAL } else { MANIFEST }.chars().collect();
        for (at, op, with) in edits {
            let i = at.index(text.len().max(1));
            match op {
                0 if !text.is_empty() => { text.remove(i.min(text.len() - 1)); }
                1 => { for (k, c) in with.chars().enumerate() { text.insert((i + k).min(text.len()), c); } }
                _ if !text.is_empty() => {
                    let i = i.min(text.len() - 1);
                    text[i] = with.chars().next().unwrap_or(' ');
                }
                _ => {}
            }
        }
        let text: String = text.into_iter().collect();
        let r = if which { json(&text) } else { yaml(&text) };
        if let Err(e) = r {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn configuration_shaped_values_never_panic(v in arb_config_value()) {
        let text = v.to_string();
        let _ = json(&text);
        let manifest = serde_json::json!({
            "apiVersion": "mvconf.io/v1alpha1", "kind": "MacvlanBinding",
            "metadata": {"name": "x"}, "spec": v,
        });
        let _ = json(&manifest.to_string());
        let _ = yaml(&manifest.to_string());
    }
}
