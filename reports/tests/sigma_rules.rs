//! Known answers for the Sigma compiler, run for real: events are ingested into a lake by
//! `audit-ingest` and each compiled rule runs on DataFusion over it.
//!
//! 1. Each construct of the specification has a small rule with events that must and must not
//!    match, decided here by hand.
//! 2. Every vendored rule gets a positive event built from its own fields and near misses (each
//!    field it set, spoiled in turn), and the shared CloudTrail samples join them. On every
//!    (rule, event) pair the SQL's verdict must equal that of an independent Sigma evaluator
//!    (`rsigma-eval`, which matches JSON events in memory), and every rule must fire on its
//!    positive.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use reports::sigma::{self, Rule};
use reports::spec::{Period, bind};
use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Modifier, Quantifier, SelectorPattern, SigmaRule,
    SigmaValue, SpecialChar, StringPart,
};
use serde_json::{Value, json};

fn template(id: &str) -> Value {
    json!({
        "eventVersion": "1.10",
        "eventTime": "2026-11-20T03:04:05Z",
        "eventSource": "cairntest.amazonaws.com",
        "eventName": "CairnTestCall",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "cairn-test/1.0",
        "eventID": id,
        "eventType": "AwsApiCall",
        "readOnly": false,
        "managementEvent": true,
        "recipientAccountId": "111122223333",
        "userIdentity": {
            "type": "IAMUser",
            "arn": "arn:aws:iam::111122223333:user/tester",
            "accountId": "111122223333",
            "principalId": "AIDAEXAMPLE",
            "userName": "tester"
        }
    })
}

/// Sets `a.b.c` in an event, making the objects on the way.
fn set(ev: &mut Value, path: &str, v: Value) {
    let mut cur = ev;
    let keys: Vec<&str> = path.split('.').collect();
    for (i, k) in keys.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let map = cur.as_object_mut().unwrap();
        if i + 1 == keys.len() {
            map.insert(k.to_string(), v);
            return;
        }
        cur = map.entry(k.to_string()).or_insert_with(|| json!({}));
    }
}

fn merge(ev: &mut Value, patch: &Value) {
    if let Some(obj) = patch.as_object() {
        for (k, v) in obj {
            set(ev, k, v.clone());
        }
    }
}

struct Lake {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    ctx: reports::catalog::LakeContext,
    ids: BTreeSet<String>,
}

fn lake(events: &[Value]) -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("events.json");
    std::fs::write(
        &src,
        serde_json::to_vec(&json!({ "Records": events })).unwrap(),
    )
    .unwrap();
    let lake_dir = dir.path().join("lake");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let opts = audit_ingest::ingest::Options {
        lake: audit_ingest::lake::Lake::open(&lake_dir.display().to_string()).unwrap(),
        filter: Default::default(),
        jobs: 1,
        flush_rows: 0,
        progress: Arc::new(audit_ingest::ingest::NoProgress),
    };
    let summary =
        audit_ingest::ingest::cloudtrail(&src.display().to_string(), &opts, rt.handle()).unwrap();
    assert_eq!(
        summary.quarantined(),
        0,
        "every test event is a valid record"
    );
    let ctx = rt
        .block_on(reports::catalog::open(&lake_dir.display().to_string()))
        .unwrap();
    let mut lake = Lake {
        _dir: dir,
        rt,
        ctx,
        ids: BTreeSet::new(),
    };
    lake.ids = lake.run("SELECT event_id FROM cloudtrail");
    lake
}

