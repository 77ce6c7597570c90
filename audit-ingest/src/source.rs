//! Where records come from: a file, a directory (recursively), `-` for stdin, or
//! `s3://bucket/prefix`. Objects are read as streams (S3 included), gzip is recognised by its
//! magic bytes, and every object's SHA-256 is computed while it is read.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectStore, ObjectStoreExt};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use crate::error::IngestError;

#[derive(Clone, Debug)]
pub enum Location {
    Local(PathBuf),
    S3 {
        store: Arc<dyn ObjectStore>,
        path: Path,
    },
    Stdin,
}

/// One object to ingest.
#[derive(Clone, Debug)]
pub struct SourceObject {
    /// How it is named in summaries, the manifest and the lake's `ingest_source` column.
    pub uri: String,
    pub location: Location,
    pub size: Option<u64>,
    /// Changes when the object does: the S3 ETag, or the local modification time.
    pub version: Option<String>,
}

/// Which objects a listing keeps.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
    /// Keep policy bundles (`.tar`) instead of record files.
    pub bundles: bool,
    /// Keep CloudTrail digest files (and their `.sig` sidecars) instead of record files.
    pub digests: bool,
}

impl Filter {
    /// Keeps files that look like records, prunes CloudTrail digests, and prunes by the
    /// `YYYY/MM/DD` of the delivery layout (`AWSLogs/[o-org/]<account>/CloudTrail/<region>/...`).
    pub fn keep(&self, key: &str) -> bool {
        self.judge(key).is_none()
    }

    /// Why a listed object is not read, or `None` when it is.
    pub fn judge(&self, key: &str) -> Option<&'static str> {
        let name = key.rsplit('/').next().unwrap_or(key);
        if name.starts_with('.') {
            return Some("a hidden file");
        }
        let lower = name.to_ascii_lowercase();
        if self.bundles {
            return (!lower.ends_with(".tar")).then_some(NOT_BUNDLES);
        }
        let in_digests = key.contains("CloudTrail-Digest/");
        if self.digests {
            let digest =
                in_digests && (lower.ends_with(".json.gz") || lower.ends_with(".json.gz.sig"));
            if !digest {
                return Some("not a CloudTrail digest file");
            }
            return self.outside_window(key);
        }
        if in_digests {
            return Some("a CloudTrail digest file, not events");
        }
        let record_like = [
            ".json",
            ".json.gz",
            ".jsonl",
            ".jsonl.gz",
            ".ndjson",
            ".ndjson.gz",
            ".gz",
        ]
        .iter()
        .any(|s| lower.ends_with(s));
        if !record_like {
            return Some(NOT_RECORDS);
        }
        self.outside_window(key)
    }

    /// Why a key's delivery date (`YYYY/MM/DD`) is not read: outside `--since`/`--until`.
    pub fn outside_window(&self, key: &str) -> Option<&'static str> {
        if self.since.is_none() && self.until.is_none() {
            return None;
        }
        match layout_date(key) {
            Some(d) if self.since.is_some_and(|s| d < s) || self.until.is_some_and(|u| d > u) => {
                Some("outside --since/--until")
            }
            _ => None,
        }
    }
}

/// Why a file is not read as records: its name says it holds something else.
pub const NOT_RECORDS: &str =
    "not a record file (read: .json, .jsonl, .ndjson, optionally .gz; or name the file itself)";

/// Why a file is not read as a policy bundle.
pub const NOT_BUNDLES: &str = "not a policy bundle (read: .tar; or name the file itself)";

/// An object of a listing that is not read, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub source: String,
    pub reason: &'static str,
}

/// What a listing found: the objects to read, and the others.
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<SourceObject>,
    pub skipped: Vec<Skipped>,
}

/// The date in a CloudTrail delivery key: three path parts `YYYY/MM/DD`.
pub fn layout_date(key: &str) -> Option<NaiveDate> {
    let parts: Vec<&str> = key.split('/').collect();
    parts.windows(3).find_map(|w| {
        let (y, m, d) = (w[0], w[1], w[2]);
        if y.len() == 4 && m.len() == 2 && d.len() == 2 {
            NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
        } else {
            None
        }
    })
}

