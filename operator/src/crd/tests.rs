use kube::core::cel::validate_cel;
use kube::core::cel::validate_cel_update;

use super::*;
use crate::testing::fixtures::sharded_service;
use crate::validate::rules;

const CHECKED_IN: &str = include_str!("../../../crds/shardedservice.yaml");

#[test]
fn checked_in_crd_is_not_stale() {
    let fresh = crd_yaml().unwrap();
    assert!(
        fresh == CHECKED_IN,
        "crds/shardedservice.yaml is stale: run `cargo run -p shardmesh-operator -- crd > crds/shardedservice.yaml`"
    );
}

#[test]
fn crd_has_subresources_columns_and_short_name() {
    let crd = crd().unwrap();
    assert_eq!(crd.spec.names.short_names, Some(vec!["shsvc".to_string()]));
    let v = &crd.spec.versions[0];
    let sub = v.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<_> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Replicas", "Ready", "Shards", "Status", "Age"]);
}

#[test]
fn crd_schema_is_structural_enough() {
    let text = serde_json::to_string(&crd().unwrap()).unwrap();
    assert!(!text.contains("\"additionalProperties\":false"));
    assert!(
        !text.contains("$ref"),
        "the API server does not resolve $ref"
    );
    assert!(
        text.len() < 256 * 1024,
        "CRD is {} bytes; kubectl apply needs < 256 KiB",
        text.len()
    );
}

fn cel_messages(result: Result<(), kube::core::cel::ValidationErrors>) -> Vec<String> {
    match result {
        Ok(()) => Vec::new(),
        Err(e) => {
            let text = e.to_string();
            let all = [
                rules::NAME_LEN,
                rules::REPLICAS,
                rules::SHARDS_RANGE,
                // SHARDS_RECORDED says the same as SHARDS_FIXED.
                rules::SHARDS_FIXED,
                rules::APP_PORT_RANGE,
                rules::APP_PORT_FREE,
                rules::KEY_FROM_PATH,
            ];
            let found: Vec<String> = all
                .iter()
                .filter(|(_, m)| text.contains(m))
                .map(|(_, m)| m.to_string())
                .collect();
            assert!(!found.is_empty(), "unexpected CEL failure: {text}");
            found
        }
    }
}

#[test]
fn cel_accepts_a_valid_service() {
    assert_eq!(
        cel_messages(validate_cel(&sharded_service("ns", "bank"))),
        Vec::<String>::new()
    );
}

#[test]
fn cel_rules_reject_with_the_validate_messages() {
    type Case = (fn(&mut ShardedService), (&'static str, &'static str));
    let cases: Vec<Case> = vec![
        (|s| s.spec.replicas = -1, rules::REPLICAS),
        (|s| s.spec.shards = Some(0), rules::SHARDS_RANGE),
        (|s| s.spec.shards = Some(70_000), rules::SHARDS_RANGE),
        (|s| s.spec.app_port = 0, rules::APP_PORT_RANGE),
        (|s| s.spec.app_port = 7401, rules::APP_PORT_FREE),
        (
            |s| s.spec.routing.key_from_path = Some("accounts/{key}".into()),
            rules::KEY_FROM_PATH,
        ),
        (
            |s| s.spec.routing.key_from_path = Some("/accounts".into()),
            rules::KEY_FROM_PATH,
        ),
        (|s| s.metadata.name = Some("x".repeat(53)), rules::NAME_LEN),
    ];
    for (mutate, (_, message)) in cases {
        let mut svc = sharded_service("ns", "bank");
        mutate(&mut svc);
        assert_eq!(cel_messages(validate_cel(&svc)), vec![message.to_string()]);
        // The operator's own check says the same thing.
        let err = crate::validate(&svc, crate::render::DEFAULT_TRUST_DOMAIN).unwrap_err();
        assert!(
            err.0.contains(&message.to_string()),
            "validate() said {err}"
        );
    }
}

