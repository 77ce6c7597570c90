//! Records written before they were typed (`tests/fixtures/records-v1`, made by an earlier
//! binary): they verify, and every line parses into a typed record that serialises back to the
//! same body, byte for byte, so the on-disk format did not change.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::PathBuf;

use decision_record::record::{Body, Record, split_line};
use decision_record::verify::verify_dir;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/records-v1")
}

fn key() -> (String, ed25519_dalek::VerifyingKey) {
    let vk =
        policy_engine::bundle::keys::load_verifying_key(&fixture().join("signing.pub")).unwrap();
    (policy_engine::bundle::keys::key_id(&vk), vk)
}

#[test]
fn the_earlier_segment_verifies() {
    let report = verify_dir(&fixture(), vec![key()]).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        (report.records, report.decisions, report.outcomes),
        (10, 7, 2)
    );
}

#[test]
fn typed_records_write_the_same_bytes() {
    let text =
        std::fs::read_to_string(fixture().join("segment-00000000000000000001.jsonl")).unwrap();
    let mut kinds = Vec::new();
    for line in text.lines() {
        let signed = split_line(line).expect("a signed line");
        let body = format!("{}}}", signed.body);
        let record = Record::from_body_json(&body).unwrap();
        kinds.push(match &record.body {
            Body::Decision(_) => 'd',
            Body::Outcome(_) => 'o',
            Body::Seal(_) => 's',
        });
        let again = String::from_utf8(record.to_body_json().unwrap()).unwrap();
        assert_eq!(again, body);
    }
    assert_eq!(kinds.iter().collect::<String>(), "ddododddds");
}
