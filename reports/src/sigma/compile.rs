//! A Sigma detection as one SQL boolean expression over `cloudtrail`, in the subset of SQL that
//! DataFusion and Trino (Athena) both run unchanged.
//!
//! Semantics follow the Sigma specification as pySigma implements it:
//! - strings compare case-insensitively (`lower(..)` on both sides) unless `|cased`; `*` and
//!   `?` are wildcards, `\` escapes them;
//! - every atom is two-valued: an absent field makes an atom false (`coalesce(.., FALSE)`), so
//!   `not filter` holds for an event that lacks the filter's field, as Sigma says, where SQL's
//!   three-valued logic would drop it;
//! - list values are alternatives (`or`) unless `|all`.
//!
//! What the compiler cannot express it refuses with the construct's name; a rule is never half
//! compiled.

use std::collections::BTreeMap;

use base64::Engine as _;
use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Modifier, Quantifier, SelectorPattern, SigmaString,
    SigmaValue, SpecialChar, StringPart,
};

use super::fields::{self, Field, Kind, quote};

/// Why a construct does not compile.
pub type Refusal = String;

/// At most this many dashes are expanded by `|windash` (each one takes five spellings).
const MAX_WINDASH_DASHES: usize = 3;

/// Compiles the rule's conditions (several are alternatives) over its named detections.
pub fn condition(
    named: &BTreeMap<String, Detection>,
    conditions: &[ConditionExpr],
) -> Result<String, Refusal> {
    if conditions.is_empty() {
        return Err("the rule has no condition".into());
    }
    let mut compiled = BTreeMap::new();
    for (name, det) in named {
        compiled.insert(
            name.clone(),
            detection(det).map_err(|e| format!("detection `{name}`: {e}"))?,
        );
    }
    let parts = conditions
        .iter()
        .map(|c| expr(c, &compiled))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(join(parts, "OR"))
}

fn join(parts: Vec<String>, op: &str) -> String {
    match parts.len() {
        0 if op == "AND" => "TRUE".into(),
        0 => "FALSE".into(),
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => format!("({})", parts.join(&format!(" {op} "))),
    }
}

fn expr(c: &ConditionExpr, named: &BTreeMap<String, String>) -> Result<String, Refusal> {
    Ok(match c {
        ConditionExpr::And(xs) => join(
            xs.iter()
                .map(|x| expr(x, named))
                .collect::<Result<_, _>>()?,
            "AND",
        ),
        ConditionExpr::Or(xs) => join(
            xs.iter()
                .map(|x| expr(x, named))
                .collect::<Result<_, _>>()?,
            "OR",
        ),
        ConditionExpr::Not(x) => format!("(NOT {})", expr(x, named)?),
        ConditionExpr::Identifier(id) => named
            .get(id)
            .cloned()
            .ok_or_else(|| format!("the condition names `{id}`, which the detection lacks"))?,
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let chosen: Vec<&String> = named
                .iter()
                .filter(|(name, _)| match pattern {
                    SelectorPattern::Them => !name.starts_with('_'),
                    SelectorPattern::Pattern(p) => rsigma_parser::detection_name_matches(p, name),
                })
                .map(|(_, sql)| sql)
                .collect();
            if chosen.is_empty() {
                return Err(format!("`{quantifier} of {pattern}` matches no detection"));
            }
            match quantifier {
                Quantifier::Any => join(chosen.into_iter().cloned().collect(), "OR"),
                Quantifier::All => join(chosen.into_iter().cloned().collect(), "AND"),
                Quantifier::Count(n) => format!(
                    "({}) >= {n}",
                    chosen
                        .iter()
                        .map(|s| format!("CASE WHEN {s} THEN 1 ELSE 0 END"))
                        .collect::<Vec<_>>()
                        .join(" + ")
                ),
            }
        }
    })
}

fn detection(d: &Detection) -> Result<String, Refusal> {
    Ok(match d {
        Detection::AllOf(items) => join(items.iter().map(item).collect::<Result<_, _>>()?, "AND"),
        Detection::AnyOf(ds) => join(ds.iter().map(detection).collect::<Result<_, _>>()?, "OR"),
        Detection::And(ds) => join(ds.iter().map(detection).collect::<Result<_, _>>()?, "AND"),
        Detection::Keywords(values) => join(
            values
                .iter()
                .map(|v| keyword(v, &[]))
                .collect::<Result<_, _>>()?,
            "OR",
        ),
        Detection::ArrayMatch { field, .. } => {
            return Err(format!(
                "array object-scope block `{field}[..]` (a proposed extension) is not supported"
            ));
        }
        Detection::Conditional { .. } => {
            return Err("an object-scope block with its own condition is not supported".into());
        }
    })
}

