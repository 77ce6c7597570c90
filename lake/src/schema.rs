//! The lake's tables as Arrow schemas, and typed column builders for each. Column names are
//! lower snake_case; times are UTC millisecond timestamps; lists of strings are
//! `LIST<VARCHAR>`, objects of a fixed shape structs, and polymorphic JSON stays JSON text.
//! The `date` partition is a directory (`date=YYYY-MM-DD/`), not a column in the files.
//!
//! Version 2 of the lake layout (version 1 kept lists as JSON text; `cairn ingest compact`
//! rewrites such a lake, see [`crate::layout`]). Adding nullable columns at the end is
//! compatible; anything else needs a new version.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

pub use crate::resources::{ResourceListBuilder, resource_fields};

/// A column of string lists.
pub type StrListBuilder = ListBuilder<StringBuilder>;

/// `LIST<VARCHAR>`, its element field named `item` as Arrow's builders name it.
pub fn str_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

/// Appends a string list, or null for none.
pub fn append_strings<S: AsRef<str>>(
    b: &mut StrListBuilder,
    v: Option<impl IntoIterator<Item = S>>,
) {
    match v {
        Some(items) => {
            for s in items {
                b.values().append_value(s);
            }
            b.append(true);
        }
        None => b.append(false),
    }
}

pub const LAYOUT_VERSION: u32 = 2;

pub type TsBuilder = TimestampMillisecondBuilder;

pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

macro_rules! kind_type {
    (Str) => {
        DataType::Utf8
    };
    (Ts) => {
        ts_type()
    };
    (I64) => {
        DataType::Int64
    };
    (F64) => {
        DataType::Float64
    };
    (Bool) => {
        DataType::Boolean
    };
    (StrList) => {
        str_list_type()
    };
    (Resources) => {
        crate::resources::resource_list_type()
    };
}

macro_rules! kind_builder {
    (Str) => {
        StringBuilder
    };
    (Ts) => {
        TsBuilder
    };
    (I64) => {
        Int64Builder
    };
    (F64) => {
        Float64Builder
    };
    (Bool) => {
        BooleanBuilder
    };
    (StrList) => {
        StrListBuilder
    };
    (Resources) => {
        ResourceListBuilder
    };
}

macro_rules! kind_new {
    (Str, $cap:expr) => {
        StringBuilder::with_capacity($cap, $cap * 16)
    };
    (Ts, $cap:expr) => {
        TsBuilder::with_capacity($cap).with_timezone("UTC")
    };
    (I64, $cap:expr) => {
        Int64Builder::with_capacity($cap)
    };
    (F64, $cap:expr) => {
        Float64Builder::with_capacity($cap)
    };
    (Bool, $cap:expr) => {
        BooleanBuilder::with_capacity($cap)
    };
    (StrList, $cap:expr) => {
        ListBuilder::with_capacity(StringBuilder::with_capacity($cap, $cap * 16), $cap)
    };
    (Resources, $cap:expr) => {
        ResourceListBuilder::with_capacity($cap)
    };
}

/// Declares a table: its schema, and a struct of typed builders filled row by row.
macro_rules! table {
    ($(#[$meta:meta])* $name:ident, $table:literal, key = [$($key:literal),+], time = $time:literal, { $($col:ident : $kind:ident),* $(,)? }) => {
        $(#[$meta])*
        pub struct $name {
            $(pub $col: kind_builder!($kind),)*
            rows: usize,
        }

        impl $name {
            pub const TABLE: &'static str = $table;
            /// The columns that together identify a row for de-duplication.
            pub const KEY: &'static [&'static str] = &[$($key),+];
            /// The time column rows are sorted and partitioned by.
            pub const TIME: &'static str = $time;

            pub fn new(capacity: usize) -> Self {
                Self { $($col: kind_new!($kind, capacity),)* rows: 0 }
            }

            pub fn schema() -> SchemaRef {
                Arc::new(Schema::new(vec![
                    $(Field::new(stringify!($col), kind_type!($kind), true),)*
                ]))
            }

            /// Call once per appended row, after appending to every column.
            pub fn row_done(&mut self) {
                self.rows += 1;
            }

            pub fn len(&self) -> usize {
                self.rows
            }

            pub fn is_empty(&self) -> bool {
                self.rows == 0
            }

            pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
                self.rows = 0;
                RecordBatch::try_new(
                    Self::schema(),
                    vec![$(Arc::new(self.$col.finish()) as ArrayRef,)*],
                )
            }
        }
    };
}

