//! CloudTrail's own integrity, checked offline: the digest files CloudTrail delivers beside the
//! logs (`AWSLogs/<account>/CloudTrail-Digest/<region>/YYYY/MM/DD/*.json.gz`) are verified
//! against AWS's public keys, each log file against the SHA-256 its digest records, and the
//! digests against each other through `previousDigestSignature`. This follows the documented
//! custom validation (the digest file structure and data signing string of the CloudTrail user
//! guide, as the AWS CLI's `validate-logs` implements them) on a copy, local or on S3.
//!
//! Where a digest's signature comes from: its S3 object metadata (`x-amz-meta-signature`), a
//! sidecar `<digest>.json.gz.sig` beside a local copy, or the `previousDigestSignature` of the
//! digest after it. Its origin needs no trust: only AWS's private key makes a signature that
//! verifies with AWS's public key.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::IngestError;
use crate::source::{Filter, Location, SourceObject};

/// A digest file is small (an hour's file list); anything larger is not one.
const MAX_DIGEST_BYTES: u64 = 16 * 1024 * 1024;
/// What a listing keeps of digests' sidecar signatures.
pub const SIGNATURE_SUFFIX: &str = ".sig";

/// A file's integrity. The names are the `integrity` column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Its SHA-256 is the one a digest records, the digest's signature verifies with AWS's key,
    /// and the digest links to the one before it (or starts the chain).
    Verified,
    /// No digest of the copy lists it (validation was off, or its digest was removed).
    NoDigest,
    /// A verified digest records another SHA-256 for it: the file was changed.
    HashMismatch,
    /// Its digest does not verify (altered, moved, signed by no given key, or malformed).
    BadSignature,
    /// Its digest verifies, but the digest before it in the chain is missing or is not the one
    /// it names: digests (and the logs they list) may have been removed before it.
    ChainGap,
    /// Its digest's signature is nowhere in the copy (no S3 metadata, no sidecar, no later
    /// digest naming it), so the digest cannot be checked.
    NoSignature,
    /// A verified digest lists it, and the copy does not have it.
    Missing,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::NoDigest => "no_digest",
            Self::HashMismatch => "hash_mismatch",
            Self::BadSignature => "bad_signature",
            Self::ChainGap => "chain_gap",
            Self::NoSignature => "no_signature",
            Self::Missing => "missing",
        }
    }
}

