//! The bundle the gateway enforces, and replacing it. A candidate must verify against the
//! configured key, validate strictly, and fit the gateway's requests (a probe request over the
//! catalogue); otherwise it is rejected, logged and counted, and the current bundle stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use ed25519_dalek::VerifyingKey;
use policy_engine::PolicyEngine;

use crate::authn::Principal;
use crate::catalogue::Catalogue;
use crate::error::BundleError;
use crate::telemetry::Metrics;

pub struct PolicyState {
    current: ArcSwapOption<PolicyEngine>,
    bundle: PathBuf,
    key: VerifyingKey,
    probes: Probes,
    metrics: Arc<Metrics>,
    reload_lock: std::sync::Mutex<()>,
    /// Where each loaded bundle is kept for the audit lake.
    deposit: Option<crate::evidence_store::EvidenceStore>,
}

/// The requests a new bundle must fit before it decides anything.
pub struct Probes {
    /// One probe per catalogue model.
    pub catalogue: Catalogue,
    pub context: serde_json::Value,
    /// The OIDC principals' entity type.
    pub principal_type: String,
    /// The API keys' principals: static, so a bundle is checked against each of them.
    pub principals: Vec<Principal>,
}

impl PolicyState {
    pub fn new(bundle: PathBuf, key: VerifyingKey, probes: Probes, metrics: Arc<Metrics>) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            bundle,
            key,
            probes,
            metrics,
            reload_lock: std::sync::Mutex::new(()),
            deposit: None,
        }
    }

    /// Keeps a copy of every bundle loaded in `store` (see `policy.deposit_dir`).
    pub fn with_deposit(mut self, store: Option<crate::evidence_store::EvidenceStore>) -> Self {
        self.deposit = store;
        self
    }

    pub fn current(&self) -> Option<Arc<PolicyEngine>> {
        self.current.load_full()
    }

    pub fn bundle_path(&self) -> &Path {
        &self.bundle
    }

    /// Loads the bundle file again. On success the new bundle decides from the next request on.
    pub fn reload(&self) -> Result<String, BundleError> {
        // One reload at a time, so an older candidate never replaces a newer one.
        let _guard = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        // A bundle already deciding was kept when it was loaded: only a new one is deposited.
        let result = self.candidate().and_then(|(engine, bytes)| {
            let unchanged = self
                .current()
                .is_some_and(|c| c.digest() == engine.digest());
            match &self.deposit {
                Some(store) if !unchanged => deposit(store, &bytes)?,
                _ => {}
            }
            Ok((engine, unchanged))
        });
        match result {
            Ok((engine, unchanged)) => {
                let digest = engine.digest().to_string();
                if !unchanged {
                    self.metrics.bundle_loaded(
                        &digest,
                        self.current().as_deref().map(PolicyEngine::digest),
                    );
                    self.current.store(Some(Arc::new(engine)));
                    tracing::info!(bundle = %digest, "policy bundle loaded");
                }
                Ok(digest)
            }
            Err(e) => {
                self.metrics.bundle_rejected();
                tracing::error!(bundle = %self.bundle.display(), error = %e, "policy bundle rejected; the previous bundle keeps deciding");
                Err(BundleError(e))
            }
        }
    }

    /// The bundle file as a verified, validated engine fitting the probes, with the bytes it was
    /// made from (read once: what is verified is what is deposited, whatever the file becomes).
    fn candidate(&self) -> Result<(PolicyEngine, Vec<u8>), String> {
        let bytes = policy_engine::bundle::read_file(&self.bundle).map_err(|e| e.to_string())?;
        let verified = policy_engine::bundle::verify(&bytes, &self.key)
            .map_err(|e| format!("`{}`: {e}", self.bundle.display()))?;
        let engine = PolicyEngine::from_bundle(verified).map_err(|problems| {
            format!(
                "the bundle's policies do not validate: {}",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        self.probe(&engine)?;
        Ok((engine, bytes))
    }

    /// Checks one synthetic request per catalogue model, so a bundle whose schema does not
    /// describe the gateway's entities and context is rejected before it decides anything.
    fn probe(&self, engine: &PolicyEngine) -> Result<(), String> {
        let p = &self.probes;
        for m in p.catalogue.models() {
            super::check_fit(engine, &p.principal_type, &m.id, &m.attrs, &p.context)
            .map_err(|e| {
                format!(
                    "the bundle's schema does not fit the gateway's requests for model `{}`: {e}",
                    m.id
                )
            })?;
            // Each API key's principal, its groups and attributes, decided as a request would
            // be: a bundle that would answer those callers 503 is not loaded.
            for principal in &p.principals {
                super::decide(
                    engine,
                    principal,
                    super::INVOKE_MODEL,
                    "Model",
                    &m.id,
                    &m.attrs,
                    &p.context,
                )
                .map_err(|e| {
                    format!(
                        "the bundle's schema does not fit API key `{}` ({}) for model `{}`: {e}",
                        principal.auth.subject,
                        principal.uid(),
                        m.id
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// Keeps `bytes` in the deposit store as `<sha256 of the bundle file>.tar`: every distinct file
/// has its own name (a manifest re-signed with another key is another file), and a name already
/// there must hold these bytes. A bundle that cannot be kept is not loaded: the lake must be
/// able to name every bundle that decided something.
fn deposit(store: &crate::evidence_store::EvidenceStore, bytes: &[u8]) -> Result<(), String> {
    let name = format!("{}.tar", policy_engine::bundle::sha256_hex(bytes));
    store.put(&name, bytes).map_err(|e| {
        format!(
            "the bundle cannot be kept in the deposit store `{}` (policy.deposit_dir): {e}",
            store.display()
        )
    })
}