impl Lake {
    fn run(&self, sql: &str) -> BTreeSet<String> {
        let out = self
            .rt
            .block_on(reports::query::run(&self.ctx.ctx, sql))
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
        let mut ids = BTreeSet::new();
        for b in &out.batches {
            let i = b.schema().index_of("event_id").unwrap();
            let col = datafusion::arrow::compute::cast(
                b.column(i),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let col = col.as_string::<i32>();
            for r in 0..col.len() {
                ids.insert(col.value(r).to_string());
            }
        }
        ids
    }

    fn hits(&self, rule: &Rule) -> BTreeSet<String> {
        let sql = rule
            .sql
            .as_deref()
            .unwrap_or_else(|| panic!("{} does not compile: {:?}", rule.name, rule.unsupported));
        self.run(&bind(sql, &Period::default()))
    }
}

fn one(yaml: &str) -> Rule {
    let mut rules = sigma::parse("kat.yml", "kat", yaml).unwrap();
    assert_eq!(rules.len(), 1);
    rules.remove(0)
}

fn rule_yaml(detection: &str) -> String {
    format!(
        "title: kat\nid: 00000000-0000-4000-8000-000000000000\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n{detection}\nlevel: low\n"
    )
}

/// A construct's name, its detection, and events (fields over the template) with whether each
/// must match.
type Construct = (&'static str, &'static str, Vec<(Value, bool)>);

fn constructs() -> Vec<Construct> {
    vec![
        (
            "map is and, list is or",
            "    sel:\n        eventSource: s3.amazonaws.com\n        eventName:\n            - DeleteBucket\n            - PutBucketPolicy\n    condition: sel",
            vec![
                (
                    json!({"eventSource": "s3.amazonaws.com", "eventName": "DeleteBucket"}),
                    true,
                ),
                (
                    json!({"eventSource": "s3.amazonaws.com", "eventName": "putbucketpolicy"}),
                    true,
                ),
                (
                    json!({"eventSource": "s3.amazonaws.com", "eventName": "GetObject"}),
                    false,
                ),
                (
                    json!({"eventSource": "ec2.amazonaws.com", "eventName": "DeleteBucket"}),
                    false,
                ),
            ],
        ),
        (
            "list of maps is or",
            "    sel:\n        - eventName: A1\n        - errorCode: AccessDenied\n    condition: sel",
            vec![
                (json!({"eventName": "A1"}), true),
                (json!({"errorCode": "accessdenied"}), true),
                (json!({"eventName": "A2", "errorCode": "Other"}), false),
            ],
        ),
        (
            "contains startswith endswith",
            "    a:\n        userAgent|contains: 'Boto3'\n    b:\n        eventName|startswith: 'Delete'\n    c:\n        userIdentity.arn|endswith: ':root'\n    condition: a or b or c",
            vec![
                (json!({"userAgent": "x boto3/1.2 y"}), true),
                (json!({"eventName": "DeleteTrail"}), true),
                (json!({"eventName": "UndeleteTrail"}), false),
                (json!({"userIdentity.arn": "arn:aws:iam::1:root"}), true),
                (json!({"userIdentity.arn": "arn:aws:iam::1:rootx"}), false),
            ],
        ),
        (
            "contains all",
            "    sel:\n        requestParameters|contains|all:\n            - 's3:GetObject'\n            - 'Principal'\n    condition: sel",
            vec![
                (
                    json!({"requestParameters": {"policy": "{\"Principal\":\"*\",\"Action\":\"s3:GetObject\"}"}}),
                    true,
                ),
                (
                    json!({"requestParameters": {"policy": "s3:GetObject only"}}),
                    false,
                ),
            ],
        ),
        (
            "wildcards and escapes",
            "    a:\n        eventName: 'Get*Policy'\n    b:\n        eventName: 'Put?ey'\n    c:\n        userAgent: 'literal\\*star'\n    d:\n        errorMessage: '100%_done'\n    condition: 1 of them",
            vec![
                (json!({"eventName": "GetBucketPolicy"}), true),
                (json!({"eventName": "GetPolicy"}), true),
                (json!({"eventName": "GetBucketAcl"}), false),
                (json!({"eventName": "PutKey"}), true),
                (json!({"eventName": "PutKKey"}), false),
                (json!({"userAgent": "literal*star"}), true),
                (json!({"userAgent": "literalXstar"}), false),
                (json!({"errorMessage": "100%_done"}), true),
                (json!({"errorMessage": "100%xdone"}), false),
            ],
        ),
        (
            "re with flags",
            "    sel:\n        userIdentity.arn|re|i: '^arn:aws:sts::[0-9]+:ASSUMED-ROLE/aws:.+'\n    condition: sel",
            vec![
                (
                    json!({"userIdentity.arn": "arn:aws:sts::123:assumed-role/aws:ec2/i-1"}),
                    true,
                ),
                (
                    json!({"userIdentity.arn": "arn:aws:sts::123:assumed-role/admin/i-1"}),
                    false,
                ),
            ],
        ),
        (
            "cidr",
            "    sel:\n        sourceIPAddress|cidr:\n            - '10.0.0.0/8'\n            - '172.16.0.0/12'\n    condition: sel",
            vec![
                (json!({"sourceIPAddress": "10.1.2.3"}), true),
                (json!({"sourceIPAddress": "172.31.0.9"}), true),
                (json!({"sourceIPAddress": "172.32.0.9"}), false),
                (json!({"sourceIPAddress": "110.1.2.3"}), false),
            ],
        ),
        (
            "exists",
            "    has:\n        additionalEventData.MFAUsed|exists: true\n    lacks:\n        errorCode|exists: false\n    condition: has and lacks",
            vec![
                (json!({"additionalEventData": {"MFAUsed": "No"}}), true),
                (
                    json!({"additionalEventData": {"MFAUsed": "No"}, "errorCode": "X"}),
                    false,
                ),
                (json!({"additionalEventData": {"Other": 1}}), false),
            ],
        ),
        (
            "windash",
            "    sel:\n        userAgent|windash|contains:\n            - ' -enc '\n            - ' /c '\n    condition: sel",
            vec![
                (json!({"userAgent": "ps -enc abc"}), true),
                (json!({"userAgent": "cmd -c x"}), true),
                (json!({"userAgent": "cmd - c x"}), false),
                (json!({"userAgent": "ps /enc abc"}), true),
                (json!({"userAgent": "ps \u{2013}enc abc"}), true),
                (json!({"userAgent": "ps enc abc"}), false),
            ],
        ),
        (
            "fieldref",
            "    sel:\n        eventName: CreateAccessKey\n    own:\n        userIdentity.arn|fieldref|endswith: requestParameters.userName\n    same:\n        userIdentity.userName|fieldref: requestParameters.userName\n    condition: sel and not own and not same",
            vec![
                (
                    json!({"eventName": "CreateAccessKey", "requestParameters": {"userName": "alice"}}),
                    true,
                ),
                (
                    json!({"eventName": "CreateAccessKey", "requestParameters": {"userName": "TESTER"}}),
                    false,
                ),
                (
                    json!({"eventName": "CreateAccessKey", "userIdentity.arn": "arn:aws:sts::1:assumed-role/r/bob", "userIdentity.userName": "x", "requestParameters": {"userName": "bob"}}),
                    false,
                ),
            ],
        ),
        (
            "null and empty",
            "    sel:\n        eventName: N1\n        errorCode: null\n        errorMessage: ''\n    condition: sel",
            vec![
                (json!({"eventName": "N1", "errorMessage": ""}), true),
                (
                    json!({"eventName": "N1", "errorMessage": "", "errorCode": "E"}),
                    false,
                ),
                (json!({"eventName": "N1", "errorMessage": "x"}), false),
            ],
        ),
        (
            "keywords",
            "    keywords:\n        - 'MaliciousThing'\n        - 'evil*tool'\n    condition: keywords",
            vec![
                (json!({"errorMessage": "saw maliciousthing here"}), true),
                (json!({"userAgent": "evil-tool/2"}), true),
                (json!({"userAgent": "benign"}), false),
            ],
        ),
        (
            "and or not, 1 of, all of, parentheses",
            "    sel_a:\n        eventSource: iam.amazonaws.com\n    sel_b:\n        eventName: CreateUser\n    filter_1:\n        userAgent|contains: terraform\n    filter_2:\n        errorCode: AccessDenied\n    condition: (all of sel_*) and not 1 of filter_*",
            vec![
                (
                    json!({"eventSource": "iam.amazonaws.com", "eventName": "CreateUser"}),
                    true,
                ),
                (
                    json!({"eventSource": "iam.amazonaws.com", "eventName": "CreateUser", "userAgent": "Terraform/1"}),
                    false,
                ),
                (
                    json!({"eventSource": "iam.amazonaws.com", "eventName": "CreateUser", "errorCode": "AccessDenied"}),
                    false,
                ),
                (
                    json!({"eventSource": "iam.amazonaws.com", "eventName": "DeleteUser"}),
                    false,
                ),
            ],
        ),
        (
            "neq over a list, and JSON null is absent",
            "    sel:\n        eventName: Q1\n        awsRegion|neq:\n            - us-east-1\n            - eu-west-1\n    nul:\n        requestParameters.bucketName: null\n    condition: sel and nul",
            vec![
                (json!({"eventName": "Q1", "awsRegion": "ap-south-1"}), true),
                (json!({"eventName": "Q1", "awsRegion": "eu-west-1"}), false),
                (
                    json!({"eventName": "Q1", "awsRegion": "ap-south-1", "requestParameters": {"bucketName": null}}),
                    true,
                ),
                (
                    json!({"eventName": "Q1", "awsRegion": "ap-south-1", "requestParameters": {"bucketName": "b"}}),
                    false,
                ),
            ],
        ),
        (
            "cased",
            "    sel:\n        eventName|cased: StopLogging\n    condition: sel",
            vec![
                (json!({"eventName": "StopLogging"}), true),
                (json!({"eventName": "stoplogging"}), false),
            ],
        ),
        (
            "base64offset",
            "    sel:\n        requestParameters.userData|base64offset|contains: 'curl http'\n    condition: sel",
            vec![
                // base64 of "#!/bin/sh\ncurl http://x" and of "x curl http" (another alignment).
                (
                    json!({"requestParameters": {"userData": "IyEvYmluL3NoCmN1cmwgaHR0cDovL3g="}}),
                    true,
                ),
                (
                    json!({"requestParameters": {"userData": "eCBjdXJsIGh0dHA="}}),
                    true,
                ),
                (
                    json!({"requestParameters": {"userData": "IyEvYmluL3NoCmVjaG8gaGk="}}),
                    false,
                ),
            ],
        ),
        (
            "numbers compare",
            "    sel:\n        requestParameters.maxCount|gte: 10\n    condition: sel",
            vec![
                (json!({"requestParameters": {"maxCount": 12}}), true),
                (json!({"requestParameters": {"maxCount": 9}}), false),
                (json!({"requestParameters": {"maxCount": "many"}}), false),
            ],
        ),
        (
            "booleans and timestamp parts",
            "    sel:\n        readOnly: true\n        eventTime|hour: 3\n    condition: sel",
            vec![
                (json!({"readOnly": true}), true),
                (json!({"readOnly": false}), false),
                (
                    json!({"readOnly": true, "eventTime": "2026-11-20T04:04:05Z"}),
                    false,
                ),
            ],
        ),
    ]
}

#[test]
fn each_construct_matches_what_it_must_and_nothing_else() {
    let cases = constructs();
    let mut events = Vec::new();
    let mut expect: Vec<(String, Rule, BTreeSet<String>, BTreeSet<String>)> = Vec::new();
    for (ci, (what, det, evs)) in cases.iter().enumerate() {
        let rule = one(&rule_yaml(det));
        assert!(rule.unsupported.is_none(), "{what}: {:?}", rule.unsupported);
        let mut want = BTreeSet::new();
        let mut own = BTreeSet::new();
        for (ei, (patch, hit)) in evs.iter().enumerate() {
            let id = format!("00000000-0000-4000-8000-{ci:06}{ei:06}");
            let mut ev = template(&id);
            merge(&mut ev, patch);
            if *hit {
                want.insert(id.clone());
            }
            own.insert(id);
            events.push(ev);
        }
        expect.push((what.to_string(), rule, own, want));
    }
    let lake = lake(&events);
    assert_eq!(lake.ids.len(), events.len());
    for (what, rule, own, want) in &expect {
        let got: BTreeSet<String> = lake.hits(rule).intersection(own).cloned().collect();
        assert_eq!(&got, want, "{what}\n{}", rule.sql.as_deref().unwrap_or(""));
    }
}

#[test]
fn what_does_not_compile_is_refused_by_name() {
    for (det, needle) in [
        (
            "    sel:\n        status: success\n    condition: sel",
            "field `status`",
        ),
        (
            "    sel:\n        eventName|expand: '%names%'\n    condition: sel",
            "`expand`",
        ),
        (
            "    sel:\n        eventName: x\n    condition: sel and missing",
            "`missing`",
        ),
        (
            "    sel:\n        sourceIPAddress|cidr: '2001:db8::/32'\n    condition: sel",
            "IPv6",
        ),
        (
            "    sel:\n        eventTime: '2026'\n    condition: sel",
            "timestamp",
        ),
        (
            "    sel:\n        eventName|contains|startswith: x\n    condition: sel",
            "do not combine",
        ),
        (
            "    sel:\n        eventName|re|contains: x\n    condition: sel",
            "do not combine",
        ),
        (
            "    sel:\n        eventName|i: x\n    condition: sel",
            "do not combine",
        ),
        (
            "    sel:\n        eventName|base64|wide: x\n    condition: sel",
            "do not combine",
        ),
        (
            "    sel:\n        eventName|re: '(?=a)b'\n    condition: sel",
            "lookaround",
        ),
        (
            "    keywords:\n        '|re': 'x.*'\n    condition: keywords",
            "keyword",
        ),
        (
            "    sel:\n        eventName|wide|utf16be|base64: x\n    condition: sel",
            "do not combine",
        ),
        (
            "    sel:\n        eventName|neq: null\n    condition: sel",
            "exists",
        ),
        (
            "    sel:\n        requestParameters.items[0]: x\n    condition: sel",
            "JSON path",
        ),
    ] {
        let r = one(&rule_yaml(det));
        let why = r.unsupported.unwrap_or_default();
        assert!(why.contains(needle), "{det}: {why}");
        assert!(r.sql.is_none());
    }
    let corr = "title: base\nid: 11111111-1111-4111-8111-111111111111\nname: base\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  sel: {eventName: ConsoleLogin}\n  condition: sel\n---\ntitle: many logins\ncorrelation:\n  type: event_count\n  rules: [base]\n  group-by: [sourceIPAddress]\n  timespan: 5m\n  condition: {gte: 10}\n";
    let rules = sigma::parse("c.yml", "c", corr).unwrap();
    assert_eq!(rules.len(), 2);
    assert!(rules[0].sql.is_some());
    assert!(
        rules[1]
            .unsupported
            .as_deref()
            .unwrap_or("")
            .contains("correlation")
    );
}

// ---- every vendored rule against an independent evaluator ----

/// Values for regular expressions the generator cannot invert.
const REGEX_SAMPLES: &[(&str, &str)] = &[(
    ".+:assumed-role/aws:.+",
    "arn:aws:sts::111122223333:assumed-role/aws:ec2-instance/i-0abc",
)];

fn materialize(parts: &[StringPart]) -> String {
    parts
        .iter()
        .map(|p| match p {
            StringPart::Plain(s) => s.clone(),
            StringPart::Special(SpecialChar::WildcardMulti) => "x".into(),
            StringPart::Special(SpecialChar::WildcardSingle) => "y".into(),
        })
        .collect()
}

fn synth(item: &DetectionItem, v: &SigmaValue, ev: &Value) -> Option<Value> {
    let m = &item.field.modifiers;
    if m.contains(&Modifier::Exists) {
        return matches!(v, SigmaValue::Bool(true)).then(|| json!("present"));
    }
    if m.contains(&Modifier::FieldRef) {
        let SigmaValue::String(s) = v else {
            return None;
        };
        let other = lookup(ev, &s.original).unwrap_or_else(|| json!("cairn-ref"));
        return Some(other);
    }
    Some(match v {
        SigmaValue::Null => return None,
        SigmaValue::Bool(b) => json!(b),
        SigmaValue::Integer(n) => json!(n),
        SigmaValue::Float(f) => json!(f),
        SigmaValue::String(s) => {
            if m.contains(&Modifier::Re) {
                let sample = REGEX_SAMPLES.iter().find(|(re, _)| *re == s.original)?;
                return Some(json!(sample.1));
            }
            let text = materialize(&s.parts);
            let text = if m.contains(&Modifier::Contains) {
                format!("pre {text} post")
            } else if m.contains(&Modifier::StartsWith) {
                format!("{text} post")
            } else if m.contains(&Modifier::EndsWith) {
                format!("pre {text}")
            } else {
                text
            };
            json!(text)
        }
    })
}

fn lookup(ev: &Value, path: &str) -> Option<Value> {
    let mut cur = ev;
    for k in path.split('.') {
        cur = cur.get(k)?;
    }
    Some(cur.clone())
}

/// Sets what makes a detection match; returns the paths it set.
fn satisfy_detection(d: &Detection, ev: &mut Value, set_paths: &mut Vec<String>) -> bool {
    match d {
        Detection::AllOf(items) => items.iter().all(|it| {
            let Some(name) = &it.field.name else {
                return false;
            };
            let all = it.field.modifiers.contains(&Modifier::All);
            let value = if all && it.field.modifiers.contains(&Modifier::Contains) {
                let joined: Vec<String> = it
                    .values
                    .iter()
                    .map(|v| match v {
                        SigmaValue::String(s) => materialize(&s.parts),
                        other => other.to_string(),
                    })
                    .collect();
                Some(json!(format!("pre {} post", joined.join(" "))))
            } else {
                match it.values.first() {
                    Some(v) => synth(it, v, ev),
                    None => None,
                }
            };
            if let Some(v) = value {
                set(ev, name, v);
                set_paths.push(name.clone());
            }
            true
        }),
        Detection::AnyOf(ds) => ds
            .first()
            .is_some_and(|d| satisfy_detection(d, ev, set_paths)),
        Detection::And(ds) => ds.iter().all(|d| satisfy_detection(d, ev, set_paths)),
        _ => false,
    }
}

fn satisfy(
    c: &ConditionExpr,
    named: &BTreeMap<String, Detection>,
    ev: &mut Value,
    set_paths: &mut Vec<String>,
) -> bool {
    match c {
        ConditionExpr::Identifier(n) => named
            .get(n)
            .is_some_and(|d| satisfy_detection(d, ev, set_paths)),
        ConditionExpr::And(xs) => xs.iter().all(|x| satisfy(x, named, ev, set_paths)),
        ConditionExpr::Or(xs) => xs.first().is_some_and(|x| satisfy(x, named, ev, set_paths)),
        ConditionExpr::Not(x) => {
            falsify(x, named, ev);
            true
        }
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let chosen: Vec<&Detection> = named
                .iter()
                .filter(|(n, _)| match pattern {
                    SelectorPattern::Them => !n.starts_with('_'),
                    SelectorPattern::Pattern(p) => rsigma_parser::detection_name_matches(p, n),
                })
                .map(|(_, d)| d)
                .collect();
            let take = match quantifier {
                Quantifier::Any => 1,
                Quantifier::All => chosen.len(),
                Quantifier::Count(n) => *n as usize,
            };
            chosen
                .into_iter()
                .take(take)
                .all(|d| satisfy_detection(d, ev, set_paths))
        }
    }
}

