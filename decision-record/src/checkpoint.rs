//! Signed checkpoints of the record log, so that a log cut short at its end is detected: the
//! chain alone cannot tell a shortened log from a young one. A checkpoint says "the log had
//! `size` records and the newest one hashed to `hash`", signed by the gateway's record key, and
//! is kept somewhere the record directory's owner cannot rewrite.
//!
//! The text is a C2SP tlog-checkpoint (<https://c2sp.org/tlog-checkpoint>) inside a C2SP signed
//! note (<https://c2sp.org/signed-note>) with an Ed25519 signature, so standard note tools read
//! it. One deviation, documented in `docs/decision-record.md`: the third line is the hash of the
//! record at `seq == size` (the head of the hash chain, which commits to every earlier record
//! through `prev`), not the root of a Merkle tree.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature type byte of Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;
/// A note's signature lines start with an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Notes larger than this are refused before they are parsed.
pub const MAX_CHECKPOINT_BYTES: usize = 64 * 1024;
/// Checkpoint files are `checkpoint-<key: 16 hex>-<size: 20 digits>`: each is written once and
/// never replaced (a WORM store allows that); a log's newest is the largest of its key's. The key
/// in the name keeps a rotated key's checkpoints, and another gateway's, apart.
pub const FILE_PREFIX: &str = "checkpoint-";

fn key_hex(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The file name of the checkpoint of a log of `size` records signed by `key`.
pub fn file_name(key: &VerifyingKey, size: u64) -> String {
    format!("{FILE_PREFIX}{}-{size:020}", key_hex(key))
}

/// The key (16 hex) and size a checkpoint file name says.
pub fn parse_name(name: &str) -> Option<(&str, u64)> {
    let rest = name.strip_prefix(FILE_PREFIX)?;
    let (key, size) = rest.split_once('-')?;
    let hexy = key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = size.len() == 20 && size.bytes().all(|b| b.is_ascii_digit());
    (hexy && digits).then(|| size.parse().ok().map(|n| (key, n)))?
}

/// Of checkpoint file `names`, the one of the largest size signed by one of `keys`.
pub fn pick_newest<'a>(
    names: impl IntoIterator<Item = &'a str>,
    keys: &[VerifyingKey],
) -> Option<&'a str> {
    let ours: Vec<String> = keys.iter().map(key_hex).collect();
    names
        .into_iter()
        .filter_map(|n| parse_name(n).map(|(k, size)| (n, k, size)))
        .filter(|(_, k, _)| ours.iter().any(|o| o == k))
        .max_by_key(|(_, _, size)| *size)
        .map(|(n, _, _)| n)
}

/// A checkpoint must say the size its name says: an older note copied under a larger name would
/// otherwise pass for the newest.
pub fn check_named(name: &str, cp: &Checkpoint) -> Result<(), CheckpointError> {
    match parse_name(name) {
        Some((_, size)) if size == cp.size => Ok(()),
        _ => Err(CheckpointError::Misnamed {
            name: name.to_string(),
            size: cp.size,
        }),
    }
}

/// What a checkpoint vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log: `cairn.decision-log/<record key id>`.
    pub origin: String,
    /// Records in the log (the newest one's `seq`).
    pub size: u64,
    /// Lowercase hex SHA-256 of the newest record, as its line holds it.
    pub hash: String,
    /// When it was written (RFC 3339), an extension line `time <...>`.
    pub time: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("the checkpoint is {0} bytes, over the {MAX_CHECKPOINT_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("not a signed note: {0}")]
    Malformed(String),
    #[error("no signature by a given key (signed by {found}; given {given})")]
    UnknownKey { found: String, given: String },
    #[error("the signature by `{0}` does not verify: the checkpoint was altered")]
    BadSignature(String),
    #[error(
        "the checkpoint's origin `{origin}` is not the name of the key that signed it (`{signer}`)"
    )]
    WrongOrigin { origin: String, signer: String },
    #[error("`{0}` cannot be read: {1}")]
    Read(String, String),
    #[error(
        "`{name}` holds the checkpoint of {size} records: a note renamed or copied over another"
    )]
    Misnamed { name: String, size: u64 },
}

