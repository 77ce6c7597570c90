//! A local MCP server the gateway runs: spawned with stdio as its transport (one JSON-RPC
//! message per line), supervised (a call after the process exits starts it again, no sooner
//! than a second after the last start), its stderr copied to the gateway's log.
//!
//! The gateway speaks to it as a client of the handshake era (`initialize`, then requests with
//! gateway-chosen ids) and falls back to the stateless revision (`server/discover`, `_meta` on
//! every request) for a server that knows no `initialize`. Requests the server sends to the
//! gateway are answered (`ping`) or refused (sampling, roots, elicitation: the gateway does not
//! relay them to a client).

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use super::config::McpServerConfig;
use super::upstream::{Mode, UpstreamError, client_info, with_meta};
use super::wire;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

type Stdin = Arc<tokio::sync::Mutex<ChildStdin>>;

struct Process {
    stdin: Stdin,
    pending: Pending,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
    /// Stops the process (the reader task owns the child).
    kill: Arc<tokio::sync::Notify>,
    mode: Mode,
    /// The server's `initialize` (or `server/discover`) result.
    info: Value,
}

/// One configured stdio server.
pub struct StdioServer {
    pub config: McpServerConfig,
    timeout: Duration,
    max_message: usize,
    current: tokio::sync::Mutex<Option<Arc<Process>>>,
    last_start: Mutex<Option<Instant>>,
    /// Set when the server says its tools changed, or it restarted: the tool list is re-read.
    pub tools_stale: Arc<AtomicBool>,
}

