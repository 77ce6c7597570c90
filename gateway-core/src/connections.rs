//! The HTTP/1 accept loop. It replaces `axum::serve` for two things that one does not give: a
//! deadline for a request head (a client that trickles headers holds a connection and a task
//! forever otherwise), and a count of the connections hyper refuses before any request exists
//! (431, 400), which get no decision record and so must show somewhere.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt as _;

use crate::telemetry::Metrics;
use crate::telemetry::metrics::TransportLabels;

/// How long a client has to send a whole request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why hyper refused a connection before a request existed, if it did.
fn refusal(e: &hyper::Error) -> Option<&'static str> {
    if e.is_parse_too_large() {
        Some("head_too_large")
    } else if e.is_parse() {
        Some("malformed")
    } else if e.is_timeout() {
        Some("header_timeout")
    } else {
        None
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the open connections to finish their requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset while queued: keep serving the
                    // connections there are, and try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = tower::service_fn(move |mut request: http::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            let app = app.clone();
            async move {
                let response = app
                    .oneshot(request.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|e: Infallible| match e {});
                Ok::<_, Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                match refusal(&e) {
                    Some(reason) => {
                        metrics
                            .transport_refusals
                            .get_or_create(&TransportLabels {
                                reason: reason.into(),
                            })
                            .inc();
                        tracing::debug!(%peer, reason, error = %e, "connection refused before a request");
                    }
                    None => tracing::trace!(%peer, error = %e, "connection ended"),
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
