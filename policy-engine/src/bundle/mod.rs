//! Signed policy bundles: one deterministic tar file holding a DSSE envelope around the manifest,
//! the schema and the policies. The format is specified in `docs/bundle.md`.
//!
//! Layout, in this order: `bundle.dsse.json` (the signed manifest), `schema.cedarschema`,
//! `policies/<path>.cedar` sorted by path. Every tar header is normalised (mode 0644, uid/gid 0,
//! no owner names, mtime = the manifest's creation time), so the same inputs give the same bytes.

pub mod dsse;
pub mod keys;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use miette::Diagnostic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::load::LoadedPolicies;
use crate::policy_tests::TestRun;
use crate::problem::SourceFile;

pub const ENVELOPE_MEMBER: &str = "bundle.dsse.json";
pub const SCHEMA_MEMBER: &str = "schema.cedarschema";
pub const POLICIES_PREFIX: &str = "policies/";
pub const PAYLOAD_TYPE: &str = "application/vnd.cairn.policy-bundle.manifest+json";
pub const FORMAT: &str = "cairn.policy-bundle/v1";
/// Bundles are small; anything larger than this is refused before it is parsed.
pub const MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;

/// What the signature vouches for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: String,
    pub source_commit: String,
    /// Where the policies' repository is (a URL without credentials), when it is known.
    /// Optional and omitted when absent, so bundles made before it still verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_repository: Option<String>,
    /// RFC 3339, UTC, whole seconds.
    pub created: String,
    /// Every other member of the bundle, sorted by path.
    pub files: Vec<FileEntry>,
    /// Policy ids and the member each one is in.
    pub policies: Vec<PolicyEntry>,
    /// Evidence that the policy tests passed when the bundle was made.
    pub tests: Option<TestEvidence>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

impl FileEntry {
    /// The manifest's entry for a member's bytes.
    pub fn of(path: &str, data: &[u8]) -> Self {
        Self {
            path: path.to_string(),
            sha256: sha256_hex(data),
            size: data.len() as u64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    pub id: String,
    pub file: String,
    pub effect: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TestEvidence {
    pub cases: usize,
    pub passed: usize,
    pub coverage_percent: u32,
}

/// Who made the bundle and from what, supplied by the caller (the CLI reads git).
#[derive(Debug, Clone)]
pub struct BundleMeta {
    pub version: String,
    pub source_commit: String,
    pub source_repository: Option<String>,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Error, Diagnostic)]
pub enum BundleError {
    #[error("bundle is {size} bytes, over the {max}-byte limit")]
    #[diagnostic(code(cairn::bundle::too_large))]
    TooLarge { size: u64, max: u64 },

    #[error("bundle is truncated or is not a tar archive: {reason}")]
    #[diagnostic(
        code(cairn::bundle::corrupt),
        help("the file was cut short or altered; rebuild it with `cairn policy bundle`")
    )]
    Corrupt { reason: String },

    #[error("bundle has no `{ENVELOPE_MEMBER}` member")]
    #[diagnostic(
        code(cairn::bundle::no_envelope),
        help("this is not a Cairn policy bundle, or it was truncated")
    )]
    NoEnvelope,

    #[error("`{ENVELOPE_MEMBER}`: {reason}")]
    #[diagnostic(code(cairn::bundle::envelope))]
    Envelope { reason: String },

    #[error("signature: {reason}")]
    #[diagnostic(code(cairn::bundle::signature))]
    Signature { reason: String, help: String },

    #[error("manifest field `{field}`: {reason}")]
    #[diagnostic(code(cairn::bundle::manifest))]
    Manifest { field: String, reason: String },

    #[error("member `{member}`: {reason}")]
    #[diagnostic(
        code(cairn::bundle::member),
        help("the bundle was altered after it was signed; rebuild it from the reviewed policies")
    )]
    Member { member: String, reason: String },

    #[error("bundle bytes differ from the canonical layout at offset {offset} ({place})")]
    #[diagnostic(
        code(cairn::bundle::layout),
        help("the bundle was altered after it was signed; rebuild it from the reviewed policies")
    )]
    Layout { offset: usize, place: String },

    #[error("policies did not pass review: {reason}")]
    #[diagnostic(
        code(cairn::bundle::refused),
        help("run `cairn policy validate` and `cairn policy test` and fix what they report")
    )]
    NotReviewed { reason: String },
}