#[test]
fn cel_keeps_shards_fixed_after_creation() {
    let mut old = sharded_service("ns", "bank");
    old.spec.shards = Some(30);
    let mut new = old.clone();
    new.spec.shards = Some(40);
    assert_eq!(
        cel_messages(validate_cel_update(&new, &old)),
        vec![rules::SHARDS_FIXED.1]
    );
    new.spec.shards = None;
    assert_eq!(
        cel_messages(validate_cel_update(&new, &old)),
        vec![rules::SHARDS_FIXED.1]
    );
    new.spec.shards = Some(30);
    new.spec.replicas = 5;
    assert_eq!(
        cel_messages(validate_cel_update(&new, &old)),
        Vec::<String>::new()
    );
    // Setting shards for the first time is allowed by CEL only before the
    // operator recorded a count, or to exactly the recorded count.
    old.spec.shards = None;
    new.spec.shards = Some(30);
    assert_eq!(
        cel_messages(validate_cel_update(&new, &old)),
        Vec::<String>::new()
    );
    let recorded = ShardedServiceStatus {
        shards: Some(20),
        ..Default::default()
    };
    old.status = Some(recorded.clone());
    new.status = Some(recorded);
    assert_eq!(
        cel_messages(validate_cel_update(&new, &old)),
        vec![rules::SHARDS_FIXED.1]
    );
    new.spec.shards = Some(20);
    assert_eq!(
        cel_messages(validate_cel_update(&new, &old)),
        Vec::<String>::new()
    );
    // A status write never trips the rule, even while the spec disagrees.
    old.spec.shards = Some(7);
    new.spec.shards = Some(7);
    assert_eq!(
        cel_messages(validate_cel_update(&new, &old)),
        Vec::<String>::new()
    );
}

#[test]
fn crd_has_no_format_the_api_server_warns_about() {
    fn walk(node: &serde_json::Value, bad: &mut Vec<String>) {
        match node {
            serde_json::Value::Object(map) => {
                if let Some(f) = map.get("format").and_then(|f| f.as_str()) {
                    if !KNOWN_FORMATS.contains(&f) {
                        bad.push(f.to_string());
                    }
                }
                map.values().for_each(|v| walk(v, bad));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, bad)),
            _ => {}
        }
    }
    let crd = serde_json::to_value(crd().unwrap()).unwrap();
    let mut bad = Vec::new();
    walk(&crd, &mut bad);
    assert!(bad.is_empty(), "unknown formats {bad:?}");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["shards"]["maximum"].as_f64(),
        Some(f64::from(u32::MAX))
    );
}

/// The API server accepts only structural schemas: every node has a type
/// (or is int-or-string), and no anyOf/oneOf/allOf carries types.
#[test]
fn crd_schema_is_structural() {
    fn walk(node: &serde_json::Value, path: String, bad: &mut Vec<String>) {
        let Some(map) = node.as_object() else { return };
        let typed = map.contains_key("type")
            || map.get("x-kubernetes-int-or-string") == Some(&serde_json::Value::Bool(true))
            || map.get("x-kubernetes-preserve-unknown-fields")
                == Some(&serde_json::Value::Bool(true));
        if !typed {
            bad.push(path.clone());
        }
        for k in ["anyOf", "oneOf", "allOf"] {
            if map.contains_key(k) {
                bad.push(format!("{path}/{k}"));
            }
        }
        if let Some(props) = map.get("properties").and_then(|p| p.as_object()) {
            for (k, v) in props {
                walk(v, format!("{path}.{k}"), bad);
            }
        }
        if let Some(items) = map.get("items") {
            walk(items, format!("{path}[]"), bad);
        }
        if let Some(extra) = map.get("additionalProperties") {
            walk(extra, format!("{path}{{}}"), bad);
        }
    }
    let crd = serde_json::to_value(crd().unwrap()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut bad = Vec::new();
    walk(schema, String::new(), &mut bad);
    assert!(bad.is_empty(), "not structural at {bad:?}");
    assert_eq!(
        schema["properties"]["spec"]["properties"]["template"]["type"],
        "object"
    );
}
