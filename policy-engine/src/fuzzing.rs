//! Entry points for the fuzz targets in `fuzz/` and for the replay of their corpus by the normal
//! test suite. Each takes arbitrary bytes, must never panic, and checks what must hold of any
//! input it accepts.
//!
//! Several inputs are packed into one by a line holding only `%%` between them.

use std::path::Path;

use ed25519_dalek::SigningKey;

use crate::bundle::{self, FileEntry, Manifest, dsse};
use crate::load;
use crate::policy_tests;
use crate::problem::SourceFile;

fn sections(text: &str) -> Vec<&str> {
    text.split("\n%%\n").collect()
}

/// A Cedar schema, policy files and (when there are three sections or more, the last) a test
/// suite: parsed, validated, formatted and run, with every problem rendered with its location.
/// Formatting a file that parses must give text that parses to as many policies.
pub fn policy_sources(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parts = sections(text);
    let schema = SourceFile::new(Path::new("schema.cedarschema"), parts[0]);
    let (policy_parts, suite) = match parts.len() {
        0 | 1 => (&parts[..0], None),
        2 => (&parts[1..], None),
        n => (&parts[1..n - 1], Some(parts[n - 1])),
    };
    let files: Vec<SourceFile> = policy_parts
        .iter()
        .enumerate()
        .map(|(i, t)| SourceFile::new(Path::new(&format!("p{i}.cedar")), *t))
        .collect();
    let mut loaded = load::parse(Some(schema), files.clone());
    load::validate(&mut loaded);
    let (formatted, _) = crate::format::format_files(&files);
    for f in &formatted {
        let before = load::parse(None, vec![f.file.clone()]);
        let after = load::parse(
            None,
            vec![SourceFile::new(
                Path::new("formatted.cedar"),
                f.formatted.as_str(),
            )],
        );
        assert_eq!(
            before.policies.len(),
            after.policies.len(),
            "formatting changed the number of policies:\n{}\n---\n{}",
            f.file.text,
            f.formatted
        );
    }
    let mut problems = std::mem::take(&mut loaded.problems);
    if let Some(suite) = suite {
        let name = if suite.trim_start().starts_with(['{', '[']) {
            "suite.json"
        } else {
            "suite.yaml"
        };
        let file = SourceFile::new(Path::new(name), suite);
        // No entity files exist under this directory: a suite naming one gets a problem.
        let suites =
            policy_tests::load_source(&file, Path::new("/nonexistent"), loaded.schema.as_ref());
        let run = policy_tests::run(&loaded, &suites);
        let _ = policy_tests::report::json(&run);
        let _ = policy_tests::report::junit(&run);
        let _ = policy_tests::report::github(&run);
        problems.extend(suites.problems);
    }
    for p in &problems {
        let _ = p.to_string();
        let _ = p.position();
        let _ = p.line_col();
    }
}

/// A policy bundle, verified with the harness key. The first byte chooses how the rest is read:
/// as bundle bytes (0); as members, each `path` then a newline then its data, to be packed and
/// signed with a manifest made to match (1); or as a manifest followed by members, signed as
/// given (2). A bundle that verifies must parse, and must have the digest of its payload.
pub fn bundle(data: &[u8]) {
    let key = SigningKey::from_bytes(&[9; 32]);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = match mode % 3 {
        0 => rest.to_vec(),
        m => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let mut parts = sections(text);
            let payload = if m == 2 {
                Some(parts.remove(0).as_bytes().to_vec())
            } else {
                None
            };
            let members: Vec<(String, Vec<u8>)> = parts
                .iter()
                .map(|p| {
                    let (path, body) = p.split_once('\n').unwrap_or((p, ""));
                    (path.to_string(), body.as_bytes().to_vec())
                })
                .collect();
            let payload = payload.unwrap_or_else(|| manifest_for(&members));
            let envelope = dsse::sign(bundle::PAYLOAD_TYPE, &payload, &key);
            let Ok(envelope) = bundle::envelope_member(&envelope) else {
                return;
            };
            let mut all = vec![(bundle::ENVELOPE_MEMBER.to_string(), envelope)];
            all.extend(members);
            match bundle::pack(&all, 0) {
                Ok(b) => b,
                Err(_) => return,
            }
        }
    };
    if let Ok(v) = bundle::verify(&bytes, &key.verifying_key()) {
        assert!(v.digest.starts_with("sha256:"));
        let mut loaded = load::parse(Some(v.schema), v.policies);
        load::validate(&mut loaded);
    }
}

fn manifest_for(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let manifest = Manifest {
        format: bundle::FORMAT.into(),
        version: "fuzz".into(),
        source_commit: "0".repeat(40),
        source_repository: None,
        created: "1970-01-01T00:00:00Z".into(),
        files: members
            .iter()
            .map(|(path, data)| FileEntry::of(path, data))
            .collect(),
        policies: Vec::new(),
        tests: None,
    };
    serde_json::to_vec_pretty(&manifest).unwrap_or_default()
}
