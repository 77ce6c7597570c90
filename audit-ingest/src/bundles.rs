//! Signed policy bundles to `bundles` and `policies` rows, so a decision's `bundle` digest leads
//! by a join to the commit, the signer and the text of every policy that decided it. Each bundle
//! is verified against the given keys before anything of it is written; one that fails goes to
//! `_quarantine` with why, and none of its rows are written.

use ed25519_dalek::VerifyingKey;
use policy_engine::bundle::{self, MAX_BUNDLE_BYTES, VerifiedBundle};
use sha2::{Digest, Sha256};

use crate::error::IngestError;
use crate::ingest::{ALREADY_INGESTED, IngestSummary, Options, RETRIED, SourceSummary};
use crate::job::{Job, Sources};
use crate::json::{date_of, timestamp_ms};
use crate::reject::Reason;
use crate::source::Listing;
use lake::schema::{BundleColumns, PolicyColumns, Table};

/// A bundle that verified, as rows.
struct BundleRows {
    date: String,
    bundle: BundleColumns,
    policies: PolicyColumns,
}

/// Verifies `bytes` with whichever of `keys` signed it; the error says why none did.
fn verify_any(bytes: &[u8], keys: &[(String, VerifyingKey)]) -> Result<VerifiedBundle, String> {
    let mut reasons = Vec::new();
    for (_, key) in keys {
        match bundle::verify(bytes, key) {
            Ok(v) => return Ok(v),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    reasons.dedup();
    Err(if reasons.is_empty() {
        "no public key was given".into()
    } else {
        reasons.join("; ")
    })
}

/// The rows of a verified bundle: one for the bundle, one per policy with its file, line and
/// text as the bundle holds them.
fn rows(v: &VerifiedBundle, source: &str) -> Result<BundleRows, String> {
    let m = &v.manifest;
    let created = timestamp_ms(&m.created)
        .ok_or_else(|| format!("the manifest's `created` `{}` is not a time", m.created))?;
    let mut b = BundleColumns::new(1);
    b.created.append_value(created);
    b.digest.append_value(&v.digest);
    b.version.append_value(&m.version);
    b.source_commit.append_value(&m.source_commit);
    b.source_repository
        .append_option(m.source_repository.as_deref());
    b.key_id.append_value(&v.key_id);
    b.policy_count.append_value(m.policies.len() as i64);
    b.schema_sha256.append_option(
        m.files
            .iter()
            .find(|f| f.path == bundle::SCHEMA_MEMBER)
            .map(|f| f.sha256.as_str()),
    );
    b.test_cases
        .append_option(m.tests.as_ref().map(|t| t.cases as i64));
    b.tests_passed
        .append_option(m.tests.as_ref().map(|t| t.passed as i64));
    b.coverage_percent
        .append_option(m.tests.as_ref().map(|t| i64::from(t.coverage_percent)));
    b.manifest.append_option(serde_json::to_string(m).ok());
    b.ingest_source.append_value(source);
    b.ingest_record.append_value(1);
    b.row_done();

    // Parsed again only to place each policy in its file; the signature already vouched for
    // the text, and `PolicyEngine` is not needed here.
    let loaded = policy_engine::load::parse(None, v.policies.clone());
    let mut p = PolicyColumns::new(loaded.policies.len());
    for (i, info) in loaded.policies.iter().enumerate() {
        let text = info.text();
        let (line, _) = info.file.line_col(info.span.offset());
        p.bundle_created.append_value(created);
        p.bundle.append_value(&v.digest);
        p.policy_id.append_value(&info.id);
        p.effect.append_value(match info.effect {
            policy_engine::cedar_policy::Effect::Permit => "permit",
            policy_engine::cedar_policy::Effect::Forbid => "forbid",
        });
        p.file.append_value(&*info.file.name);
        p.line.append_value(line as i64);
        p.text_sha256
            .append_value(hex::encode(Sha256::digest(text.as_bytes())));
        p.text.append_value(text);
        p.ingest_source.append_value(source);
        p.ingest_record.append_value(i as i64 + 1);
        p.row_done();
    }
    Ok(BundleRows {
        date: date_of(created),
        bundle: b,
        policies: p,
    })
}

/// Ingests signed policy bundles: a bundle file, a directory of them (`*.tar`), or
/// `s3://bucket/prefix`.
pub fn run(
    spec: &str,
    keys: Vec<(String, VerifyingKey)>,
    opts: &Options,
    rt: &tokio::runtime::Handle,
) -> Result<IngestSummary, IngestError> {
    let mut filter = opts.filter.clone();
    filter.bundles = true;
    let Listing { objects, skipped } = rt.block_on(crate::source::list(spec, &filter))?;
    let mut job = Job::open(
        &[Table::Bundles, Table::Policies],
        Sources::Objects,
        opts,
        rt,
    )?;
    job.summary.skipped = skipped;
    opts.progress
        .start(objects.len(), objects.iter().map(|o| o.size).sum());
    for obj in &objects {
        let mut s = SourceSummary {
            source: obj.uri.clone(),
            ..Default::default()
        };
        if job.unchanged(obj).is_some() {
            s.skipped = Some(ALREADY_INGESTED.into());
            job.summary.sources.push(s);
            continue;
        }
        let mut q = job.sink();
        let uri = &obj.uri;
        // A bundle that fails is not recorded as ingested: the next run (with the right key,
        // say) reads it again, and its quarantine row de-duplicates.
        let mut done = None;
        match crate::source::read_bounded(obj, MAX_BUNDLE_BYTES, rt) {
            Err(e) => {
                q.add(uri, 0, Reason::UnreadableInput, &format!("{uri}: {e}"), b"");
                s.error = Some(format!("{e}; {RETRIED}"));
            }
            Ok((bytes, checksum)) => {
                s.read = 1;
                job.summary.bytes_read += checksum.1;
                opts.progress.advance(1, checksum.1);
                match verify_any(&bytes, &keys).and_then(|v| rows(&v, uri)) {
                    Err(why) => {
                        let detail = format!("{uri}: the bundle was not ingested: {why}");
                        q.add(uri, 1, Reason::BundleRejected, &detail, b"");
                    }
                    Ok(mut r) => {
                        let policies = r.policies.len() as u64;
                        let batch = r.bundle.finish().map_err(IngestError::arrow)?;
                        s.count(job.add(Table::Bundles, &r.date, batch)?);
                        let batch = r.policies.finish().map_err(IngestError::arrow)?;
                        job.add(Table::Policies, &r.date, batch)?;
                        s.kinds.insert("bundles".into(), 1);
                        s.kinds.insert("policies".into(), policies);
                        done = Some(checksum);
                    }
                }
            }
        }
        job.quarantine(&mut q)?;
        s.quarantined = q.counts;
        if let Some(checksum) = done {
            job.ingested(obj, &s, checksum, None);
        }
        job.summary.sources.push(s);
    }
    job.finish()
}
