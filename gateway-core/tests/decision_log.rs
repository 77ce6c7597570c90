//! The decision log against a real directory: group commit, rotation, recovery after a torn
//! write, and the verifier catching each kind of tampering.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use gateway_core::decision_log::verify::{ChainFault, verify_dir};
use gateway_core::decision_log::{
    Decision, DecisionLog, LogObserver, LogSettings, Record, segment,
};

struct Quiet;
impl LogObserver for Quiet {
    fn committed(&self, _: usize, _: Duration) {}
    fn failed(&self, _: &str) {}
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fn keys() -> Vec<(String, ed25519_dalek::VerifyingKey)> {
    let vk = key().verifying_key();
    vec![(policy_engine::bundle::keys::key_id(&vk), vk)]
}

fn settings(dir: &Path, max_bytes: u64) -> LogSettings {
    LogSettings {
        dir: dir.to_path_buf(),
        segment_max_bytes: max_bytes,
        segment_max_age: Duration::from_secs(3600),
        max_batch: 64,
        checkpoints: None,
    }
}

fn decision(i: usize) -> Record {
    Record::new(
        format!("d{i}"),
        "2026-11-25T00:00:00.000Z".into(),
        Decision {
            decision: Some("allow".into()),
            principal: Some(format!("User::\"u{i}\"")),
            ..Default::default()
        },
    )
}

async fn write(dir: &Path, n: usize, max_bytes: u64) {
    let (log, writer) = DecisionLog::start(settings(dir, max_bytes), key(), Arc::new(Quiet));
    assert!(log.healthy());
    let mut tasks = Vec::new();
    for i in 0..n {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append(decision(i)).await.unwrap()
        }));
    }
    let mut seqs: Vec<u64> = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().seq);
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "every append got its own sequence number");
    log.close().await;
    writer.join().unwrap();
}

fn lines(dir: &Path) -> Vec<(std::path::PathBuf, Vec<String>)> {
    segment::list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text.lines().map(str::to_string).collect())
        })
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn concurrent_appends_form_one_verified_chain_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 300, 16 * 1024).await;
    let report = verify_dir(dir.path(), keys()).unwrap();
    assert!(report.ok(), "{:?}", report.errors);
    assert!(report.segments > 2, "rotation by size happened");
    assert_eq!(report.decisions, 300);
    assert!(
        report.open_tail.is_none(),
        "close() sealed the last segment"
    );
    // A second run continues the same chain.
    write(dir.path(), 10, 1 << 20).await;
    let report = verify_dir(dir.path(), keys()).unwrap();
    assert!(report.ok(), "{:?}", report.errors);
    assert_eq!(report.decisions, 310);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_sealed_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 5, 1 << 20).await;
    // Simulate a crash: drop the seal and leave half a record behind.
    let segs = lines(dir.path());
    let (path, mut ls) = segs.last().unwrap().clone();
    ls.pop();
    let half = ls[0][..ls[0].len() / 2].to_string();
    let mut text = ls.join("\n");
    text.push('\n');
    text.push_str(&half);
    std::fs::write(&path, text).unwrap();
    let report = verify_dir(dir.path(), keys()).unwrap();
    assert!(matches!(report.errors[0].fault, ChainFault::Truncated));
    // Restarting recovers: the torn bytes go, a recovery seal closes the segment.
    write(dir.path(), 3, 1 << 20).await;
    let report = verify_dir(dir.path(), keys()).unwrap();
    assert!(report.ok(), "{:?}", report.errors);
    assert_eq!(report.decisions, 8);
    // The five allowed decisions the crash left without outcomes get `lost` ones, before the
    // recovery seal; the three of the clean run after it get none.
    assert_eq!(report.outcomes, 5);
    let all: Vec<String> = lines(dir.path())
        .iter()
        .flat_map(|(_, l)| l.clone())
        .collect();
    let seal = all
        .iter()
        .position(|l| l.contains("recovered after an unclean shutdown"))
        .expect("a recovery seal");
    let lost: Vec<usize> = (0..all.len())
        .filter(|i| all[*i].contains(r#""reason":"lost""#))
        .collect();
    assert_eq!(lost.len(), 5);
    assert!(lost.iter().all(|i| *i < seal));
}

async fn tampered(
    f: impl Fn(&mut Vec<String>),
) -> (
    Vec<String>,
    gateway_core::decision_log::verify::VerifyReport,
) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 6, 1 << 20).await;
    let segs = lines(dir.path());
    let (path, mut ls) = segs[0].clone();
    f(&mut ls);
    rewrite(&path, &ls);
    let report = verify_dir(dir.path(), keys()).unwrap();
    (ls, report)
}

#[tokio::test]
async fn altered_removed_reordered_inserted_and_truncated_records_are_named() {
    let (_, r) = tampered(|ls| ls[2] = ls[2].replace("\"allow\"", "\"deny\"")).await;
    assert_eq!(r.errors[0].at.line, 3);
    assert!(
        matches!(r.errors[0].fault, ChainFault::Line(_)),
        "{:?}",
        r.errors[0]
    );

    let (_, r) = tampered(|ls| {
        ls.remove(2);
    })
    .await;
    assert_eq!(r.errors[0].at.line, 3);
    assert!(
        matches!(
            r.errors[0].fault,
            ChainFault::Removed {
                expected: 3,
                found: 4
            }
        ),
        "{:?}",
        r.errors[0]
    );

    let (_, r) = tampered(|ls| ls.swap(1, 2)).await;
    assert_eq!(r.errors[0].at.line, 2);
    assert!(
        matches!(
            r.errors[0].fault,
            ChainFault::Reordered {
                expected: 2,
                found: 3
            }
        ),
        "{:?}",
        r.errors[0]
    );

    let (_, r) = tampered(|ls| {
        let copy = ls[1].clone();
        ls.insert(3, copy);
    })
    .await;
    assert_eq!(r.errors[0].at.line, 4);
    assert!(
        matches!(
            r.errors[0].fault,
            ChainFault::Reordered {
                expected: 4,
                found: 2
            }
        ),
        "{:?}",
        r.errors[0]
    );

    // Removing the seal and the records before it from the end: the segment is open, not sealed.
    let (_, r) = tampered(|ls| {
        ls.pop();
        ls.pop();
    })
    .await;
    assert!(r.ok());
    assert!(r.open_tail.is_some());
}

#[tokio::test]
async fn another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 2, 1 << 20).await;
    let other = SigningKey::from_bytes(&[1; 32]).verifying_key();
    let report = verify_dir(
        dir.path(),
        vec![(policy_engine::bundle::keys::key_id(&other), other)],
    )
    .unwrap();
    assert!(!report.ok());
    assert!(
        report.errors[0]
            .fault
            .to_string()
            .contains("not among the given keys")
    );
}

#[tokio::test]
async fn an_unusable_directory_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (log, writer) = DecisionLog::start(
        settings(&file.join("records"), 1 << 20),
        key(),
        Arc::new(Quiet),
    );
    assert!(!log.healthy());
    assert!(log.append(decision(0)).await.is_err());
    log.close().await;
    writer.join().unwrap();
}
