//! The demo's stand-in for AWS, on loopback: STS `AssumeRole` and Bedrock Runtime `Converse` /
//! `ConverseStream`, answering as AWS does on the wire (XML for STS, JSON and the binary event
//! stream for Bedrock), and keeping the CloudTrail records AWS would write for those calls. When
//! the demo's gateway has stopped, [`StandIn::write_trail`] writes them in CloudTrail's delivery
//! layout with an hourly digest per Region, signed with a simulated digest key whose public half
//! it writes as `aws cloudtrail list-public-keys` would print it, so the lake's reconcile and
//! integrity checks run on the demo exactly as on a real trail.
//!
//! Everything here is simulated and says so: the account is `123456789012`, the digest key is a
//! fixed demo key in this folder (never AWS's), and the demo labels these files as simulated.
//! The records follow the shape of the shared CloudTrail samples (`AssumeRole` by an IAM user,
//! `InvokeModel` by an assumed-role session with its `sessionContext`; here `Converse` and
//! `ConverseStream`, the APIs the gateway calls).

mod trail;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub use trail::Written;

/// The simulated account and the roles the demo's gateway uses.
pub const ACCOUNT: &str = "123456789012";
pub const GATEWAY_USER: &str = "cairn-gateway";
pub const ROLE_NAME: &str = "cairn-bedrock";
/// The gateway's own (simulated) access key: what the stand-in's STS sees calling it.
pub const GATEWAY_ACCESS_KEY: &str = "AKIACAIRNDEMOGATEWAY";
pub const GATEWAY_SECRET: &str = "simulated-secret-for-the-demo-only";

pub fn role_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}")
}

/// What an issued session is, by its access key.
#[derive(Clone)]
struct Session {
    session_name: String,
    source_identity: Option<String>,
    role_id: String,
    created: String,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    /// (Region, CloudTrail record), in the order the calls came.
    events: Vec<(String, Value)>,
}

/// The running stand-in: its address and what it has seen.
#[derive(Clone)]
pub struct StandIn {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Upper-case letters and digits, as AWS spells key and role ids.
fn aws_id(prefix: &str, len: usize) -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let tail: String = hex.chars().chain(hex.chars().rev()).take(len).collect();
    format!("{prefix}{tail}")
}

/// The access key a SigV4 `Authorization` header was made with.
fn access_key_of(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    cred.split('/').next().map(str::to_string)
}

/// The Region a SigV4 credential scope names (`AKIA.../20261203/us-west-2/bedrock/aws4_request`).
fn region_of(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or("us-east-1")
        .to_string()
}

/// What every record of a call shares, in the samples' shape.
fn base_event(event_source: &str, event_name: &str, region: &str, host: &str) -> Value {
    json!({
        "eventVersion": "1.10",
        "eventTime": rfc3339(now()),
        "eventSource": event_source,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": "127.0.0.1",
        "userAgent": "cairn-gateway (aws-sdk-rust; simulated by cairn demo)",
        "requestID": uuid::Uuid::new_v4().to_string(),
        "eventID": uuid::Uuid::new_v4().to_string(),
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
        "tlsDetails": {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": host,
        },
    })
}

impl StandIn {
    /// Serves STS and Bedrock Runtime on `listener` until the runtime ends.
    pub fn start(listener: std::net::TcpListener) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let me = Self {
            addr,
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let app = Router::new()
            .route("/", post(assume_role))
            .route("/model/{model}/converse", post(converse))
            .route("/model/{model}/converse-stream", post(converse_stream))
            .with_state(me.clone());
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(me)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many Bedrock calls it answered.
    pub fn bedrock_calls(&self) -> usize {
        self.lock()
            .events
            .iter()
            .filter(|(_, e)| e["eventSource"] == "bedrock.amazonaws.com")
            .count()
    }

    /// Writes the trail (see [`trail`]) under `root`.
    pub fn write_trail(&self, root: &std::path::Path) -> std::io::Result<Written> {
        let events = self.lock().events.clone();
        trail::write(root, &events)
    }

    /// The record of a Bedrock call made with `access_key`, as an assumed-role session.
    fn bedrock_event(&self, access_key: &str, region: &str, name: &str, model: &str) -> Value {
        let session = self.lock().sessions.get(access_key).cloned();
        let mut e = base_event(
            "bedrock.amazonaws.com",
            name,
            region,
            &format!("bedrock-runtime.{region}.amazonaws.com"),
        );
        e["requestParameters"] = json!({ "modelId": model });
        e["responseElements"] = Value::Null;
        e["userIdentity"] = match session {
            Some(s) => {
                let mut context = json!({
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": s.role_id,
                        "arn": role_arn(),
                        "accountId": ACCOUNT,
                        "userName": ROLE_NAME,
                    },
                    "attributes": { "creationDate": s.created, "mfaAuthenticated": "false" },
                });
                if let Some(si) = &s.source_identity {
                    context["sourceIdentity"] = json!(si);
                }
                json!({
                    "type": "AssumedRole",
                    "principalId": format!("{}:{}", s.role_id, s.session_name),
                    "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/{}", s.session_name),
                    "accountId": ACCOUNT,
                    "accessKeyId": access_key,
                    "sessionContext": context,
                })
            }
            None => json!({ "type": "Unknown", "accessKeyId": access_key, "accountId": ACCOUNT }),
        };
        e
    }
}

