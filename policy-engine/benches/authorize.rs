//! `cargo bench -p policy-engine`: authorization latency (p50/p99) with per-request entity
//! building, for the default bundle and for 1,000 generated policies, and `policy test`
//! throughput. Prints a table; there is no pass/fail threshold here.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark harness")]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request, RestrictedExpression,
    Schema,
};
use policy_engine::load::{self, PolicySources};
use policy_engine::policy_tests;

fn uid(s: &str) -> EntityUid {
    EntityUid::from_str(s).unwrap()
}

/// What the gateway does per request: principal with attributes and groups, the model from the
/// catalogue, the context; then one authorization.
fn request_and_entities(
    schema: &Schema,
    user: usize,
    model: &str,
    groups: &[String],
) -> (Request, Entities) {
    let principal = uid(&format!("User::\"u{user}\""));
    let mut attrs = HashMap::new();
    attrs.insert(
        "department".to_string(),
        RestrictedExpression::new_string("engineering".into()),
    );
    attrs.insert(
        "clearance".to_string(),
        RestrictedExpression::new_long((user % 4) as i64),
    );
    let parents: HashSet<EntityUid> = groups
        .iter()
        .map(|g| uid(&format!("Group::\"{g}\"")))
        .collect();
    let mut entities = vec![Entity::new(principal.clone(), attrs, parents.clone()).unwrap()];
    for g in &parents {
        entities.push(Entity::new_no_attrs(g.clone(), HashSet::new()));
    }
    let resource = uid(&format!("Model::\"{model}\""));
    let mut mattrs = HashMap::new();
    mattrs.insert(
        "provider".to_string(),
        RestrictedExpression::new_string("bedrock".into()),
    );
    mattrs.insert(
        "region".to_string(),
        RestrictedExpression::new_string("us-east-1".into()),
    );
    mattrs.insert(
        "max_data_level".to_string(),
        RestrictedExpression::new_long(2),
    );
    mattrs.insert(
        "cost_tier".to_string(),
        RestrictedExpression::new_string("standard".into()),
    );
    entities.push(Entity::new(resource.clone(), mattrs, HashSet::new()).unwrap());
    let entities = Entities::from_entities(entities, Some(schema)).unwrap();
    let context = Context::from_pairs([
        (
            "data_classification".to_string(),
            RestrictedExpression::new_string("internal".into()),
        ),
        ("data_level".to_string(), RestrictedExpression::new_long(1)),
        (
            "streaming".to_string(),
            RestrictedExpression::new_bool(false),
        ),
        (
            "max_tokens".to_string(),
            RestrictedExpression::new_long(512),
        ),
        (
            "source_ip".to_string(),
            RestrictedExpression::new_ip("10.1.2.3"),
        ),
        (
            "request_time".to_string(),
            RestrictedExpression::from_str("datetime(\"2026-11-25T14:00:00Z\")").unwrap(),
        ),
        (
            "guardrail_findings".to_string(),
            RestrictedExpression::new_set([]),
        ),
    ])
    .unwrap();
    let request = Request::new(
        principal,
        uid("Action::\"invoke_model\""),
        resource,
        context,
        Some(schema),
    )
    .unwrap();
    (request, entities)
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    (at(0.50), at(0.99), at(0.999))
}

fn bench_authorize(
    name: &str,
    schema: &Schema,
    policies: &PolicySet,
    models: &[String],
    iters: usize,
) {
    let authorizer = Authorizer::new();
    let groups = vec!["engineering".to_string(), "team-7".to_string()];
    // Warm up.
    for i in 0..200 {
        let (r, e) = request_and_entities(schema, i, &models[i % models.len()], &groups);
        std::hint::black_box(authorizer.is_authorized(&r, policies, &e));
    }
    let mut with_entities = Vec::with_capacity(iters);
    let mut decide_only = Vec::with_capacity(iters);
    for i in 0..iters {
        let t0 = Instant::now();
        let (r, e) = request_and_entities(schema, i, &models[i % models.len()], &groups);
        let t1 = Instant::now();
        std::hint::black_box(authorizer.is_authorized(&r, policies, &e));
        let t2 = Instant::now();
        with_entities.push(t2 - t0);
        decide_only.push(t2 - t1);
    }
    let (p50, p99, p999) = percentiles(with_entities);
    let (d50, d99, _) = percentiles(decide_only);
    println!(
        "{name:<34} {:>6} policies  build+decide p50 {:>7.1} µs  p99 {:>7.1} µs  p99.9 {:>7.1} µs   decide only p50 {:>7.1} µs  p99 {:>7.1} µs",
        policies.policies().count(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        p999.as_secs_f64() * 1e6,
        d50.as_secs_f64() * 1e6,
        d99.as_secs_f64() * 1e6,
    );
}

fn generated_policies(n: usize) -> (PolicySet, Vec<String>) {
    let mut text = String::new();
    for i in 0..n {
        let m = format!("m-{}", i % 200);
        if i % 10 == 9 {
            text.push_str(&format!(
                "@id(\"gen-{i}\")\nforbid (principal in Group::\"team-{}\", action == Action::\"invoke_model\", resource == Model::\"{m}\")\nwhen {{ context.data_level > {} && context.max_tokens > {} }};\n",
                i % 50,
                i % 4,
                1000 + i
            ));
        } else {
            text.push_str(&format!(
                "@id(\"gen-{i}\")\npermit (principal in Group::\"team-{}\", action == Action::\"invoke_model\", resource == Model::\"{m}\")\nwhen {{ context.data_level <= resource.max_data_level && principal.clearance >= {} }};\n",
                i % 50,
                i % 3
            ));
        }
    }
    let parsed = PolicySet::from_str(&text).unwrap();
    let mut set = PolicySet::new();
    for p in parsed.policies() {
        let id = p.annotation("id").unwrap().to_string();
        set.add(p.new_id(cedar_policy::PolicyId::new(id))).unwrap();
    }
    let models = (0..200).map(|i| format!("m-{i}")).collect();
    (set, models)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let sources = PolicySources::discover(&root, None).unwrap();
    let loaded = load::load_and_validate(&sources).unwrap();
    assert!(!loaded.has_errors(), "default policies must validate");
    let schema = loaded.schema.clone().unwrap();
    let models: Vec<String> = ["claude-haiku", "claude-sonnet", "claude-opus"]
        .map(String::from)
        .to_vec();

    println!(
        "authorization latency (one request = build entities + context + request, then decide)"
    );
    bench_authorize(
        "default bundle",
        &schema,
        &loaded.policy_set,
        &models,
        20_000,
    );
    let (generated, gmodels) = generated_policies(1000);
    bench_authorize("generated", &schema, &generated, &gmodels, 20_000);

    let tests = policy_tests::discover(&sources.tests_dir()).unwrap();
    let t0 = Instant::now();
    let suites = policy_tests::load(&tests, loaded.schema.as_ref()).unwrap();
    let load_time = t0.elapsed();
    let rounds = 200;
    let t1 = Instant::now();
    let mut cases = 0;
    for _ in 0..rounds {
        let run = policy_tests::run(&loaded, &suites);
        assert!(run.ok());
        cases += run.outcomes.len();
    }
    let run_time = t1.elapsed();
    println!(
        "policy test: {} cases loaded in {:.1} ms; {cases} cases run in {:.2} s = {:.0} cases/s",
        suites.case_count,
        load_time.as_secs_f64() * 1e3,
        run_time.as_secs_f64(),
        cases as f64 / run_time.as_secs_f64()
    );
}