/// The text every keyword is searched in.
fn keyword_text() -> String {
    format!("concat_ws(' ', {})", fields::KEYWORD_COLUMNS.join(", "))
}

fn keyword(v: &SigmaValue, modifiers: &[Modifier]) -> Result<String, Refusal> {
    let s = match v {
        SigmaValue::String(s) => s.clone(),
        SigmaValue::Integer(n) => SigmaString::new(&n.to_string()),
        SigmaValue::Float(f) => SigmaString::new(&f.to_string()),
        SigmaValue::Bool(b) => SigmaString::new(&b.to_string()),
        SigmaValue::Null => return Err("a null keyword matches nothing".into()),
    };
    let m = mods(modifiers)?;
    let variants = variants(&s, &m)?;
    let alts = variants
        .iter()
        .map(|s| {
            atom(&like(
                &keyword_text(),
                &wrap(s, Shape::Contains),
                m.cased || !m.encodings.is_empty(),
            ))
        })
        .collect();
    Ok(join(alts, "OR"))
}

/// An atom made two-valued.
fn atom(sql: &str) -> String {
    format!("coalesce({sql}, FALSE)")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Exact,
    Contains,
    StartsWith,
    EndsWith,
}

/// The pattern parts with the wildcards a shape adds.
fn wrap(s: &SigmaString, shape: Shape) -> Vec<StringPart> {
    let mut parts = Vec::new();
    if matches!(shape, Shape::Contains | Shape::EndsWith) {
        parts.push(StringPart::Special(SpecialChar::WildcardMulti));
    }
    parts.extend(s.parts.iter().cloned());
    if matches!(shape, Shape::Contains | Shape::StartsWith) {
        parts.push(StringPart::Special(SpecialChar::WildcardMulti));
    }
    parts
}