/// Lists the objects of `spec`: every object found is either to be read or skipped with why.
pub async fn list(spec: &str, filter: &Filter) -> Result<Listing, IngestError> {
    if spec == "-" {
        return Ok(Listing {
            objects: vec![SourceObject {
                uri: "stdin".into(),
                location: Location::Stdin,
                size: None,
                version: None,
            }],
            skipped: Vec::new(),
        });
    }
    let mut skipped = Vec::new();
    if let Some((bucket, prefix)) = lake::parse_s3(spec) {
        let store = lake::s3_store(&bucket)?;
        let prefix_path = Path::from(prefix.clone());
        let metas: Vec<_> = store
            .list(if prefix.is_empty() {
                None
            } else {
                Some(&prefix_path)
            })
            .try_collect()
            .await
            .map_err(|e| lake::LakeError::Store {
                what: format!("list {spec}"),
                source: e,
            })?;
        let mut out: Vec<SourceObject> = metas
            .into_iter()
            .filter(|m| match filter.judge(m.location.as_ref()) {
                None => true,
                Some(reason) => {
                    skipped.push(Skipped {
                        source: format!("s3://{bucket}/{}", m.location),
                        reason,
                    });
                    false
                }
            })
            .map(|m| SourceObject {
                uri: format!("s3://{bucket}/{}", m.location),
                location: Location::S3 {
                    store: store.clone(),
                    path: m.location.clone(),
                },
                size: Some(m.size),
                version: m.e_tag.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.uri.cmp(&b.uri));
        return Ok(Listing {
            objects: out,
            skipped,
        });
    }
    let path = FsPath::new(spec);
    let meta = std::fs::metadata(path).map_err(|source| IngestError::Io {
        what: format!("read `{spec}`"),
        source,
    })?;
    let mut files = Vec::new();
    if meta.is_dir() {
        walk(path, &mut files, &mut skipped).map_err(|source| IngestError::Io {
            what: format!("list `{spec}`"),
            source,
        })?;
        files.retain(|p| match filter.judge(&p.to_string_lossy()) {
            None => true,
            Some(reason) => {
                skipped.push(Skipped {
                    source: p.display().to_string(),
                    reason,
                });
                false
            }
        });
    } else {
        // A file named explicitly is read whatever its name.
        files.push(path.to_path_buf());
    }
    files.sort();
    skipped.sort_by(|a, b| a.source.cmp(&b.source));
    let objects = files
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).ok();
            SourceObject {
                uri: p.display().to_string(),
                size: m.as_ref().map(|m| m.len()),
                version: m
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos().to_string()),
                location: Location::Local(p),
            }
        })
        .collect();
    Ok(Listing { objects, skipped })
}

fn walk(dir: &FsPath, out: &mut Vec<PathBuf>, skipped: &mut Vec<Skipped>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            if e.file_name().to_string_lossy().starts_with('.') {
                skipped.push(Skipped {
                    source: p.display().to_string(),
                    reason: "a hidden directory",
                });
            } else {
                walk(&p, out, skipped)?;
            }
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// SHA-256 and size of what was read so far.
#[derive(Clone, Default)]
pub struct Checksum(Arc<Mutex<(Sha256, u64)>>);

impl Checksum {
    pub fn finish(&self) -> (String, u64) {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (hex::encode(g.0.clone().finalize()), g.1)
    }

    pub fn bytes(&self) -> u64 {
        self.0.lock().map(|g| g.1).unwrap_or(0)
    }
}

struct Tee<R> {
    inner: R,
    sum: Checksum,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0
            && let Ok(mut g) = self.sum.0.lock()
        {
            g.0.update(&buf[..n]);
            g.1 += n as u64;
        }
        Ok(n)
    }
}

