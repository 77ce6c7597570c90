//! YAML (and therefore JSON) documents as `serde_json` values that remember the line of every
//! node, so a bad test case can be reported at `suite.yaml:LINE` and a bad field at its own line.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

use crate::problem::{Problem, SourceFile};

/// A value with the 1-based line it starts on, and the same for its children.
#[derive(Debug, Clone)]
pub struct Marked {
    pub value: Value,
    pub line: usize,
    /// For mappings: key, line of the key, and the value.
    pub fields: Vec<(String, usize, Marked)>,
    /// For sequences: the items.
    pub items: Vec<Marked>,
}

impl Marked {
    /// The line of a field's key, or of this node when the field is absent.
    pub fn field_line(&self, key: &str) -> usize {
        self.fields
            .iter()
            .find(|(k, _, _)| k == key)
            .map_or(self.line, |(_, line, _)| *line)
    }

    pub fn field(&self, key: &str) -> Option<&Marked> {
        self.fields
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| v)
    }

    /// The line of the node a serde path (`a.b[2].c`) points at, as deep as it resolves.
    pub fn line_of_path(&self, path: &str) -> usize {
        let mut node = self;
        let mut line = self.line;
        for part in split_path(path) {
            match part {
                PathPart::Key(k) => match node.fields.iter().find(|(key, _, _)| key == &k) {
                    Some((_, l, v)) => {
                        line = *l;
                        node = v;
                    }
                    None => break,
                },
                PathPart::Index(i) => match node.items.get(i) {
                    Some(v) => {
                        line = v.line;
                        node = v;
                    }
                    None => break,
                },
            }
        }
        line
    }
}

enum PathPart {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<PathPart> {
    let mut parts = Vec::new();
    for seg in path.split('.') {
        let mut rest = seg;
        if let Some(i) = rest.find('[') {
            let key = &rest[..i];
            if !key.is_empty() && key != "?" {
                parts.push(PathPart::Key(key.to_string()));
            }
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                if let Ok(n) = rest[1..end].parse() {
                    parts.push(PathPart::Index(n));
                }
                rest = &rest[end + 1..];
            }
        } else if !rest.is_empty() && rest != "?" {
            parts.push(PathPart::Key(rest.to_string()));
        }
    }
    parts
}

/// Parses one YAML or JSON document (a `.json` file as JSON: YAML parsers refuse some valid
/// JSON, such as the surrogate-pair escapes `json.dump` writes for characters outside the BMP).
pub fn parse(file: &SourceFile) -> Result<Marked, Problem> {
    if file.name.to_ascii_lowercase().ends_with(".json") {
        return parse_json(file);
    }
    let docs = MarkedYaml::load_from_str(&file.text).map_err(|e| {
        let m = e.marker();
        Problem::error(
            "cairn::test-syntax",
            format!("invalid YAML/JSON: {}", e.info()),
        )
        .at_line(file, m.line())
        .with_help("suites are YAML (or JSON); check indentation and quoting near this line")
    })?;
    let mut docs = docs.into_iter();
    let Some(doc) = docs.next() else {
        return Err(Problem::error("cairn::test-syntax", "the file is empty")
            .in_file(file)
            .with_help("a suite needs at least `cases:`"));
    };
    if docs.next().is_some() {
        return Err(Problem::error(
            "cairn::test-syntax",
            "more than one YAML document in one file",
        )
        .in_file(file)
        .with_help("put one suite per file"));
    }
    convert(&doc, file)
}

/// Parses a JSON document exactly as JSON (`serde_json` decides every string and number), and
/// remembers the line each node starts on.
fn parse_json(file: &SourceFile) -> Result<Marked, Problem> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&file.text) {
        return Err(
            Problem::error("cairn::test-syntax", format!("invalid JSON: {e}"))
                .at_line(file, e.line().max(1))
                .with_help("check the brackets, commas and quoting near this line"),
        );
    }
    let mut walk = JsonWalk {
        text: &file.text,
        at: 0,
        line: 1,
    };
    walk.value().ok_or_else(|| {
        Problem::error("cairn::test-syntax", "the JSON document cannot be read")
            .at_line(file, walk.line)
    })
}

/// Walks JSON text already known to be valid, tracking lines (JSON strings hold no raw
/// newlines, so only whitespace between tokens moves to the next line).
struct JsonWalk<'a> {
    text: &'a str,
    at: usize,
    line: usize,
}