/// `expr LIKE pattern`, or `=` when the pattern has no wildcard.
fn like(expr: &str, parts: &[StringPart], cased: bool) -> String {
    let fold = |s: &str| {
        if cased {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let lhs = if cased {
        expr.to_string()
    } else {
        format!("lower({expr})")
    };
    if parts.iter().all(|p| matches!(p, StringPart::Plain(_))) {
        let text: String = parts
            .iter()
            .map(|p| match p {
                StringPart::Plain(s) => fold(s),
                StringPart::Special(_) => String::new(),
            })
            .collect();
        return format!("{lhs} = {}", quote(&text));
    }
    let mut pattern = String::new();
    for p in parts {
        match p {
            StringPart::Plain(s) => {
                for c in fold(s).chars() {
                    if matches!(c, '%' | '_' | '\\') {
                        pattern.push('\\');
                    }
                    pattern.push(c);
                }
            }
            StringPart::Special(SpecialChar::WildcardMulti) => pattern.push('%'),
            StringPart::Special(SpecialChar::WildcardSingle) => pattern.push('_'),
        }
    }
    // `%` alone is "any value": say so plainly rather than as a pattern.
    if pattern == "%" {
        return format!("{expr} IS NOT NULL");
    }
    format!("{lhs} LIKE {} ESCAPE '\\'", quote(&pattern))
}

/// What the modifiers of one item ask for.
#[derive(Default)]
struct Mods {
    shape: Option<Shape>,
    all: bool,
    cased: bool,
    re: bool,
    re_flags: String,
    cidr: bool,
    exists: bool,
    fieldref: bool,
    compare: Option<&'static str>,
    neq: bool,
    windash: bool,
    /// Encodings applied in order: `wide`/`utf16*` then `base64`/`base64offset`.
    encodings: Vec<Modifier>,
    part: Option<&'static str>,
}

fn mods(list: &[Modifier]) -> Result<Mods, Refusal> {
    let mut m = Mods::default();
    for md in list {
        match md {
            Modifier::Contains => m.shape = Some(Shape::Contains),
            Modifier::StartsWith => m.shape = Some(Shape::StartsWith),
            Modifier::EndsWith => m.shape = Some(Shape::EndsWith),
            Modifier::All => m.all = true,
            Modifier::Cased => m.cased = true,
            Modifier::Re => m.re = true,
            Modifier::IgnoreCase => m.re_flags.push('i'),
            Modifier::Multiline => m.re_flags.push('m'),
            Modifier::DotAll => m.re_flags.push('s'),
            Modifier::Cidr => m.cidr = true,
            Modifier::Exists => m.exists = true,
            Modifier::FieldRef => m.fieldref = true,
            Modifier::Gt => m.compare = Some(">"),
            Modifier::Gte => m.compare = Some(">="),
            Modifier::Lt => m.compare = Some("<"),
            Modifier::Lte => m.compare = Some("<="),
            Modifier::Neq => m.neq = true,
            Modifier::WindAsh => m.windash = true,
            Modifier::Base64
            | Modifier::Base64Offset
            | Modifier::Wide
            | Modifier::Utf16
            | Modifier::Utf16be => m.encodings.push(*md),
            Modifier::Minute => m.part = Some("MINUTE"),
            Modifier::Hour => m.part = Some("HOUR"),
            Modifier::Day => m.part = Some("DAY"),
            Modifier::Week => m.part = Some("WEEK"),
            Modifier::Month => m.part = Some("MONTH"),
            Modifier::Year => m.part = Some("YEAR"),
            Modifier::Expand => {
                return Err(
                    "the `expand` modifier needs placeholder values from a processing pipeline, which Cairn does not have"
                        .into(),
                );
            }
        }
    }
    check(list, &m)?;
    Ok(m)
}

/// Refuses combinations whose meaning Sigma does not define (as pySigma and rsigma do), so no
/// modifier is silently dropped.
fn check(list: &[Modifier], m: &Mods) -> Result<(), Refusal> {
    let shapes = list
        .iter()
        .filter(|x| {
            matches!(
                x,
                Modifier::Contains | Modifier::StartsWith | Modifier::EndsWith
            )
        })
        .count();
    let kinds = [
        m.re,
        m.cidr,
        m.exists,
        m.compare.is_some(),
        m.part.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    let base64s = list
        .iter()
        .filter(|x| matches!(x, Modifier::Base64 | Modifier::Base64Offset))
        .count();
    // `wide` and its kin encode the text that base64 then encodes: they come first.
    let wide_after_base64 = list
        .iter()
        .skip_while(|x| !matches!(x, Modifier::Base64 | Modifier::Base64Offset))
        .any(|x| matches!(x, Modifier::Wide | Modifier::Utf16 | Modifier::Utf16be));
    let widths = list
        .iter()
        .filter(|x| matches!(x, Modifier::Wide | Modifier::Utf16 | Modifier::Utf16be))
        .count();
    let bad = shapes > 1
        || kinds > 1
        || (kinds == 1 && (shapes > 0 || m.windash || !m.encodings.is_empty()))
        || (m.fieldref && (kinds > 0 || m.windash || !m.encodings.is_empty()))
        || (!m.re_flags.is_empty() && !m.re)
        || base64s > 1
        || wide_after_base64
        || widths > 1
        || (m.neq && m.exists);
    if bad {
        let names: Vec<String> = list
            .iter()
            .map(|x| format!("{x:?}").to_lowercase())
            .collect();
        return Err(format!(
            "the modifiers `{}` do not combine (Sigma gives that combination no meaning)",
            names.join("|")
        ));
    }
    Ok(())
}

fn item(it: &DetectionItem) -> Result<String, Refusal> {
    let Some(name) = &it.field.name else {
        // A keyword is a substring anywhere: what needs a field, or another shape, is refused.
        if let Some(other) = it.field.modifiers.iter().find(|x| {
            !matches!(
                x,
                Modifier::All
                    | Modifier::Cased
                    | Modifier::Contains
                    | Modifier::WindAsh
                    | Modifier::Base64
                    | Modifier::Base64Offset
                    | Modifier::Wide
                    | Modifier::Utf16
                    | Modifier::Utf16be
            )
        }) {
            return Err(format!(
                "a keyword (a value without a field) cannot take `{}`",
                format!("{other:?}").to_lowercase()
            ));
        }
        let parts = it
            .values
            .iter()
            .map(|v| keyword(v, &it.field.modifiers))
            .collect::<Result<_, _>>()?;
        return Ok(join(
            parts,
            if it.field.has_modifier(Modifier::All) {
                "AND"
            } else {
                "OR"
            },
        ));
    };
    let field = fields::resolve(name)?;
    let m = mods(&it.field.modifiers)?;
    if m.neq && it.values.iter().any(|v| matches!(v, SigmaValue::Null)) {
        return Err(format!(
            "`{name}|neq: null`: write `{name}|exists: true` instead"
        ));
    }
    let parts = it
        .values
        .iter()
        .map(|v| value(&field, name, &m, v))
        .collect::<Result<Vec<_>, _>>()?;
    let matched = join(parts, if m.all { "AND" } else { "OR" });
    // `neq` holds for a present field that equals none of the values.
    Ok(if m.neq {
        format!("(NOT {matched} AND {} IS NOT NULL)", field.presence)
    } else {
        matched
    })
}

fn text_of(v: &SigmaValue) -> Option<SigmaString> {
    Some(match v {
        SigmaValue::String(s) => s.clone(),
        SigmaValue::Integer(n) => SigmaString::new(&n.to_string()),
        SigmaValue::Float(f) => SigmaString::new(&f.to_string()),
        SigmaValue::Bool(b) => SigmaString::new(&b.to_string()),
        SigmaValue::Null => return None,
    })
}

/// A number as a SQL literal both engines read (plain notation, below 10^15).
fn number(v: &SigmaValue) -> Option<String> {
    match v {
        SigmaValue::Integer(n) => Some(n.to_string()),
        SigmaValue::Float(f) if f.is_finite() && f.abs() < 1e15 => Some(f.to_string()),
        SigmaValue::String(s) => s
            .as_plain()
            .filter(|t| {
                let t = t.trim();
                t.chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
                    && t.parse::<f64>()
                        .is_ok_and(|f| f.is_finite() && f.abs() < 1e15)
            })
            .map(|t| t.trim().to_string()),
        _ => None,
    }
}

fn value(field: &Field, name: &str, m: &Mods, v: &SigmaValue) -> Result<String, Refusal> {
    if m.exists {
        return match v {
            SigmaValue::Bool(true) => Ok(format!("{} IS NOT NULL", field.presence)),
            SigmaValue::Bool(false) => Ok(format!("{} IS NULL", field.presence)),
            other => Err(format!(
                "`{name}|exists` takes true or false, not `{other}`"
            )),
        };
    }
    if matches!(v, SigmaValue::Null) {
        return Ok(format!("{} IS NULL", field.presence));
    }
    if let Some(part) = m.part {
        if field.kind != Kind::Time {
            return Err(format!(
                "`{name}` is not a timestamp, so `|{}` has no meaning",
                part.to_lowercase()
            ));
        }
        let n =
            number(v).ok_or_else(|| format!("`{name}|{}` takes a number", part.to_lowercase()))?;
        return Ok(atom(&format!(
            "EXTRACT({part} FROM {}) = {n}",
            field.presence
        )));
    }
    if field.kind == Kind::Time {
        return Err(format!(
            "`{name}` is a timestamp: it compares by its parts (`|hour`, `|day`, ...) or `|exists`"
        ));
    }
    if let Some(op) = m.compare {
        let n = number(v)
            .ok_or_else(|| format!("`{name}` compared with `{op}` needs a number, not `{v}`"))?;
        return Ok(atom(&format!(
            "TRY_CAST({} AS DOUBLE) {op} {n}",
            field.scalar
        )));
    }
    if m.fieldref {
        let other = match v {
            SigmaValue::String(s) => s.original.clone(),
            _ => return Err(format!("`{name}|fieldref` takes a field name, not `{v}`")),
        };
        let rhs = fields::resolve(&other)?;
        if rhs.kind == Kind::Time {
            return Err(format!(
                "`{name}|fieldref: {other}`: `{other}` is a timestamp"
            ));
        }
        return Ok(fieldref(field, &rhs, m));
    }
    let s = text_of(v).ok_or_else(|| format!("`{name}`: no value"))?;
    if m.re {
        let flags = if m.re_flags.is_empty() {
            String::new()
        } else {
            format!("(?{})", m.re_flags)
        };
        let pattern = format!("{flags}{}", s.original);
        // DataFusion's engine (Rust's `regex`) has no lookaround or backreferences, which
        // Athena's has: a pattern only one engine reads is refused, not run on one.
        regex::Regex::new(&pattern).map_err(|e| {
            format!(
                "`{name}|re`: the pattern is not one both engines read (no lookaround or backreferences): {}",
                e.to_string().lines().last().unwrap_or("")
            )
        })?;
        return Ok(atom(&format!(
            "regexp_like({}, {})",
            field.text,
            quote(&pattern)
        )));
    }
    if m.cidr {
        let patterns = cidr(&s.original).map_err(|e| format!("`{name}|cidr`: {e}"))?;
        let alts = patterns
            .iter()
            .map(|p| atom(&like(&field.scalar, &SigmaString::new(p).parts, true)))
            .collect();
        return Ok(join(alts, "OR"));
    }
    let shape = m.shape.unwrap_or(Shape::Exact);
    let target = if shape == Shape::Contains {
        &field.text
    } else {
        &field.scalar
    };
    let variants = variants(&s, m).map_err(|e| format!("`{name}`: {e}"))?;
    let alts: Vec<String> = variants
        .iter()
        .map(|s| {
            atom(&like(
                target,
                &wrap(s, shape),
                m.cased || !m.encodings.is_empty(),
            ))
        })
        .collect();
    Ok(join(alts, "OR"))
}

/// The spellings a value stands for after `windash` and the encodings.
fn variants(s: &SigmaString, m: &Mods) -> Result<Vec<SigmaString>, Refusal> {
    let mut out = vec![s.clone()];
    if m.windash {
        out = windash(&s.original)?
            .iter()
            .map(|t| SigmaString::new(t))
            .collect();
    }
    if !m.encodings.is_empty() {
        let mut encoded = Vec::new();
        for v in &out {
            let plain = v.as_plain().ok_or(
                "an encoded value (`base64`, `wide`, ...) cannot hold wildcards".to_string(),
            )?;
            encoded.extend(encode(&plain, &m.encodings)?);
        }
        out = encoded.iter().map(|t| SigmaString::from_raw(t)).collect();
    }
    Ok(out)
}

/// pySigma's `windash`: each `-` or `/` that starts a word (`\B[-/]\b`) in every spelling
/// Windows accepts for an option's dash, all combinations.
fn windash(text: &str) -> Result<Vec<String>, Refusal> {
    let chars: Vec<char> = text.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let at: Vec<usize> = (0..chars.len())
        .filter(|&i| {
            matches!(chars[i], '-' | '/')
                && (i == 0 || !word(chars[i - 1]))
                && chars.get(i + 1).is_some_and(|c| word(*c))
        })
        .collect();
    if at.len() > MAX_WINDASH_DASHES {
        return Err(format!(
            "`windash` on a value with {} option dashes (at most {MAX_WINDASH_DASHES} are expanded)",
            at.len()
        ));
    }
    let mut spelled = vec![String::new()];
    for (i, c) in chars.iter().enumerate() {
        spelled = if at.contains(&i) {
            spelled
                .iter()
                .flat_map(|p| {
                    ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}']
                        .iter()
                        .map(move |d| format!("{p}{d}"))
                })
                .collect()
        } else {
            spelled.into_iter().map(|p| format!("{p}{c}")).collect()
        };
    }
    Ok(spelled)
}

/// `wide`/`utf16*` then `base64` or `base64offset`, as pySigma applies them.
fn encode(plain: &str, encodings: &[Modifier]) -> Result<Vec<String>, Refusal> {
    let mut bytes: Vec<u8> = plain.as_bytes().to_vec();
    let mut out = None;
    for e in encodings {
        match e {
            Modifier::Wide => bytes = plain.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            Modifier::Utf16be => bytes = plain.encode_utf16().flat_map(u16::to_be_bytes).collect(),
            Modifier::Utf16 => {
                bytes = [0xFF, 0xFE]
                    .into_iter()
                    .chain(plain.encode_utf16().flat_map(u16::to_le_bytes))
                    .collect()
            }
            Modifier::Base64 => {
                out = Some(vec![
                    base64::engine::general_purpose::STANDARD.encode(&bytes),
                ])
            }
            Modifier::Base64Offset => {
                // The three alignments of the value inside a longer encoded text, trimmed of
                // the characters that depend on its neighbours.
                let start = [0usize, 2, 3];
                let end = [0usize, 3, 2];
                let mut alts = Vec::new();
                for i in 0..3 {
                    let mut padded = vec![b' '; i];
                    padded.extend(&bytes);
                    let enc = base64::engine::general_purpose::STANDARD.encode(&padded);
                    let stop = enc.len().saturating_sub(end[(bytes.len() + i) % 3]);
                    if start[i] < stop {
                        alts.push(enc[start[i]..stop].to_string());
                    }
                }
                out = Some(alts)
            }
            _ => {}
        }
    }
    out.ok_or_else(|| {
        "`wide`/`utf16` without `base64` would compare UTF-16 bytes with CloudTrail's UTF-8 text"
            .to_string()
    })
}

fn fieldref(a: &Field, b: &Field, m: &Mods) -> String {
    let lhs = if m.shape == Some(Shape::Contains) {
        &a.text
    } else {
        &a.scalar
    };
    let (x, y) = if m.cased {
        (lhs.clone(), b.scalar.clone())
    } else {
        (format!("lower({lhs})"), format!("lower({})", b.scalar))
    };
    let test = match m.shape.unwrap_or(Shape::Exact) {
        Shape::Exact => format!("{x} = {y}"),
        Shape::Contains => format!("strpos({x}, {y}) > 0"),
        Shape::StartsWith => format!("strpos({x}, {y}) = 1"),
        Shape::EndsWith => format!("strpos(reverse({x}), reverse({y})) = 1"),
    };
    atom(&test)
}

/// An IPv4 network as the wildcard strings of its addresses (whole octets as `*`).
fn cidr(net: &str) -> Result<Vec<String>, String> {
    let (addr, len) = net.split_once('/').unwrap_or((net, "32"));
    let ip: std::net::Ipv4Addr = addr.parse().map_err(|_| {
        format!("`{addr}` is not an IPv4 address (IPv6 networks are not supported yet)")
    })?;
    let len: u32 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("`{len}` is not a prefix length 0..=32"))?;
    let o = ip.octets();
    let full = (len / 8) as usize;
    let rest = len % 8;
    let head: Vec<String> = o[..full].iter().map(u8::to_string).collect();
    if full == 4 {
        return Ok(vec![head.join(".")]);
    }
    let span = 1u32 << (8 - rest);
    let base = u32::from(o[full]) & !(span - 1);
    let mut out = Vec::new();
    for v in base..base + span {
        let mut parts = head.clone();
        parts.push(v.to_string());
        let tail = 3 - full;
        let mut text = parts.join(".");
        if tail > 0 {
            text.push_str(".*");
        }
        out.push(text);
    }
    if rest == 0 {
        // The whole octet is free: one pattern says it.
        let mut text = head.join(".");
        if !text.is_empty() {
            text.push('.');
        }
        text.push('*');
        return Ok(vec![text]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_expand_to_address_patterns() {
        assert_eq!(cidr("10.0.0.0/8").unwrap(), ["10.*"]);
        assert_eq!(cidr("192.168.1.7/32").unwrap(), ["192.168.1.7"]);
        assert_eq!(cidr("172.16.0.0/12").unwrap().len(), 16);
        assert_eq!(cidr("172.16.0.0/12").unwrap()[15], "172.31.*");
        assert_eq!(
            cidr("192.168.1.0/30").unwrap(),
            ["192.168.1.0", "192.168.1.1", "192.168.1.2", "192.168.1.3"]
        );
        assert!(cidr("2001:db8::/32").unwrap_err().contains("IPv6"));
    }

    #[test]
    fn wildcards_become_escaped_like_patterns() {
        let s = SigmaString::new("50%_off*\\*");
        let sql = like("x", &wrap(&s, Shape::Exact), false);
        assert_eq!(sql, r"lower(x) LIKE '50\%\_off%*' ESCAPE '\'");
        assert_eq!(
            like("x", &wrap(&SigmaString::new("O'Hara"), Shape::Exact), true),
            "x = 'O''Hara'"
        );
    }

    #[test]
    fn windash_spells_option_dashes_as_pysigma_does() {
        let v = windash(" -enc x-y /c").unwrap();
        assert_eq!(v.len(), 25, "{v:?}");
        assert!(v.contains(&" /enc x-y -c".to_string()));
        assert!(
            v.iter().all(|s| s.contains("x-y")),
            "a dash inside a word stays"
        );
        assert_eq!(windash("a - b").unwrap(), ["a - b"]);
    }

    #[test]
    fn base64offset_matches_pysigma() {
        // pySigma's documented example: `/bin/bash` with base64offset.
        let got = encode("/bin/bash", &[Modifier::Base64Offset]).unwrap();
        assert_eq!(got, ["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]);
    }
}
