//! The authorizer the gateway holds: a schema and policy set that came from a verified bundle,
//! validated again on load, and named by the bundle's digest.

use cedar_policy::{Authorizer, Entities, PolicySet, Request, Response, Schema};

use crate::bundle::VerifiedBundle;
use crate::load;
use crate::problem::Problem;

/// Policies ready to decide requests. Cheap to share behind an `Arc`; never changes once built.
#[derive(Debug)]
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    authorizer: Authorizer,
    digest: String,
    version: String,
    key_id: String,
    policy_ids: Vec<String>,
}

impl PolicyEngine {
    /// Builds an engine from a verified bundle. A bundle whose policies do not parse or do not
    /// validate strictly against its own schema is rejected with the problems found.
    pub fn from_bundle(bundle: VerifiedBundle) -> Result<Self, Vec<Problem>> {
        let mut loaded = load::parse(Some(bundle.schema.clone()), bundle.policies.clone());
        load::validate(&mut loaded);
        let errors: Vec<Problem> = loaded
            .problems
            .into_iter()
            .filter(Problem::is_error)
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let Some(schema) = loaded.schema else {
            return Err(vec![Problem::error(
                "cairn::schema-missing",
                "bundle has no usable schema",
            )]);
        };
        Ok(Self {
            schema,
            policies: loaded.policy_set,
            authorizer: Authorizer::new(),
            digest: bundle.digest,
            version: bundle.manifest.version,
            key_id: bundle.key_id,
            policy_ids: loaded.policies.into_iter().map(|p| p.id).collect(),
        })
    }

    pub fn is_authorized(&self, request: &Request, entities: &Entities) -> Response {
        self.authorizer
            .is_authorized(request, &self.policies, entities)
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// `sha256:<hex>` of the signed manifest.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn policy_ids(&self) -> &[String] {
        &self.policy_ids
    }
}
