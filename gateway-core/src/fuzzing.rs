//! Entry points for the fuzz targets in `fuzz/` and for the replay of their corpus by the normal
//! test suite. Each takes arbitrary bytes, must never panic, and checks what must hold of any
//! input it accepts.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey};
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

use crate::admission::resource::classification_of;
use crate::authn::{ApiKeys, Authenticator, OidcVerifier, hash_key, map_claims};
use crate::config::{ApiKeyConfig, ClassificationConfig, OidcConfig};
use crate::guardrails::{Guardrails, GuardrailsConfig};
use crate::openai::ChatRequest;
use crate::protocols::chat::estimate_prompt_tokens;
use crate::providers::bedrock::convert::converse_input;
use crate::providers::openai_compat::{SseParser, parse_chunk, parse_completion};

const ISSUER: &str = "https://issuer.fuzz";
const API_KEY: &str = "sk-fuzz-0123456789";

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let x = URL_SAFE_NO_PAD.encode(signing_key().verifying_key().as_bytes());
        let set: JwkSet = serde_json::from_value(json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"},
        ]}))
        .unwrap_or(JwkSet { keys: Vec::new() });
        let config = OidcConfig {
            issuer: ISSUER.into(),
            verified_cache_entries: 64,
            ..OidcConfig::default()
        };
        let oidc = OidcVerifier::with_keys(config, &set).ok();
        let keys = match ApiKeys::new(&[ApiKeyConfig {
            id: "fuzz".into(),
            sha256: hash_key(API_KEY),
            principal: "ServiceAccount::\"fuzz\"".into(),
            ..ApiKeyConfig::default()
        }]) {
            Ok(k) => k,
            Err(e) => panic!("the harness's API key is refused: {e}"),
        };
        Authenticator::new(keys, oidc, 8 * 1024)
    })
}

fn authenticate(headers: &HeaderMap) {
    if let Ok(p) = futures::executor::block_on(authenticator().authenticate(headers)) {
        let _ = p.auth_json();
    }
}

fn bearer_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        h.insert(http::header::AUTHORIZATION, v);
    }
    h
}

/// A bearer token through the OIDC verifier and the claims mapping. The first byte chooses what
/// the rest is: a token as sent (0); a JOSE header and a claims object, split at the first
/// newline, signed with the harness key so the checks after the signature are reached (1); or
/// claims given straight to the claims mapping (2).
pub fn bearer(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 3 {
        0 => authenticate(&bearer_headers(text)),
        1 => {
            let (header, claims) = text
                .split_once('\n')
                .unwrap_or((r#"{"alg":"EdDSA"}"#, text));
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let sig = signing_key().sign(input.as_bytes());
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
            let headers = bearer_headers(&token);
            let first = futures::executor::block_on(authenticator().authenticate(&headers));
            // The second use is answered from the verified-token cache: it must agree.
            let again = futures::executor::block_on(authenticator().authenticate(&headers));
            assert_eq!(
                first.as_ref().map(|p| p.uid()).ok(),
                again.as_ref().map(|p| p.uid()).ok(),
                "a remembered token decided differently"
            );
        }
        _ => {
            if let Ok(Value::Object(claims)) = serde_json::from_str::<Value>(text) {
                let mapping = OidcConfig::default().claims;
                if let Ok(p) = map_claims(&claims, &mapping, ISSUER) {
                    let _ = p.auth_json();
                }
            }
        }
    }
}

/// Request headers, one `name: value` per line, through authentication (API keys and OIDC) and
/// the data classification.
pub fn headers(data: &[u8]) {
    let headers = header_lines(data);
    authenticate(&headers);
    let config = ClassificationConfig::default();
    if let Ok(c) = classification_of(&config, &headers) {
        assert!(
            config.levels.get(&c.label) == Some(&c.level),
            "a classification outside the configured levels"
        );
    }
}

/// `Name: value` lines as headers; lines that are not one are skipped.
fn header_lines(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    headers
}

/// An MCP POST: header lines, a blank line, then the body. The envelope is parsed (and must
/// read the same once written again), the 2026-07-28 header checks run (a request they accept
/// names a supported revision and its `Mcp-Method`), the tool name's namespacing and header
/// encoding round-trip, and `params` is taken as a tool definition (its risk is one of the
/// three) whose input schema checks the arguments.
pub fn mcp_message(data: &[u8]) {
    use crate::mcp::{catalogue, serve, wire};
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&[][..], data),
    };
    let headers = header_lines(head);
    let Ok(msg) = wire::parse(body) else {
        return;
    };
    // Written once, the envelope must read back the same ever after. (Not the same as the
    // first reading: serde_json's default float parser is not correctly rounded for mantissas
    // beyond 19 digits, so such a number may move by one ulp when first written; found by this
    // target, see fuzz/regressions/mcp_message/.)
    let write = |m: &wire::Message| {
        let mut v = json!({ "jsonrpc": "2.0", "method": m.method, "params": m.params });
        if let Some(id) = &m.id {
            v["id"] = id.clone();
        }
        serde_json::to_vec(&v).ok()
    };
    let once = write(&msg).and_then(|b| wire::parse(&b).ok());
    if let Some(once) = &once {
        let twice = write(once).and_then(|b| wire::parse(&b).ok());
        assert_eq!(
            twice.as_ref(),
            Some(once),
            "the envelope reads differently once written again"
        );
        assert_eq!((&once.id, &once.method), (&msg.id, &msg.method));
    } else {
        panic!("an envelope that parsed does not parse once written");
    }
    if let Ok(version) = wire::check_modern(&headers, &msg) {
        assert!(wire::MODERN.contains(&version.as_str()));
        assert_eq!(
            headers
                .get(wire::METHOD_HEADER)
                .and_then(|v| v.to_str().ok()),
            Some(msg.method.as_str())
        );
    }
    if let Some(name) = msg.str_param("name") {
        let encoded = wire::encode_header_value(name);
        assert_eq!(wire::decode_header_value(&encoded).as_deref(), Some(name));
        if let Some((server, tool)) = catalogue::split(name) {
            assert_eq!(catalogue::namespaced(server, tool), name);
            assert!(!server.contains(catalogue::SEPARATOR));
        }
    }
    let server = mcp_server();
    if let Some(tool) = catalogue::ToolDef::new(server, Value::Object(msg.params.clone())) {
        assert!(matches!(tool.risk(), "read" | "write" | "destructive"));
        let args = msg
            .params
            .get("arguments")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let _ = serve::check_arguments(&tool.definition, &args);
        let mut listed = tool.listed(true);
        guardrails().check_json(&mut listed, "internal", None);
    }
}

