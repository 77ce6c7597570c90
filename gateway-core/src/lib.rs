//! The enforcing gateway.
//!
//! An OpenAI-compatible HTTP API (`/v1/chat/completions`, `/v1/models`) where every request is
//! authenticated ([`authn`]), decided by Cedar from a verified bundle ([`authz`]), recorded in a
//! signed, hash-chained log before any response byte leaves ([`decision_log`]), and served by a
//! provider ([`providers`]). Budgets and rate limits ([`limits`]), guardrails ([`guardrails`]),
//! the response cache ([`cache`]) and OTLP spans ([`telemetry`]) wrap the call. Start with [`server::bind`] and [`server::BoundGateway::run`].
//!
//! Architecture invariant: gateway-core never writes Parquet and never reads the audit lake.

pub mod authn;
pub mod authz;
pub mod cache;
pub mod catalogue;
pub mod clock;
pub mod config;
pub mod decision_log;
pub mod error;
pub mod guardrails;
pub mod limits;
pub mod mock_upstream;
pub mod openai;
pub mod pipeline;
pub mod providers;
pub mod routing;
pub mod server;
pub mod telemetry;

pub use config::{GatewayConfig, RawConfig};
pub use error::{ConfigError, GatewayError, StartError};
pub use server::{BoundGateway, bind};
