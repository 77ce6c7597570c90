//! The HTTP server: state, routes, startup (bundle, log, keys), hot reload and graceful
//! shutdown that drains in-flight requests and then seals the record log.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use crate::admission::decide::invoke_context;
use crate::admission::resource::default_classification_of;
use crate::authn::{ApiKeys, Authenticator, OidcVerifier};
use crate::authz::{PolicyState, Probes};
use crate::cache::ResponseCache;
use crate::catalogue::Catalogue;
use crate::config::GatewayConfig;
use crate::connections;
use crate::decision_log::{CheckpointSettings, DecisionLog, LogSettings};
use crate::error::{BundleError, StartError};
use crate::guardrails::Guardrails;
use crate::limits::Limiter;
use crate::mcp::{self, Mcp};
use crate::openai;
use crate::protocols;
use crate::providers::Providers;
use crate::routing::Router as ModelRouter;
use crate::state::AppState;
use crate::telemetry::Metrics;
use crate::telemetry::otlp::Exporter;

/// A gateway that is listening but not yet serving.
pub struct BoundGateway {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    writer: std::thread::JoinHandle<()>,
    bundle_error: Option<BundleError>,
}

impl BoundGateway {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The digest of the bundle in force, or why none is.
    pub fn bundle(&self) -> Result<String, BundleError> {
        match self.state.policy.current() {
            Some(e) => Ok(format!(
                "{} ({} policies)",
                e.digest(),
                e.policy_ids().len()
            )),
            None => Err(self
                .bundle_error
                .clone()
                .unwrap_or_else(|| BundleError("no bundle".into()))),
        }
    }

