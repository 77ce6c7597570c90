//! Wall-clock time in the forms records and requests use.

use chrono::{SecondsFormat, Utc};

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-25T14:00:00.123Z`.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn unix_seconds() -> i64 {
    Utc::now().timestamp()
}
