//! The stand-in's CloudTrail delivery: log files per Region under
//! `AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`, and a digest per Region under
//! `CloudTrail-Digest/` listing each log file's SHA-256 and chained to the Region's previous
//! digest, signed (SHA256withRSA over the signing string of the CloudTrail user guide) with the
//! simulated digest key. The signature goes where a local copy keeps it (`<digest>.sig`), and the
//! public key beside the trail (`<root>.public-keys.json`) in the shape `aws cloudtrail
//! list-public-keys` prints.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ACCOUNT;

/// A fixed key for the demo's simulated digests; it signs nothing else.
const DIGEST_KEY_PEM: &str = include_str!("simulated-digest-key.pem");
const TRAIL: &str = "cairn-demo-trail";
const HOME_REGION: &str = "us-east-1";

/// What was written.
pub struct Written {
    pub root: PathBuf,
    pub log_files: usize,
    pub digests: usize,
    pub public_keys: PathBuf,
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

fn put(root: &Path, key: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = root.join(key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes)
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The newest digest already delivered for `region` (a run before this one): its key, the
/// SHA-256 of its content and its signature, so this run's digest continues the chain.
fn previous_digest(root: &Path, dir_key: &str) -> Option<(String, String, String)> {
    let region_dir = root.join(dir_key);
    let mut found: Vec<PathBuf> = Vec::new();
    let mut stack = vec![region_dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".json.gz") {
                found.push(p);
            }
        }
    }
    let newest = found
        .into_iter()
        .max_by_key(|p| p.file_name().map(|n| n.to_owned()))?;
    let raw = std::fs::read(&newest).ok()?;
    let mut content = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(raw.as_slice()),
        &mut content,
    )
    .ok()?;
    let signature = std::fs::read_to_string(format!("{}.sig", newest.display())).ok()?;
    let key = newest
        .strip_prefix(root)
        .ok()?
        .to_string_lossy()
        .replace('\\', "/");
    Some((
        key,
        hex::encode(Sha256::digest(&content)),
        signature.trim().to_string(),
    ))
}

/// Writes `events` (Region, record) under `root` as CloudTrail delivers them.
pub fn write(root: &Path, events: &[(String, Value)]) -> std::io::Result<Written> {
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(DIGEST_KEY_PEM).map_err(other)?;
    let public_der = key
        .to_public_key()
        .to_pkcs1_der()
        .map_err(other)?
        .as_bytes()
        .to_vec();
    let fingerprint = hex::encode(&Sha256::digest(&public_der)[..16]);
    let signer = SigningKey::<Sha256>::new(key);
    let now = chrono::Utc::now();
    let mut by_region: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for (region, e) in events {
        by_region.entry(region.as_str()).or_default().push(e);
    }
    let (mut log_files, mut digests) = (0, 0);
    for (region, records) in by_region {
        let day = now.format("%Y/%m/%d");
        let stamp = now.format("%Y%m%dT%H%MZ");
        let name = format!(
            "{ACCOUNT}_CloudTrail_{region}_{stamp}_{}.json.gz",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let log_key = format!("AWSLogs/{ACCOUNT}/CloudTrail/{region}/{day}/{name}");
        let body = serde_json::to_vec(&json!({ "Records": records }))?;
        put(root, &log_key, &gzip(&body)?)?;
        log_files += 1;
        let times: Vec<&str> = records
            .iter()
            .filter_map(|r| r["eventTime"].as_str())
            .collect();
        let oldest = times.iter().min().copied().unwrap_or_default();
        let newest = times.iter().max().copied().unwrap_or_default();

        let digest_dir = format!("AWSLogs/{ACCOUNT}/CloudTrail-Digest/{region}");
        let previous = previous_digest(root, &digest_dir);
        let end = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let digest_key = format!(
            "{digest_dir}/{day}/{ACCOUNT}_CloudTrail-Digest_{region}_{TRAIL}_{HOME_REGION}_{}.json.gz",
            now.format("%Y%m%dT%H%M%SZ")
        );
        let digest = json!({
            "awsAccountId": ACCOUNT,
            "digestStartTime": (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "digestEndTime": end,
            "digestS3Bucket": "cairn-demo-trail-bucket",
            "digestS3Object": digest_key,
            "digestPublicKeyFingerprint": fingerprint,
            "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": newest,
            "oldestEventTime": oldest,
            "previousDigestS3Bucket": previous.as_ref().map(|_| "cairn-demo-trail-bucket"),
            "previousDigestS3Object": previous.as_ref().map(|p| p.0.clone()),
            "previousDigestHashValue": previous.as_ref().map(|p| p.1.clone()),
            "previousDigestHashAlgorithm": previous.as_ref().map(|_| "SHA-256"),
            "previousDigestSignature": previous.as_ref().map(|p| p.2.clone()),
            "logFiles": [{
                "s3Bucket": "cairn-demo-trail-bucket",
                "s3Object": log_key,
                "hashValue": hex::encode(Sha256::digest(&body)),
                "hashAlgorithm": "SHA-256",
                "newestEventTime": newest,
                "oldestEventTime": oldest,
            }],
        });
        let content = serde_json::to_vec(&digest)?;
        let to_sign = audit_ingest::integrity::signing_string(
            &end,
            "cairn-demo-trail-bucket",
            &digest_key,
            &hex::encode(Sha256::digest(&content)),
            previous.as_ref().map(|p| p.2.as_str()),
        );
        let signature = hex::encode(signer.sign(to_sign.as_bytes()).to_vec());
        put(root, &digest_key, &gzip(&content)?)?;
        put(root, &format!("{digest_key}.sig"), signature.as_bytes())?;
        digests += 1;
    }
    // Beside the trail, not in it: the trail holds only what CloudTrail delivers.
    let public_keys = PathBuf::from(format!("{}.public-keys.json", root.display()));
    let listing = json!({ "PublicKeyList": [{
        "Value": base64::engine::general_purpose::STANDARD.encode(&public_der),
        "ValidityStartTime": "2026-01-01T00:00:00Z",
        "ValidityEndTime": "2036-01-01T00:00:00Z",
        "Fingerprint": fingerprint,
    }]});
    std::fs::write(&public_keys, serde_json::to_vec_pretty(&listing)?)?;
    Ok(Written {
        root: root.to_path_buf(),
        log_files,
        digests,
        public_keys,
    })
}
