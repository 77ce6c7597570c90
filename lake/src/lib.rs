//! The lake: a local directory or `s3://bucket/prefix`, through the `object_store` DataFusion
//! re-exports. Layout: `<table>/date=YYYY-MM-DD/part-<uuidv7>.parquet`, `_manifest/<table>/`
//! for ingested sources, `_quarantine/date=.../` for records that could not be ingested.
//!
//! [`schema`] declares the tables; [`writer_properties`] how their Parquet files are written.
//! The writing half ([`writer::TableWriter`], the ingest [`manifest`]) is behind the `write`
//! feature, which only the ingest enables: reports read the lake with the rest.
//!
//! Every file appears whole or not at all: S3 puts are atomic, and the local store writes to a
//! staging name and renames.

mod error;
pub mod layout;
#[cfg(feature = "write")]
pub mod manifest;
mod parquet_settings;
pub mod resources;
pub mod schema;
#[cfg(feature = "write")]
pub mod writer;

pub use error::LakeError;
pub use parquet_settings::{ROW_GROUP_ROWS, writer_properties};

use std::sync::Arc;

use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use futures::TryStreamExt;

fn store_error(what: &str, source: datafusion::object_store::Error) -> LakeError {
    LakeError::Store {
        what: what.to_string(),
        source,
    }
}

/// A table's Parquet file (not a staging, hidden or underscore file).
fn is_data_file(m: &ObjectMeta) -> bool {
    let name = m.location.filename().unwrap_or("");
    name.ends_with(".parquet") && !name.starts_with('_') && !name.starts_with('.')
}

#[derive(Clone, Debug)]
pub struct Lake {
    pub store: Arc<dyn ObjectStore>,
    /// The lake's root inside the store.
    pub root: Path,
    /// How the user named the lake, for messages.
    pub display: String,
    /// `s3://bucket` or `file:///abs/dir`, for registering the store with DataFusion.
    pub url: String,
}

/// Splits `s3://bucket/prefix` into bucket and prefix.
pub fn parse_s3(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), prefix.trim_matches('/').to_string()))
}

/// An S3 store for `bucket`, configured from the standard `AWS_*` environment (credentials,
/// region, and `AWS_ENDPOINT_URL` for S3-compatible servers; plain http is allowed for those).
pub fn s3_store(bucket: &str) -> Result<Arc<dyn ObjectStore>, LakeError> {
    let mut b = datafusion::object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok();
    if let Some(e) = endpoint {
        if e.starts_with("http://") {
            b = b.with_allow_http(true);
        }
        b = b.with_endpoint(e);
    }
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
        b = b.with_region("us-east-1");
    }
    Ok(Arc::new(b.build().map_err(|e| LakeError::Store {
        what: format!("s3://{bucket}"),
        source: e,
    })?))
}