/// Bytes of an S3 object arriving through a bounded channel, read synchronously.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(Ok(b)) => self.current = b,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Reads a whole object (decompressed, like [`open`]), refusing one over `limit` bytes; with
/// the SHA-256 and size of what was read as stored. The error says what was wrong for people.
pub fn read_bounded(
    obj: &SourceObject,
    limit: u64,
    rt: &tokio::runtime::Handle,
) -> Result<(Vec<u8>, (String, u64)), String> {
    if let Some(size) = obj.size.filter(|s| *s > limit) {
        return Err(format!("{size} bytes, over the {limit}-byte limit"));
    }
    let (reader, sum) = open(obj, rt).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("over the {limit}-byte limit"));
    }
    Ok((bytes, sum.finish()))
}

/// Opens an object for reading, decompressing gzip (including multi-member files).
pub fn open(
    obj: &SourceObject,
    rt: &tokio::runtime::Handle,
) -> Result<(Box<dyn BufRead + Send>, Checksum), IngestError> {
    let raw: Box<dyn Read + Send> = match &obj.location {
        Location::Local(p) => {
            Box::new(std::fs::File::open(p).map_err(|source| IngestError::Io {
                what: format!("open `{}`", p.display()),
                source,
            })?)
        }
        Location::Stdin => Box::new(std::io::stdin()),
        Location::S3 { store, path } => {
            let (tx, rx) = std::sync::mpsc::sync_channel(8);
            let store = store.clone();
            let path = path.clone();
            rt.spawn(async move {
                match store.get(&path).await {
                    Ok(r) => {
                        let mut s = r.into_stream();
                        while let Some(chunk) = s.next().await {
                            let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
                            let stop = item.is_err();
                            if tx.send(item).is_err() || stop {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e.to_string())));
                    }
                }
            });
            Box::new(ChannelReader {
                rx,
                current: bytes::Bytes::new(),
            })
        }
    };
    let sum = Checksum::default();
    let mut reader = BufReader::with_capacity(
        256 * 1024,
        Tee {
            inner: raw,
            sum: sum.clone(),
        },
    );
    let head = reader.fill_buf().map_err(|source| IngestError::Io {
        what: format!("read `{}`", obj.uri),
        source,
    })?;
    let gz = head.starts_with(&[0x1f, 0x8b]);
    let out: Box<dyn BufRead + Send> = if gz {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::bufread::MultiGzDecoder::new(reader),
        ))
    } else {
        Box::new(reader)
    };
    Ok((out, sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_layout_dates_prune() {
        let key = "AWSLogs/o-abc/111122223333/CloudTrail/us-east-1/2024/10/17/x_CloudTrail_us-east-1_20241017T2010Z_a.json.gz";
        assert_eq!(layout_date(key), NaiveDate::from_ymd_opt(2024, 10, 17));
        let f = Filter {
            since: NaiveDate::from_ymd_opt(2024, 10, 18),
            ..Default::default()
        };
        assert!(!f.keep(key));
        assert!(Filter::default().keep(key));
        assert!(
            !Filter::default().keep("AWSLogs/1/CloudTrail-Digest/us-east-1/2024/10/17/d.json.gz")
        );
        assert!(!Filter::default().keep("notes.txt"));
    }

    #[tokio::test]
    async fn every_file_is_listed_to_read_or_as_skipped_with_why() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"hi").unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), b"x").unwrap();
        let listing = list(&dir.path().display().to_string(), &Filter::default())
            .await
            .unwrap();
        let read: Vec<_> = listing.objects.iter().map(|o| o.uri.clone()).collect();
        assert_eq!(read.len(), 1);
        assert!(read[0].ends_with("a.json"));
        let skipped: Vec<_> = listing
            .skipped
            .iter()
            .map(|k| (k.source.rsplit('/').next().unwrap_or_default(), k.reason))
            .collect();
        assert_eq!(
            skipped,
            vec![(".git", "a hidden directory"), ("notes.txt", NOT_RECORDS)]
        );
    }
}