impl JsonWalk<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => return,
            }
            self.at += 1;
        }
    }

    fn leaf(&self, value: Value, line: usize) -> Marked {
        Marked {
            value,
            line,
            fields: Vec::new(),
            items: Vec::new(),
        }
    }

    /// A string token, decoded by serde_json.
    fn string(&mut self) -> Option<String> {
        let start = self.at;
        self.at += 1;
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        serde_json::from_str(self.text.get(start..self.at)?).ok()
    }

    fn value(&mut self) -> Option<Marked> {
        self.skip_ws();
        let line = self.line;
        match self.peek()? {
            b'{' => {
                self.at += 1;
                let (mut obj, mut fields) = (Map::new(), Vec::new());
                loop {
                    self.skip_ws();
                    match self.peek()? {
                        b'}' => {
                            self.at += 1;
                            break;
                        }
                        b',' => self.at += 1,
                        _ => {
                            let key_line = self.line;
                            let key = self.string()?;
                            self.skip_ws();
                            self.at += 1; // the `:`
                            let v = self.value()?;
                            obj.insert(key.clone(), v.value.clone());
                            fields.push((key, key_line, v));
                        }
                    }
                }
                Some(Marked {
                    value: Value::Object(obj),
                    line,
                    fields,
                    items: Vec::new(),
                })
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek()? {
                        b']' => {
                            self.at += 1;
                            break;
                        }
                        b',' => self.at += 1,
                        _ => items.push(self.value()?),
                    }
                }
                Some(Marked {
                    value: Value::Array(items.iter().map(|m| m.value.clone()).collect()),
                    line,
                    fields: Vec::new(),
                    items,
                })
            }
            b'"' => {
                let s = self.string()?;
                Some(self.leaf(Value::String(s), line))
            }
            _ => {
                let start = self.at;
                while self.peek().is_some_and(|b| {
                    !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
                }) {
                    self.at += 1;
                }
                let token: Value = serde_json::from_str(self.text.get(start..self.at)?).ok()?;
                Some(self.leaf(token, line))
            }
        }
    }
}

fn convert(node: &MarkedYaml<'_>, file: &SourceFile) -> Result<Marked, Problem> {
    let line = node.span.start.line().max(1);
    let leaf = |value: Value| Marked {
        value,
        line,
        fields: Vec::new(),
        items: Vec::new(),
    };
    match &node.data {
        YamlData::Value(s) => Ok(leaf(scalar(s))),
        YamlData::Representation(text, _, _) => Ok(leaf(Value::String(text.to_string()))),
        YamlData::Sequence(seq) => {
            let items = seq
                .iter()
                .map(|n| convert(n, file))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Marked {
                value: Value::Array(items.iter().map(|m| m.value.clone()).collect()),
                line,
                fields: Vec::new(),
                items,
            })
        }
        YamlData::Mapping(map) => {
            let mut fields = Vec::new();
            let mut obj = Map::new();
            for (k, v) in map {
                let key = match &k.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(s) => match scalar(s) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    },
                    _ => {
                        return Err(Problem::error(
                            "cairn::test-syntax",
                            "mapping keys must be plain strings",
                        )
                        .at_line(file, k.span.start.line()));
                    }
                };
                let value = convert(v, file)?;
                obj.insert(key.clone(), value.value.clone());
                fields.push((key, k.span.start.line().max(1), value));
            }
            Ok(Marked {
                value: Value::Object(obj),
                line,
                fields,
                items: Vec::new(),
            })
        }
        YamlData::Tagged(_, inner) => convert(inner, file),
        YamlData::Alias(_) => Err(Problem::error(
            "cairn::test-syntax",
            "YAML aliases are not supported in test suites",
        )
        .at_line(file, line)
        .with_help("write the value out, or move shared entities into an entities file")),
        YamlData::BadValue => {
            Err(Problem::error("cairn::test-syntax", "value cannot be read").at_line(file, line))
        }
    }
}

fn scalar(s: &Scalar<'_>) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Number((*i).into()),
        Scalar::FloatingPoint(f) => {
            Number::from_f64(f.into_inner()).map_or(Value::Null, Value::Number)
        }
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn marked(text: &str) -> Marked {
        parse(&SourceFile::new(Path::new("t.yaml"), text)).unwrap()
    }

    #[test]
    fn yaml_keeps_lines_of_items_and_keys() {
        let m = marked("cases:\n  - name: a\n    expect: allow\n  - name: b\n    expect: deny\n");
        let cases = m.field("cases").unwrap();
        assert_eq!(cases.items[0].line, 2);
        assert_eq!(cases.items[1].line, 4);
        assert_eq!(cases.items[1].field_line("expect"), 5);
        assert_eq!(m.line_of_path("cases[1].expect"), 5);
        assert_eq!(cases.items[1].value["expect"], "deny");
    }

    #[test]
    fn json_files_are_read_as_json_with_their_lines() {
        // `json.dump` writes characters outside the BMP as surrogate-pair escapes.
        let text = "[\n {\"a\": \"\\ud883\\udc30 x\",\n  \"b\": [true, null, -1.5e3]}\n]\n";
        let m = parse(&SourceFile::new(Path::new("cases.json"), text)).unwrap();
        assert_eq!(m.value[0]["a"], "\u{30c30} x");
        assert_eq!(m.items[0].field_line("b"), 3);
        assert_eq!(m.value[0]["b"][2], serde_json::json!(-1500.0));
        let bad =
            parse(&SourceFile::new(Path::new("cases.json"), "[1,\n 2,,\n]")).expect_err("invalid");
        assert!(bad.message.contains("invalid JSON"), "{}", bad.message);
    }

    #[test]
    fn json_is_yaml_too() {
        let m = marked("[\n {\"a\": 1,\n  \"b\": [true, null]}\n]\n");
        assert_eq!(m.items[0].field_line("b"), 3);
        assert_eq!(m.value[0]["b"][0], Value::Bool(true));
    }

    #[test]
    fn cedar_uids_are_plain_strings() {
        let m = marked("principal: User::\"alice\"\n");
        assert_eq!(m.value["principal"], "User::\"alice\"");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse(&SourceFile::new(Path::new("t.yaml"), "a: [1,\nb: 2\n")).unwrap_err();
        assert!(err.line_col().is_some());
    }
}
