//! Per-request cost of the policy stage, measured outside the server so the numbers are not
//! mixed with scheduling: `authz::decide` exactly as the pipeline calls it, against the same
//! decision built through Cedar's schema-guided JSON parser (the peer it replaced), and its parts.
//!
//!   cargo bench -p gateway-core --bench stages

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark harness")]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use ed25519_dalek::SigningKey;
use gateway_core::admission::decide::invoke_context;
use gateway_core::admission::resource::Classification;
use gateway_core::authn::{AuthInfo, Principal};
use gateway_core::authz;
use policy_engine::PolicyEngine;
use policy_engine::bundle::{self, BundleMeta};
use policy_engine::cedar_policy::{Context, Entities, EntityUid, Request};
use policy_engine::load::{self, PolicySources};
use serde_json::{Value, json};

fn engine() -> PolicyEngine {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let sources = PolicySources::discover(&root, None).expect("policies/ is readable");
    let loaded = load::load_and_validate(&sources).expect("policies/ loads");
    let key = SigningKey::from_bytes(&[7; 32]);
    let meta = BundleMeta {
        version: "bench".into(),
        source_commit: "bench".into(),
        source_repository: None,
        created: Utc::now(),
    };
    let bytes = bundle::create(&loaded, None, &meta, &key).expect("default policies bundle");
    let verified = bundle::verify(&bytes, &key.verifying_key()).expect("bundle verifies");
    PolicyEngine::from_bundle(verified).expect("bundle loads")
}

fn principal(i: usize) -> Principal {
    let mut attrs = BTreeMap::new();
    attrs.insert("department".to_string(), json!("engineering"));
    attrs.insert("clearance".to_string(), json!((i % 4) as i64));
    Principal {
        entity_type: "User".into(),
        id: format!("user-{i}"),
        parents: vec![
            ("Group".into(), "engineering".into()),
            ("Group".into(), format!("team-{}", i % 7)),
        ],
        attrs,
        auth: AuthInfo {
            method: "oidc",
            subject: format!("user-{i}"),
            issuer: None,
        },
    }
}

/// The same decision through Cedar's JSON entity and context parsers, guided by the schema.
fn decide_via_json(
    engine: &PolicyEngine,
    p: &Principal,
    model: &str,
    attrs: &Value,
    context: &Value,
) -> bool {
    let uid = |t: &str, id: &str| json!({ "type": t, "id": id });
    let mut list = vec![json!({
        "uid": uid(&p.entity_type, &p.id),
        "attrs": p.attrs,
        "parents": p.parents.iter().map(|(t, id)| uid(t, id)).collect::<Vec<_>>(),
    })];
    for (t, id) in &p.parents {
        list.push(json!({ "uid": uid(t, id), "attrs": {}, "parents": [] }));
    }
    list.push(json!({ "uid": uid("Model", model), "attrs": attrs, "parents": [] }));
    let schema = engine.schema();
    let entities = Entities::from_json_value(Value::Array(list), Some(schema)).expect("entities");
    let action: EntityUid = authz::INVOKE_MODEL.parse().expect("action");
    let context =
        Context::from_json_value(context.clone(), Some((schema, &action))).expect("context");
    let principal: EntityUid = p.uid().parse().expect("principal");
    let resource: EntityUid = format!("Model::{}", Value::String(model.into()))
        .parse()
        .expect("resource");
    let request =
        Request::new(principal, action, resource, context, Some(schema)).expect("request");
    engine.is_authorized(&request, &entities).decision()
        == policy_engine::cedar_policy::Decision::Allow
}

fn measure(name: &str, iters: usize, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..iters / 10 {
        f(i);
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(iters);
    for i in 0..iters {
        let t = Instant::now();
        f(i);
        samples.push(t.elapsed());
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    println!(
        "{name:<46} p50 {:>7.1} µs  p99 {:>7.1} µs",
        at(0.5),
        at(0.99)
    );
    at(0.5)
}

fn main() {
    let engine = engine();
    let models: Vec<(String, Value)> = ["claude-haiku", "claude-sonnet", "claude-opus"]
        .iter()
        .map(|m| {
            let attrs = json!({"provider": "bedrock", "region": "us-east-1", "max_data_level": 2,
                               "cost_tier": "standard"});
            (m.to_string(), attrs)
        })
        .collect();
    let peer = "10.1.2.3:50000".parse().expect("socket address");
    let principals: Vec<Principal> = (0..64).map(principal).collect();
    let context = |i: usize| {
        let classification = Classification {
            label: "internal".into(),
            level: (i % 3) as i64,
        };
        let mut c = invoke_context(&classification, i.is_multiple_of(2), 256, &peer);
        c["guardrail_findings"] = json!(["email"]);
        c["budget_remaining_usd"] = json!("12.5000");
        c
    };
    // Both ways must agree before their speed means anything.
    for i in 0..300 {
        let (m, attrs) = &models[i % models.len()];
        let p = &principals[i % principals.len()];
        let direct = authz::decide(
            &engine,
            p,
            authz::INVOKE_MODEL,
            "Model",
            m,
            attrs,
            &context(i),
        )
        .expect("decides");
        assert_eq!(
            direct.allow,
            decide_via_json(&engine, p, m, attrs, &context(i)),
            "request {i}"
        );
    }
    let iters = 20_000;
    println!("policy stage with the default bundle, {iters} iterations each");
    let direct = measure("authz::decide (the gateway's policy stage)", iters, |i| {
        let (m, attrs) = &models[i % models.len()];
        let p = &principals[i % principals.len()];
        let d = authz::decide(
            &engine,
            p,
            authz::INVOKE_MODEL,
            "Model",
            m,
            attrs,
            &context(i),
        );
        black_box(d.expect("decides"));
    });
    let via_json = measure("same through Cedar's schema-guided JSON", iters, |i| {
        let (m, attrs) = &models[i % models.len()];
        let p = &principals[i % principals.len()];
        black_box(decide_via_json(&engine, p, m, attrs, &context(i)));
    });
    println!("ratio (JSON path / decide): {:.2}", via_json / direct);
    let action: EntityUid = authz::INVOKE_MODEL.parse().expect("action");
    let (m, attrs) = &models[0];
    let resource: EntityUid = format!("Model::\"{m}\"").parse().expect("resource");
    let entities = Entities::from_json_value(
        json!([{ "uid": {"type": "Model", "id": m}, "attrs": attrs, "parents": [] }]),
        Some(engine.schema()),
    )
    .expect("entities");
    let ctx = Context::from_json_value(context(0), Some((engine.schema(), &action))).expect("ctx");
    let principal: EntityUid = principals[0].uid().parse().expect("principal");
    measure("  of which Cedar's evaluation alone", iters, |_| {
        let req = Request::new(
            principal.clone(),
            action.clone(),
            resource.clone(),
            ctx.clone(),
            None,
        )
        .expect("request");
        black_box(engine.is_authorized(&req, &entities));
    });
}
