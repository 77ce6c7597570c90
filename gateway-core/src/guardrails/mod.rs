//! Local guardrails on prompts and completions: detectors of personal data and secrets, denied
//! terms, and a prompt size limit. Each detector has an action (`block`, `redact` or `log`),
//! overridable per data classification. Findings (types and counts, never the text) go into the
//! Cedar context and the decision record.
//!
//! Streamed completions are checked incrementally by [`StreamGuard`]: it holds back a tail of
//! the text so a secret split across chunks is still seen whole before anything is sent.

mod detectors;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use detectors::{DeniedTerms, Finding, Kind, scan};

use crate::openai::ChatRequest;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardrailsConfig {
    pub enabled: bool,
    /// Prompts longer than this (in characters, all messages) are a `prompt_too_large` finding.
    pub max_prompt_chars: usize,
    /// Terms that must not appear (case-insensitive, whole words).
    pub denied_terms: Vec<String>,
    /// Named topics, each a list of terms; a match is a `denied_topic` finding.
    pub denied_topics: BTreeMap<String, Vec<String>>,
    /// Detector to `block`, `redact` or `log`.
    pub actions: BTreeMap<String, String>,
    /// Per data classification label, overrides of `actions`.
    pub by_classification: BTreeMap<String, BTreeMap<String, String>>,
    /// Check completions too (streams incrementally).
    pub check_output: bool,
}

impl Default for GuardrailsConfig {
    fn default() -> Self {
        let actions = [
            ("email", "redact"),
            ("phone", "redact"),
            ("payment_card", "block"),
            ("us_ssn", "block"),
            ("iban", "redact"),
            ("aws_access_key", "block"),
            ("aws_secret_key", "block"),
            ("private_key", "block"),
            ("jwt", "block"),
            ("denied_term", "block"),
            ("denied_topic", "block"),
            ("prompt_too_large", "block"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Self {
            enabled: true,
            max_prompt_chars: 200_000,
            denied_terms: Vec::new(),
            denied_topics: BTreeMap::new(),
            actions,
            by_classification: BTreeMap::new(),
            check_output: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Block,
    Redact,
    Log,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Redact => "redact",
            Self::Log => "log",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "block" => Some(Self::Block),
            "redact" => Some(Self::Redact),
            "log" => Some(Self::Log),
            _ => None,
        }
    }
}

/// What a check found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub counts: BTreeMap<&'static str, usize>,
    /// Detectors whose action is `block` that fired.
    pub blocked: Vec<Kind>,
    pub redacted: usize,
    /// Detectors whose findings were redacted.
    pub redacted_kinds: Vec<&'static str>,
}

impl Verdict {
    pub fn kinds(&self) -> Vec<&'static str> {
        self.counts.keys().copied().collect()
    }

    pub fn merge(&mut self, other: Verdict) {
        for (k, n) in other.counts {
            *self.counts.entry(k).or_default() += n;
        }
        for b in other.blocked {
            if !self.blocked.contains(&b) {
                self.blocked.push(b);
            }
        }
        self.redacted += other.redacted;
        for k in other.redacted_kinds {
            if !self.redacted_kinds.contains(&k) {
                self.redacted_kinds.push(k);
            }
        }
    }

    /// Span attributes: the detectors that fired and how often, never the text.
    pub fn span_attrs(&self, direction: &str) -> Vec<(&'static str, crate::telemetry::otlp::Attr)> {
        use crate::telemetry::otlp::Attr;
        vec![
            (
                "cairn.guardrails.direction",
                Attr::Str(direction.to_string()),
            ),
            (
                "cairn.guardrails.findings",
                Attr::Strs(
                    self.counts
                        .iter()
                        .map(|(k, n)| format!("{k}:{n}"))
                        .collect(),
                ),
            ),
            (
                "cairn.guardrails.blocked",
                Attr::Strs(self.blocked.iter().map(|k| k.name().to_string()).collect()),
            ),
            ("cairn.guardrails.redacted", Attr::Int(self.redacted as i64)),
        ]
    }

    pub fn json(&self) -> Value {
        serde_json::json!({
            "findings": self.counts,
            "blocked": self.blocked.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "redacted": self.redacted,
        })
    }
}

pub struct Guardrails {
    config: GuardrailsConfig,
    denied: DeniedTerms,
    actions: HashMap<Kind, Action>,
    by_class: HashMap<String, HashMap<Kind, Action>>,
}

