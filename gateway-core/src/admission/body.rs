//! Stage: the request body, read up to `server.max_body_bytes` and parsed as JSON.

use axum::body::{Body, Bytes};
use serde::de::DeserializeOwned;

use crate::error::GatewayError;
use crate::state::AppState;

/// Reads the whole body, refusing one over the configured limit.
pub async fn read(state: &AppState, body: Body) -> Result<Bytes, GatewayError> {
    let limit = state.config.raw.server.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            GatewayError::BodyTooLarge { limit }
        } else {
            // A client that went away mid-body, or a broken chunked encoding.
            GatewayError::BodyUnreadable(e.to_string())
        }
    })
}

pub fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    serde_json::from_slice(bytes).map_err(|e| GatewayError::InvalidBody(e.to_string()))
}