impl StdioServer {
    pub fn new(config: McpServerConfig, timeout: Duration, max_message: usize) -> Self {
        Self {
            config,
            timeout,
            max_message,
            current: tokio::sync::Mutex::new(None),
            last_start: Mutex::new(None),
            tools_stale: Arc::new(AtomicBool::new(true)),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether a process is running now.
    pub async fn running(&self) -> bool {
        self.current
            .lock()
            .await
            .as_ref()
            .is_some_and(|p| p.alive.load(Ordering::Acquire))
    }

    /// The revision and the server's self-description.
    pub async fn info(&self) -> Result<(Mode, Value), UpstreamError> {
        let p = self.process().await?;
        Ok((p.mode.clone(), p.info.clone()))
    }

    /// Sends one request and waits for its response object (`result` or `error`, as the server
    /// wrote it).
    pub async fn request(
        &self,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        let p = self.process().await?;
        let params = with_meta(&p.mode, params);
        self.exchange(&p, method, params).await
    }

    async fn exchange(
        &self,
        p: &Process,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        let id = p.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = p.pending.lock() {
            pending.insert(id, tx);
        }
        // However this call ends (a client that went away drops it), no waiter is left behind.
        let _forget = Forget {
            pending: &p.pending,
            id,
        };
        let line = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        // A server that stops reading its stdin would hold the lock (and every later call)
        // forever: the write has the call's deadline too, and missing it stops the server.
        match tokio::time::timeout(self.timeout, write_line(&p.stdin, &line)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(self.exited()),
            Err(_) => {
                tracing::warn!(server = %self.name(), "MCP server stopped reading its input; stopping it");
                p.alive.store(false, Ordering::Release);
                p.kill.notify_one();
                return Err(UpstreamError::Timeout {
                    server: self.name().to_string(),
                    ms: self.timeout.as_millis() as u64,
                });
            }
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(self.exited()),
            Err(_) => {
                // A late answer would find no one waiting; cancel it on the server's side.
                let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": { "requestId": id, "reason": "timed out at the gateway" } });
                let _ = tokio::time::timeout(Duration::from_secs(1), write_line(&p.stdin, &cancel))
                    .await;
                Err(UpstreamError::Timeout {
                    server: self.name().to_string(),
                    ms: self.timeout.as_millis() as u64,
                })
            }
        }
    }

    fn exited(&self) -> UpstreamError {
        UpstreamError::Exited {
            server: self.name().to_string(),
        }
    }

    /// The running process, started (and initialised) when there is none.
    async fn process(&self) -> Result<Arc<Process>, UpstreamError> {
        let mut current = self.current.lock().await;
        if let Some(p) = current.as_ref()
            && p.alive.load(Ordering::Acquire)
        {
            return Ok(p.clone());
        }
        let since = self.last_start.lock().ok().and_then(|t| *t);
        if let Some(t) = since {
            let wait = Duration::from_secs(1).saturating_sub(t.elapsed());
            tokio::time::sleep(wait).await;
        }
        if let Ok(mut t) = self.last_start.lock() {
            *t = Some(Instant::now());
        }
        let p = Arc::new(self.start().await?);
        self.tools_stale.store(true, Ordering::Release);
        *current = Some(p.clone());
        Ok(p)
    }

    async fn start(&self) -> Result<Process, UpstreamError> {
        let fail = |reason: String| UpstreamError::Start {
            server: self.name().to_string(),
            reason,
        };
        let (program, args) = self
            .config
            .command
            .split_first()
            .ok_or_else(|| fail("no command".into()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(base_env())
            .envs(&self.config.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.config.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| fail(format!("`{program}`: {e}")))?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(fail("no stdio pipes".into()));
        };
        let stdin: Stdin = Arc::new(tokio::sync::Mutex::new(stdin));
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let alive = Arc::new(AtomicBool::new(true));
        let kill = Arc::new(tokio::sync::Notify::new());
        let name = self.name().to_string();
        tokio::spawn(copy_stderr(name.clone(), stderr));
        let (replies_tx, replies_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        tokio::spawn(read_stdout(
            Reader {
                name: name.clone(),
                pending: pending.clone(),
                alive: alive.clone(),
                kill: kill.clone(),
                stale: self.tools_stale.clone(),
                max: self.max_message,
                replies: replies_tx,
            },
            stdout,
            child,
        ));
        tokio::spawn(answer_server_requests(replies_rx, stdin.clone()));
        let mut p = Process {
            stdin,
            pending,
            next_id: AtomicU64::new(1),
            alive,
            kill,
            mode: Mode::Handshake(String::new()),
            info: Value::Null,
        };
        if let Err(e) = self.initialise(&mut p).await {
            // Not left running: the next attempt starts a process of its own.
            p.alive.store(false, Ordering::Release);
            p.kill.notify_one();
            return Err(e);
        }
        tracing::info!(server = %name, pid, revision = p.mode.version(), "MCP server started");
        Ok(p)
    }

    /// `initialize` (the revision offered is the newest handshake one), else `server/discover`.
    async fn initialise(&self, p: &mut Process) -> Result<(), UpstreamError> {
        let mut params = Map::new();
        params.insert("protocolVersion".into(), json!(wire::HANDSHAKE[0]));
        params.insert("capabilities".into(), json!({}));
        params.insert("clientInfo".into(), client_info());
        let answer = self.exchange(p, "initialize", params).await?;
        if let Some(result) = answer.get("result") {
            let version = result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(wire::HANDSHAKE[0])
                .to_string();
            p.mode = Mode::Handshake(version);
            p.info = result.clone();
            let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
            write_line(&p.stdin, &note)
                .await
                .map_err(|_| self.exited())?;
            return Ok(());
        }
        let modern = Mode::Modern(wire::MODERN[0].to_string());
        let answer = self
            .exchange(p, "server/discover", with_meta(&modern, Map::new()))
            .await?;
        match answer.get("result") {
            Some(result) => {
                p.mode = modern;
                p.info = result.clone();
                Ok(())
            }
            None => Err(UpstreamError::Start {
                server: self.name().to_string(),
                reason: format!(
                    "neither initialize nor server/discover was answered: {}",
                    answer.get("error").unwrap_or(&Value::Null)
                ),
            }),
        }
    }
}

/// The environment a spawned server starts from: enough to find programs and a home, nothing
/// of the gateway's own (its credentials stay with it).
fn base_env() -> BTreeMap<String, String> {
    [
        "PATH",
        "HOME",
        "LANG",
        "TMPDIR",
        "NODE_PATH",
        "npm_config_cache",
    ]
    .into_iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
    .collect()
}

async fn write_line(stdin: &Stdin, v: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut w = stdin.lock().await;
    w.write_all(&line).await?;
    w.flush().await
}

/// Removes a call's waiter from the pending map when the call ends, however it ends.
struct Forget<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&self.id);
        }
    }
}

