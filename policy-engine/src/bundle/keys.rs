//! Ed25519 key pairs in standard PEM files: the private key as PKCS#8 (`BEGIN PRIVATE KEY`), the
//! public key as SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`), so OpenSSL and other tools read them.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{PolicyError, Result};

/// The file names `cairn keys generate` writes.
pub const PRIVATE_KEY_FILE: &str = "signing.key";
pub const PUBLIC_KEY_FILE: &str = "signing.pub";

/// A short, stable name for a public key: `ed25519:` and the first 16 hex digits of the SHA-256
/// of its 32 raw bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("ed25519:{}", &hex::encode(digest)[..16])
}

/// Writes a new key pair into `dir` (created if needed). Never overwrites: if either file exists
/// nothing is written. The private key file is created with mode 0600.
pub fn generate(dir: &Path) -> Result<(PathBuf, PathBuf, String)> {
    let private = dir.join(PRIVATE_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    for p in [&private, &public] {
        if p.exists() {
            return Err(PolicyError::KeyExists { path: p.clone() });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| PolicyError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    // PKCS#8 v1 (RFC 8410), without the optional public key: the v2 form with it is refused by
    // OpenSSL 3 and Python's `cryptography`.
    let private_pem = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| PolicyError::Input(format!("cannot encode private key: {e}")))?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| PolicyError::Input(format!("cannot encode public key: {e}")))?;
    write_new(&private, private_pem.as_bytes(), 0o600)?;
    write_new(&public, public_pem.as_bytes(), 0o644)?;
    Ok((private, public, key_id(&key.verifying_key())))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            PolicyError::KeyExists {
                path: path.to_path_buf(),
            }
        } else {
            PolicyError::Write {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|source| PolicyError::Write {
            path: path.to_path_buf(),
            source,
        })
}

pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let text = crate::error::read_to_string(path)?;
    parse_signing_key(&text).map_err(|reason| PolicyError::InvalidKey {
        path: path.to_path_buf(),
        kind: "private",
        reason,
    })
}

pub(crate) fn parse_signing_key(pem: &str) -> std::result::Result<SigningKey, String> {
    if pem.contains("BEGIN PUBLIC KEY") {
        return Err("this is a public key; signing needs the private key (`signing.key`)".into());
    }
    SigningKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())
}

pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey> {
    let text = crate::error::read_to_string(path)?;
    parse_verifying_key(&text).map_err(|reason| PolicyError::InvalidKey {
        path: path.to_path_buf(),
        kind: "public",
        reason,
    })
}

pub(crate) fn parse_verifying_key(pem: &str) -> std::result::Result<VerifyingKey, String> {
    if pem.contains("PRIVATE KEY") {
        return Err("this is a private key; pass the public key (`signing.pub`) instead".into());
    }
    VerifyingKey::from_public_key_pem(pem).map_err(|e| e.to_string())
}

/// The public key as PEM, for printing or writing beside a generated dev key.
pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_writes_pem_pair_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public, id) = generate(dir.path()).unwrap();
        let sk = load_signing_key(&private).unwrap();
        let vk = load_verifying_key(&public).unwrap();
        assert_eq!(sk.verifying_key(), vk);
        assert_eq!(key_id(&vk), id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            generate(dir.path()),
            Err(PolicyError::KeyExists { .. })
        ));
    }

    #[test]
    fn private_key_is_plain_pkcs8_v1() {
        let dir = tempfile::tempdir().unwrap();
        let (private, _, _) = generate(dir.path()).unwrap();
        let pem = std::fs::read_to_string(private).unwrap();
        let der = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
        // SEQUENCE { INTEGER 0, AlgorithmIdentifier { 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }
        assert_eq!(der.len(), 48);
        assert_eq!(&der[..5], &[0x30, 0x2e, 0x02, 0x01, 0x00]);
    }

    #[test]
    fn swapped_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public, _) = generate(dir.path()).unwrap();
        let e = load_verifying_key(&private).unwrap_err().to_string();
        assert!(e.contains("private key"), "{e}");
        let e = load_signing_key(&public).unwrap_err().to_string();
        assert!(e.contains("public key"), "{e}");
    }
}
