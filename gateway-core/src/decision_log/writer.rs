//! The record writer: one thread owns the segment file and commits records in groups. Records
//! that arrive while an fsync runs wait for the next one, so under load one fsync covers many
//! records, and a record is acknowledged only after the fsync that covers it returned.

use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tokio::sync::{mpsc, oneshot};

use super::record::{FORMAT_VERSION, GENESIS, Outcome, Record, Seal, seal_line};
use super::segment::{recover_tail, segment_name, sync_dir, unsettled};
use crate::error::LogError;

/// How records are written.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub dir: PathBuf,
    /// Rotate after a segment reaches this size.
    pub segment_max_bytes: u64,
    /// Rotate after a segment has been open this long.
    pub segment_max_age: Duration,
    /// The most records in one group commit.
    pub max_batch: usize,
    /// Where signed checkpoints go, if anywhere.
    pub checkpoints: Option<CheckpointSettings>,
}

/// Signed checkpoints of the log, kept outside the record directory.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    pub store: crate::evidence_store::EvidenceStore,
    /// The longest a durable record waits before a checkpoint covers it (seals write one at
    /// once).
    pub interval: Duration,
}

/// Proof that a record is durable.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub seq: u64,
    pub hash: String,
}

/// What the writer reports about each commit, for metrics.
pub trait LogObserver: Send + Sync + 'static {
    fn committed(&self, records: usize, flush: Duration);
    fn failed(&self, error: &str);
}

type Ack = oneshot::Sender<Result<Receipt, LogError>>;

enum Msg {
    Append(Box<Record>, Ack),
    Close(oneshot::Sender<()>),
    /// Once a second, so an idle writer still reopens a failed directory (and `/readyz`
    /// recovers without traffic) and rotates an old segment.
    Tick,
}

/// A handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct DecisionLog {
    tx: mpsc::Sender<Msg>,
    healthy: Arc<AtomicBool>,
    pending: Arc<AtomicU64>,
}

impl DecisionLog {
    /// Recovers the tail of the chain and starts the writer. A directory that cannot be used
    /// does not stop the gateway: the log starts unhealthy, every append fails (and the
    /// gateway answers 503), and it retries about once a second.
    pub fn start(
        settings: LogSettings,
        key: SigningKey,
        observer: Arc<dyn LogObserver>,
    ) -> (Self, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(65_536);
        let healthy = Arc::new(AtomicBool::new(false));
        let pending = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            settings,
            key_id: policy_engine::bundle::keys::key_id(&key.verifying_key()),
            key,
            file: None,
            segment_path: None,
            segment_bytes: 0,
            segment_records: 0,
            segment_opened: Instant::now(),
            next_seq: 1,
            prev: GENESIS.to_string(),
            recovered: false,
            retry_at: Instant::now(),
            healthy: healthy.clone(),
            pending: pending.clone(),
            observer,
            checkpointed: 0,
            checkpoint_at: Instant::now(),
        };
        writer.try_open();
        spawn_ticker(tx.downgrade());
        let handle = std::thread::Builder::new()
            .name("cairn-record-writer".into())
            .spawn(move || writer.run(rx))
            .unwrap_or_else(|e| {
                // Without a writer thread nothing can be recorded; the log stays unhealthy and
                // every request is refused.
                tracing::error!(error = %e, "cannot start the record writer thread");
                std::thread::spawn(|| {})
            });
        (
            Self {
                tx,
                healthy,
                pending,
            },
            handle,
        )
    }

    /// Queues a record and waits until it is on disk.
    pub async fn append(&self, record: Record) -> Result<Receipt, LogError> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.append_counted(record).await
    }

    /// `append` for a record already counted in `pending`.
    async fn append_counted(&self, record: Record) -> Result<Receipt, LogError> {
        let (ack, wait) = oneshot::channel();
        if self
            .tx
            .send(Msg::Append(Box::new(record), ack))
            .await
            .is_err()
        {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return Err(LogError::Closed);
        }
        wait.await.unwrap_or(Err(LogError::Closed))
    }

    /// Queues a record without waiting (outcome records); it is still written before `close`
    /// returns.
    pub fn append_detached(&self, record: Record) {
        // Counted now, not in the task: `close` must not miss a record whose task has not run.
        self.pending.fetch_add(1, Ordering::Relaxed);
        let log = self.clone();
        tokio::spawn(async move {
            if let Err(e) = log.append_counted(record).await {
                tracing::error!(error = %e, "an outcome record could not be written");
            }
        });
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records queued or being written.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Writes everything queued, seals the segment and stops the writer.
    pub async fn close(&self) {
        // Detached appends may still be on their way into the queue.
        for _ in 0..200 {
            if self.pending() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Sends [`Msg::Tick`] once a second for as long as any handle to the log exists.
fn spawn_ticker(tx: mpsc::WeakSender<Msg>) {
    let started = std::thread::Builder::new()
        .name("cairn-record-ticker".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(tx) = tx.upgrade() else { return };
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Msg::Tick) {
                    return;
                }
            }
        });
    if let Err(e) = started {
        // Without it a failed directory is retried only when a record is appended (refused
        // requests still append one), and idle segments are not rotated by age.
        tracing::warn!(error = %e, "cannot start the record ticker thread");
    }
}

