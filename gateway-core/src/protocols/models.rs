//! `GET /v1/models`: the models the caller may invoke. The same admission as a completion
//! (authenticate, the bundle in force, Cedar), one decision per catalogue model under the default
//! classification, and one record for the listing naming what was listed.

use std::net::SocketAddr;

use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::json;

use crate::admission::decide::{self, Ask, invoke_context};
use crate::admission::resource::default_classification;
use crate::admission::{Admission, SpanEnd, authenticate, records_unavailable, refuse};
use crate::error::GatewayError;
use crate::state::AppState;
use crate::{clock, openai};

pub const LIST_MODELS: &str = "Action::\"list_models\"";

pub async fn list(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Response {
    let mut adm = Admission::new(headers, false, LIST_MODELS);
    match admit(state, &mut adm, peer, headers).await {
        Ok(listed) => answer(state, adm, listed).await,
        Err(e) => refuse(state, adm, e).await,
    }
}

/// Decides every catalogue model for the caller; the allowed ones, with their providers.
async fn admit(
    state: &AppState,
    adm: &mut Admission,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Vec<(String, String)>, GatewayError> {
    let principal = authenticate::run(state, adm, headers).await?;
    let engine = decide::engine(adm, state)?;
    let context = invoke_context(&default_classification(state), false, 0, &peer);
    let mut listed = Vec::new();
    for m in state.catalogue.models() {
        if decide::evaluate(&engine, &principal, Ask::invoke(m, &context))?.allow {
            listed.push((m.id.clone(), m.provider.clone()));
        }
    }
    adm.record.context = Some(context);
    Ok(listed)
}

async fn answer(state: &AppState, adm: Admission, listed: Vec<(String, String)>) -> Response {
    let Admission { scope, mut record } = adm;
    record.decision = Some("allow".into());
    record.status = Some(200);
    record.reason = Some("list".into());
    record.resource = Some("Model::\"*\"".into());
    record.extra = Some(json!({ "listed": listed.iter().map(|(id, _)| id).collect::<Vec<_>>() }));
    record.latency_ms = Some(scope.started.elapsed().as_millis() as u64);
    if state
        .log
        .append(scope.decision_record(record))
        .await
        .is_err()
    {
        return records_unavailable(state, &scope, "*");
    }
    state.metrics.request("allow", "*", 200, "list");
    let mut resp =
        axum::Json(openai::model_list_json(&listed, clock::unix_seconds())).into_response();
    scope.headers(&mut resp);
    scope.finish(
        state,
        SpanEnd {
            status: 200,
            decision: "allow",
            reason: "list".into(),
            openai_method: Some("models.list"),
            ..SpanEnd::default()
        },
    );
    resp
}