fn mcp_server() -> &'static crate::mcp::config::McpServerConfig {
    static SERVER: OnceLock<crate::mcp::config::McpServerConfig> = OnceLock::new();
    SERVER.get_or_init(|| crate::mcp::config::McpServerConfig::local("fuzz", vec!["true".into()]))
}

fn guardrails() -> &'static Arc<Guardrails> {
    static GUARDRAILS: OnceLock<Arc<Guardrails>> = OnceLock::new();
    GUARDRAILS.get_or_init(|| Arc::new(Guardrails::new(GuardrailsConfig::default())))
}

/// A chat completion request body: parsed, checked, estimated, guarded (with the default
/// guardrails) and converted for Bedrock's Converse API, as the gateway does before a call.
pub fn chat_request(data: &[u8]) {
    let Ok(mut request) = serde_json::from_slice::<ChatRequest>(data) else {
        return;
    };
    if request.check().is_err() {
        return;
    }
    let _ = estimate_prompt_tokens(&request);
    let verdict = guardrails().check_request(&mut request, "internal");
    let _ = verdict.json();
    let _ = converse_input(&request);
    // What an OpenAI-compatible upstream is sent must itself be a request the gateway accepts.
    let Ok(forwarded) = serde_json::to_vec(&request) else {
        panic!("a checked request cannot be serialised");
    };
    match serde_json::from_slice::<ChatRequest>(&forwarded) {
        Ok(back) => assert!(back.check().is_ok(), "the forwarded request does not check"),
        Err(e) => panic!("the forwarded request does not parse: {e}"),
    }
}

/// An upstream's streamed answer (server-sent events of chat chunks) and whole answer, as the
/// gateway reads them, with the output guardrail over the streamed text. The first byte sets
/// the size of the reads the stream arrives in; events must not depend on it, and text without
/// findings must pass the stream guard unchanged.
pub fn upstream_response(data: &[u8]) {
    let Some((&size, rest)) = data.split_first() else {
        return;
    };
    let mut whole = SseParser::default();
    let events = whole.push(rest);
    let mut pieces = SseParser::default();
    let mut chunked = Vec::new();
    for piece in rest.chunks(usize::from(size % 16) + 1) {
        chunked.extend(pieces.push(piece));
    }
    assert_eq!(
        events, chunked,
        "SSE events depend on how the bytes were read"
    );
    let mut text = String::new();
    for e in &events {
        if let Ok(v) = serde_json::from_str::<Value>(e) {
            for event in parse_chunk(&v) {
                if let crate::providers::StreamEvent::Delta(d) = event {
                    text.push_str(&d);
                }
            }
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(rest) {
        let _ = parse_completion(&v);
    }
    let mut checked = text.clone();
    let verdict = guardrails().check_text(&mut checked, "internal");
    let mut guard = guardrails().stream("internal");
    let mut streamed = String::new();
    let mut blocked = false;
    for piece in split_chars(&text, usize::from(size % 7) + 1) {
        match guard.push(piece) {
            Ok(s) => streamed.push_str(&s),
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    if !blocked {
        match guard.finish() {
            Ok(s) => streamed.push_str(&s),
            Err(_) => blocked = true,
        }
    }
    if verdict.kinds().is_empty() {
        assert!(!blocked, "the stream guard blocked text without findings");
        assert_eq!(
            streamed, text,
            "the stream guard changed text without findings"
        );
    }
}

/// `text` in pieces of about `n` bytes, cut at character boundaries.
fn split_chars(text: &str, n: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut at = n.min(rest.len());
        while !rest.is_char_boundary(at) {
            at += 1;
        }
        let (head, tail) = rest.split_at(at);
        out.push(head);
        rest = tail;
    }
    out
}
