//! Stage: the bearer credential becomes a `Principal` (API key or OIDC JWT), and the decision
//! record learns who asked; a failure is recorded with its reason, never the credential.

use http::HeaderMap;
use serde_json::json;

use super::{Admission, record_principal};
use crate::authn::Principal;
use crate::error::GatewayError;
use crate::state::AppState;

pub async fn run(
    state: &AppState,
    adm: &mut Admission,
    headers: &HeaderMap,
) -> Result<Principal, GatewayError> {
    let mut stage = adm.scope.stage(state, "authenticate");
    match state.authn.authenticate(headers).await {
        Ok(principal) => {
            stage.attr("cairn.auth.method", principal.auth.method);
            drop(stage);
            record_principal(&mut adm.record, &principal);
            adm.scope.set_principal(principal.uid());
            Ok(principal)
        }
        Err(e) => {
            stage.fail(e.reason());
            drop(stage);
            adm.record.auth = Some(json!({ "error": e.reason() }));
            Err(GatewayError::Unauthenticated(e))
        }
    }
}