/// The note key name (and checkpoint origin) of a record signing key.
pub fn origin_of(key: &VerifyingKey) -> String {
    let id = hex::encode(&Sha256::digest(key.as_bytes())[..8]);
    format!("cairn.decision-log/ed25519:{id}")
}

/// The signed-note key id: the first four bytes of SHA-256(name || '\n' || type || key).
fn note_key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Signs `text` (which must end with a newline) as a note by `name`.
fn sign_note(text: &str, name: &str, key: &SigningKey) -> String {
    let sig: Signature = key.sign(text.as_bytes());
    let mut blob = note_key_id(name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&sig.to_bytes());
    format!("{text}\n{SIG_PREFIX}{name} {}\n", STANDARD.encode(blob))
}

/// Opens a note: the text, if a signature of one of `keys` (under the name `name_of(key)`)
/// verifies. Signatures by other keys are ignored, as the signed-note spec says; a failing
/// signature by a known key rejects the note.
fn open_note<'a>(
    note: &'a str,
    keys: &[VerifyingKey],
    name_of: impl Fn(&VerifyingKey) -> String,
) -> Result<&'a str, CheckpointError> {
    if note.len() > MAX_CHECKPOINT_BYTES {
        return Err(CheckpointError::TooLarge(note.len()));
    }
    let malformed = |m: &str| CheckpointError::Malformed(m.to_string());
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| malformed("no blank line before the signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(malformed(
            "the last signature line does not end with a newline",
        ));
    }
    let mut found = Vec::new();
    for line in sigs.lines() {
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| malformed("a signature line does not start with an em dash"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| malformed("a signature line has no signature"))?;
        let blob = STANDARD
            .decode(b64)
            .map_err(|_| malformed("a signature is not base64"))?;
        if blob.len() < 5 {
            return Err(malformed("a signature is too short"));
        }
        found.push(name.to_string());
        for key in keys {
            let expected = name_of(key);
            if expected != name || blob[..4] != note_key_id(name, key) {
                continue;
            }
            let sig = Signature::from_slice(&blob[4..])
                .map_err(|_| CheckpointError::BadSignature(name.to_string()))?;
            return key
                .verify_strict(text.as_bytes(), &sig)
                .map(|()| text)
                .map_err(|_| CheckpointError::BadSignature(name.to_string()));
        }
    }
    Err(CheckpointError::UnknownKey {
        found: if found.is_empty() {
            "no one".into()
        } else {
            found.join(", ")
        },
        given: keys.iter().map(origin_of).collect::<Vec<_>>().join(", "),
    })
}

impl Checkpoint {
    /// The signed note, ready to store; `None` when `hash` is not a hex SHA-256 (never the case
    /// for a record's hash).
    pub fn sign(&self, key: &SigningKey) -> Option<String> {
        let root = hex::decode(&self.hash).ok().filter(|r| r.len() == 32)?;
        let text = format!(
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.size,
            STANDARD.encode(root),
            self.time
        );
        Some(sign_note(&text, &self.origin, key))
    }

    /// Reads a checkpoint signed by one of `keys`.
    pub fn open(note: &str, keys: &[VerifyingKey]) -> Result<Self, CheckpointError> {
        let text = open_note(note, keys, origin_of)?;
        let malformed = |m: String| CheckpointError::Malformed(m);
        let mut lines = text.lines();
        let origin = lines
            .next()
            .ok_or_else(|| malformed("no origin line".into()))?;
        // The note verified under a key's name; the checkpoint must be of that key's log.
        if !keys.iter().any(|k| origin_of(k) == origin) {
            return Err(CheckpointError::WrongOrigin {
                origin: origin.to_string(),
                signer: keys.iter().map(origin_of).collect::<Vec<_>>().join(", "),
            });
        }
        let size = lines
            .next()
            .and_then(|l| l.parse::<u64>().ok())
            .ok_or_else(|| malformed("the second line is not a record count".into()))?;
        let root = lines
            .next()
            .and_then(|l| STANDARD.decode(l).ok())
            .filter(|r| r.len() == 32)
            .ok_or_else(|| malformed("the third line is not a base64 SHA-256 hash".into()))?;
        let time = lines
            .find_map(|l| l.strip_prefix("time "))
            .unwrap_or_default()
            .to_string();
        Ok(Self {
            origin: origin.to_string(),
            size,
            hash: hex::encode(root),
            time,
        })
    }
}

