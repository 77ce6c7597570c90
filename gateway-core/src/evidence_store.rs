//! Where the gateway keeps evidence outside its record directory: the record log's checkpoints
//! (`records.checkpoint_dir`) and the bundles it loaded (`policy.deposit_dir`). A local
//! directory, or an S3 prefix (a bucket with Object Lock keeps every object for its retention
//! period). What is put there is a new file or object, never replaced: checkpoints are named
//! `checkpoint-<size>` (the newest is the largest), bundles `<sha256 of the manifest>.tar`.

use std::path::PathBuf;
use std::sync::Arc;

use decision_record::checkpoint::{Checkpoint, FILE_PREFIX, MAX_CHECKPOINT_BYTES};
use ed25519_dalek::VerifyingKey;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

#[derive(Clone)]
pub enum EvidenceStore {
    Local(PathBuf),
    S3 {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        url: String,
        /// The writer is a plain thread: it runs the store's requests on the gateway's runtime.
        rt: tokio::runtime::Handle,
    },
}

impl std::fmt::Debug for EvidenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// `s3://bucket/prefix` as (bucket, prefix without slashes at its ends).
pub fn parse_s3(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), prefix.trim_matches('/').to_string()))
}

impl EvidenceStore {
    /// A local directory, or `s3://bucket/prefix` with credentials, Region and endpoint
    /// (`AWS_ENDPOINT_URL`) from the environment, as the AWS SDKs read them.
    pub fn open(location: &str) -> Result<Self, String> {
        let Some((bucket, prefix)) = parse_s3(location) else {
            return Ok(Self::Local(PathBuf::from(location)));
        };
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&bucket);
        if let Ok(e) =
            std::env::var("AWS_ENDPOINT_URL_S3").or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        {
            if e.starts_with("http://") {
                b = b.with_allow_http(true);
            }
            b = b.with_endpoint(e);
        }
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            b = b.with_region("us-east-1");
        }
        let store = b.build().map_err(|e| format!("{location}: {e}"))?;
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| format!("{location}: an S3 store needs the gateway's runtime"))?;
        Ok(Self::S3 {
            store: Arc::new(store),
            prefix,
            url: location.to_string(),
            rt,
        })
    }

    pub fn display(&self) -> String {
        match self {
            Self::Local(dir) => dir.display().to_string(),
            Self::S3 { url, .. } => url.clone(),
        }
    }

    fn object(prefix: &str, name: &str) -> ObjectPath {
        if prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{prefix}/{name}"))
        }
    }

    /// Stores `bytes` as `name` unless an object of that name exists (then it is kept: S3 with
    /// Object Lock could not replace it anyway, and the name says what it holds).
    pub fn put(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Local(dir) => {
                if dir.join(name).exists() {
                    return Ok(());
                }
                write_whole(dir, name, bytes)
            }
            Self::S3 {
                store, prefix, rt, ..
            } => {
                let path = Self::object(prefix, name);
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                let payload = bytes::Bytes::copy_from_slice(bytes).into();
                match on_own_thread(|| rt.block_on(store.put_opts(&path, payload, opts)))
                    .map_err(std::io::Error::other)?
                {
                    Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                }
            }
        }
    }

    /// The newest checkpoint (the largest `checkpoint-<size>`), verified with `keys`.
    pub fn newest(&self, keys: &[VerifyingKey]) -> Result<Option<(String, Checkpoint)>, String> {
        match self {
            Self::Local(dir) => {
                if !dir.exists() {
                    return Ok(None);
                }
                decision_record::checkpoint::newest(dir, keys)
                    .map(|found| found.map(|(p, c)| (p.display().to_string(), c)))
                    .map_err(|e| e.to_string())
            }
            Self::S3 {
                store,
                prefix,
                url,
                rt,
            } => on_own_thread(|| {
                rt.block_on(async {
                    let listed: Vec<_> = store
                        .list(Some(&ObjectPath::from(prefix.as_str())))
                        .try_collect()
                        .await
                        .map_err(|e| format!("{url}: {e}"))?;
                    let Some(meta) = listed
                        .into_iter()
                        .filter(|m| {
                            m.location
                                .filename()
                                .and_then(|n| n.strip_prefix(FILE_PREFIX))
                                .is_some_and(|n| {
                                    n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit())
                                })
                        })
                        .max_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()))
                    else {
                        return Ok(None);
                    };
                    let shown = format!("{url}/{}", meta.location.filename().unwrap_or_default());
                    if meta.size > MAX_CHECKPOINT_BYTES as u64 {
                        return Err(format!("{shown}: {} bytes is not a checkpoint", meta.size));
                    }
                    let bytes = store
                        .get(&meta.location)
                        .await
                        .map_err(|e| format!("{shown}: {e}"))?
                        .bytes()
                        .await
                        .map_err(|e| format!("{shown}: {e}"))?;
                    let cp = Checkpoint::open(&String::from_utf8_lossy(&bytes), keys)
                        .map_err(|e| format!("{shown}: {e}"))?;
                    Ok(Some((shown, cp)))
                })
            })?,
        }
    }
}

/// Runs `f` on a thread of its own and waits: the store's requests block on the runtime, which
/// must not happen on one of the runtime's own threads (the gateway calls in from async code).
fn on_own_thread<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .map_err(|_| "the evidence store's request failed".to_string())
    })
}

/// Writes `dir/name` whole: a synced temporary file renamed into place, then the directory
/// synced, so a reader sees all of it or nothing.
pub fn write_whole(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}