impl BundleError {
    pub fn help_text(&self) -> Option<&str> {
        match self {
            Self::Signature { help, .. } => Some(help),
            _ => None,
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A bundle that verified: its manifest, and its members as source files.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub manifest: Manifest,
    /// `sha256:` and the hex SHA-256 of the signed manifest bytes; names this bundle everywhere.
    pub digest: String,
    pub key_id: String,
    pub schema: SourceFile,
    pub policies: Vec<SourceFile>,
}

/// Packs reviewed policies. Refuses when the policies have errors or a test run failed.
pub fn create(
    loaded: &LoadedPolicies,
    tests: Option<&TestRun>,
    meta: &BundleMeta,
    key: &SigningKey,
) -> Result<Vec<u8>, BundleError> {
    let errors = loaded.problems.iter().filter(|p| p.is_error()).count();
    if errors > 0 {
        return Err(BundleError::NotReviewed {
            reason: format!("{errors} validation error(s)"),
        });
    }
    if let Some(run) = tests
        && !run.ok()
    {
        return Err(BundleError::NotReviewed {
            reason: format!("{} policy test(s) failed", run.failed),
        });
    }
    let Some(schema) = &loaded.schema_file else {
        return Err(BundleError::NotReviewed {
            reason: "no schema".into(),
        });
    };
    let root = loaded
        .sources
        .as_ref()
        .map(|s| s.root.clone())
        .unwrap_or_default();
    let mut members: BTreeMap<String, &str> = BTreeMap::new();
    let mut member_of_file: BTreeMap<&str, String> = BTreeMap::new();
    for f in &loaded.files {
        let path = Path::new(&*f.name);
        let rel = path.strip_prefix(&root).unwrap_or(path);
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let member = format!("{POLICIES_PREFIX}{rel}");
        member_of_file.insert(&f.name, member.clone());
        members.insert(member, &f.text);
    }
    let schema_text = cedar_schema_text(schema)?;
    let mut files = vec![FileEntry::of(SCHEMA_MEMBER, schema_text.as_bytes())];
    files.extend(
        members
            .iter()
            .map(|(path, text)| FileEntry::of(path, text.as_bytes())),
    );
    let mut policies: Vec<PolicyEntry> = loaded
        .policies
        .iter()
        .map(|p| PolicyEntry {
            id: p.id.clone(),
            file: member_of_file
                .get(&*p.file.name)
                .cloned()
                .unwrap_or_default(),
            effect: match p.effect {
                cedar_policy::Effect::Permit => "permit".into(),
                cedar_policy::Effect::Forbid => "forbid".into(),
            },
        })
        .collect();
    policies.sort_by(|a, b| a.id.cmp(&b.id));
    let manifest = Manifest {
        format: FORMAT.into(),
        version: meta.version.clone(),
        source_commit: meta.source_commit.clone(),
        source_repository: meta.source_repository.clone(),
        created: meta.created.to_rfc3339_opts(SecondsFormat::Secs, true),
        files,
        policies,
        tests: tests.map(|r| TestEvidence {
            cases: r.outcomes.len(),
            passed: r.passed,
            coverage_percent: r.coverage.percent().floor() as u32,
        }),
    };
    let payload = serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::Envelope {
        reason: e.to_string(),
    })?;
    let envelope = dsse::sign(PAYLOAD_TYPE, &payload, key);
    let mut ordered: Vec<(String, Vec<u8>)> = vec![
        (ENVELOPE_MEMBER.into(), envelope_member(&envelope)?),
        (SCHEMA_MEMBER.into(), schema_text.into_bytes()),
    ];
    ordered.extend(members.into_iter().map(|(p, t)| (p, t.as_bytes().to_vec())));
    pack(&ordered, meta.created.timestamp().max(0) as u64)
}

/// The schema in the Cedar schema language, which is what the bundle's schema member holds: a
/// JSON schema is converted, so the gateway reads every bundle the same way.
fn cedar_schema_text(schema: &SourceFile) -> Result<String, BundleError> {
    if !schema.name.ends_with(".json") {
        return Ok(schema.text.to_string());
    }
    let not_reviewed = |e: String| BundleError::NotReviewed {
        reason: format!("the JSON schema `{}` cannot be converted: {e}", schema.name),
    };
    cedar_policy::SchemaFragment::from_json_str(&schema.text)
        .map_err(|e| not_reviewed(e.to_string()))?
        .to_cedarschema()
        .map_err(|e| not_reviewed(e.to_string()))
}

/// Writes members into a tar archive with normalised headers.
pub(crate) fn pack(members: &[(String, Vec<u8>)], mtime: u64) -> Result<Vec<u8>, BundleError> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    for (path, data) in members {
        let mut header = tar::Header::new_ustar();
        header.set_path(path).map_err(|e| BundleError::Member {
            member: path.clone(),
            reason: format!("cannot be stored: {e}"),
        })?;
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder
            .append(&header, data.as_slice())
            .map_err(|e| BundleError::Corrupt {
                reason: e.to_string(),
            })?;
    }
    builder.into_inner().map_err(|e| BundleError::Corrupt {
        reason: e.to_string(),
    })
}