table!(
    /// One CloudTrail event.
    CloudTrailColumns, "cloudtrail", key = ["event_id", "event_time", "event_name"], time = "event_time", {
    event_time: Ts,
    event_version: Str,
    event_source: Str,
    event_name: Str,
    aws_region: Str,
    source_ip_address: Str,
    user_agent: Str,
    request_id: Str,
    event_id: Str,
    read_only: Bool,
    event_type: Str,
    event_category: Str,
    management_event: Bool,
    recipient_account_id: Str,
    shared_event_id: Str,
    error_code: Str,
    error_message: Str,
    vpc_endpoint_id: Str,
    vpc_endpoint_account_id: Str,
    session_credential_from_console: Bool,
    tls_version: Str,
    tls_cipher_suite: Str,
    tls_client_provided_host_header: Str,
    user_type: Str,
    user_arn: Str,
    user_account_id: Str,
    user_principal_id: Str,
    user_access_key_id: Str,
    user_name: Str,
    user_invoked_by: Str,
    user_session_issuer_type: Str,
    user_session_issuer_arn: Str,
    user_session_issuer_account_id: Str,
    user_session_issuer_principal_id: Str,
    user_session_issuer_user_name: Str,
    user_session_name: Str,
    user_mfa_authenticated: Bool,
    user_session_creation_date: Ts,
    user_source_identity: Str,
    user_session_tags: Str,
    user_identity_store_user_id: Str,
    user_on_behalf_of: Str,
    user_credential_id: Str,
    user_identity_provider: Str,
    user_identity: Str,
    request_parameters: Str,
    response_elements: Str,
    additional_event_data: Str,
    service_event_details: Str,
    resources: Resources,
    ingest_source: Str,
    ingest_record: I64,
    integrity: Str,
});

table!(
    /// One CloudTrail log or digest file as checked against CloudTrail's signed digests
    /// (`cairn ingest cloudtrail --verify-integrity`): a row per file and check, so a file that
    /// changes state later adds a row. `key` names the file from `AWSLogs/` on, wherever the copy.
    CloudTrailFileColumns, "cloudtrail_files", key = ["kind", "key", "file", "checked_at"], time = "checked_at", {
    checked_at: Ts,
    kind: Str,
    file: Str,
    key: Str,
    integrity: Str,
    detail: Str,
    digest: Str,
    digest_end: Ts,
    account_id: Str,
    region: Str,
    ingest_source: Str,
});

table!(
    /// One OpenTelemetry span, GenAI semantic-convention attributes as columns.
    SpanColumns, "genai_spans", key = ["span_key"], time = "start_time", {
    start_time: Ts,
    end_time: Ts,
    duration_ns: I64,
    trace_id: Str,
    span_id: Str,
    parent_span_id: Str,
    span_key: Str,
    name: Str,
    kind: Str,
    status_code: Str,
    status_message: Str,
    service_name: Str,
    scope_name: Str,
    scope_version: Str,
    gen_ai_operation_name: Str,
    gen_ai_provider_name: Str,
    gen_ai_request_model: Str,
    gen_ai_request_max_tokens: I64,
    gen_ai_request_temperature: F64,
    gen_ai_request_top_p: F64,
    gen_ai_request_top_k: F64,
    gen_ai_request_frequency_penalty: F64,
    gen_ai_request_presence_penalty: F64,
    gen_ai_request_seed: I64,
    gen_ai_request_stop_sequences: StrList,
    gen_ai_request_choice_count: I64,
    gen_ai_request_encoding_formats: StrList,
    gen_ai_response_id: Str,
    gen_ai_response_model: Str,
    gen_ai_response_finish_reasons: StrList,
    gen_ai_usage_input_tokens: I64,
    gen_ai_usage_output_tokens: I64,
    gen_ai_usage_cache_read_input_tokens: I64,
    gen_ai_usage_cache_creation_input_tokens: I64,
    gen_ai_conversation_id: Str,
    gen_ai_output_type: Str,
    gen_ai_agent_id: Str,
    gen_ai_agent_name: Str,
    gen_ai_agent_description: Str,
    gen_ai_tool_name: Str,
    gen_ai_tool_call_id: Str,
    gen_ai_tool_description: Str,
    gen_ai_tool_type: Str,
    gen_ai_data_source_id: Str,
    gen_ai_embeddings_dimension_count: I64,
    gen_ai_input_messages: Str,
    gen_ai_output_messages: Str,
    gen_ai_system_instructions: Str,
    gen_ai_tool_definitions: Str,
    error_type: Str,
    server_address: Str,
    server_port: I64,
    cairn_decision_id: Str,
    attributes: Str,
    resource_attributes: Str,
    events: Str,
    ingest_source: Str,
    ingest_record: I64,
});

table!(
    /// One gateway decision record, verified on the way in.
    DecisionColumns, "decisions", key = ["id"], time = "ts", {
    ts: Ts,
    id: Str,
    seq: I64,
    principal: Str,
    principal_type: Str,
    principal_id: Str,
    principal_parents: StrList,
    principal_attrs: Str,
    team: Str,
    action: Str,
    resource: Str,
    resource_attrs: Str,
    model: Str,
    provider: Str,
    decision: Str,
    reasons: StrList,
    errors: StrList,
    status: I64,
    reason: Str,
    bundle: Str,
    context: Str,
    data_classification: Str,
    stream: Bool,
    trace_id: Str,
    auth_method: Str,
    auth_subject: Str,
    auth_issuer: Str,
    auth_error: Str,
    guardrails: Str,
    assumed_role_arn: Str,
    role_session_name: Str,
    source_identity: Str,
    mcp_server: Str,
    mcp_tool: Str,
    mcp_method: Str,
    extra: Str,
    key_id: Str,
    hash: Str,
    prev: Str,
    ingest_source: Str,
    ingest_record: I64,
});

