//! Lenient readings of raw JSON values. Real exports swap types between events of the same name
//! (a number here, the same field as a string there), so scalars are captured as raw JSON and
//! read as whatever they turn out to be.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A scalar as text: strings unescaped, numbers and booleans as written, null as `None`;
/// objects and arrays as their JSON text.
pub fn text<'a>(raw: Option<&'a RawValue>) -> Option<Cow<'a, str>> {
    let raw = raw?.get();
    let first = raw.as_bytes().first()?;
    match first {
        b'"' => {
            let inner = &raw[1..raw.len().saturating_sub(1)];
            if inner.contains('\\') {
                serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
            } else {
                Some(Cow::Borrowed(inner))
            }
        }
        b'n' if raw == "null" => None,
        _ => Some(Cow::Borrowed(raw)),
    }
}

/// A JSON value as compact text (objects and arrays), or `None` for absent or null.
pub fn json_text(raw: Option<&RawValue>) -> Option<&str> {
    let raw = raw?.get();
    (raw != "null").then_some(raw)
}

/// A nested object parsed leniently: a missing, null or wrongly typed part reads as empty.
pub fn nested<'a, T: Deserialize<'a> + Default>(raw: Option<&'a RawValue>) -> T {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or_default()
}

/// A boolean from `true`/`false`, `"true"`/`"false"` (any case), or 1/0.
pub fn boolean(raw: Option<&RawValue>) -> Option<bool> {
    match text(raw)?.as_ref() {
        t if t.eq_ignore_ascii_case("true") || t == "1" => Some(true),
        t if t.eq_ignore_ascii_case("false") || t == "0" => Some(false),
        _ => None,
    }
}

/// An integer from a number or a numeric string (OTLP writes 64-bit integers as strings).
pub fn integer(raw: Option<&RawValue>) -> Option<i64> {
    let t = text(raw)?;
    // Out of i64's range is not an integer here (no time or count is that large); wrapping or
    // saturating would turn it into a wrong value.
    t.parse::<i64>().ok().or_else(|| {
        t.parse::<f64>()
            .ok()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
            .map(|f| f as i64)
    })
}

pub fn float(raw: Option<&RawValue>) -> Option<f64> {
    text(raw)?.parse::<f64>().ok()
}

/// Milliseconds since the epoch from the time formats real exports contain: RFC 3339
/// (`2024-10-17T20:09:52Z`, with fractions or offsets), `2025-03-26 16:43:57.000000000`
/// (space, nanoseconds, no zone: UTC), the same with `T`, and epoch seconds or milliseconds.
pub fn timestamp_ms(t: &str) -> Option<i64> {
    let t = t.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_millis());
    }
    // `20131102T010628Z` (ISO 8601 basic) is how CloudTrail writes session creation dates.
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.fZ",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y%m%dT%H%M%SZ",
        "%Y%m%dT%H%M%S%.fZ",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(n.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f %z") {
        return Some(d.timestamp_millis());
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = t.parse().ok()?;
        // Seconds until the year 5138, milliseconds after.
        return Some(if n < 100_000_000_000 { n * 1000 } else { n });
    }
    None
}

/// `YYYY-MM-DD` of a millisecond timestamp, for the `date=` partition.
pub fn date_of(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn scalars_read_whatever_their_type() {
        assert_eq!(text(Some(&raw(r#""abc""#))).as_deref(), Some("abc"));
        assert_eq!(text(Some(&raw(r#""a\"b""#))).as_deref(), Some("a\"b"));
        assert_eq!(text(Some(&raw("12"))).as_deref(), Some("12"));
        assert_eq!(text(Some(&raw("null"))), None);
        assert_eq!(boolean(Some(&raw(r#""false""#))), Some(false));
        assert_eq!(boolean(Some(&raw("true"))), Some(true));
        assert_eq!(
            integer(Some(&raw(r#""1730217104000000000""#))),
            Some(1_730_217_104_000_000_000)
        );
        assert_eq!(integer(Some(&raw("443"))), Some(443));
    }

    #[test]
    fn times_in_every_seen_format() {
        let want = Some(1_742_996_637_000);
        assert_eq!(timestamp_ms("2025-03-26T13:43:57Z"), want);
        assert_eq!(timestamp_ms("2025-03-26 13:43:57.000000000"), want);
        assert_eq!(timestamp_ms("2025-03-26T13:43:57.000"), want);
        assert_eq!(timestamp_ms("2025-03-26T15:43:57+02:00"), want);
        assert_eq!(timestamp_ms("1742996637"), want);
        assert_eq!(timestamp_ms("20250326T134357Z"), want);
        assert_eq!(timestamp_ms("1742996637000"), want);
        assert_eq!(timestamp_ms("yesterday"), None);
        assert_eq!(date_of(1_742_996_637_000), "2025-03-26");
    }
}