/// Checks detector and action names, and that overrides name known classification labels.
pub fn check_config(c: &GuardrailsConfig, levels: &BTreeMap<String, i64>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |section: &str, m: &BTreeMap<String, String>| {
        for (k, v) in m {
            if Kind::parse(k).is_none() {
                problems.push(format!("`{section}.{k}`: no such detector"));
            }
            if Action::parse(v).is_none() {
                problems.push(format!(
                    "`{section}.{k}` = `{v}`: the action must be block, redact or log"
                ));
            }
        }
    };
    check("guardrails.actions", &c.actions);
    for (label, m) in &c.by_classification {
        check(&format!("guardrails.by_classification.{label}"), m);
    }
    for label in c.by_classification.keys() {
        if !levels.contains_key(label) {
            problems.push(format!(
                "`guardrails.by_classification.{label}`: `{label}` is not one of `classification.levels` ({})",
                levels.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if c.max_prompt_chars == 0 {
        problems.push("`guardrails.max_prompt_chars` must be positive".into());
    }
    problems
}

fn parse_actions(m: &BTreeMap<String, String>) -> HashMap<Kind, Action> {
    m.iter()
        .filter_map(|(k, v)| Some((Kind::parse(k)?, Action::parse(v)?)))
        .collect()
}

fn redact(text: &str, findings: &[(Finding, Action)]) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    let mut n = 0;
    for (f, a) in findings {
        if *a != Action::Redact || f.start < pos {
            continue;
        }
        out.push_str(&text[pos..f.start]);
        out.push_str(&format!("[REDACTED:{}]", f.kind.name()));
        pos = f.end;
        n += 1;
    }
    out.push_str(&text[pos..]);
    (out, n)
}

impl Guardrails {
    pub fn new(config: GuardrailsConfig) -> Self {
        Self {
            denied: DeniedTerms::with_topics(&config.denied_terms, &config.denied_topics),
            actions: parse_actions(&config.actions),
            by_class: config
                .by_classification
                .iter()
                .map(|(k, v)| (k.clone(), parse_actions(v)))
                .collect(),
            config,
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn checks_output(&self) -> bool {
        self.config.enabled && self.config.check_output
    }

    pub fn action(&self, kind: Kind, classification: &str) -> Action {
        self.by_class
            .get(classification)
            .and_then(|m| m.get(&kind))
            .or_else(|| self.actions.get(&kind))
            .copied()
            .unwrap_or(Action::Log)
    }

    /// Scans one text, redacting in place what must be redacted.
    pub fn check_text(&self, text: &mut String, classification: &str) -> Verdict {
        self.check_text_as(text, classification, None)
    }

    /// Scans one text; `force` replaces the configured action for every finding (an MCP server
    /// set to block or redact whatever is found).
    fn check_text_as(
        &self,
        text: &mut String,
        classification: &str,
        force: Option<Action>,
    ) -> Verdict {
        let mut v = Verdict::default();
        let findings: Vec<(Finding, Action)> = scan(text, &self.denied)
            .into_iter()
            .map(|f| {
                (
                    f,
                    force.unwrap_or_else(|| self.action(f.kind, classification)),
                )
            })
            .collect();
        for (f, a) in &findings {
            *v.counts.entry(f.kind.name()).or_default() += 1;
            if *a == Action::Block && !v.blocked.contains(&f.kind) {
                v.blocked.push(f.kind);
            }
        }
        if findings.iter().any(|(_, a)| *a == Action::Redact) {
            let (out, n) = redact(text, &findings);
            *text = out;
            v.redacted = n;
            for (f, a) in &findings {
                if *a == Action::Redact && !v.redacted_kinds.contains(&f.kind.name()) {
                    v.redacted_kinds.push(f.kind.name());
                }
            }
        }
        v
    }

    /// Scans the arguments of tool calls in OpenAI's shape (`[{"function": {"arguments": "..."}}]`),
    /// redacting in place.
    pub fn check_tool_calls(&self, calls: &mut Value, classification: &str) -> Verdict {
        let mut v = Verdict::default();
        let Value::Array(calls) = calls else {
            return v;
        };
        for call in calls {
            if let Some(Value::String(args)) = call
                .get_mut("function")
                .and_then(|f| f.get_mut("arguments"))
            {
                v.merge(self.check_arguments(args, classification));
            }
        }
        v
    }

    /// Scans one tool call's arguments. They are JSON text, so the detectors run on the decoded
    /// strings (an escape such as `\n` or `\u0041` would otherwise hide a secret from them, and a
    /// redaction could land inside an escape); the arguments are written again only when
    /// something was redacted. Arguments that are not JSON are scanned as they are.
    pub fn check_arguments(&self, args: &mut String, classification: &str) -> Verdict {
        let Ok(mut value) = serde_json::from_str::<Value>(args) else {
            return self.check_text(args, classification);
        };
        let mut v = Verdict::default();
        self.check_json_strings(&mut value, classification, None, &mut v);
        if v.redacted > 0
            && let Ok(text) = serde_json::to_string(&value)
        {
            *args = text;
        }
        v
    }

    /// Scans every string of a JSON value (keys included), redacting in place; `force` as for
    /// [`Self::check_text_as`]. For MCP tool arguments and results.
    pub fn check_json(
        &self,
        value: &mut Value,
        classification: &str,
        force: Option<Action>,
    ) -> Verdict {
        let mut v = Verdict::default();
        self.check_json_strings(value, classification, force, &mut v);
        v
    }

    fn check_json_strings(
        &self,
        value: &mut Value,
        classification: &str,
        force: Option<Action>,
        v: &mut Verdict,
    ) {
        match value {
            Value::String(s) => {
                let mut text = std::mem::take(s);
                v.merge(self.check_text_as(&mut text, classification, force));
                *s = text;
            }
            Value::Array(items) => {
                for item in items {
                    self.check_json_strings(item, classification, force, v);
                }
            }
            Value::Object(fields) => {
                // Keys are model-written text too; serde_json's parser bounds the depth.
                for (mut key, mut field) in std::mem::take(fields) {
                    v.merge(self.check_text_as(&mut key, classification, force));
                    self.check_json_strings(&mut field, classification, force, v);
                    fields.insert(key, field);
                }
            }
            _ => {}
        }
    }

    /// Checks every message of a request (string contents, text parts and the arguments of
    /// earlier tool calls), redacting in place.
    pub fn check_request(&self, request: &mut ChatRequest, classification: &str) -> Verdict {
        let mut v = Verdict::default();
        if !self.config.enabled {
            return v;
        }
        let total: usize = request
            .messages
            .iter()
            .map(|m| m.text().chars().count())
            .sum();
        if total > self.config.max_prompt_chars {
            v.counts.insert(Kind::PromptTooLarge.name(), 1);
            if self.action(Kind::PromptTooLarge, classification) == Action::Block {
                v.blocked.push(Kind::PromptTooLarge);
            }
        }
        for m in &mut request.messages {
            match &mut m.content {
                Value::String(s) => {
                    let mut text = std::mem::take(s);
                    v.merge(self.check_text(&mut text, classification));
                    *s = text;
                }
                Value::Array(parts) => {
                    for p in parts {
                        if let Some(Value::String(s)) = p.get_mut("text") {
                            let mut text = std::mem::take(s);
                            v.merge(self.check_text(&mut text, classification));
                            *s = text;
                        }
                    }
                }
                _ => {}
            }
            if let Some(calls) = m.extra.get_mut("tool_calls") {
                v.merge(self.check_tool_calls(calls, classification));
            }
        }
        v
    }

    pub fn stream(self: &Arc<Self>, classification: &str) -> StreamGuard {
        StreamGuard {
            guardrails: self.clone(),
            classification: classification.to_string(),
            pending: String::new(),
            released: String::new(),
            in_private_key: None,
            verdict: Verdict::default(),
        }
    }
}

/// Bytes held back from a stream, so a pattern split across chunks is seen whole.
pub const STREAM_HOLD: usize = 160;

/// How much of the text already sent is kept as the left context of the next scan.
const STREAM_CONTEXT: usize = 64;

/// Incremental checking of a streamed completion.
pub struct StreamGuard {
    guardrails: Arc<Guardrails>,
    classification: String,
    pending: String,
    /// The end of the text already sent (up to [`STREAM_CONTEXT`] bytes): what precedes the
    /// pending text decides what matches at its start (a digit run that continues one already
    /// sent is not a card number), as it would in the whole answer.
    released: String,
    /// Inside a private key block whose action is redact: its text is dropped until END.
    in_private_key: Option<Action>,
    pub verdict: Verdict,
}

/// The largest char boundary at or below `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl StreamGuard {
    /// Takes the next chunk; returns the text that may be sent now, or the detector that blocks.
    pub fn push(&mut self, chunk: &str) -> Result<String, Kind> {
        self.pending.push_str(chunk);
        self.drain(false)
    }

    /// The end of the stream: everything left, checked.
    pub fn finish(&mut self) -> Result<String, Kind> {
        self.drain(true)
    }

    fn drain(&mut self, last: bool) -> Result<String, Kind> {
        let mut out = String::new();
        loop {
            if self.in_private_key.is_some() {
                // Drop key material through its END line (the detector's END form, PGP's
                // `PRIVATE KEY BLOCK` included).
                match detectors::private_key_end(&self.pending) {
                    Some(end) => {
                        self.pending.drain(..end);
                        self.released.clear();
                        self.in_private_key = None;
                    }
                    None if last => {
                        self.pending.clear();
                        self.in_private_key = None;
                        return Ok(out);
                    }
                    None => {
                        // Keep enough to see an END line split across chunks.
                        let keep =
                            floor_boundary(&self.pending, self.pending.len().saturating_sub(64));
                        self.pending.drain(..keep);
                        return Ok(out);
                    }
                }
            }
            let mut emit_end = if last {
                self.pending.len()
            } else {
                floor_boundary(
                    &self.pending,
                    self.pending.len().saturating_sub(STREAM_HOLD),
                )
            };
            // A token that could still grow into a JWT, or a key header, is not sent yet.
            if !last {
                for marker in ["eyJ", "-----BEGIN"] {
                    if let Some(i) = self.pending.rfind(marker) {
                        let tail = &self.pending[i..];
                        let open = if marker == "-----BEGIN" {
                            // Only a header still being written is held back: once its closing
                            // dashes (or the end of its line) arrived, the detector has seen it.
                            let rest = &tail[marker.len()..];
                            !rest.contains("-----") && !rest.contains('\n') && rest.len() < 64
                        } else {
                            tail.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
                            })
                        };
                        if open && i < emit_end {
                            emit_end = i;
                        }
                    }
                }
            }
            let context = self.released.len();
            let haystack = format!("{}{}", self.released, self.pending);
            let findings: Vec<Finding> = scan(&haystack, &self.guardrails.denied)
                .into_iter()
                .filter(|f| f.start >= context)
                .map(|f| Finding {
                    start: f.start - context,
                    end: f.end - context,
                    ..f
                })
                .collect();
            for f in &findings {
                if f.start < emit_end && f.end > emit_end {
                    emit_end = f.start;
                }
            }
            let mut final_findings: Vec<(Finding, Action)> = findings
                .into_iter()
                .filter(|f| f.end <= emit_end)
                .map(|f| (f, self.guardrails.action(f.kind, &self.classification)))
                .collect();
            // A key block whose END has not arrived and that is to be redacted: send up to its
            // header (redacted) and nothing of what follows, whatever else matched in it.
            let mut enter_key = false;
            if let Some(k) = final_findings.iter().position(|(f, a)| {
                f.kind == Kind::PrivateKey
                    && *a == Action::Redact
                    && detectors::private_key_end(&self.pending[f.start..f.end]).is_none()
            }) {
                emit_end = final_findings[k].0.end;
                final_findings.truncate(k + 1);
                enter_key = true;
            }
            for (f, a) in &final_findings {
                *self.verdict.counts.entry(f.kind.name()).or_default() += 1;
                if *a == Action::Block {
                    self.verdict.blocked.push(f.kind);
                    return Err(f.kind);
                }
            }
            let head: String = self.pending.drain(..emit_end).collect();
            self.released.push_str(&head);
            let keep = floor_boundary(
                &self.released,
                self.released.len().saturating_sub(STREAM_CONTEXT),
            );
            self.released.drain(..keep);
            let (text, n) = redact(&head, &final_findings);
            self.verdict.redacted += n;
            out.push_str(&text);
            if !enter_key {
                return Ok(out);
            }
            self.in_private_key = Some(Action::Redact);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(actions: &[(&str, &str)]) -> Arc<Guardrails> {
        let mut c = GuardrailsConfig::default();
        for (k, v) in actions {
            c.actions.insert(k.to_string(), v.to_string());
        }
        Arc::new(Guardrails::new(c))
    }

    #[test]
    fn tool_arguments_are_read_as_decoded_json() {
        let g = Guardrails::new(GuardrailsConfig::default());
        // An escape before the address or key would hide it from word-boundary detectors.
        let mut args = r#"{"cc":"Hi,\nbob@example.org","n":1}"#.to_string();
        let v = g.check_arguments(&mut args, "internal");
        assert_eq!(v.counts.get("email"), Some(&1));
        let parsed: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(parsed["cc"], "Hi,\n[REDACTED:email]");
        assert_eq!(parsed["n"], 1);
        let mut args = r#"{"note":"x\n\u0041KIAIOSFODNN7EXAMPLE"}"#.to_string();
        let v = g.check_arguments(&mut args, "internal");
        assert_eq!(v.blocked, vec![Kind::AwsAccessKey]);
        // Nothing redacted: the model's text is passed as it was written.
        let mut args = "{ \"city\" : \"Paris\" }".to_string();
        assert!(g.check_arguments(&mut args, "internal").counts.is_empty());
        assert_eq!(args, "{ \"city\" : \"Paris\" }");
        // Not JSON: scanned as text.
        let mut args = "to jane@example.org".to_string();
        g.check_arguments(&mut args, "internal");
        assert_eq!(args, "to [REDACTED:email]");
    }

    #[test]
    fn redaction_and_blocking_by_classification() {
        let mut c = GuardrailsConfig::default();
        c.by_classification.insert(
            "public".into(),
            [("email".to_string(), "block".to_string())].into(),
        );
        let g = Guardrails::new(c);
        let mut t = "write to jane@example.com today".to_string();
        let v = g.check_text(&mut t, "internal");
        assert_eq!(t, "write to [REDACTED:email] today");
        assert_eq!(v.counts["email"], 1);
        assert!(v.blocked.is_empty());
        let mut t = "write to jane@example.com today".to_string();
        assert_eq!(g.check_text(&mut t, "public").blocked, vec![Kind::Email]);
    }

    #[test]
    fn a_secret_split_across_chunks_is_caught() {
        let g = g(&[("aws_access_key", "block")]);
        let mut s = g.stream("internal");
        let mut sent = String::new();
        let text =
            "Here is the key you asked for: AKIAIOS".to_string() + "FODNN7EXAMPLE and more words ";
        let chunks = [
            "Here is the key you ",
            "asked for: AKIAIOS",
            "FODNN7EXAM",
            "PLE and more words ",
        ];
        let mut blocked = None;
        for c in chunks {
            match s.push(c) {
                Ok(t) => sent.push_str(&t),
                Err(k) => {
                    blocked = Some(k);
                    break;
                }
            }
        }
        if blocked.is_none() {
            match s.finish() {
                Ok(t) => sent.push_str(&t),
                Err(k) => blocked = Some(k),
            }
        }
        assert_eq!(blocked, Some(Kind::AwsAccessKey));
        assert!(!sent.contains("AKIA"), "{sent}");
        assert!(text.contains("AKIAIOSFODNN7EXAMPLE"));
    }

    /// Every detector, with its sample split into two chunks at every byte, and with a long
    /// lead-in so the hold-back matters: with `redact` nothing of the sample is ever sent, and
    /// the text after it still is.
    #[test]
    fn every_detector_is_caught_across_every_chunk_boundary() {
        let samples = [
            ("email", "jane.doe@example.com"),
            ("phone", "(415) 555-0132"),
            ("payment_card", "4111 1111 1111 1111"),
            ("us_ssn", "123-45-6789"),
            ("iban", "GB82 WEST 1234 5698 7654 32"),
            ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
            ("aws_secret_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            (
                "jwt",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            ),
            (
                "private_key",
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1\n-----END RSA PRIVATE KEY-----",
            ),
        ];
        let lead = "word ".repeat(60);
        for (kind, secret) in samples {
            let g = g(&[(kind, "redact")]);
            let text = format!("{lead}see {secret} then the end");
            for cut in (lead.len()..text.len()).filter(|i| text.is_char_boundary(*i)) {
                let mut s = g.stream("internal");
                let mut sent = s.push(&text[..cut]).unwrap();
                sent.push_str(&s.push(&text[cut..]).unwrap());
                sent.push_str(&s.finish().unwrap());
                // The secret, and any long enough piece of it, never left.
                let piece = &secret[..secret.len().min(10)];
                assert!(!sent.contains(piece), "{kind} cut at {cut}: {sent}");
                assert!(
                    sent.ends_with(" then the end"),
                    "{kind} cut at {cut}: {sent}"
                );
                assert!(
                    sent.contains(&format!("[REDACTED:{kind}]")),
                    "{kind} cut at {cut}: {sent}"
                );
            }
            // With `block`, the stream stops before any of it is sent.
            let g = self::g(&[(kind, "block")]);
            for cut in (lead.len()..text.len()).filter(|i| text.is_char_boundary(*i)) {
                let mut s = g.stream("internal");
                let mut sent = String::new();
                let outcome = s
                    .push(&text[..cut])
                    .map(|t| sent.push_str(&t))
                    .and_then(|()| s.push(&text[cut..]).map(|t| sent.push_str(&t)))
                    .and_then(|()| s.finish().map(|t| sent.push_str(&t)));
                assert!(outcome.is_err(), "{kind} cut at {cut} was not blocked");
                assert!(
                    !sent.contains(&secret[..secret.len().min(10)]),
                    "{kind} cut at {cut}: {sent}"
                );
            }
        }
    }

    #[test]
    fn redacting_a_stream_keeps_the_rest() {
        let g = g(&[("email", "redact")]);
        let mut s = g.stream("internal");
        let mut sent = String::new();
        for c in [
            "contact jane.d",
            "oe@examp",
            "le.org for ",
            "details please",
        ] {
            sent.push_str(&s.push(c).unwrap());
        }
        sent.push_str(&s.finish().unwrap());
        assert_eq!(sent, "contact [REDACTED:email] for details please");
        assert_eq!(s.verdict.counts["email"], 1);
    }

    #[test]
    fn a_private_key_block_is_redacted_through_its_end() {
        let g = g(&[("private_key", "redact")]);
        let mut s = g.stream("internal");
        let mut sent = String::new();
        let body = "MIIEowIBAAKCAQEA".repeat(20);
        for c in [
            "before -----BEGIN RSA PRI",
            "VATE KEY-----\n",
            &body,
            "\n-----END RSA PRIVATE KEY----- after",
        ] {
            sent.push_str(&s.push(c).unwrap());
        }
        sent.push_str(&s.finish().unwrap());
        assert!(!sent.contains("MIIE"), "{sent}");
        assert!(sent.starts_with("before [REDACTED:private_key]"), "{sent}");
        assert!(sent.ends_with(" after"), "{sent}");
    }

    #[test]
    fn a_certificate_does_not_stall_the_stream() {
        let g = g(&[("private_key", "redact")]);
        let mut s = g.stream("internal");
        let mut before_finish = String::new();
        before_finish.push_str(&s.push("here: -----BEGIN CERTIFICATE-----\n").unwrap());
        for _ in 0..20 {
            before_finish.push_str(&s.push("MIIBszCCAVmgAwIBAgIU ").unwrap());
        }
        assert!(
            before_finish.contains("BEGIN CERTIFICATE-----\nMIIB"),
            "text after a complete header flows on: {before_finish:?}"
        );
        // A key header still being written is held back until it is whole.
        let mut s = g.stream("internal");
        let sent = s.push("x -----BEGIN EC PRI").unwrap();
        assert!(!sent.contains("BEGIN"), "{sent}");
        let mut sent = sent + &s.push("VATE KEY-----\n").unwrap();
        for _ in 0..20 {
            sent.push_str(&s.push("MHcCAQEEIBYr ").unwrap());
        }
        assert!(!sent.contains("MHcC"), "key material is dropped: {sent}");
        sent.push_str(&s.push("\n-----END EC PRIVATE KEY----- bye").unwrap());
        sent.push_str(&s.finish().unwrap());
        assert!(!sent.contains("MHcC"), "{sent}");
        assert!(sent.ends_with(" bye"), "{sent}");

        // A PGP key block ends with `PRIVATE KEY BLOCK-----`; other matches inside the key
        // (a `+digits` run looks like a phone number) do not let its body out.
        let pgp = self::g(&[("private_key", "redact"), ("phone", "redact")]);
        let mut s = pgp.stream("internal");
        let mut sent = s.push("a -----BEGIN PGP PRIVATE KEY BLOCK-----\n").unwrap();
        for _ in 0..20 {
            sent.push_str(&s.push("lQOYBF+4412345678901xyz ").unwrap());
        }
        sent.push_str(
            &s.push("\n-----END PGP PRIVATE KEY BLOCK----- after")
                .unwrap(),
        );
        sent.push_str(&s.finish().unwrap());
        assert!(!sent.contains("lQOY") && !sent.contains("xyz"), "{sent}");
        assert!(sent.ends_with(" after"), "{sent}");
    }
}
