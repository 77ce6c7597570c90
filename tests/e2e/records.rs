//! Records written by an earlier binary (`tests/fixtures/records-v1`) still verify and ingest
//! whole: the typed records changed no byte of the format.

use crate::harness::{Cairn, copy_dir, repo_root};

#[test]
fn earlier_records_verify_and_ingest_with_nothing_quarantined() {
    let c = Cairn::new();
    copy_dir(
        &repo_root().join("tests/fixtures/records-v1"),
        &c.path("records"),
    );
    let key = c.path("records/signing.pub");
    let key = key.to_str().expect("utf-8 path");
    c.run(&["audit", "verify", "records", "--pubkey", key])
        .expect_code(0)
        .expect_output("10 records (7 decisions, 2 outcomes)");
    let run = c.run(&[
        "ingest",
        "decisions",
        "records",
        "--pubkey",
        key,
        "--lake",
        "lake",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON summary");
    let source = &summary["sources"][0];
    assert_eq!(source["read"], 10, "{summary}");
    assert_eq!(source["written"], 9, "{summary}");
    assert_eq!(source["quarantined"], serde_json::json!({}), "{summary}");
    assert!(source["error"].is_null(), "{summary}");
}