/// Parameters of a form body (`Action=AssumeRole&RoleArn=...`).
fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn members(params: &HashMap<String, String>, name: &str, field: Option<&str>) -> Vec<String> {
    (1..)
        .map_while(|i| {
            let key = match field {
                Some(f) => format!("{name}.member.{i}.{f}"),
                None => format!("{name}.member.{i}"),
            };
            params.get(&key).cloned()
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn assume_role(State(me): State<StandIn>, headers: HeaderMap, body: Bytes) -> Response {
    let p = form(&body);
    if p.get("Action").map(String::as_str) != Some("AssumeRole") {
        return (
            StatusCode::BAD_REQUEST,
            "the stand-in's STS answers AssumeRole only",
        )
            .into_response();
    }
    let session_name = p.get("RoleSessionName").cloned().unwrap_or_default();
    let source_identity = p.get("SourceIdentity").cloned();
    // STS's own bounds, so no duration can overflow a time.
    let duration: i64 = p
        .get("DurationSeconds")
        .and_then(|d| d.parse().ok())
        .unwrap_or(3600)
        .clamp(900, 43_200);
    let key = aws_id("ASIA", 16);
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let token = format!("IQoJb3JpZ2luX2VjE{}", uuid::Uuid::new_v4().simple());
    let created = now();
    let expiration = rfc3339(created + chrono::Duration::seconds(duration));
    let role_id = format!("AROA{}", &aws_id("", 17));
    let assumed_arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/{session_name}");
    let tags: Vec<Value> = members(&p, "Tags", Some("Key"))
        .into_iter()
        .zip(members(&p, "Tags", Some("Value")))
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    let region = region_of(&headers);
    let mut e = base_event(
        "sts.amazonaws.com",
        "AssumeRole",
        &region,
        &format!("sts.{region}.amazonaws.com"),
    );
    let caller = access_key_of(&headers).unwrap_or_default();
    e["userIdentity"] = json!({
        "type": "IAMUser",
        "principalId": "AIDACAIRNDEMOGATEWAY1",
        "arn": format!("arn:aws:iam::{ACCOUNT}:user/{GATEWAY_USER}"),
        "accountId": ACCOUNT,
        "accessKeyId": caller,
        "userName": GATEWAY_USER,
    });
    let mut request = json!({
        "roleArn": p.get("RoleArn").cloned().unwrap_or_default(),
        "roleSessionName": session_name,
        "durationSeconds": duration,
    });
    if !tags.is_empty() {
        request["tags"] = json!(tags);
        request["transitiveTagKeys"] = json!(members(&p, "TransitiveTagKeys", None));
    }
    if let Some(si) = &source_identity {
        request["sourceIdentity"] = json!(si);
    }
    e["requestParameters"] = request;
    let mut response = json!({
        "credentials": { "accessKeyId": key, "sessionToken": token, "expiration": expiration },
        "assumedRoleUser": { "assumedRoleId": format!("{role_id}:{session_name}"), "arn": assumed_arn },
    });
    if let Some(si) = &source_identity {
        response["sourceIdentity"] = json!(si);
    }
    e["responseElements"] = response;
    e["resources"] = json!([{ "accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": role_arn() }]);
    {
        let mut inner = me.lock();
        inner.sessions.insert(
            key.clone(),
            Session {
                session_name: session_name.clone(),
                source_identity: source_identity.clone(),
                role_id: role_id.clone(),
                created: rfc3339(created),
            },
        );
        inner.events.push((region, e));
    }
    let source_identity_xml = source_identity
        .map(|s| format!("<SourceIdentity>{}</SourceIdentity>", xml_escape(&s)))
        .unwrap_or_default();
    let xml = format!(
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>{source_identity_xml}<AssumedRoleUser><Arn>{}</Arn><AssumedRoleId>{}:{}</AssumedRoleId></AssumedRoleUser><Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey><SessionToken>{token}</SessionToken><Expiration>{expiration}</Expiration></Credentials><PackedPolicySize>6</PackedPolicySize></AssumeRoleResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></AssumeRoleResponse>"#,
        xml_escape(&assumed_arn),
        role_id,
        xml_escape(&session_name),
        uuid::Uuid::new_v4()
    );
    ([(header::CONTENT_TYPE, "text/xml")], xml).into_response()
}

/// The simulated answer, and its token counts (about four characters a token).
fn answer(body: &[u8]) -> (String, u64, u64) {
    let req: Value = serde_json::from_slice(body).unwrap_or_default();
    let prompt_chars: usize = req["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .filter_map(|c| c["text"].as_str())
        .map(str::len)
        .sum();
    let text =
        "This answer came from the demo's simulated Bedrock, called as your own role session.";
    (
        text.to_string(),
        (prompt_chars as u64).div_ceil(4).max(1),
        (text.len() as u64).div_ceil(4),
    )
}

/// Keeps the call's CloudTrail record; returns its `requestID`, which the answer carries as
/// `x-amzn-RequestId` (as Bedrock's answers do), so the gateway's outcome names it.
fn record_call(me: &StandIn, headers: &HeaderMap, name: &str, model: &str) -> String {
    let key = access_key_of(headers).unwrap_or_default();
    let region = region_of(headers);
    let e = me.bedrock_event(&key, &region, name, model);
    let id = e["requestID"].as_str().unwrap_or_default().to_string();
    me.lock().events.push((region, e));
    id
}

async fn converse(
    State(me): State<StandIn>,
    UrlPath(model): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = record_call(&me, &headers, "Converse", &model);
    let (text, input, output) = answer(&body);
    let json = axum::Json(json!({
        "output": { "message": { "role": "assistant", "content": [{ "text": text }] } },
        "stopReason": "end_turn",
        "usage": { "inputTokens": input, "outputTokens": output, "totalTokens": input + output },
        "metrics": { "latencyMs": 12 },
    }));
    ([("x-amzn-requestid", request_id)], json).into_response()
}

/// One message of the `application/vnd.amazon.eventstream` framing: lengths, prelude CRC,
/// string headers, payload, message CRC.
fn frame(event_type: &str, payload: &Value) -> Vec<u8> {
    let payload = payload.to_string().into_bytes();
    let mut headers = Vec::new();
    for (name, value) in [
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ] {
        headers.push(name.len() as u8);
        headers.extend_from_slice(name.as_bytes());
        headers.push(7);
        headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = (12 + headers.len() + payload.len() + 4) as u32;
    let mut msg = Vec::with_capacity(total as usize);
    msg.extend_from_slice(&total.to_be_bytes());
    msg.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&msg);
    msg.extend_from_slice(&prelude_crc.to_be_bytes());
    msg.extend_from_slice(&headers);
    msg.extend_from_slice(&payload);
    let crc = crc32fast::hash(&msg);
    msg.extend_from_slice(&crc.to_be_bytes());
    msg
}

async fn converse_stream(
    State(me): State<StandIn>,
    UrlPath(model): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = record_call(&me, &headers, "ConverseStream", &model);
    let (text, input, output) = answer(&body);
    let mut out = frame("messageStart", &json!({ "role": "assistant" }));
    for piece in text.split_inclusive(", ") {
        out.extend(frame(
            "contentBlockDelta",
            &json!({ "contentBlockIndex": 0, "delta": { "text": piece } }),
        ));
    }
    out.extend(frame(
        "contentBlockStop",
        &json!({ "contentBlockIndex": 0 }),
    ));
    out.extend(frame("messageStop", &json!({ "stopReason": "end_turn" })));
    out.extend(frame(
        "metadata",
        &json!({
            "usage": { "inputTokens": input, "outputTokens": output, "totalTokens": input + output },
            "metrics": { "latencyMs": 12 },
        }),
    ));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", request_id)
        .body(Body::from(out))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