/// Makes a negated part false: an unset field fails every test but `null` and `exists: false`,
/// so only those need a value.
fn falsify(c: &ConditionExpr, named: &BTreeMap<String, Detection>, ev: &mut Value) {
    fn det(d: &Detection, ev: &mut Value) {
        match d {
            Detection::AllOf(items) => {
                for it in items {
                    let Some(name) = &it.field.name else { continue };
                    let absent_matches = it.values.iter().any(|v| match v {
                        SigmaValue::Null => true,
                        SigmaValue::Bool(false) => it.field.modifiers.contains(&Modifier::Exists),
                        _ => false,
                    });
                    if absent_matches {
                        set(ev, name, json!("cairn-set"));
                    }
                }
            }
            Detection::AnyOf(ds) | Detection::And(ds) => ds.iter().for_each(|d| det(d, ev)),
            _ => {}
        }
    }
    match c {
        ConditionExpr::Identifier(n) => {
            if let Some(d) = named.get(n) {
                det(d, ev)
            }
        }
        ConditionExpr::And(xs) | ConditionExpr::Or(xs) => {
            xs.iter().for_each(|x| falsify(x, named, ev))
        }
        ConditionExpr::Not(_) => {}
        ConditionExpr::Selector { pattern, .. } => {
            for (n, d) in named {
                let chosen = match pattern {
                    SelectorPattern::Them => !n.starts_with('_'),
                    SelectorPattern::Pattern(p) => rsigma_parser::detection_name_matches(p, n),
                };
                if chosen {
                    det(d, ev);
                }
            }
        }
    }
}