table!(
    /// What happened after an allowed decision.
    OutcomeColumns, "outcomes", key = ["id"], time = "ts", {
    ts: Ts,
    id: Str,
    seq: I64,
    decision_id: Str,
    model: Str,
    provider: Str,
    status: I64,
    input_tokens: I64,
    output_tokens: I64,
    cache_read_tokens: I64,
    cache_write_tokens: I64,
    cost_usd: F64,
    latency_ms: I64,
    finish_reason: Str,
    error: Str,
    reason: Str,
    guardrails: Str,
    stream: Bool,
    usage_estimated: Bool,
    extra: Str,
    trace_id: Str,
    key_id: Str,
    hash: Str,
    prev: Str,
    ingest_source: Str,
    ingest_record: I64,
    upstream_request_id: Str,
});

table!(
    /// One signed policy bundle, verified on the way in. `digest` is what decisions name in
    /// their `bundle` column.
    BundleColumns, "bundles", key = ["digest"], time = "created", {
    created: Ts,
    digest: Str,
    version: Str,
    source_commit: Str,
    source_repository: Str,
    key_id: Str,
    policy_count: I64,
    schema_sha256: Str,
    test_cases: I64,
    tests_passed: I64,
    coverage_percent: I64,
    manifest: Str,
    ingest_source: Str,
    ingest_record: I64,
});

table!(
    /// One policy of a bundle, as written in its file. Partitioned by its bundle's creation.
    PolicyColumns, "policies", key = ["bundle", "policy_id"], time = "bundle_created", {
    bundle_created: Ts,
    bundle: Str,
    policy_id: Str,
    effect: Str,
    file: Str,
    line: I64,
    text_sha256: Str,
    text: Str,
    ingest_source: Str,
    ingest_record: I64,
});

table!(
    /// A record that could not be ingested, kept with why and where it came from.
    QuarantineColumns, "_quarantine", key = ["quarantine_key"], time = "ingested_at", {
    ingested_at: Ts,
    quarantine_key: Str,
    target_table: Str,
    source: Str,
    record_number: I64,
    reason: Str,
    detail: Str,
    raw: Str,
});

/// The lake's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    CloudTrail,
    GenaiSpans,
    Decisions,
    Outcomes,
    Bundles,
    Policies,
    CloudTrailFiles,
    Quarantine,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::CloudTrail,
        Table::GenaiSpans,
        Table::Decisions,
        Table::Outcomes,
        Table::Bundles,
        Table::Policies,
        Table::CloudTrailFiles,
        Table::Quarantine,
    ];

    /// The table's name in the lake's layout and in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Self::CloudTrail => CloudTrailColumns::TABLE,
            Self::GenaiSpans => SpanColumns::TABLE,
            Self::Decisions => DecisionColumns::TABLE,
            Self::Outcomes => OutcomeColumns::TABLE,
            Self::Bundles => BundleColumns::TABLE,
            Self::Policies => PolicyColumns::TABLE,
            Self::CloudTrailFiles => CloudTrailFileColumns::TABLE,
            Self::Quarantine => QuarantineColumns::TABLE,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Self::CloudTrail => CloudTrailColumns::schema(),
            Self::GenaiSpans => SpanColumns::schema(),
            Self::Decisions => DecisionColumns::schema(),
            Self::Outcomes => OutcomeColumns::schema(),
            Self::Bundles => BundleColumns::schema(),
            Self::Policies => PolicyColumns::schema(),
            Self::CloudTrailFiles => CloudTrailFileColumns::schema(),
            Self::Quarantine => QuarantineColumns::schema(),
        }
    }

    /// The columns that identify a row (duplicates share them) and the time it is sorted by.
    pub fn key_and_time(self) -> (&'static [&'static str], &'static str) {
        match self {
            Self::CloudTrail => (CloudTrailColumns::KEY, CloudTrailColumns::TIME),
            Self::GenaiSpans => (SpanColumns::KEY, SpanColumns::TIME),
            Self::Decisions => (DecisionColumns::KEY, DecisionColumns::TIME),
            Self::Outcomes => (OutcomeColumns::KEY, OutcomeColumns::TIME),
            Self::Bundles => (BundleColumns::KEY, BundleColumns::TIME),
            Self::Policies => (PolicyColumns::KEY, PolicyColumns::TIME),
            Self::CloudTrailFiles => (CloudTrailFileColumns::KEY, CloudTrailFileColumns::TIME),
            Self::Quarantine => (QuarantineColumns::KEY, QuarantineColumns::TIME),
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_parses_from_its_name() {
        for t in Table::ALL {
            assert_eq!(Table::parse(t.name()), Some(t));
            assert!(t.schema().field_with_name(t.key_and_time().1).is_ok());
        }
        assert_eq!(Table::parse("nope"), None);
    }
}