struct Reader {
    name: String,
    pending: Pending,
    alive: Arc<AtomicBool>,
    kill: Arc<tokio::sync::Notify>,
    stale: Arc<AtomicBool>,
    max: usize,
    replies: tokio::sync::mpsc::UnboundedSender<Value>,
}

/// Reads the server's messages until it exits: responses go to their waiting calls, requests
/// to the reply task. On exit every waiting call learns it (its sender is dropped).
async fn read_stdout(r: Reader, stdout: tokio::process::ChildStdout, mut child: Child) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = r.max as u64 + 1;
        let mut bounded = (&mut reader).take(limit);
        let read = tokio::select! {
            read = bounded.read_until(b'\n', &mut line) => read,
            () = r.kill.notified() => {
                let _ = child.start_kill();
                break;
            }
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(server = %r.name, error = %e, "reading the MCP server's stdout failed");
                break;
            }
        };
        if n == 0 {
            break;
        }
        if line.len() > r.max {
            tracing::warn!(server = %r.name, limit = r.max, "MCP server sent a message over the size limit; stopping it");
            let _ = child.start_kill();
            break;
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&line) else {
            tracing::warn!(server = %r.name, bytes = line.len(), "MCP server wrote a line that is not JSON");
            continue;
        };
        let is_response = msg.get("method").is_none()
            && (msg.get("result").is_some() || msg.get("error").is_some());
        if is_response {
            let waiter = msg
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|id| r.pending.lock().ok().and_then(|mut p| p.remove(&id)));
            if let Some(tx) = waiter {
                let _ = tx.send(msg);
            }
            continue;
        }
        match msg.get("method").and_then(Value::as_str) {
            Some("notifications/tools/list_changed") => r.stale.store(true, Ordering::Release),
            Some(_) if msg.get("id").is_some() => {
                let _ = r.replies.send(msg);
            }
            _ => {}
        }
    }
    r.alive.store(false, Ordering::Release);
    if let Ok(mut p) = r.pending.lock() {
        p.clear();
    }
    r.stale.store(true, Ordering::Release);
    match child.wait().await {
        Ok(status) => tracing::warn!(server = %r.name, %status, "MCP server exited"),
        Err(e) => tracing::warn!(server = %r.name, error = %e, "MCP server exited"),
    }
}

/// Answers what the server asks of the gateway: `ping`, and a refusal for the rest (sampling,
/// roots and elicitation would need a client the gateway does not relay to). Written through
/// the same lock as requests, so lines never interleave.
async fn answer_server_requests(
    mut requests: tokio::sync::mpsc::UnboundedReceiver<Value>,
    stdin: Stdin,
) {
    while let Some(req) = requests.recv().await {
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let reply = match req.get("method").and_then(Value::as_str) {
            Some("ping") => wire::result(&id, json!({})),
            _ => wire::error(
                Some(&id),
                &wire::RpcError::new(
                    wire::code::METHOD_NOT_FOUND,
                    "the gateway does not relay server requests to its clients",
                ),
            ),
        };
        if write_line(&stdin, &reply).await.is_err() {
            break;
        }
    }
}

/// Copies the server's stderr to the log, line by line, each line cut at 4 KiB.
async fn copy_stderr(name: String, stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut lines).take(4096).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                tracing::info!(server = %name, stderr = %text.trim_end(), "MCP server");
            }
        }
    }
}