fn parsed(rule: &Rule) -> SigmaRule {
    let (_, text) = reports_rule_text(rule);
    rsigma_parser::parse_sigma_yaml(&text)
        .unwrap()
        .rules
        .remove(0)
}

fn reports_rule_text(rule: &Rule) -> (String, String) {
    let rel = rule.origin.strip_prefix("builtin:").unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rules")
        .join(rel);
    (rel.to_string(), std::fs::read_to_string(path).unwrap())
}

fn oracle(rule: &SigmaRule) -> rsigma_eval::Engine {
    let mut e = rsigma_eval::Engine::new();
    e.add_rule(rule).unwrap();
    e
}

fn sample_events() -> Vec<Value> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cloudtrail/stratus-red-team");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let records = match v {
            Value::Array(a) => a,
            Value::Object(mut o) => match o.remove("Records") {
                Some(Value::Array(a)) => a,
                _ => vec![Value::Object(o)],
            },
            _ => Vec::new(),
        };
        out.extend(records);
    }
    // The samples repeat an event id across files; an id must name one event here.
    let mut seen = BTreeSet::new();
    out.retain(|e| seen.insert(e["eventID"].as_str().unwrap_or("").to_string()));
    out
}

#[test]
fn every_vendored_rule_agrees_with_an_independent_evaluator() {
    let rules: Vec<Rule> = sigma::builtin()
        .unwrap()
        .into_iter()
        .filter(|r| r.sql.is_some())
        .collect();
    assert!(rules.len() >= 56, "{}", rules.len());
    let mut events = sample_events();
    let mut positives: BTreeMap<String, String> = BTreeMap::new();
    let mut near: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (ri, rule) in rules.iter().enumerate() {
        let p = parsed(rule);
        let named: BTreeMap<String, Detection> = p
            .detection
            .named
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let id = format!("10000000-0000-4000-8000-{ri:06}000000");
        let mut ev = template(&id);
        let mut paths = Vec::new();
        assert!(
            satisfy(&p.detection.conditions[0], &named, &mut ev, &mut paths),
            "cannot build a positive for {}",
            rule.name
        );
        positives.insert(rule.name.clone(), id);
        events.push(ev.clone());
        for (k, path) in paths.iter().enumerate() {
            let nid = format!("10000000-0000-4000-8000-{ri:06}{:06}", k + 1);
            let mut miss = ev.clone();
            set(&mut miss, "eventID", json!(nid));
            set(&mut miss, path, json!("cairn-near-miss"));
            events.push(miss);
            near.entry(rule.name.clone()).or_default().push(nid);
        }
    }
    let lake = lake(&events);
    let by_id: BTreeMap<String, &Value> = events
        .iter()
        .map(|e| (e["eventID"].as_str().unwrap_or("").to_string(), e))
        .collect();
    let mut disagreements = Vec::new();
    for rule in &rules {
        let engine = oracle(&parsed(rule));
        let want: BTreeSet<String> = lake
            .ids
            .iter()
            .filter(|id| {
                let ev = by_id[*id];
                !engine
                    .evaluate(&rsigma_eval::event::JsonEvent::borrow(ev))
                    .is_empty()
            })
            .cloned()
            .collect();
        let got = lake.hits(rule);
        if got != want {
            disagreements.push(format!(
                "{}: SQL only {:?}, evaluator only {:?}\n{}",
                rule.name,
                got.difference(&want).collect::<Vec<_>>(),
                want.difference(&got).collect::<Vec<_>>(),
                rule.sql.as_deref().unwrap_or("")
            ));
        }
        if !got.contains(&positives[&rule.name]) {
            disagreements.push(format!(
                "{} does not fire on its positive {}\n{}",
                rule.name,
                by_id[&positives[&rule.name]],
                rule.sql.as_deref().unwrap_or("")
            ));
        }
        let misses = near.get(&rule.name).cloned().unwrap_or_default();
        if !misses.iter().any(|m| !got.contains(m)) {
            disagreements.push(format!("{}: no near miss is missed", rule.name));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n\n"));
}