/// Reads a bundle file's bytes, refusing one over [`MAX_BUNDLE_BYTES`] (checked while reading,
/// so a file that grows after its size was read is refused too).
pub fn read_file(path: &Path) -> Result<Vec<u8>, crate::PolicyError> {
    use std::io::Read;
    let read_error = |source| crate::PolicyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(crate::PolicyError::Input(format!(
            "`{}`: {}",
            path.display(),
            BundleError::TooLarge {
                size: bytes.len() as u64,
                max: MAX_BUNDLE_BYTES
            }
        )));
    }
    Ok(bytes)
}

/// Reads a bundle file (bounded by [`MAX_BUNDLE_BYTES`]) and verifies it.
pub fn verify_file(path: &Path, key: &VerifyingKey) -> Result<VerifiedBundle, crate::PolicyError> {
    let bytes = read_file(path)?;
    verify(&bytes, key).map_err(|e| crate::PolicyError::Bundle {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

/// Verifies a bundle: the archive is whole, the envelope is signed by `key`, the manifest is
/// well formed, every member matches its digest and size, there are no extra members, and the
/// bytes are exactly the canonical layout (so no byte anywhere can change unnoticed).
pub fn verify(bytes: &[u8], key: &VerifyingKey) -> Result<VerifiedBundle, BundleError> {
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge {
            size: bytes.len() as u64,
            max: MAX_BUNDLE_BYTES,
        });
    }
    let members = unpack(bytes)?;
    let envelope_bytes = members
        .iter()
        .find(|(p, _)| p == ENVELOPE_MEMBER)
        .map(|(_, d)| d)
        .ok_or(BundleError::NoEnvelope)?;
    let envelope: dsse::Envelope =
        serde_json::from_slice(envelope_bytes).map_err(|e| BundleError::Envelope {
            reason: format!("not a DSSE envelope: {e}"),
        })?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(BundleError::Envelope {
            reason: format!(
                "`payloadType` is `{}`, expected `{PAYLOAD_TYPE}`",
                envelope.payload_type
            ),
        });
    }
    let ours = keys::key_id(key);
    let payload = dsse::verify(&envelope, key).map_err(|e| match e {
        dsse::EnvelopeError::OtherKey(ids) => BundleError::Signature {
            reason: format!(
                "the bundle is signed by key {}, not by the given key {ours}",
                ids.join(", ")
            ),
            help: "pass the public key that belongs to the signing key (`signing.pub` beside it)"
                .into(),
        },
        dsse::EnvelopeError::BadSignature => BundleError::Signature {
            reason: format!(
                "the signature in `{ENVELOPE_MEMBER}` does not verify with key {ours}: the manifest or the signature was altered"
            ),
            help: "rebuild the bundle from the reviewed policies".into(),
        },
        other => BundleError::Envelope {
            reason: other.to_string(),
        },
    })?;
    // The envelope is not covered by any digest: only its one canonical spelling is accepted,
    // so no byte of it (a key id, the base64 alphabet, whitespace) can change unnoticed.
    let [signature] = envelope.signatures.as_slice() else {
        return Err(BundleError::Envelope {
            reason: format!(
                "{} signatures; a bundle carries exactly one",
                envelope.signatures.len()
            ),
        });
    };
    let canonical = envelope_member(&dsse::Envelope {
        payload: STANDARD.encode(&payload),
        payload_type: PAYLOAD_TYPE.to_string(),
        signatures: vec![dsse::EnvelopeSignature {
            keyid: ours.clone(),
            sig: signature.sig.clone(),
        }],
    })?;
    if !dsse::canonical_signature(&signature.sig) || canonical != *envelope_bytes {
        let offset = first_difference(&canonical, envelope_bytes);
        return Err(BundleError::Envelope {
            reason: format!(
                "the envelope is not in its canonical form (first difference at byte {offset}: a key id, encoding or whitespace was changed)"
            ),
        });
    }
    let manifest: Manifest =
        serde_json::from_slice(&payload).map_err(|e| BundleError::Manifest {
            field: "(payload)".into(),
            reason: e.to_string(),
        })?;
    if manifest.format != FORMAT {
        return Err(BundleError::Manifest {
            field: "format".into(),
            reason: format!("is `{}`, expected `{FORMAT}`", manifest.format),
        });
    }
    let created =
        DateTime::parse_from_rfc3339(&manifest.created).map_err(|e| BundleError::Manifest {
            field: "created".into(),
            reason: format!("`{}` is not RFC 3339: {e}", manifest.created),
        })?;

    let by_path: BTreeMap<&str, &Vec<u8>> = members.iter().map(|(p, d)| (p.as_str(), d)).collect();
    for entry in &manifest.files {
        let data = by_path
            .get(entry.path.as_str())
            .ok_or_else(|| BundleError::Member {
                member: entry.path.clone(),
                reason: "listed in the manifest but missing from the bundle".into(),
            })?;
        if data.len() as u64 != entry.size {
            return Err(BundleError::Member {
                member: entry.path.clone(),
                reason: format!("{} bytes, the manifest says {}", data.len(), entry.size),
            });
        }
        let digest = sha256_hex(data);
        if digest != entry.sha256 {
            return Err(BundleError::Member {
                member: entry.path.clone(),
                reason: format!("SHA-256 is {digest}, the manifest says {}", entry.sha256),
            });
        }
    }
    for (path, _) in &members {
        if path != ENVELOPE_MEMBER && !manifest.files.iter().any(|f| &f.path == path) {
            return Err(BundleError::Member {
                member: path.clone(),
                reason: "is not listed in the signed manifest".into(),
            });
        }
    }
    if !manifest.files.iter().any(|f| f.path == SCHEMA_MEMBER) {
        return Err(BundleError::Manifest {
            field: "files".into(),
            reason: format!("does not list `{SCHEMA_MEMBER}`"),
        });
    }
    // Headers, padding and the end-of-archive blocks are not covered by the digests above;
    // rebuilding the canonical bytes and comparing covers them.
    let canonical = pack(&members, created.timestamp().max(0) as u64)?;
    if canonical != bytes {
        let offset = first_difference(&canonical, bytes);
        let place = if bytes.len() < canonical.len() && offset == bytes.len() {
            format!(
                "the bundle is truncated: {} bytes, expected {}",
                bytes.len(),
                canonical.len()
            )
        } else {
            describe_offset(&members, offset)
        };
        return Err(BundleError::Layout { offset, place });
    }

    let text = |path: &str, data: &[u8]| -> Result<SourceFile, BundleError> {
        let t = std::str::from_utf8(data).map_err(|_| BundleError::Member {
            member: path.to_string(),
            reason: "is not UTF-8 text".into(),
        })?;
        Ok(SourceFile::new(Path::new(path), t))
    };
    let mut schema = None;
    let mut policies = Vec::new();
    for (path, data) in &members {
        if path == SCHEMA_MEMBER {
            schema = Some(text(path, data)?);
        } else if path.starts_with(POLICIES_PREFIX) {
            policies.push(text(path, data)?);
        }
    }
    let schema = schema.ok_or_else(|| BundleError::Member {
        member: SCHEMA_MEMBER.into(),
        reason: "missing".into(),
    })?;
    Ok(VerifiedBundle {
        digest: format!("sha256:{}", sha256_hex(&payload)),
        key_id: ours,
        manifest,
        schema,
        policies,
    })
}