impl Lake {
    /// Opens (creating a local directory if needed) the lake at `uri`.
    pub fn open(uri: &str) -> Result<Self, LakeError> {
        if let Some((bucket, prefix)) = parse_s3(uri) {
            return Ok(Self {
                store: s3_store(&bucket)?,
                root: Path::from(prefix),
                display: uri.to_string(),
                url: format!("s3://{bucket}"),
            });
        }
        let dir = std::path::Path::new(uri);
        std::fs::create_dir_all(dir).map_err(|source| LakeError::Io {
            what: format!("create the lake directory `{uri}`"),
            source,
        })?;
        let abs = dir.canonicalize().map_err(|source| LakeError::Io {
            what: format!("resolve the lake directory `{uri}`"),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(&abs).map_err(|e| LakeError::Store {
            what: uri.to_string(),
            source: e,
        })?;
        Ok(Self {
            store: Arc::new(store),
            root: Path::from(""),
            display: uri.to_string(),
            url: format!("file://{}", abs.display()),
        })
    }

    /// Opens a lake that must already exist, for reading: nothing is created, and a path that
    /// names no lake (a typo) is an error rather than an empty lake.
    pub async fn open_existing(uri: &str) -> Result<Self, LakeError> {
        let missing = || LakeError::NotFound {
            lake: uri.to_string(),
        };
        if parse_s3(uri).is_none() {
            return match std::path::Path::new(uri).is_dir() {
                true => Self::open(uri),
                false => Err(missing()),
            };
        }
        let lake = Self::open(uri)?;
        // An S3 prefix exists when something is stored under it.
        let root = lake.root.clone();
        let prefix = (!root.as_ref().is_empty()).then_some(&root);
        let first = lake.store.list(prefix).try_next().await;
        match first.map_err(|e| store_error(&format!("list {uri}"), e))? {
            Some(_) => Ok(lake),
            None => Err(missing()),
        }
    }

    pub fn path(&self, rel: &str) -> Path {
        if self.root.as_ref().is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.root.as_ref()))
        }
    }

    /// Where a table's partition lives.
    pub fn partition(&self, table: &str, date: &str) -> Path {
        self.path(&format!("{table}/date={date}"))
    }

    /// Every object under `prefix`, sorted by location.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, LakeError> {
        let mut files: Vec<ObjectMeta> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| store_error(&format!("list {prefix}"), e))?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    /// Data files of a table (all partitions), or of one partition.
    pub async fn data_files(
        &self,
        table: &str,
        date: Option<&str>,
    ) -> Result<Vec<ObjectMeta>, LakeError> {
        let prefix = match date {
            Some(d) => self.partition(table, d),
            None => self.path(table),
        };
        let mut files = self.list(&prefix).await?;
        files.retain(is_data_file);
        Ok(files)
    }

    /// Whether a table has any data file, listing only until the first.
    pub async fn has_data_file(&self, table: &str) -> Result<bool, LakeError> {
        let prefix = self.path(table);
        let mut listing = self.store.list(Some(&prefix));
        while let Some(m) = listing
            .try_next()
            .await
            .map_err(|e| store_error(&format!("list {prefix}"), e))?
        {
            if is_data_file(&m) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<(), LakeError> {
        self.store
            .put(path, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| LakeError::Store {
                what: format!("write {path}"),
                source: e,
            })
    }

    pub async fn get(&self, path: &Path) -> Result<Option<bytes::Bytes>, LakeError> {
        match self.store.get(path).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| LakeError::Store {
                what: format!("read {path}"),
                source: e,
            }),
            Err(datafusion::object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(LakeError::Store {
                what: format!("read {path}"),
                source: e,
            }),
        }
    }

    pub async fn delete(&self, path: &Path) -> Result<(), LakeError> {
        self.store.delete(path).await.map_err(|e| LakeError::Store {
            what: format!("delete {path}"),
            source: e,
        })
    }

    /// Removes staging files that a killed local write left in a partition (`<name>#<digits>`,
    /// which object_store renames into place when a put completes). Readers that list the
    /// directory themselves (pyarrow, DuckDB globs) would otherwise trip over them. Only files
    /// older than ten minutes go, so a write still in flight elsewhere is not disturbed. Returns
    /// how many.
    pub fn remove_stale_staging(&self, table: &str, date: &str) -> usize {
        let Some(root) = self.url.strip_prefix("file://") else {
            return 0; // object stores other than the local one have no staging files
        };
        let stale = |m: &std::fs::Metadata| {
            m.is_file()
                && m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(600))
        };
        let staging = |name: &str| {
            name.split_once('#').is_some_and(|(_, suffix)| {
                !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())
            })
        };
        let dir = std::path::Path::new(root)
            .join(table)
            .join(format!("date={date}"));
        let Ok(files) = std::fs::read_dir(dir) else {
            return 0;
        };
        files
            .flatten()
            .filter(|f| {
                staging(&f.file_name().to_string_lossy())
                    && f.metadata().is_ok_and(|m| stale(&m))
                    && std::fs::remove_file(f.path()).is_ok()
            })
            .count()
    }

    /// The `date=` partitions of a table.
    pub async fn partitions(&self, table: &str) -> Result<Vec<String>, LakeError> {
        let mut dates: Vec<String> = self
            .data_files(table, None)
            .await?
            .iter()
            .filter_map(|m| {
                m.location
                    .parts()
                    .find_map(|p| p.as_ref().strip_prefix("date=").map(str::to_string))
            })
            .collect();
        dates.sort();
        dates.dedup();
        Ok(dates)
    }
}
