//! Metric and trace names and the types that carry them.

pub mod metrics;
pub mod otlp;
pub mod trace;

pub use metrics::Metrics;
pub use trace::TraceContext;