/// The bytes of the envelope member, as `create` writes it and `verify` expects it.
pub(crate) fn envelope_member(envelope: &dsse::Envelope) -> Result<Vec<u8>, BundleError> {
    let mut bytes = serde_json::to_vec_pretty(envelope).map_err(|e| BundleError::Envelope {
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The first offset at which two byte strings differ (the shorter one's length if one is a
/// prefix of the other).
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// Names the member whose header or data holds a byte offset.
fn describe_offset(members: &[(String, Vec<u8>)], offset: usize) -> String {
    let mut pos = 0usize;
    for (path, data) in members {
        let header_end = pos + 512;
        let data_end = header_end + data.len();
        let padded_end = header_end + data.len().div_ceil(512) * 512;
        if offset < header_end {
            return format!("in the tar header of `{path}`");
        }
        if offset < data_end {
            return format!("in the data of `{path}`");
        }
        if offset < padded_end {
            return format!("in the padding after `{path}`");
        }
        pos = padded_end;
    }
    "after the last member".into()
}

/// Walks the archive's 512-byte headers to say which member a tar error is about: a header
/// whose checksum does not match (a flipped byte), or data cut short (truncation).
fn locate_tar_fault(bytes: &[u8]) -> Option<String> {
    let octal = |field: &[u8]| -> Option<u64> {
        let text = std::str::from_utf8(field).ok()?;
        let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
        u64::from_str_radix(text, 8).ok()
    };
    let mut pos = 0usize;
    let mut last = None;
    while pos + 512 <= bytes.len() {
        let header = &bytes[pos..pos + 512];
        if header.iter().all(|b| *b == 0) {
            return None;
        }
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_end]).into_owned();
        let sum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(*b)
                }
            })
            .sum();
        if octal(&header[148..156]) != Some(sum) {
            return Some(format!(
                "the tar header of `{name}` (at byte {pos}) was altered: its checksum does not match"
            ));
        }
        let size = octal(&header[124..136])?;
        let end = pos as u64 + 512 + size.div_ceil(512) * 512;
        if end > bytes.len() as u64 {
            return Some(format!(
                "member `{name}` is cut short: the bundle is truncated at byte {}",
                bytes.len()
            ));
        }
        last = Some(name);
        pos = usize::try_from(end).ok()?;
    }
    // No end-of-archive block: cut short.
    Some(match last {
        Some(name) => format!(
            "the bundle is truncated after member `{name}` (at byte {})",
            bytes.len()
        ),
        None => format!("the bundle is truncated at byte {}", bytes.len()),
    })
}

