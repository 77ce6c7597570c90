//! A held reservation of budget and rate limit: settled exactly once, by the type. Serving code
//! settles it with what was used; every other way out (a refusal, an error, a dropped task)
//! drops it, which releases it.

use std::sync::Arc;

use super::{Limiter, Reserved};

pub struct Reservation {
    limiter: Arc<Limiter>,
    held: Option<Reserved>,
}

impl Reservation {
    pub(super) fn new(limiter: Arc<Limiter>, reserved: Reserved) -> Self {
        Self {
            limiter,
            held: Some(reserved),
        }
    }

    fn reserved(&self) -> Option<&Reserved> {
        self.held.as_ref()
    }

    /// Remaining spend of the tightest USD budget before this request, when one applies.
    pub fn remaining_micro_usd(&self) -> Option<i64> {
        self.reserved().and_then(|r| r.remaining_micro_usd)
    }

    pub fn json(&self) -> serde_json::Value {
        self.reserved()
            .map(Reserved::json)
            .unwrap_or(serde_json::Value::Null)
    }

    pub fn budget_json(&self) -> Option<serde_json::Value> {
        self.reserved().and_then(Reserved::budget_json)
    }

    /// Replaces the reservation with what was used; `served` keeps the request counted.
    pub fn settle(mut self, tokens: i64, micro_usd: i64, served: bool) {
        if let Some(r) = self.held.take() {
            self.limiter.reconcile_later(r, tokens, micro_usd, served);
        }
    }

    /// Charges what was reserved: a call dropped mid-flight may have been charged in full and
    /// its usage will never be known.
    pub fn settle_reserved(mut self) {
        if let Some(r) = self.held.take() {
            let (tokens, micro_usd) = (r.reserved_tokens, r.reserved_micro_usd);
            self.limiter.reconcile_later(r, tokens, micro_usd, true);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(r) = self.held.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            self.limiter.reconcile_later(r, 0, 0, false);
        }
    }
}
