//! Metric and trace names and the types that carry them.

pub mod metrics;
pub mod trace;

pub use metrics::Metrics;
pub use trace::TraceContext;
