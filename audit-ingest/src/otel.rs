//! OpenTelemetry spans from OTLP JSON (the collector file exporter's JSON Lines of `TracesData`,
//! or one export request per file) to `genai_spans` rows. Every attribute of the GenAI semantic
//! conventions gets its own column (`gen_ai.system`, deprecated, fills `gen_ai.provider.name`);
//! other attributes stay as JSON text. 64-bit integers may be strings or numbers; enums may be
//! numbers or names; ids may be hex or base64.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::json::{integer, nested, text};
use crate::reject::{Reason, Reject};
use lake::schema::{SpanColumns, append_strings};

#[derive(Deserialize)]
struct TracesData<'a> {
    /// Absent (not merely empty) means the object is not a `TracesData` at all.
    #[serde(rename = "resourceSpans", default, borrow)]
    resource_spans: Option<Vec<ResourceSpans<'a>>>,
}

#[derive(Deserialize)]
struct ResourceSpans<'a> {
    #[serde(default, borrow)]
    resource: Option<Resource<'a>>,
    #[serde(
        rename = "scopeSpans",
        alias = "instrumentationLibrarySpans",
        default,
        borrow
    )]
    scope_spans: Vec<ScopeSpans<'a>>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(default, borrow)]
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Deserialize)]
struct ScopeSpans<'a> {
    #[serde(alias = "instrumentationLibrary", default, borrow)]
    scope: Option<Scope<'a>>,
    #[serde(default, borrow)]
    spans: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Scope<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    version: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct KeyValue<'a> {
    key: String,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Span<'a> {
    #[serde(rename = "traceId", borrow)]
    trace_id: Option<&'a RawValue>,
    #[serde(rename = "spanId", borrow)]
    span_id: Option<&'a RawValue>,
    #[serde(rename = "parentSpanId", borrow)]
    parent_span_id: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    kind: Option<&'a RawValue>,
    #[serde(rename = "startTimeUnixNano", borrow)]
    start: Option<&'a RawValue>,
    #[serde(rename = "endTimeUnixNano", borrow)]
    end: Option<&'a RawValue>,
    #[serde(default, borrow)]
    attributes: Vec<KeyValue<'a>>,
    #[serde(default, borrow)]
    events: Vec<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Status<'a> {
    #[serde(borrow)]
    code: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "timeUnixNano", borrow)]
    time: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    attributes: Vec<KeyValue<'a>>,
}

/// An OTLP `AnyValue` as plain JSON.
pub fn any_value(raw: Option<&RawValue>) -> Value {
    raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        .map_or(Value::Null, any_json)
}

/// An OTLP `AnyValue` already parsed as JSON, as plain JSON (nested values are converted in
/// place, not written out and parsed again).
fn any_json(v: Value) -> Value {
    let Value::Object(obj) = v else {
        return Value::Null;
    };
    let Some((k, v)) = obj.into_iter().next() else {
        return Value::Null;
    };
    match k.as_str() {
        "stringValue" => v,
        "boolValue" => match v {
            Value::String(s) => Value::Bool(s == "true"),
            other => other,
        },
        "intValue" => match &v {
            Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or(v),
            _ => v,
        },
        "doubleValue" => match &v {
            Value::String(s) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(v, Value::Number),
            _ => v,
        },
        "arrayValue" => Value::Array(values(v).into_iter().map(any_json).collect()),
        "kvlistValue" => Value::Object(
            values(v)
                .into_iter()
                .filter_map(|mut kv| {
                    let key = kv.get("key")?.as_str()?.to_string();
                    let value = kv.get_mut("value").map_or(Value::Null, Value::take);
                    Some((key, any_json(value)))
                })
                .collect(),
        ),
        _ => v,
    }
}

