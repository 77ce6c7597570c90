//! The enforcing gateway.
//!
//! Every request runs the [`admission`] stages (authenticate, read the body, resolve the
//! resource, guard the input, reserve, decide with Cedar) through a protocol adapter
//! ([`protocols`]: OpenAI chat completions, the model list), is recorded in a signed,
//! hash-chained log before any response byte leaves ([`decision_log`]), and is served by a
//! provider ([`providers`]) behind one contract. The controls: authentication ([`authn`]),
//! Cedar from verified bundles ([`authz`]), budgets and rate limits ([`limits`]), guardrails
//! ([`guardrails`]), the response cache ([`cache`]); the evidence: records and OTLP spans
//! ([`telemetry`]). Start with [`server::bind`] and [`server::BoundGateway::run`].
//!
//! Architecture invariant: gateway-core never writes Parquet and never reads the audit lake.

pub mod admission;
pub mod authn;
pub mod authz;
pub mod cache;
pub mod catalogue;
pub mod clock;
pub mod config;
pub mod connections;
pub mod decision_log;
pub mod error;
pub mod evidence_store;
#[doc(hidden)]
pub mod fuzzing;
pub mod guardrails;
pub mod limits;
pub mod mcp;
pub mod mock_mcp;
pub mod mock_upstream;
pub mod openai;
pub mod protocols;
pub mod providers;
pub mod routing;
pub mod server;
pub mod state;
pub mod telemetry;

pub use config::{GatewayConfig, RawConfig};
pub use error::{BundleError, ConfigError, GatewayError, StartError};
pub use server::{BoundGateway, CheckReport, bind, check};
