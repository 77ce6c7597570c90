//! Entry points for the fuzz targets in `fuzz/` and for the replay of their corpus by the normal
//! test suite. Each takes arbitrary bytes, must never panic, and checks what must hold of any
//! input it accepts.

use std::io::BufReader;

use crate::json::date_of;
use crate::schema::{CloudTrailColumns, SpanColumns};
use crate::split::Splitter;
use crate::{cloudtrail, otel};

/// A CloudTrail source (a delivery file, JSON Lines, or concatenated objects) through the
/// splitter and the record parser into lake columns. The first byte sets the size of the reads
/// the source arrives in: the records and errors must not depend on it.
pub fn cloudtrail(data: &[u8]) {
    let Some((&size, rest)) = data.split_first() else {
        return;
    };
    let whole: Vec<_> = Splitter::new(rest).collect();
    let small = BufReader::with_capacity(usize::from(size % 32) + 1, rest);
    let pieces: Vec<_> = Splitter::new(small).collect();
    assert_eq!(
        whole, pieces,
        "the split depends on how the bytes were read"
    );
    let mut cols = CloudTrailColumns::new(16);
    let mut last = 0;
    for element in whole.iter().flatten() {
        assert!(element.number > last, "record numbers go backwards");
        last = element.number;
        if let Ok(c) = cloudtrail::parse(&element.bytes) {
            let _ = date_of(c.time_ms);
            let _ = c.event_id();
            cloudtrail::append(&mut cols, &c, "fuzz", element.number, None);
        }
    }
    let rows = cols.len();
    match cols.finish() {
        Ok(batch) => assert_eq!(batch.num_rows(), rows),
        Err(e) => panic!("CloudTrail columns do not make a batch: {e}"),
    }
}

/// An OTLP/JSON export (`TracesData` objects, one per line or concatenated) through the
/// splitter and the span parser into lake columns.
pub fn otlp(data: &[u8]) {
    let mut cols = SpanColumns::new(16);
    for element in Splitter::new(data).flatten() {
        let Ok(spans) = otel::parse(&element.bytes) else {
            continue;
        };
        for span in spans.into_iter().flatten() {
            let _ = date_of(span.start_ms);
            otel::append(&mut cols, span, "fuzz", element.number);
        }
    }
    let rows = cols.len();
    match cols.finish() {
        Ok(batch) => assert_eq!(batch.num_rows(), rows),
        Err(e) => panic!("span columns do not make a batch: {e}"),
    }
}