/// The newest checkpoint of `keys` in a checkpoint store directory, verified; `None` when there
/// is none. A newest file that does not verify, or says another size than its name, is an
/// error, not skipped: someone may have put it there to hide a shortened log.
pub fn newest(
    dir: &std::path::Path,
    keys: &[VerifyingKey],
) -> Result<Option<(std::path::PathBuf, Checkpoint)>, CheckpointError> {
    let read_err =
        |e: std::io::Error| CheckpointError::Read(dir.display().to_string(), e.to_string());
    let mut names: Vec<String> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(read_err)? {
        names.push(
            e.map_err(read_err)?
                .file_name()
                .to_string_lossy()
                .to_string(),
        );
    }
    let Some(name) = pick_newest(names.iter().map(String::as_str), keys) else {
        return Ok(None);
    };
    let path = dir.join(name);
    let cp = read_file(&path, keys)?;
    check_named(name, &cp)?;
    Ok(Some((path, cp)))
}

/// Reads and verifies one checkpoint file (bounded by [`MAX_CHECKPOINT_BYTES`]).
pub fn read_file(
    path: &std::path::Path,
    keys: &[VerifyingKey],
) -> Result<Checkpoint, CheckpointError> {
    use std::io::Read;
    let read_err =
        |e: std::io::Error| CheckpointError::Read(path.display().to_string(), e.to_string());
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read_err)?
        .take(MAX_CHECKPOINT_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    Checkpoint::open(&text, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: origin_of(&key().verifying_key()),
            size: 42,
            hash: "ab".repeat(32),
            time: "2026-12-03T12:00:00Z".into(),
        }
    }

    /// The example of Go's `golang.org/x/mod/sumdb/note` documentation (and the C2SP spec's
    /// implementations): same key, same text, the same signature line byte for byte.
    #[test]
    fn signs_notes_as_the_reference_implementation_does() {
        let skey = STANDARD
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .unwrap();
        assert_eq!(skey[0], ALG_ED25519);
        let seed: [u8; 32] = skey[1..].try_into().unwrap();
        let key = SigningKey::from_bytes(&seed);
        let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
        let note = sign_note(text, "PeterNeumann", &key);
        assert_eq!(
            note,
            format!(
                "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            )
        );
        assert_eq!(
            hex::encode(note_key_id("PeterNeumann", &key.verifying_key())),
            "c74f20a3"
        );
        let opened = open_note(&note, &[key.verifying_key()], |_| "PeterNeumann".into());
        assert_eq!(opened, Ok(text));
    }

    #[test]
    fn a_checkpoint_round_trips_and_any_change_is_refused() {
        let cp = checkpoint();
        let note = cp.sign(&key()).unwrap();
        assert!(note.starts_with("cairn.decision-log/ed25519:"));
        assert_eq!(Checkpoint::open(&note, &[key().verifying_key()]), Ok(cp));
        let shorter = note.replacen("\n42\n", "\n41\n", 1);
        assert!(matches!(
            Checkpoint::open(&shorter, &[key().verifying_key()]),
            Err(CheckpointError::BadSignature(_))
        ));
        let other = SigningKey::from_bytes(&[6; 32]).verifying_key();
        assert!(matches!(
            Checkpoint::open(&note, &[other]),
            Err(CheckpointError::UnknownKey { .. })
        ));
        assert!(matches!(
            Checkpoint::open("nonsense", &[key().verifying_key()]),
            Err(CheckpointError::Malformed(_))
        ));
    }

    #[test]
    fn the_newest_is_the_largest_of_the_keys_own_and_must_say_its_name() {
        let (k, other) = (
            key().verifying_key(),
            SigningKey::from_bytes(&[6; 32]).verifying_key(),
        );
        let names = [
            file_name(&k, 9),
            file_name(&k, 10),
            file_name(&other, 99),
            "checkpoint-x".into(),
        ];
        assert_eq!(
            pick_newest(names.iter().map(String::as_str), &[k]),
            Some(names[1].as_str())
        );
        let cp = checkpoint();
        assert!(check_named(&file_name(&k, 42), &cp).is_ok());
        assert!(matches!(
            check_named(&file_name(&k, 43), &cp),
            Err(CheckpointError::Misnamed { .. })
        ));
    }
}
