//! Solver answers kept by content hash, so an unchanged environment is not proven again.
//!
//! A key covers everything an answer depends on: the solver's version, the
//! schema (the caller's salt), the environment and the text of every policy
//! that can apply to it. A hit is therefore exactly the answer a new proof
//! would give; an unreadable or stale entry is a miss, never an error.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    salt: String,
}

impl Cache {
    /// Answers under `dir` (e.g. `.cairn/cache/proof`); `salt` is mixed into
    /// every key (the schema's text, so a schema change invalidates all).
    pub fn new(dir: impl Into<PathBuf>, salt: &str) -> Self {
        Self {
            dir: dir.into(),
            salt: salt.to_owned(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn key(&self, parts: &[&str]) -> String {
        let mut h = Sha256::new();
        for part in std::iter::once(self.salt.as_str()).chain(parts.iter().copied()) {
            // Length-prefixed, so no two part lists hash the same input.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    pub(crate) fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let text = std::fs::read(self.path(key)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Stores an answer; a cache that cannot be written only costs time on the
    /// next run, so a failure here is not the proof's failure.
    pub(crate) fn put<T: serde::Serialize>(&self, key: &str, value: &T) {
        let path = self.path(key);
        let Some(parent) = path.parent() else { return };
        let Ok(bytes) = serde_json::to_vec(value) else {
            return;
        };
        if std::fs::create_dir_all(parent).is_err() {
            return;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}