    pub fn records_healthy(&self) -> bool {
        self.state.log.healthy()
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (up to the configured
    /// grace period) and seals the record log.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let state = self.state.clone();
        let watcher = spawn_reload_watcher(state.clone());
        if let Some(oidc) = state.authn.oidc() {
            let _ = oidc.fetch().await.map_err(
                |e| tracing::warn!(error = %e, "initial JWKS fetch failed; will retry on demand"),
            );
        }
        let refresher = spawn_jwks_refresher(state.clone());
        state.mcp.upstreams.start().await;
        if state.limiter.enabled()
            && let Err(e) = state.limiter.probe().await
        {
            tracing::warn!(error = %e, "the limits backend is not answering; requests are {} until it does",
                if state.limiter.fail_open() { "served without limits" } else { "refused" });
        }
        let app = router(state.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let grace = state.config.shutdown_grace;
        let server = connections::serve(self.listener, app, state.metrics.clone(), async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut stop = stop_rx.clone();
        let served = tokio::select! {
            () = server => Ok(()),
            () = async move {
                let _ = stop.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
                Ok(())
            }
        };
        drop(watcher);
        refresher.abort();
        state.log.close().await;
        let _ = tokio::task::spawn_blocking(move || self.writer.join()).await;
        if let Some(exporter) = &state.exporter {
            exporter.flush(Duration::from_secs(5)).await;
        }
        served
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/mcp", post(mcp_post).get(mcp_get).delete(mcp_delete))
        .route(
            "/mcp/{server}",
            post(mcp_post_one).get(mcp_get).delete(mcp_delete),
        )
        .route("/.well-known/oauth-protected-resource", get(mcp_resource))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(mcp_resource),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn chat(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    protocols::chat::chat_completions(state, peer, headers, body).await
}

async fn models(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    protocols::models::list(&state, peer, &headers).await
}

async fn mcp_post(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mcp::serve::post(state, peer, headers, None, body).await
}

async fn mcp_post_one(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(server): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mcp::serve::post(state, peer, headers, Some(server), body).await
}

async fn mcp_get() -> Response {
    mcp::get_not_allowed()
}

async fn mcp_delete(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    mcp::serve::delete(state, headers).await
}

async fn mcp_resource(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    mcp::protected_resource(&state, &headers)
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Ready only with a verified bundle loaded and a writable record log.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let bundle = state.policy.current().map(|e| e.digest().to_string());
    let records = state.log.healthy();
    if state.limiter.enabled() && !state.limiter.healthy() {
        // Health is otherwise learnt from traffic, which a load balancer stops sending to a
        // replica that is not ready: ask the backend again.
        let _ = state.limiter.probe().await;
    }
    let limits = !state.limiter.enabled() || state.limiter.healthy();
    let ready = bundle.is_some() && records && (limits || state.limiter.fail_open());
    let body = json!({
        "ready": ready,
        "bundle": bundle,
        "records": if records { "ok".to_string() } else {
            state.metrics.last_log_error().unwrap_or_else(|| "unavailable".into())
        },
        "limits": if limits { "ok" } else { "unavailable" },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// A request outside the API, answered in OpenAI's error shape.
fn not_api(status: StatusCode, message: &str, code: &'static str) -> Response {
    let body = openai::error_json(message, "invalid_request_error", Some(code));
    (status, axum::Json(body)).into_response()
}

async fn method_not_allowed() -> Response {
    not_api(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this path",
        "method_not_allowed",
    )
}

async fn not_found() -> Response {
    not_api(StatusCode::NOT_FOUND, "unknown path", "not_found")
}

/// What a configuration resolves to before anything listens: keys loaded, the bundle verified
/// (or why not), credentials and providers built, limits and guardrails configured.
struct Prepared {
    metrics: Arc<Metrics>,
    signing_key: ed25519_dalek::SigningKey,
    catalogue: Catalogue,
    policy: Arc<PolicyState>,
    bundle_error: Option<BundleError>,
    authn: Authenticator,
    providers: Providers,
    limiter: Arc<Limiter>,
}

async fn prepare(config: &GatewayConfig) -> Result<Prepared, StartError> {
    let metrics = Arc::new(Metrics::new());
    let public_key = policy_engine::bundle::keys::load_verifying_key(&config.public_key)
        .map_err(|e| StartError::PublicKey(e.to_string()))?;
    let signing_key = policy_engine::bundle::keys::load_signing_key(&config.signing_key)
        .map_err(|e| StartError::SigningKey(e.to_string()))?;
    let catalogue = Catalogue::new(&config.raw.models);
    let probe_context = invoke_context(
        &default_classification_of(&config.raw.classification),
        false,
        0,
        &SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    let api_keys = ApiKeys::new(&config.raw.auth.api_keys).map_err(StartError::ApiKeys)?;
    let probes = Probes {
        catalogue: catalogue.clone(),
        context: probe_context,
        principal_type: config.raw.auth.oidc.claims.principal_type.clone(),
        principals: api_keys.principals(),
    };
    let deposit = match config.raw.policy.deposit_dir.as_str() {
        "" => None,
        at => Some(crate::evidence_store::EvidenceStore::open(at).map_err(StartError::Deposit)?),
    };
    let policy = Arc::new(
        PolicyState::new(config.bundle.clone(), public_key, probes, metrics.clone())
            .with_deposit(deposit),
    );
    let bundle_error = policy.reload().err();

    let oidc = if config.raw.auth.oidc.issuer.is_empty() {
        None
    } else {
        Some(OidcVerifier::new(config.raw.auth.oidc.clone()).map_err(StartError::Oidc)?)
    };
    let authn = Authenticator::new(api_keys, oidc, config.raw.auth.oidc.max_token_bytes);

    let providers = Providers::build(
        &config.raw,
        &catalogue,
        config.aws_base_credentials.as_ref(),
    )
    .await?;
    let limiter = Arc::new(Limiter::new(config.raw.limits.clone()).map_err(StartError::Limits)?);
    Ok(Prepared {
        metrics,
        signing_key,
        catalogue,
        policy,
        bundle_error,
        authn,
        providers,
        limiter,
    })
}

/// What `cairn gateway check` reports of a configuration that resolves.
#[derive(Debug)]
pub struct CheckReport {
    /// The bundle in force had the gateway started: its digest, or why none would be.
    pub bundle: Result<String, BundleError>,
    pub models: usize,
    pub api_keys: usize,
    pub oidc: bool,
    pub mcp_servers: usize,
}

/// Everything `bind` does before it listens, and nothing after: no port, no records, no
/// upstream MCP servers started.
pub async fn check(config: &GatewayConfig) -> Result<CheckReport, StartError> {
    let p = prepare(config).await?;
    let bundle = match p.bundle_error {
        Some(e) => Err(e),
        None => Ok(p
            .policy
            .current()
            .map(|e| e.digest().to_string())
            .unwrap_or_default()),
    };
    Ok(CheckReport {
        bundle,
        models: p.catalogue.models().len(),
        api_keys: config.raw.auth.api_keys.len(),
        oidc: !config.raw.auth.oidc.issuer.is_empty(),
        mcp_servers: config.raw.mcp.servers.len(),
    })
}

/// Loads keys, the bundle and the catalogue, starts the record writer, and binds the listener.
/// A missing or invalid bundle does not stop startup: the gateway answers 503 and `/readyz`
/// says why until a valid bundle appears.
pub async fn bind(config: GatewayConfig) -> Result<BoundGateway, StartError> {
    let Prepared {
        metrics,
        signing_key,
        catalogue,
        policy,
        bundle_error,
        authn,
        providers,
        limiter,
    } = prepare(&config).await?;

    let listen = config.raw.server.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen.clone(),
            source,
        })?;

    let settings = LogSettings {
        dir: config.records_dir.clone(),
        segment_max_bytes: config.raw.records.segment_max_bytes,
        segment_max_age: Duration::from_secs(config.raw.records.segment_max_age_s),
        max_batch: config.raw.records.max_batch.max(1),
        checkpoints: match config.raw.records.checkpoint_dir.as_str() {
            "" => None,
            at => Some(CheckpointSettings {
                store: crate::evidence_store::EvidenceStore::open(at)
                    .map_err(StartError::Checkpoints)?,
                interval: Duration::from_secs(config.raw.records.checkpoint_interval_s.max(1)),
            }),
        },
    };
    let guardrails = Arc::new(Guardrails::new(config.raw.guardrails.clone()));
    let cache = ResponseCache::new(config.raw.cache.clone());
    let exporter = Exporter::start(
        &config.raw.telemetry,
        metrics.spans_exported.clone(),
        metrics.spans_dropped.clone(),
    );
    let (log, writer) = DecisionLog::start(settings, signing_key, metrics.clone());
    let mcp = Mcp::new(&config.raw.mcp);
    let state = Arc::new(AppState {
        mcp,
        guardrails,
        limiter,
        cache,
        exporter,
        router: ModelRouter::new(config.raw.routing.clone()),
        providers,
        config,
        catalogue,
        authn,
        policy,
        log,
        metrics,
    });
    Ok(BoundGateway {
        listener,
        state,
        writer,
        bundle_error,
    })
}

/// Reloads the bundle when its file changes and on SIGHUP. Dropping the handle stops watching.
fn spawn_reload_watcher(state: Arc<AppState>) -> Option<notify::RecommendedWatcher> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    #[cfg(unix)]
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the policy bundle");
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
    }
    let policy = state.policy.clone();
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let a burst of file events settle into one reload.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while rx.try_recv().is_ok() {}
            let p = policy.clone();
            let _ = tokio::task::spawn_blocking(move || p.reload()).await;
        }
    });
    if !state.config.raw.policy.watch {
        return None;
    }
    let bundle = state.policy.bundle_path().to_path_buf();
    let name = bundle.file_name().map(|n| n.to_os_string());
    let dir = bundle
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            let _ = tx.send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch the bundle file; SIGHUP still reloads"))
    .ok()?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the bundle directory; SIGHUP still reloads"))
        .ok()?;
    Some(watcher)
}

fn spawn_jwks_refresher(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(oidc) = state.authn.oidc() else {
            return;
        };
        let every = Duration::from_secs(state.config.raw.auth.oidc.refresh_interval_s.max(10));
        let mut next = Instant::now() + every;
        loop {
            tokio::time::sleep_until(next.into()).await;
            next = Instant::now() + every;
            if let Err(e) = oidc.fetch().await {
                tracing::warn!(error = %e, "periodic JWKS refresh failed");
            }
        }
    })
}
