//! `--lookup`: events from the CloudTrail LookupEvents API, paged, at most two requests a
//! second (the API's limit), parsed exactly like delivered log files.

use std::time::Duration;

use aws_sdk_cloudtrail::primitives::DateTime;

use crate::error::IngestError;
use crate::ingest::{IngestSummary, Options, SourceSummary};
use crate::job::{Job, Sources};
use crate::json::date_of;
use crate::reject::Reason;
use lake::schema::{CloudTrailColumns, Table};

/// The LookupEvents API allows two requests per second per account and region.
const MIN_INTERVAL: Duration = Duration::from_millis(500);

pub fn run(
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    opts: &Options,
    rt: &tokio::runtime::Handle,
) -> Result<IngestSummary, IngestError> {
    let config = rt.block_on(aws_config::load_defaults(
        aws_config::BehaviorVersion::latest(),
    ));
    let client = aws_sdk_cloudtrail::Client::new(&config);
    let region = config.region().map(ToString::to_string).unwrap_or_default();
    let uri = format!("cloudtrail-lookup://{region}");
    let mut job = Job::open(&[Table::CloudTrail], Sources::Api, opts, rt)?;
    let mut q = job.sink();
    let mut s = SourceSummary {
        source: uri.clone(),
        ..Default::default()
    };
    let mut token: Option<String> = None;
    let mut last = None::<std::time::Instant>;
    let mut number = 0u64;
    opts.progress.start(1, None);
    loop {
        if let Some(t) = last {
            let wait = MIN_INTERVAL.saturating_sub(t.elapsed());
            std::thread::sleep(wait);
        }
        last = Some(std::time::Instant::now());
        let mut req = client.lookup_events().max_results(50);
        if let Some(t) = since {
            req = req.start_time(DateTime::from_millis(t.timestamp_millis()));
        }
        if let Some(t) = until {
            req = req.end_time(DateTime::from_millis(t.timestamp_millis()));
        }
        if let Some(t) = &token {
            req = req.next_token(t);
        }
        let page = rt.block_on(req.send()).map_err(|e| {
            IngestError::Aws(format!(
                "LookupEvents: {}",
                aws_sdk_cloudtrail::error::DisplayErrorContext(&e)
            ))
        })?;
        let mut days: std::collections::BTreeMap<i64, CloudTrailColumns> = Default::default();
        for ev in page.events() {
            number += 1;
            s.read += 1;
            let Some(raw) = ev.cloud_trail_event() else {
                q.add(
                    &uri,
                    number,
                    Reason::MissingRequiredField,
                    "the event has no `CloudTrailEvent`",
                    b"",
                );
                continue;
            };
            match crate::cloudtrail::parse(raw.as_bytes()) {
                Ok(c) => {
                    let day = c.time_ms.div_euclid(86_400_000);
                    let cols = days
                        .entry(day)
                        .or_insert_with(|| CloudTrailColumns::new(64));
                    crate::cloudtrail::append(cols, &c, &uri, number, None);
                }
                Err(r) => q.add(&uri, number, r.reason, &r.detail, raw.as_bytes()),
            }
        }
        for (day, mut cols) in days {
            s.count(job.add(
                Table::CloudTrail,
                &date_of(day * 86_400_000),
                cols.finish().map_err(IngestError::arrow)?,
            )?);
        }
        opts.progress.advance(page.events().len() as u64, 0);
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    job.quarantine(&mut q)?;
    s.quarantined = q.counts;
    job.summary.sources.push(s);
    job.finish()
}
