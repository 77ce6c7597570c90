//! Where the gateway keeps evidence outside its record directory: the record log's checkpoints
//! (`records.checkpoint_dir`) and the bundles it loaded (`policy.deposit_dir`). A local
//! directory, or an S3 prefix (a bucket with Object Lock keeps every object for its retention
//! period). What is put there is a new file or object, never replaced: checkpoints are named
//! `checkpoint-<key>-<size>` (the newest is the largest), bundles `<sha256 of the bundle>.tar`.

use std::path::PathBuf;
use std::sync::Arc;

use decision_record::checkpoint::{Checkpoint, MAX_CHECKPOINT_BYTES};
use ed25519_dalek::VerifyingKey;
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
    /// A local directory, or `s3://bucket/prefix` with credentials, Region and endpoint from the
    /// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL`; or the container or instance role; not profiles).
    pub fn open(location: &str) -> Result<Self, String> {
        let Some((bucket, prefix)) = parse_s3(location) else {
            return Ok(Self::Local(PathBuf::from(location)));
        };
        // A SHA-256 checksum on every put, which S3 requires of writes to a bucket with Object
        // Lock; short timeouts and one retry, since the record writer waits for a checkpoint.
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
            .with_retry(object_store::RetryConfig {
                max_retries: 1,
                retry_timeout: std::time::Duration::from_secs(5),
                ..Default::default()
            })
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_connect_timeout(std::time::Duration::from_secs(2))
                    .with_timeout(std::time::Duration::from_secs(5)),
            );
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

    /// Stores `bytes` as a new `name`. A name already there is never replaced (a WORM store
    /// could not anyway): holding the same bytes it is what was asked; holding others, an error.
    pub fn put(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let taken = |by_other: bool| {
            if by_other {
                Err(std::io::Error::other(format!(
                    "`{name}` is there already with other contents (names are what they hold: it was altered)"
                )))
            } else {
                Ok(())
            }
        };
        match self {
            Self::Local(dir) => {
                let target = dir.join(name);
                if target.exists() {
                    return taken(std::fs::read(&target)? != bytes);
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
                let put = on_own_thread(|| {
                    rt.block_on(async {
                        match store.put_opts(&path, payload, opts).await {
                            Ok(_) => Ok(false),
                            Err(object_store::Error::AlreadyExists { .. }) => {
                                let kept = store.get(&path).await?.bytes().await?;
                                Ok(kept.as_ref() != bytes)
                            }
                            Err(e) => Err(e),
                        }
                    })
                })
                .map_err(std::io::Error::other)?;
                taken(put.map_err(|e| std::io::Error::other(e.to_string()))?)
            }
        }
    }

    /// The newest checkpoint of `keys` (the largest `checkpoint-<key>-<size>` directly under the
    /// store), verified, and saying the size its name says.
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
                    // Directly under the prefix: another gateway's checkpoints below it are not
                    // this log's.
                    let listed = store
                        .list_with_delimiter(Some(&ObjectPath::from(prefix.as_str())))
                        .await
                        .map_err(|e| format!("{url}: {e}"))?;
                    let names: Vec<String> = listed
                        .objects
                        .iter()
                        .filter_map(|m| m.location.filename().map(str::to_string))
                        .collect();
                    let Some(name) = decision_record::checkpoint::pick_newest(
                        names.iter().map(String::as_str),
                        keys,
                    ) else {
                        return Ok(None);
                    };
                    let Some(meta) = listed
                        .objects
                        .iter()
                        .find(|m| m.location.filename() == Some(name))
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
                    decision_record::checkpoint::check_named(name, &cp)
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
        std::thread::Builder::new()
            .name("cairn-evidence-store".into())
            .spawn_scoped(s, f)
            .map_err(|e| format!("cannot start the evidence store's thread: {e}"))?
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
