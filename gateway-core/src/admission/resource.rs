//! Stage: what the request is for (the catalogue model) and how sensitive its content is (the
//! data classification), both of which the decision record and Cedar see.

use http::HeaderMap;

use super::Admission;
use crate::catalogue::CatalogueModel;
use crate::error::GatewayError;
use crate::state::AppState;

/// The catalogue model (or alias) named `name`; the record learns the resource.
pub fn model(
    state: &AppState,
    adm: &mut Admission,
    name: &str,
) -> Result<CatalogueModel, GatewayError> {
    let model = state
        .catalogue
        .get(name)
        .cloned()
        .ok_or_else(|| GatewayError::UnknownModel(name.to_string()))?;
    adm.record.resource = Some(model.uid());
    adm.record.resource_attrs = Some(model.attrs.clone());
    adm.record.provider = Some(model.provider.clone());
    Ok(model)
}

/// A data classification: its label and its level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub label: String,
    pub level: i64,
}

/// The data classification of the request: the header's label, or the configured default.
/// Repeated (several headers, or one with comma-separated labels, as proxies append them), the
/// strictest label counts: a client cannot pre-empt a label a proxy adds.
pub fn classification(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Classification, GatewayError> {
    classification_of(&state.config.raw.classification, headers)
}

/// [`classification`] under a given configuration.
pub fn classification_of(
    c: &crate::config::ClassificationConfig,
    headers: &HeaderMap,
) -> Result<Classification, GatewayError> {
    let mut strictest: Option<Classification> = None;
    for value in headers.get_all(c.header.as_str()) {
        let text = value
            .to_str()
            .map_err(|_| GatewayError::InvalidRequest(format!("`{}` is not text", c.header)))?;
        for label in text.split(',') {
            let label = label.trim().to_ascii_lowercase();
            let level = c.levels.get(&label).copied().ok_or_else(|| {
                GatewayError::InvalidRequest(format!(
                    "`{}: {label}` is not a data classification; use one of: {}",
                    c.header,
                    c.levels.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            if strictest.as_ref().is_none_or(|s| level > s.level) {
                strictest = Some(Classification { label, level });
            }
        }
    }
    Ok(strictest.unwrap_or_else(|| default_classification_of(c)))
}

/// The configured default classification (what `GET /v1/models` and the reload probes assume).
pub fn default_classification(state: &AppState) -> Classification {
    default_classification_of(&state.config.raw.classification)
}

/// The default classification of a configuration (before any state exists: start-up probes).
pub fn default_classification_of(c: &crate::config::ClassificationConfig) -> Classification {
    Classification {
        label: c.default.clone(),
        level: c.levels.get(&c.default).copied().unwrap_or(0),
    }
}