fn unpack(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
    let corrupt = |e: std::io::Error| BundleError::Corrupt {
        reason: match locate_tar_fault(bytes) {
            Some(place) => format!("{place} ({e})"),
            None => e.to_string(),
        },
    };
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry
            .path()
            .map_err(corrupt)?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BundleError::Member {
                member: path,
                reason: "is not a regular file".into(),
            });
        }
        let size = entry.size();
        if size > MAX_BUNDLE_BYTES {
            return Err(BundleError::Member {
                member: path,
                reason: format!("declares {size} bytes"),
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut data).map_err(corrupt)?;
        if data.len() as u64 != size {
            return Err(BundleError::Corrupt {
                reason: format!("member `{path}` is cut short"),
            });
        }
        if out.iter().any(|(p, _): &(String, Vec<u8>)| p == &path) {
            return Err(BundleError::Member {
                member: path,
                reason: "appears twice".into(),
            });
        }
        out.push((path, data));
    }
    if out.is_empty() {
        return Err(BundleError::Corrupt {
            reason: "no members".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse;

    const POLICY: &str = r#"@id("users-may-read")
permit (principal, action == Action::"read", resource);
"#;

    fn bundle(schema_name: &str, schema: &str) -> (Vec<u8>, SigningKey) {
        let key = SigningKey::from_bytes(&[7; 32]);
        let loaded = parse(
            Some(SourceFile::new(Path::new(schema_name), schema)),
            vec![SourceFile::new(Path::new("p.cedar"), POLICY)],
        );
        assert!(!loaded.has_errors(), "{:?}", loaded.problems);
        let meta = BundleMeta {
            version: "v1".into(),
            source_commit: "unknown".into(),
            source_repository: None,
            created: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
        };
        (create(&loaded, None, &meta, &key).unwrap(), key)
    }

    const SCHEMA: &str =
        "entity User;\nentity Doc;\naction read appliesTo { principal: User, resource: Doc };\n";

    #[test]
    fn every_byte_of_the_envelope_is_covered() {
        let (good, key) = bundle("schema.cedarschema", SCHEMA);
        let vk = key.verifying_key();
        assert!(verify(&good, &vk).is_ok());
        // The envelope is the first member: its data starts after the first header.
        let members = unpack(&good).unwrap();
        let envelope_len = members[0].1.len();
        for i in 512..512 + envelope_len {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(
                verify(&bad, &vk).is_err(),
                "byte {} of the envelope",
                i - 512
            );
        }
    }

    #[test]
    fn a_json_schema_is_packed_in_the_cedar_schema_language() {
        let json = r#"{"": {"entityTypes": {"User": {}, "Doc": {}},
            "actions": {"read": {"appliesTo": {"principalTypes": ["User"], "resourceTypes": ["Doc"]}}}}}"#;
        let (bytes, key) = bundle("schema.cedarschema.json", json);
        let verified = verify(&bytes, &key.verifying_key()).unwrap();
        let engine = crate::PolicyEngine::from_bundle(verified);
        assert!(engine.is_ok(), "{:?}", engine.err());
    }
}
