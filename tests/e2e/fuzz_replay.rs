//! The fuzz corpus and the inputs of crashes found and fixed (`fuzz/corpus/TARGET/`,
//! `fuzz/regressions/TARGET/`), replayed through the same entry points as the fuzz targets: what
//! once crashed stays fixed, on stable and without cargo-fuzz.

use std::path::{Path, PathBuf};

type Entry = fn(&[u8]);

/// Every target in `fuzz/fuzz_targets/`, and the entry point it calls.
const TARGETS: &[(&str, Entry)] = &[
    ("bearer", gateway_core::fuzzing::bearer),
    ("headers", gateway_core::fuzzing::headers),
    ("chat_request", gateway_core::fuzzing::chat_request),
    (
        "upstream_response",
        gateway_core::fuzzing::upstream_response,
    ),
    ("mcp_message", gateway_core::fuzzing::mcp_message),
    ("cloudtrail", audit_ingest::fuzzing::cloudtrail),
    ("otlp", audit_ingest::fuzzing::otlp),
    ("record_lines", decision_record::fuzzing::record_lines),
    ("policy_sources", policy_engine::fuzzing::policy_sources),
    ("bundle", policy_engine::fuzzing::bundle),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn every_fuzz_target_is_replayed() {
    let mut defined: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
        .collect();
    defined.sort();
    let mut replayed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    replayed.sort();
    assert_eq!(
        defined, replayed,
        "fuzz/fuzz_targets and the replay table differ"
    );
}

#[test]
fn fuzz_corpus_and_regressions_replay_without_a_panic() {
    let mut failures = Vec::new();
    for (name, entry) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name} is empty: run scripts/fuzz.sh {name} and keep its minimised corpus"
        );
        let regressions = files(&fuzz_dir().join("regressions").join(name));
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            if std::panic::catch_unwind(|| entry(&data)).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that panic: {failures:#?}");
}