struct Writer {
    settings: LogSettings,
    key: SigningKey,
    key_id: String,
    file: Option<File>,
    segment_path: Option<PathBuf>,
    segment_bytes: u64,
    segment_records: u64,
    segment_opened: Instant,
    next_seq: u64,
    prev: String,
    recovered: bool,
    retry_at: Instant,
    healthy: Arc<AtomicBool>,
    pending: Arc<AtomicU64>,
    observer: Arc<dyn LogObserver>,
    /// The record count the newest checkpoint vouches for.
    checkpointed: u64,
    checkpoint_at: Instant,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch: Vec<Msg> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < self.settings.max_batch {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut close = None;
            let mut appends = Vec::with_capacity(batch.len());
            for m in batch.drain(..) {
                match m {
                    Msg::Append(r, ack) => appends.push((r, ack)),
                    Msg::Close(done) => close = Some(done),
                    Msg::Tick => {}
                }
            }
            if self.file.is_none() && Instant::now() >= self.retry_at {
                self.try_open();
            }
            if !appends.is_empty() {
                let n = appends.len() as u64;
                self.commit(appends);
                self.pending.fetch_sub(n, Ordering::Relaxed);
            }
            if let Some(done) = close {
                self.seal("shutdown");
                self.checkpoint(true);
                let _ = done.send(());
                self.healthy.store(false, Ordering::Relaxed);
                return;
            }
            // A rotation seals a segment: its checkpoint is written at once.
            let sealed = self.maybe_rotate();
            self.checkpoint(sealed);
        }
        self.seal("shutdown");
        self.checkpoint(true);
    }

    /// Refuses a record directory that ends before the newest checkpoint (records were removed
    /// from its end) or differs from it there: writing on would seal the loss into the chain.
    /// The log stays unavailable (503) until the records are restored or the checkpoints moved
    /// aside by someone who accepts the loss.
    fn check_against_checkpoint(&mut self) -> std::io::Result<()> {
        let Some(cp) = &self.settings.checkpoints else {
            return Ok(());
        };
        let newest = cp.store.newest(&[self.key.verifying_key()]).map_err(|e| {
            std::io::Error::other(format!(
                "the newest record checkpoint cannot be trusted: {e}"
            ))
        })?;
        let Some((path, newest)) = newest else {
            return Ok(());
        };
        // Never a smaller checkpoint than one already kept, whatever happens below.
        self.checkpointed = self.checkpointed.max(newest.size);
        let last = self.next_seq.saturating_sub(1);
        if last < newest.size {
            return Err(std::io::Error::other(format!(
                "the records end at seq {last}, and the checkpoint {path} vouches for {}: seq {}..={} were removed; restore them, or move the checkpoints aside to accept the loss",
                newest.size,
                last + 1,
                newest.size
            )));
        }
        if last == newest.size && self.prev != newest.hash {
            return Err(std::io::Error::other(format!(
                "the record at seq {last} is not the one the checkpoint {path} vouches for: the log was rewritten"
            )));
        }
        Ok(())
    }

    /// Writes a signed checkpoint of the durable chain head when records were added since the
    /// last one and its interval has passed (`now`: whatever the interval, as at a seal). A
    /// checkpoint that cannot be written is logged and tried again; records are not refused
    /// for it, since they are durable and verifiable without it.
    fn checkpoint(&mut self, now: bool) {
        let Some(cp) = &self.settings.checkpoints else {
            return;
        };
        let size = self.next_seq.saturating_sub(1);
        if size <= self.checkpointed || (!now && self.checkpoint_at.elapsed() < cp.interval) {
            return;
        }
        let checkpoint = decision_record::checkpoint::Checkpoint {
            origin: decision_record::checkpoint::origin_of(&self.key.verifying_key()),
            size,
            hash: self.prev.clone(),
            time: crate::clock::now_rfc3339(),
        };
        self.checkpoint_at = Instant::now();
        let Some(note) = checkpoint.sign(&self.key) else {
            return;
        };
        let name = decision_record::checkpoint::file_name(&self.key.verifying_key(), size);
        match cp.store.put(&name, note.as_bytes()) {
            Ok(()) => self.checkpointed = size,
            Err(e) => tracing::error!(
                store = %cp.store.display(),
                error = %e,
                "cannot write the record checkpoint; retrying at the next interval"
            ),
        }
    }

    /// The log cannot write: say so, refuse appends, and reopen in about a second.
    fn fail(&mut self, msg: String) {
        tracing::error!("{msg}");
        self.observer.failed(&msg);
        self.healthy.store(false, Ordering::Relaxed);
        self.file = None;
        self.retry_at = Instant::now() + Duration::from_secs(1);
    }

    /// Opens (or reopens after a failure) the directory: recovers the tail once, then starts a
    /// new segment.
    fn try_open(&mut self) {
        match self.open() {
            Ok(()) => self.healthy.store(true, Ordering::Relaxed),
            Err(e) => self.fail(format!(
                "cannot write decision records in `{}`: {e}",
                self.settings.dir.display()
            )),
        }
    }

    fn open(&mut self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.settings.dir)?;
        if !self.recovered {
            let tail = recover_tail(&self.settings.dir)?;
            if let Some((seq, hash)) = &tail.last {
                self.next_seq = seq + 1;
                self.prev = hash.clone();
            }
            self.check_against_checkpoint()?;
            if let Some(seg) = &tail.segment {
                if tail.records_in_segment == 0 {
                    std::fs::remove_file(seg)?;
                } else if !tail.sealed {
                    // The last run ended without sealing (a crash): close what it left open,
                    // then seal its segment.
                    let lost = self.lost_outcomes()?;
                    let reason = if tail.torn_bytes > 0 {
                        format!(
                            "recovered after an unclean shutdown; {} bytes of an unacknowledged record removed",
                            tail.torn_bytes
                        )
                    } else {
                        "recovered after an unclean shutdown".to_string()
                    };
                    let mut f = std::fs::OpenOptions::new().append(true).open(seg)?;
                    let mut buf = Vec::new();
                    for mut record in lost.iter().cloned() {
                        record.seq = self.next_seq;
                        record.key_id = self.key_id.clone();
                        record.prev = self.prev.clone();
                        let (line, hash) = seal_line(&record, &self.key)
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        buf.extend_from_slice(&line);
                        self.advance(hash);
                    }
                    let in_segment = tail.records_in_segment + lost.len() as u64;
                    let (line, hash) = self.seal_record(&reason, in_segment);
                    buf.extend_from_slice(&line);
                    f.write_all(&buf)?;
                    f.sync_data()?;
                    self.advance(hash);
                    tracing::warn!(segment = %seg.display(), lost = lost.len(), "{reason}");
                }
            }
            self.recovered = true;
        } else if let Some(path) = self.segment_path.clone() {
            // A segment closed by a write failure whose seal could not be written then: seal it
            // first, or the chain would show a segment that ends without one.
            self.seal_path(&path, "closed after a write failure")?;
        }
        self.new_segment()
    }

    /// An explicit `lost` outcome for every allowed request a crash cut short, charged at what
    /// it reserved, so its spend is never silently missing from the records (or the lake).
    fn lost_outcomes(&self) -> std::io::Result<Vec<Record>> {
        let now = crate::clock::now_rfc3339();
        Ok(unsettled(&self.settings.dir)?
            .into_iter()
            .map(|(decision_id, d)| {
                let limits = d.extra.as_ref().and_then(|e| e.get("limits"));
                let reserved = |k: &str| limits.and_then(|l| l.get(k)).cloned();
                let usd = reserved("reserved_usd").and_then(|v| v.as_f64());
                let tokens = reserved("reserved_tokens").and_then(|v| v.as_u64());
                let outcome = Outcome {
                    decision_id,
                    model: d.model,
                    provider: d.provider,
                    status: None,
                    reason: Some("lost".into()),
                    usage: None,
                    cost_usd: usd,
                    trace_id: d.trace_id,
                    stream: d.stream,
                    error: Some(
                        "the gateway stopped before this request's outcome was recorded; charged at what it reserved"
                            .into(),
                    ),
                    extra: Some(serde_json::json!({
                        "lost": true,
                        "charged_as_reserved": { "tokens": tokens, "usd": usd },
                    })),
                    ..Default::default()
                };
                Record::new(uuid::Uuid::now_v7().to_string(), now.clone(), outcome)
            })
            .collect())
    }

    fn new_segment(&mut self) -> std::io::Result<()> {
        let path = self.settings.dir.join(segment_name(self.next_seq));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        sync_dir(&self.settings.dir)?;
        self.file = Some(file);
        self.segment_path = Some(path);
        self.segment_bytes = 0;
        self.segment_records = 0;
        self.segment_opened = Instant::now();
        Ok(())
    }

    fn advance(&mut self, hash: String) {
        self.prev = hash;
        self.next_seq += 1;
    }

    fn seal_record(&self, reason: &str, records: u64) -> (Vec<u8>, String) {
        let mut record = Record::new(
            uuid::Uuid::now_v7().to_string(),
            crate::clock::now_rfc3339(),
            Seal {
                sealed_records: records,
                seal_reason: reason.to_string(),
            },
        );
        record.seq = self.next_seq;
        record.key_id = self.key_id.clone();
        record.prev = self.prev.clone();
        // A seal holds only plain fields, so serialising it cannot fail.
        seal_line(&record, &self.key).unwrap_or_default()
    }

    /// Writes a batch; `run` has already retried a failed directory when its time came.
    fn commit(&mut self, appends: Vec<(Box<Record>, Ack)>) {
        if self.file.is_none() {
            for (_, ack) in appends {
                let _ = ack.send(Err(LogError::Unavailable));
            }
            return;
        }
        let started = Instant::now();
        let (start_seq, start_prev) = (self.next_seq, self.prev.clone());
        let mut buf = Vec::with_capacity(appends.len() * 1024);
        let mut acks = Vec::with_capacity(appends.len());
        for (mut record, ack) in appends {
            record.v = FORMAT_VERSION;
            record.seq = self.next_seq;
            record.prev = self.prev.clone();
            record.key_id = self.key_id.clone();
            match seal_line(&record, &self.key) {
                Ok((line, hash)) => {
                    buf.extend_from_slice(&line);
                    acks.push((
                        ack,
                        Receipt {
                            seq: record.seq,
                            hash: hash.clone(),
                        },
                    ));
                    self.advance(hash);
                }
                Err(e) => {
                    let _ = ack.send(Err(LogError::Encode(e.to_string())));
                }
            }
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let result = file.write_all(&buf).and_then(|()| file.sync_data());
        match result {
            Ok(()) => {
                self.segment_bytes += buf.len() as u64;
                self.segment_records += acks.len() as u64;
                self.observer.committed(acks.len(), started.elapsed());
                for (ack, receipt) in acks {
                    let _ = ack.send(Ok(receipt));
                }
            }
            Err(e) => {
                // Nothing of this batch is acknowledged: undo it on disk and in the chain.
                let durable = self.segment_bytes;
                let _ = file.set_len(durable);
                let _ = file.sync_data();
                self.next_seq = start_seq;
                self.prev = start_prev;
                for (ack, _) in acks {
                    let _ = ack.send(Err(LogError::Unavailable));
                }
                self.fail(format!("writing decision records failed: {e}"));
                // The next attempt starts a fresh segment; seal this one if the disk allows.
                if let Some(path) = self.segment_path.clone() {
                    // If this fails too, the next open seals it before starting a segment.
                    let _ = self.seal_path(&path, "closed after a write failure");
                }
            }
        }
    }

    fn seal_path(&mut self, path: &Path, reason: &str) -> std::io::Result<()> {
        let (line, hash) = self.seal_record(reason, self.segment_records);
        // Cut back to the last acknowledged byte first: an earlier attempt that failed part way
        // (a full disk) must not leave half a line before the seal.
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(self.segment_bytes)?;
        f.seek(std::io::SeekFrom::Start(self.segment_bytes))?;
        f.write_all(&line)?;
        f.sync_data()?;
        self.advance(hash);
        self.segment_path = None;
        Ok(())
    }

    /// Writes the closing seal of the current segment.
    fn seal(&mut self, reason: &str) {
        if self.file.is_none() {
            return;
        }
        let (line, hash) = self.seal_record(reason, self.segment_records);
        if let Some(file) = self.file.as_mut()
            && file
                .write_all(&line)
                .and_then(|()| file.sync_data())
                .is_ok()
        {
            self.advance(hash);
            self.segment_path = None;
        }
        self.file = None;
    }

    /// Seals and replaces a segment that is too big or too old; true when it sealed one.
    fn maybe_rotate(&mut self) -> bool {
        if self.file.is_none() {
            return false;
        }
        let too_big = self.segment_bytes >= self.settings.segment_max_bytes;
        let too_old = self.segment_records > 0
            && self.segment_opened.elapsed() >= self.settings.segment_max_age;
        if !(too_big || too_old) {
            return false;
        }
        self.seal(if too_big {
            "rotated by size"
        } else {
            "rotated by age"
        });
        if self.segment_path.is_some() {
            // The seal was not written: no new segment until it is (`open` retries it).
            self.fail("cannot seal the record segment; retrying".into());
            return false;
        }
        if let Err(e) = self.new_segment() {
            self.fail(format!("cannot start a new record segment: {e}"));
        }
        true
    }
}