/// The `values` list of an OTLP `arrayValue` or `kvlistValue`.
fn values(v: Value) -> Vec<Value> {
    match v {
        Value::Object(mut m) => match m.remove("values") {
            Some(Value::Array(vals)) => vals,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// OTLP attributes as a JSON object.
fn attr_map(kvs: &[KeyValue<'_>]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), any_value(kv.value)))
        .collect()
}

/// Hex ids as they are; base64 ids (protobuf JSON) converted to hex.
fn id(raw: Option<&RawValue>, bytes: usize) -> Option<String> {
    let t = text(raw)?;
    if t.is_empty() {
        return None;
    }
    if t.len() == bytes * 2 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(t.to_ascii_lowercase());
    }
    base64::engine::general_purpose::STANDARD
        .decode(t.as_bytes())
        .ok()
        .filter(|b| b.len() == bytes)
        .map(hex::encode)
}

fn enum_name(raw: Option<&RawValue>, names: &[&str], prefix: &str) -> Option<String> {
    let t = text(raw)?;
    if let Ok(n) = t.parse::<usize>() {
        return names.get(n).map(|s| s.to_string());
    }
    Some(t.trim_start_matches(prefix).to_string())
}

const KINDS: &[&str] = &[
    "UNSPECIFIED",
    "INTERNAL",
    "SERVER",
    "CLIENT",
    "PRODUCER",
    "CONSUMER",
];
const STATUS: &[&str] = &["UNSET", "OK", "ERROR"];

/// One span ready to append, or why not.
pub struct ParsedSpan {
    pub start_ms: i64,
    pub key: String,
    row: SpanRow,
}

struct SpanRow {
    start_ns: i64,
    end_ns: Option<i64>,
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    status_code: Option<String>,
    status_message: Option<String>,
    service_name: Option<String>,
    scope_name: Option<String>,
    scope_version: Option<String>,
    attrs: Map<String, Value>,
    resource_attrs: Map<String, Value>,
    events: Option<String>,
}

/// A span, or why it was rejected with its 1-based index in the `TracesData` object.
pub type SpanResult = Result<ParsedSpan, (usize, Reject)>;

/// Parses one `TracesData` object into its spans; bad spans come back as rejects (with their
/// 1-based index in the object).
pub fn parse(bytes: &[u8]) -> Result<Vec<SpanResult>, Reject> {
    let data: TracesData<'_> = serde_json::from_slice(bytes).map_err(Reject::from_json)?;
    let Some(resource_spans) = &data.resource_spans else {
        return Err(Reject::new(
            Reason::WrongShape,
            "not an OTLP `TracesData` object: it has no `resourceSpans`",
        ));
    };
    let mut out = Vec::new();
    let mut index = 0;
    for rs in resource_spans {
        let resource_attrs: Map<String, Value> = rs
            .resource
            .as_ref()
            .map(|r| attr_map(&r.attributes))
            .unwrap_or_default();
        let service_name = resource_attrs
            .get("service.name")
            .and_then(Value::as_str)
            .map(str::to_string);
        for ss in &rs.scope_spans {
            let scope_name = ss
                .scope
                .as_ref()
                .and_then(|s| text(s.name))
                .map(|c| c.into_owned());
            let scope_version = ss
                .scope
                .as_ref()
                .and_then(|s| text(s.version))
                .map(|c| c.into_owned());
            for raw in &ss.spans {
                index += 1;
                out.push(
                    span(
                        raw,
                        &resource_attrs,
                        service_name.as_ref(),
                        scope_name.as_ref(),
                        scope_version.as_ref(),
                    )
                    .map_err(|r| (index, r)),
                );
            }
        }
    }
    Ok(out)
}

fn span(
    raw: &RawValue,
    resource_attrs: &Map<String, Value>,
    service_name: Option<&String>,
    scope_name: Option<&String>,
    scope_version: Option<&String>,
) -> Result<ParsedSpan, Reject> {
    let s: Span<'_> = serde_json::from_str(raw.get()).map_err(Reject::from_json)?;
    let trace_id = id(s.trace_id, 16).ok_or_else(|| {
        Reject::new(
            Reason::MissingRequiredField,
            "`traceId` is missing or not a 16-byte id",
        )
    })?;
    let span_id = id(s.span_id, 8).ok_or_else(|| {
        Reject::new(
            Reason::MissingRequiredField,
            "`spanId` is missing or not an 8-byte id",
        )
    })?;
    let start_ns = integer(s.start).ok_or_else(|| {
        Reject::new(
            Reason::UnparseableTime,
            "`startTimeUnixNano` is missing or not an integer",
        )
    })?;
    let end_ns = integer(s.end);
    let status: Status<'_> = nested(s.status);
    let attrs = attr_map(&s.attributes);
    let events: Vec<Value> = s
        .events
        .iter()
        .map(|r| match serde_json::from_str::<Event<'_>>(r.get()) {
            Ok(e) => serde_json::json!({
                "time_unix_nano": integer(e.time),
                "name": text(e.name),
                "attributes": attr_map(&e.attributes),
            }),
            // An event of another shape is kept as it came, not dropped.
            Err(_) => serde_json::from_str(r.get()).unwrap_or(Value::Null),
        })
        .collect();
    let key = format!("{trace_id}:{span_id}");
    Ok(ParsedSpan {
        start_ms: start_ns.div_euclid(1_000_000),
        key,
        row: SpanRow {
            start_ns,
            end_ns,
            trace_id,
            span_id,
            parent_span_id: id(s.parent_span_id, 8),
            name: text(s.name).map(|c| c.into_owned()),
            kind: enum_name(s.kind, KINDS, "SPAN_KIND_"),
            status_code: enum_name(status.code, STATUS, "STATUS_CODE_")
                .or_else(|| Some("UNSET".into())),
            status_message: text(status.message)
                .map(|c| c.into_owned())
                .filter(|m| !m.is_empty()),
            service_name: service_name.cloned(),
            scope_name: scope_name.cloned(),
            scope_version: scope_version.cloned(),
            attrs,
            resource_attrs: resource_attrs.clone(),
            events: (!events.is_empty()).then(|| Value::Array(events).to_string()),
        },
    })
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_json(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A list of strings: an array whose members are all strings, or one string (as a list of it).
/// Anything else does not fit and stays in `attributes`.
fn as_strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

pub fn append(cols: &mut SpanColumns, p: ParsedSpan, source: &str, number: u64) {
    let mut r = p.row;
    // A value that does not fit its column's type stays in `attributes`, so nothing is lost.
    fn typed<T>(
        attrs: &mut Map<String, Value>,
        key: &str,
        convert: fn(&Value) -> Option<T>,
    ) -> Option<T> {
        let v = attrs.get(key)?;
        let t = convert(v);
        if t.is_some() || v.is_null() {
            attrs.remove(key);
        }
        t
    }
    macro_rules! s {
        ($col:ident, $key:literal) => {
            cols.$col.append_option(typed(&mut r.attrs, $key, as_text))
        };
    }
    macro_rules! i {
        ($col:ident, $key:literal) => {
            cols.$col.append_option(typed(&mut r.attrs, $key, as_i64))
        };
    }
    macro_rules! f {
        ($col:ident, $key:literal) => {
            cols.$col.append_option(typed(&mut r.attrs, $key, as_f64))
        };
    }
    macro_rules! j {
        ($col:ident, $key:literal) => {
            cols.$col.append_option(typed(&mut r.attrs, $key, as_json))
        };
    }
    macro_rules! l {
        ($col:ident, $key:literal) => {
            append_strings(&mut cols.$col, typed(&mut r.attrs, $key, as_strings))
        };
    }
    s!(gen_ai_operation_name, "gen_ai.operation.name");
    let provider = r.attrs.remove("gen_ai.provider.name");
    let system = r.attrs.remove("gen_ai.system");
    cols.gen_ai_provider_name
        .append_option(provider.as_ref().or(system.as_ref()).and_then(as_text));
    s!(gen_ai_request_model, "gen_ai.request.model");
    i!(gen_ai_request_max_tokens, "gen_ai.request.max_tokens");
    f!(gen_ai_request_temperature, "gen_ai.request.temperature");
    f!(gen_ai_request_top_p, "gen_ai.request.top_p");
    f!(gen_ai_request_top_k, "gen_ai.request.top_k");
    f!(
        gen_ai_request_frequency_penalty,
        "gen_ai.request.frequency_penalty"
    );
    f!(
        gen_ai_request_presence_penalty,
        "gen_ai.request.presence_penalty"
    );
    i!(gen_ai_request_seed, "gen_ai.request.seed");
    l!(
        gen_ai_request_stop_sequences,
        "gen_ai.request.stop_sequences"
    );
    i!(gen_ai_request_choice_count, "gen_ai.request.choice.count");
    l!(
        gen_ai_request_encoding_formats,
        "gen_ai.request.encoding_formats"
    );
    s!(gen_ai_response_id, "gen_ai.response.id");
    s!(gen_ai_response_model, "gen_ai.response.model");
    l!(
        gen_ai_response_finish_reasons,
        "gen_ai.response.finish_reasons"
    );
    i!(gen_ai_usage_input_tokens, "gen_ai.usage.input_tokens");
    i!(gen_ai_usage_output_tokens, "gen_ai.usage.output_tokens");
    i!(
        gen_ai_usage_cache_read_input_tokens,
        "gen_ai.usage.cache_read.input_tokens"
    );
    i!(
        gen_ai_usage_cache_creation_input_tokens,
        "gen_ai.usage.cache_creation.input_tokens"
    );
    s!(gen_ai_conversation_id, "gen_ai.conversation.id");
    s!(gen_ai_output_type, "gen_ai.output.type");
    s!(gen_ai_agent_id, "gen_ai.agent.id");
    s!(gen_ai_agent_name, "gen_ai.agent.name");
    s!(gen_ai_agent_description, "gen_ai.agent.description");
    s!(gen_ai_tool_name, "gen_ai.tool.name");
    s!(gen_ai_tool_call_id, "gen_ai.tool.call.id");
    s!(gen_ai_tool_description, "gen_ai.tool.description");
    s!(gen_ai_tool_type, "gen_ai.tool.type");
    s!(gen_ai_data_source_id, "gen_ai.data_source.id");
    i!(
        gen_ai_embeddings_dimension_count,
        "gen_ai.embeddings.dimension.count"
    );
    j!(gen_ai_input_messages, "gen_ai.input.messages");
    j!(gen_ai_output_messages, "gen_ai.output.messages");
    j!(gen_ai_system_instructions, "gen_ai.system_instructions");
    j!(gen_ai_tool_definitions, "gen_ai.tool.definitions");
    s!(error_type, "error.type");
    s!(server_address, "server.address");
    i!(server_port, "server.port");
    // The gateway's spans carry `cairn.decision_id`; `cairn.decision.id` is accepted too.
    let decision_id = typed(&mut r.attrs, "cairn.decision_id", as_text)
        .or_else(|| typed(&mut r.attrs, "cairn.decision.id", as_text));
    cols.cairn_decision_id.append_option(decision_id);
    cols.start_time.append_value(p.start_ms);
    cols.end_time
        .append_option(r.end_ns.map(|n| n.div_euclid(1_000_000)));
    cols.duration_ns
        .append_option(r.end_ns.and_then(|e| e.checked_sub(r.start_ns)));
    cols.trace_id.append_value(&r.trace_id);
    cols.span_id.append_value(&r.span_id);
    cols.parent_span_id.append_option(r.parent_span_id.as_ref());
    cols.span_key.append_value(&p.key);
    cols.name.append_option(r.name.as_ref());
    cols.kind.append_option(r.kind.as_ref());
    cols.status_code.append_option(r.status_code.as_ref());
    cols.status_message.append_option(r.status_message.as_ref());
    cols.service_name.append_option(r.service_name.as_ref());
    cols.scope_name.append_option(r.scope_name.as_ref());
    cols.scope_version.append_option(r.scope_version.as_ref());
    cols.attributes.append_option(
        (!r.attrs.is_empty()).then(|| Value::Object(std::mem::take(&mut r.attrs)).to_string()),
    );
    cols.resource_attributes.append_option(
        (!r.resource_attrs.is_empty())
            .then(|| Value::Object(std::mem::take(&mut r.resource_attrs)).to_string()),
    );
    cols.events.append_option(r.events.as_ref());
    cols.ingest_source.append_value(source);
    cols.ingest_record.append_value(number as i64);
    cols.row_done();
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;

    #[test]
    fn the_shared_sample_shape_parses() {
        let line = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"gw"}}]},
          "scopeSpans":[{"scope":{"name":"s","version":"1"},"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"","name":"chat m",
             "kind":3,"startTimeUnixNano":"1730217104000000000","endTimeUnixNano":1730217105250000000,
             "attributes":[{"key":"gen_ai.system","value":{"stringValue":"openai"}},
                           {"key":"gen_ai.usage.input_tokens","value":{"intValue":"812"}},
                           {"key":"server.port","value":{"intValue":443}},
                           {"key":"gen_ai.response.finish_reasons","value":{"arrayValue":{"values":[{"stringValue":"stop"}]}}},
                           {"key":"custom","value":{"boolValue":true}}],
             "status":{"code":2,"message":"rate limited"}},
            {"spanId":"x"}]}]}]}"#;
        let spans = parse(line.as_bytes()).unwrap();
        assert_eq!(spans.len(), 2);
        assert!(matches!(&spans[1], Err((2, r)) if r.reason == Reason::MissingRequiredField));
        let mut cols = SpanColumns::new(2);
        let first = spans.into_iter().next().unwrap().ok().unwrap();
        append(&mut cols, first, "f", 1);
        let b = cols.finish().unwrap();
        let s = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_string::<i32>()
                .value(0)
                .to_string()
        };
        assert_eq!(s("gen_ai_provider_name"), "openai");
        assert_eq!(s("kind"), "CLIENT");
        assert_eq!(s("status_code"), "ERROR");
        let reasons = b
            .column_by_name("gen_ai_response_finish_reasons")
            .unwrap()
            .as_list::<i32>()
            .value(0);
        assert_eq!(reasons.as_string::<i32>().value(0), "stop");
        assert_eq!(s("attributes"), r#"{"custom":true}"#);
        assert!(b.column_by_name("parent_span_id").unwrap().is_null(0));
        let i = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0)
        };
        assert_eq!(i("gen_ai_usage_input_tokens"), 812);
        assert_eq!(i("server_port"), 443);
        assert_eq!(i("duration_ns"), 1_250_000_000);
    }

    #[test]
    fn nothing_is_lost_to_a_wrong_shape_or_type() {
        // Not a TracesData at all (a CloudTrail line fed to the OTel ingest).
        let r = parse(br#"{"eventVersion":"1.08","eventName":"InvokeModel"}"#);
        assert!(
            matches!(r, Err(ref e) if e.reason == Reason::WrongShape),
            "{:?}",
            r.err()
        );
        assert!(parse(br#"{"resourceSpans":[]}"#).unwrap().is_empty());
        // A typed attribute that does not convert stays in `attributes`; times past i64 do not
        // wrap into a negative duration.
        let line = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
             "startTimeUnixNano":"1730217104000000000","endTimeUnixNano":"18446744073709551615",
             "attributes":[{"key":"gen_ai.usage.input_tokens","value":{"stringValue":"many"}},
                           {"key":"server.port","value":{"doubleValue":443.5}}],
             "events":[{"name":"ok","timeUnixNano":"1"},{"name":7}]}]}]}]}"#;
        let mut spans = parse(line.as_bytes()).unwrap();
        let span = spans.remove(0).ok().unwrap();
        let mut cols = SpanColumns::new(1);
        append(&mut cols, span, "f", 1);
        let b = cols.finish().unwrap();
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        assert!(col("gen_ai_usage_input_tokens").is_null(0));
        assert!(col("server_port").is_null(0));
        assert!(col("end_time").is_null(0) && col("duration_ns").is_null(0));
        let attrs: Value =
            serde_json::from_str(col("attributes").as_string::<i32>().value(0)).unwrap();
        assert_eq!(attrs["gen_ai.usage.input_tokens"], "many");
        assert_eq!(attrs["server.port"], 443.5);
        let events: Value =
            serde_json::from_str(col("events").as_string::<i32>().value(0)).unwrap();
        assert_eq!(events.as_array().map(Vec::len), Some(2), "{events}");
    }
}
