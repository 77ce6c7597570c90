//! One-off authorization requests as the Cedar CLI takes them: a request JSON file
//! (`principal`, `action`, `resource`, `context`) or the parts given separately, plus an
//! entities file.

use std::path::Path;
use std::str::FromStr;

use cedar_policy::{Context, Entities, EntityUid, Request, Schema};
use serde_json::Value;

use crate::problem::{Problem, SourceFile, chain};

/// The parts of a request before they are checked against the schema.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub context: Value,
}

fn uid_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => {
            let o = o.get("__entity").and_then(Value::as_object).unwrap_or(o);
            let ty = o.get("type")?.as_str()?;
            let id = o.get("id")?.as_str()?;
            Some(format!("{ty}::{}", Value::String(id.to_string())))
        }
        _ => None,
    }
}

/// The text of an input file, or of standard input when the path is `-` (its size bounded, as
/// every input's is).
fn read_input(path: &Path) -> Result<String, Problem> {
    let failed = |e: std::io::Error| {
        Problem::error(
            "cairn::io",
            format!("cannot read `{}`: {e}", path.display()),
        )
    };
    if path == Path::new("-") {
        use std::io::Read as _;
        let mut text = String::new();
        std::io::stdin()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(failed)?;
        if text.len() as u64 > MAX_INPUT_BYTES {
            return Err(Problem::error(
                "cairn::io",
                format!("standard input is larger than {MAX_INPUT_BYTES} bytes"),
            ));
        }
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(failed)
}

/// The largest entities, context or request file read.
const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Reads a Cedar CLI request file.
pub fn read_request_json(path: &Path) -> Result<RequestSpec, Problem> {
    let text = read_input(path)?;
    let file = SourceFile::new(path, text);
    let v: Value = serde_json::from_str(&file.text).map_err(|e| {
        Problem::error("cairn::request", format!("invalid JSON: {e}")).at_line(&file, e.line())
    })?;
    let field = |name: &str| {
        v.get(name).and_then(uid_text).ok_or_else(|| {
            Problem::error(
                "cairn::request",
                format!("`{name}` is missing or not an entity uid"),
            )
            .in_file(&file)
            .with_help(format!("write `\"{name}\": \"Type::\\\"id\\\"\"`"))
        })
    };
    Ok(RequestSpec {
        principal: field("principal")?,
        action: field("action")?,
        resource: field("resource")?,
        context: v
            .get("context")
            .cloned()
            .unwrap_or(Value::Object(Default::default())),
    })
}

/// Reads a context JSON file.
pub fn read_context(path: &Path) -> Result<Value, Problem> {
    let text = read_input(path)?;
    let file = SourceFile::new(path, text);
    serde_json::from_str(&file.text).map_err(|e| {
        Problem::error("cairn::context", format!("invalid JSON: {e}")).at_line(&file, e.line())
    })
}

/// Checks the parts against the schema (when given) and builds the request.
pub fn build_request(spec: &RequestSpec, schema: Option<&Schema>) -> Result<Request, Problem> {
    let uid = |text: &str, what: &str| {
        EntityUid::from_str(text).map_err(|e| {
            Problem::error(
                "cairn::request",
                format!("{what} `{text}` is not an entity uid: {e}"),
            )
            .with_help("entity uids look like User::\"alice\"")
        })
    };
    let principal = uid(&spec.principal, "principal")?;
    let action = uid(&spec.action, "action")?;
    let resource = uid(&spec.resource, "resource")?;
    let context = Context::from_json_value(spec.context.clone(), schema.map(|s| (s, &action)))
        .map_err(|e| {
            Problem::error("cairn::context", format!("invalid context: {}", chain(&e))).with_help(
                "the context must have the attributes the schema declares for the action",
            )
        })?;
    Request::new(principal, action, resource, context, schema).map_err(|e| {
        Problem::error("cairn::request", format!("invalid request: {}", chain(&e)))
            .with_help("the principal and resource types must be ones the action applies to")
    })
}

/// Reads and checks an entities file (Cedar entity JSON).
pub fn read_entities(path: &Path, schema: Option<&Schema>) -> Result<Entities, Problem> {
    let text = read_input(path)?;
    let file = SourceFile::new(path, text);
    let value: Value = serde_json::from_str(&file.text).map_err(|e| {
        Problem::error("cairn::entities", format!("invalid JSON: {e}")).at_line(&file, e.line())
    })?;
    Entities::from_json_value(value, schema).map_err(|e| {
        let message = chain(&e);
        let p = Problem::error("cairn::entities", format!("invalid entities: {message}"))
            .with_help("entities must use declared types and attributes with the declared types");
        match locate_entity_error(&file.text, &message) {
            Some(offset) => p.at(&file, (offset, 1)),
            None => p.in_file(&file),
        }
    })
}

/// Finds where in an entities file an error about `Type::"id"` (and attribute `attr`) points:
/// Cedar names the entity and attribute but gives no position.
pub fn locate_entity_error(text: &str, message: &str) -> Option<usize> {
    let uid_start = message.find("::\"")?;
    let before = &message[..uid_start];
    let ty = before
        .rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .next()?
        .trim_matches(':');
    let rest = &message[uid_start + 3..];
    let id = &rest[..rest.find('"')?];
    let needle = format!("\"{id}\"");
    let mut search = 0;
    let entity_at = loop {
        let i = search + text.get(search..)?.find(&needle)?;
        let mut from = i.saturating_sub(120);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        let window = &text[from..i];
        if window.contains(&format!("\"{ty}\"")) {
            break i;
        }
        search = i + needle.len();
    };
    let attr = message
        .split("attribute `")
        .nth(1)
        .and_then(|s| s.split('`').next());
    if let Some(attr) = attr
        && let Some(j) = text[entity_at..].find(&format!("\"{attr}\""))
    {
        return Some(entity_at + j);
    }
    Some(entity_at)
}

#[cfg(test)]
mod tests {
    use super::locate_entity_error;

    #[test]
    fn entity_errors_are_located_in_files_with_non_ascii_text() {
        // The search window before the id once started inside a multi-byte character.
        let text = format!(
            "[{{\"uid\":{{\"type\":\"User\",\"id\":\"zoë\"}},\"attrs\":{{\"name\":\"{}\"}}}},\n {{\"uid\":{{\"type\":\"User\",\"id\":\"bob\"}},\"attrs\":{{\"age\":\"x\"}}}}]",
            "é".repeat(70)
        );
        for shift in 0..4 {
            let text = format!("{}{text}", " ".repeat(shift));
            let at = locate_entity_error(
                &text,
                "in attribute `age` on `User::\"bob\"`, type mismatch",
            );
            let at = at.expect("located");
            assert!(text[at..].starts_with("\"age\""), "{}", &text[at..]);
        }
    }
}