/// The public keys CloudTrail signs digests with, by fingerprint.
#[derive(Debug, Default, Clone)]
pub struct PublicKeys(HashMap<String, RsaPublicKey>);

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedKey {
    /// Base64 of the DER PKCS#1 RSAPublicKey.
    value: String,
    fingerprint: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum KeyListing {
    Response {
        #[serde(rename = "PublicKeyList")]
        list: Vec<ListedKey>,
    },
    List(Vec<ListedKey>),
}

impl PublicKeys {
    /// Reads the JSON `aws cloudtrail list-public-keys` prints (or its `PublicKeyList` alone).
    pub fn from_json(text: &str) -> Result<Self, String> {
        use base64::Engine;
        let listing: KeyListing = serde_json::from_str(text).map_err(|e| {
            format!("not the JSON of `aws cloudtrail list-public-keys` ({{\"PublicKeyList\": [{{\"Value\", \"Fingerprint\", ...}}]}}): {e}")
        })?;
        let list = match listing {
            KeyListing::Response { list } | KeyListing::List(list) => list,
        };
        let mut out = HashMap::new();
        for (i, k) in list.into_iter().enumerate() {
            let der = base64::engine::general_purpose::STANDARD
                .decode(k.value.trim())
                .map_err(|e| {
                    format!(
                        "key {} ({}): `Value` is not base64: {e}",
                        i + 1,
                        k.fingerprint
                    )
                })?;
            let key = RsaPublicKey::from_pkcs1_der(&der).map_err(|e| {
                format!(
                    "key {} ({}): `Value` is not a PKCS #1 RSA public key: {e}",
                    i + 1,
                    k.fingerprint
                )
            })?;
            out.insert(k.fingerprint.to_ascii_lowercase(), key);
        }
        if out.is_empty() {
            return Err("the key list is empty".into());
        }
        Ok(Self(out))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DigestFile {
    aws_account_id: Option<String>,
    digest_end_time: String,
    digest_s3_bucket: String,
    digest_s3_object: String,
    digest_public_key_fingerprint: String,
    digest_signature_algorithm: Option<String>,
    previous_digest_s3_object: Option<String>,
    previous_digest_hash_value: Option<String>,
    previous_digest_signature: Option<String>,
    #[serde(default)]
    log_files: Vec<LogFileEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogFileEntry {
    s3_bucket: String,
    s3_object: String,
    hash_value: String,
}

/// The part of a key from `AWSLogs/` on: what names a file whatever bucket, prefix or local
/// directory the copy is in.
pub fn delivery_key(path: &str) -> Option<&str> {
    let path = path.strip_prefix("s3://").unwrap_or(path);
    if path.starts_with("AWSLogs/") {
        return Some(path);
    }
    // The last `/AWSLogs/` component: a copy's own directory may contain the word too.
    path.rfind("/AWSLogs/").map(|i| &path[i + 1..])
}

/// The region in a delivery key (`AWSLogs/[o-id/]<account>/CloudTrail[-Digest]/<region>/...`).
fn region_of(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('/').collect();
    parts
        .iter()
        .position(|p| *p == "CloudTrail" || *p == "CloudTrail-Digest")
        .and_then(|i| parts.get(i + 1))
        .map(|s| s.to_string())
}

/// One file's verdict.
#[derive(Debug, Clone)]
pub struct FileCheck {
    pub kind: &'static str,
    /// The file as the copy names it (or, for a missing one, as its digest does).
    pub file: String,
    pub key: String,
    pub state: State,
    pub detail: String,
    /// The digest that decided it (for a digest, itself).
    pub digest: Option<String>,
    pub digest_end: Option<String>,
    pub account_id: Option<String>,
}

/// Every verdict of one check, and the log files' states by delivery key.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<FileCheck>,
    pub logs: HashMap<String, State>,
}

impl Report {
    /// Files that failed a check (`no_digest` is not a failure: validation may be off).
    pub fn failures(counts: &BTreeMap<String, u64>) -> u64 {
        counts
            .iter()
            .filter(|(k, _)| !(k.ends_with(" verified") || k.ends_with(" no_digest")))
            .map(|(_, n)| n)
            .sum()
    }

    /// `counts` for people: `2 digests verified, 4 logs verified, ...`.
    pub fn describe(counts: &BTreeMap<String, u64>) -> String {
        counts
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for f in &self.files {
            *out.entry(format!("{}s {}", f.kind, f.state.as_str()))
                .or_default() += 1;
        }
        out
    }
}

/// A digest as read from the copy.
struct Loaded {
    obj: SourceObject,
    key: String,
    /// The uncompressed bytes, whose SHA-256 the signing string and the next digest name.
    sha256: String,
    parsed: Result<DigestFile, String>,
    /// From the object's metadata or a sidecar.
    signature: Option<String>,
}

/// The SHA-256 of a log file's uncompressed content, streamed.
fn inflated_sha256(obj: &SourceObject, rt: &tokio::runtime::Handle) -> Result<String, String> {
    let (mut reader, _) = crate::source::open(obj, rt).map_err(|e| e.to_string())?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("cannot be read: {e}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The signature S3 keeps in the digest object's metadata (`x-amz-meta-signature`).
async fn metadata_signature(obj: &SourceObject) -> Option<String> {
    use datafusion::object_store::{Attribute, GetOptions};
    let Location::S3 { store, path } = &obj.location else {
        return None;
    };
    let opts = GetOptions {
        head: true,
        ..Default::default()
    };
    let r = store.get_opts(path, opts).await.ok()?;
    r.attributes
        .get(&Attribute::Metadata("signature".into()))
        .map(|v| v.to_string())
}

/// The data signing string of the CloudTrail user guide: end time, the digest's S3 path, the
/// hex SHA-256 of its uncompressed content, and the previous digest's signature (`null` for the
/// first digest of a chain, as AWS's Java and Python validators spell it).
fn string_to_sign(d: &DigestFile, sha256: &str) -> String {
    signing_string(
        &d.digest_end_time,
        &d.digest_s3_bucket,
        &d.digest_s3_object,
        sha256,
        d.previous_digest_signature.as_deref(),
    )
}

/// The data signing string from its parts (public for whoever writes digests, the demo's
/// simulated trail among them).
pub fn signing_string(
    end_time: &str,
    bucket: &str,
    object: &str,
    sha256_hex: &str,
    previous_signature: Option<&str>,
) -> String {
    format!(
        "{end_time}\n{bucket}/{object}\n{sha256_hex}\n{}",
        previous_signature.unwrap_or("null")
    )
}

fn verify_signature(
    d: &DigestFile,
    sha256: &str,
    signature_hex: &str,
    keys: &PublicKeys,
) -> Result<(), String> {
    if let Some(alg) = &d.digest_signature_algorithm
        && alg != "SHA256withRSA"
    {
        return Err(format!("signature algorithm `{alg}` is not SHA256withRSA"));
    }
    let fp = d.digest_public_key_fingerprint.to_ascii_lowercase();
    let key = keys.0.get(&fp).ok_or_else(|| {
        format!(
            "no given public key has the fingerprint {fp} (pass the keys of the digest's period)"
        )
    })?;
    let sig = hex::decode(signature_hex.trim())
        .ok()
        .and_then(|b| Signature::try_from(b.as_slice()).ok())
        .ok_or_else(|| "the signature is not hex-encoded RSA".to_string())?;
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(string_to_sign(d, sha256).as_bytes(), &sig)
        .map_err(|_| {
            format!("the signature does not verify with the key {fp}: the digest or its signature was altered")
        })
}

/// Checks every digest under `spec` and every log file of `logs` (the ingest's listing, made
/// with `filter`): within `--since`/`--until` only, digests of a day either side read too so a
/// chain is followed across the window's edge.
pub fn check(
    spec: &str,
    logs: &[SourceObject],
    keys: &PublicKeys,
    filter: &Filter,
    rt: &tokio::runtime::Handle,
) -> Result<Report, IngestError> {
    let day = chrono::Duration::days(1);
    let listing_filter = Filter {
        digests: true,
        since: filter.since.map(|d| d - day),
        until: filter.until.map(|d| d + day),
        ..Default::default()
    };
    let listing = rt.block_on(crate::source::list(spec, &listing_filter))?;
    let mut sidecars: HashMap<String, SourceObject> = HashMap::new();
    let mut digest_objs = Vec::new();
    for o in listing.objects {
        // A file named on the command line is listed whatever it is: only digests count here.
        if !o.uri.contains("CloudTrail-Digest/") {
            continue;
        }
        match o.uri.strip_suffix(SIGNATURE_SUFFIX) {
            Some(of) => {
                sidecars.insert(of.to_string(), o);
            }
            None => digest_objs.push(o),
        }
    }
    let mut digests: Vec<Loaded> = Vec::new();
    for obj in digest_objs {
        let Some(key) = delivery_key(&obj.uri).map(str::to_string) else {
            continue;
        };
        let (sha256, parsed) = match crate::source::read_bounded(&obj, MAX_DIGEST_BYTES, rt) {
            Ok((bytes, _)) => (
                hex::encode(Sha256::digest(&bytes)),
                serde_json::from_slice::<DigestFile>(&bytes)
                    .map_err(|e| format!("not a CloudTrail digest file: {e}")),
            ),
            Err(e) => (String::new(), Err(e)),
        };
        let mut signature = rt.block_on(metadata_signature(&obj));
        if signature.is_none()
            && let Some(side) = sidecars.get(&obj.uri)
        {
            signature = crate::source::read_bounded(side, 64 * 1024, rt)
                .ok()
                .map(|(b, _)| String::from_utf8_lossy(&b).trim().to_string());
        }
        digests.push(Loaded {
            obj,
            key,
            sha256,
            parsed,
            signature,
        });
    }
    // A digest's signature is also in the digest after it.
    let mut named_by_next: HashMap<String, String> = HashMap::new();
    for d in &digests {
        if let Ok(p) = &d.parsed
            && let (Some(prev), Some(sig)) =
                (&p.previous_digest_s3_object, &p.previous_digest_signature)
            && let Some(k) = delivery_key(prev)
        {
            named_by_next.insert(k.to_string(), sig.clone());
        }
    }
    let by_key: HashMap<&str, &Loaded> = digests.iter().map(|d| (d.key.as_str(), d)).collect();
    // Every copy of a delivery key: two copies of one file must both match its digest.
    let mut present: HashMap<String, Vec<&SourceObject>> = HashMap::new();
    for o in logs {
        if let Some(k) = delivery_key(&o.uri) {
            present.entry(k.to_string()).or_default().push(o);
        }
    }

    let mut report = Report::default();
    let mut log_checks: HashMap<String, FileCheck> = HashMap::new();
    for d in &digests {
        let (state, detail) = digest_state(d, &by_key, &named_by_next, keys);
        let parsed = d.parsed.as_ref().ok();
        let end = parsed.map(|p| p.digest_end_time.clone());
        let account = parsed.and_then(|p| p.aws_account_id.clone());
        if filter.outside_window(&d.key).is_none() {
            report.files.push(FileCheck {
                kind: "digest",
                file: d.obj.uri.clone(),
                key: d.key.clone(),
                state,
                detail: detail.clone(),
                digest: Some(d.key.clone()),
                digest_end: end.clone(),
                account_id: account.clone(),
            });
        }
        let Some(p) = parsed else { continue };
        for log in &p.log_files {
            let Some(lkey) = delivery_key(&log.s3_object).map(str::to_string) else {
                continue;
            };
            if filter.outside_window(&lkey).is_some() {
                continue;
            }
            let copies = present.get(&lkey).map(Vec::as_slice).unwrap_or_default();
            let named = |o: Option<&&SourceObject>| {
                o.map_or_else(
                    || format!("s3://{}/{}", log.s3_bucket, log.s3_object),
                    |o| o.uri.clone(),
                )
            };
            let (lstate, ldetail, file) = match state {
                State::BadSignature | State::NoSignature => (
                    state,
                    format!("its digest {} cannot be trusted: {detail}", d.key),
                    named(copies.first()),
                ),
                _ if copies.is_empty() => (
                    State::Missing,
                    format!(
                        "the digest {} lists it and the copy does not have it",
                        d.key
                    ),
                    named(None),
                ),
                _ => {
                    let mut verdict = None;
                    for o in copies {
                        let bad = match inflated_sha256(o, rt) {
                            Err(e) => Some(format!("the file {e}")),
                            Ok(h) if !h.eq_ignore_ascii_case(&log.hash_value) => Some(format!(
                                "SHA-256 of the uncompressed file is {h}, the digest {} records {}: the file was changed",
                                d.key, log.hash_value
                            )),
                            Ok(_) => None,
                        };
                        if let Some(why) = bad {
                            verdict = Some((State::HashMismatch, why, o.uri.clone()));
                            break;
                        }
                    }
                    verdict.unwrap_or_else(|| {
                        if state == State::ChainGap {
                            (
                                State::ChainGap,
                                format!(
                                    "its hash matches, and its digest's chain is broken: {detail}"
                                ),
                                named(copies.first()),
                            )
                        } else {
                            (State::Verified, String::new(), named(copies.first()))
                        }
                    })
                }
            };
            // A file listed by several digests (a backfill) keeps its best verdict.
            let better = log_checks
                .get(&lkey)
                .is_none_or(|f| lstate == State::Verified && f.state != State::Verified);
            if better {
                log_checks.insert(
                    lkey.clone(),
                    FileCheck {
                        kind: "log",
                        file,
                        key: lkey,
                        state: lstate,
                        detail: ldetail,
                        digest: Some(d.key.clone()),
                        digest_end: end.clone(),
                        account_id: account.clone(),
                    },
                );
            }
        }
    }
    for (lkey, copies) in &present {
        if !log_checks.contains_key(lkey) {
            log_checks.insert(
                lkey.clone(),
                FileCheck {
                    kind: "log",
                    file: copies.first().map(|o| o.uri.clone()).unwrap_or_default(),
                    key: lkey.clone(),
                    state: State::NoDigest,
                    detail: "no digest of the copy lists it: log file validation was off, or its digest was removed".into(),
                    digest: None,
                    digest_end: None,
                    account_id: None,
                },
            );
        }
    }
    for (k, f) in log_checks {
        report.logs.insert(k, f.state);
        report.files.push(f);
    }
    report
        .files
        .sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
    Ok(report)
}

/// A digest's own verdict: its format, location, signature and its link to the one before.
fn digest_state(
    d: &Loaded,
    by_key: &HashMap<&str, &Loaded>,
    named_by_next: &HashMap<String, String>,
    keys: &PublicKeys,
) -> (State, String) {
    let p = match &d.parsed {
        Ok(p) => p,
        Err(e) => return (State::BadSignature, e.clone()),
    };
    if delivery_key(&p.digest_s3_object) != Some(d.key.as_str()) {
        return (
            State::BadSignature,
            format!(
                "the digest names itself {}: it was moved from where CloudTrail delivered it",
                p.digest_s3_object
            ),
        );
    }
    let Some(sig) = d.signature.as_ref().or_else(|| named_by_next.get(&d.key)) else {
        return (
            State::NoSignature,
            format!(
                "no signature: not in S3 metadata (x-amz-meta-signature), no sidecar {}{SIGNATURE_SUFFIX}, no later digest naming it",
                d.obj.uri
            ),
        );
    };
    if let Err(e) = verify_signature(p, &d.sha256, sig, keys) {
        return (State::BadSignature, e);
    }
    if let Some(later) = named_by_next.get(&d.key)
        && d.signature
            .as_ref()
            .is_some_and(|own| !own.eq_ignore_ascii_case(later))
    {
        return (
            State::ChainGap,
            "the next digest names another signature for this one: it is not the digest the chain continues from".into(),
        );
    }
    let Some(prev_sig) = &p.previous_digest_signature else {
        return (State::Verified, String::new());
    };
    let Some(prev_key) = p
        .previous_digest_s3_object
        .as_deref()
        .and_then(delivery_key)
    else {
        return (
            State::ChainGap,
            "it names a previous signature but no previous digest".into(),
        );
    };
    let Some(prev) = by_key.get(prev_key) else {
        return (
            State::ChainGap,
            format!(
                "the previous digest {prev_key} is not in the copy: removed, or outside what was copied"
            ),
        );
    };
    if let Some(h) = &p.previous_digest_hash_value
        && !h.eq_ignore_ascii_case(&prev.sha256)
    {
        return (
            State::ChainGap,
            format!(
                "the previous digest {prev_key} hashes to {}, this digest records {h}: it was replaced",
                prev.sha256
            ),
        );
    }
    if let Some(own) = &prev.signature
        && !own.eq_ignore_ascii_case(prev_sig)
    {
        return (
            State::ChainGap,
            format!(
                "the previous digest {prev_key} carries another signature than this digest records"
            ),
        );
    }
    (State::Verified, String::new())
}

/// The rows of a check for the `cloudtrail_files` table.
pub fn rows(report: &Report, spec: &str) -> lake::schema::CloudTrailFileColumns {
    let now = chrono::Utc::now().timestamp_millis();
    let mut c = lake::schema::CloudTrailFileColumns::new(report.files.len());
    for f in &report.files {
        c.checked_at.append_value(now);
        c.kind.append_value(f.kind);
        c.file.append_value(&f.file);
        c.key.append_value(&f.key);
        c.integrity.append_value(f.state.as_str());
        c.detail.append_value(&f.detail);
        c.digest.append_option(f.digest.as_deref());
        c.digest_end
            .append_option(f.digest_end.as_deref().and_then(crate::json::timestamp_ms));
        c.account_id.append_option(f.account_id.as_deref());
        c.region.append_option(region_of(&f.key));
        c.ingest_source.append_value(spec);
        c.row_done();
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_keys_ignore_bucket_prefix_and_directory() {
        let k = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/21/f.json.gz";
        assert_eq!(delivery_key(&format!("s3://b/prefix/{k}")), Some(k));
        assert_eq!(delivery_key(&format!("/copy/trail/{k}")), Some(k));
        assert_eq!(delivery_key("elsewhere/f.json.gz"), None);
        assert_eq!(region_of(k).as_deref(), Some("us-east-1"));
    }

    #[test]
    fn the_signing_string_is_the_documented_one() {
        let d = DigestFile {
            aws_account_id: None,
            digest_end_time: "2015-08-17T15:01:31Z".into(),
            digest_s3_bucket: "bucket".into(),
            digest_s3_object: "AWSLogs/1/CloudTrail-Digest/r/d.json.gz".into(),
            digest_public_key_fingerprint: "ab".into(),
            digest_signature_algorithm: None,
            previous_digest_s3_object: None,
            previous_digest_hash_value: None,
            previous_digest_signature: None,
            log_files: Vec::new(),
        };
        assert_eq!(
            string_to_sign(&d, "00ff"),
            "2015-08-17T15:01:31Z\nbucket/AWSLogs/1/CloudTrail-Digest/r/d.json.gz\n00ff\nnull"
        );
    }
}
