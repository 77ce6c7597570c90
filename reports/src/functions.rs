//! JSON functions under Trino's (and so Athena's) names, so the same SQL runs on DataFusion and
//! on Athena: `json_extract_scalar`, `json_extract`, `json_array_length`, `json_array_contains`,
//! `json_size`, `json_format`. Paths are the JSONPath subset Trino documents: `$`, `.key`, `["key"]`, `[n]`.
//!
//! One Cairn function has no Trino twin: `json_string_array(json)` turns a JSON array of strings
//! into a list for `unnest`; the Athena form of the same step is
//! `CROSS JOIN UNNEST(CAST(json_parse(x) AS ARRAY(VARCHAR)))`.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Int64Builder, ListBuilder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses `$.a.b[0]["c d"]`.
fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                steps.push(Step::Key(q.to_string()));
            } else if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                steps.push(Step::Key(q.to_string()));
            } else {
                steps.push(Step::Index(inner.parse().ok()?));
            }
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

fn walk<'a>(mut v: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    for s in steps {
        v = match s {
            Step::Key(k) => v.get(k)?,
            Step::Index(i) => v.get(*i)?,
        };
    }
    Some(v)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    ExtractScalar,
    Extract,
    ArrayLength,
    ArrayContains,
    Size,
    StringArray,
    /// Trino's `json_format(json)`: the JSON's text. Here JSON already is text, so the
    /// value is returned as it is.
    Format,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonFn {
    kind: Kind,
    name: &'static str,
    signature: Signature,
}

impl JsonFn {
    fn new(kind: Kind, name: &'static str, args: usize) -> Self {
        let signature = Signature::exact(vec![DataType::Utf8; args], Volatility::Immutable);
        let signature = if args == 1 {
            Signature::one_of(
                vec![
                    datafusion::logical_expr::TypeSignature::Exact(vec![DataType::Utf8]),
                    datafusion::logical_expr::TypeSignature::Exact(vec![DataType::Utf8View]),
                    datafusion::logical_expr::TypeSignature::Exact(vec![DataType::LargeUtf8]),
                ],
                Volatility::Immutable,
            )
        } else {
            signature
        };
        Self {
            kind,
            name,
            signature,
        }
    }
}

/// The first argument as a string array of `rows` rows.
fn strings(v: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let a = v.to_array(rows)?;
    datafusion::arrow::compute::cast(&a, &DataType::Utf8)
        .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl ScalarUDFImpl for JsonFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::ExtractScalar | Kind::Extract | Kind::Format => DataType::Utf8,
            Kind::ArrayLength | Kind::Size => DataType::Int64,
            Kind::ArrayContains => DataType::Boolean,
            Kind::StringArray => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let json = strings(&args.args[0], rows)?;
        let json = json.as_string::<i32>();
        // The second argument is nearly always a literal: parse the path once.
        let second = args.args.get(1).map(|a| strings(a, rows)).transpose()?;
        let second = second.as_ref().map(|a| a.as_string::<i32>().clone());
        let literal_path = match args.args.get(1) {
            Some(ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(p))
                | ScalarValue::LargeUtf8(Some(p))
                | ScalarValue::Utf8View(Some(p)),
            )) => Some(parse_path(p).ok_or_else(|| {
                DataFusionError::Execution(format!("{}: invalid JSON path `{p}`", self.name))
            })?),
            _ => None,
        };
        let path_at = |i: usize| -> Option<Vec<Step>> {
            literal_path.clone().or_else(|| {
                second
                    .as_ref()
                    .filter(|a| a.is_valid(i))
                    .and_then(|a| parse_path(a.value(i)))
            })
        };
        let value_at = |i: usize| -> Option<Value> {
            if json.is_null(i) {
                return None;
            }
            serde_json::from_str::<Value>(json.value(i)).ok()
        };
        let out: ArrayRef = match self.kind {
            Kind::Format => Arc::new(json.clone()),
            Kind::ExtractScalar | Kind::Extract => {
                let mut b = StringBuilder::with_capacity(rows, rows * 8);
                for i in 0..rows {
                    let v = value_at(i).and_then(|v| {
                        let steps = path_at(i)?;
                        walk(&v, &steps).and_then(|x| {
                            if self.kind == Kind::ExtractScalar {
                                scalar_text(x)
                            } else {
                                Some(x.to_string())
                            }
                        })
                    });
                    b.append_option(v);
                }
                Arc::new(b.finish())
            }
            Kind::ArrayLength => {
                let mut b = Int64Builder::with_capacity(rows);
                for i in 0..rows {
                    b.append_option(value_at(i).and_then(|v| v.as_array().map(|a| a.len() as i64)));
                }
                Arc::new(b.finish())
            }
            Kind::Size => {
                let mut b = Int64Builder::with_capacity(rows);
                for i in 0..rows {
                    b.append_option(value_at(i).and_then(|v| {
                        let steps = path_at(i)?;
                        walk(&v, &steps).map(|x| match x {
                            Value::Array(a) => a.len() as i64,
                            Value::Object(o) => o.len() as i64,
                            _ => 0,
                        })
                    }));
                }
                Arc::new(b.finish())
            }
            Kind::ArrayContains => {
                let mut b = BooleanBuilder::with_capacity(rows);
                for i in 0..rows {
                    let needle = second
                        .as_ref()
                        .filter(|a| a.is_valid(i))
                        .map(|a| a.value(i).to_string());
                    b.append_option(value_at(i).and_then(|v| {
                        let needle = needle.as_ref()?;
                        v.as_array()
                            .map(|a| a.iter().any(|x| x.as_str() == Some(needle.as_str())))
                    }));
                }
                Arc::new(b.finish())
            }
            Kind::StringArray => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for i in 0..rows {
                    match value_at(i).as_ref().and_then(Value::as_array) {
                        Some(items) => {
                            for x in items {
                                b.values().append_option(scalar_text(x));
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Every function of this module.
pub fn udfs() -> Vec<ScalarUDF> {
    [
        JsonFn::new(Kind::ExtractScalar, "json_extract_scalar", 2),
        JsonFn::new(Kind::Extract, "json_extract", 2),
        JsonFn::new(Kind::ArrayLength, "json_array_length", 1),
        JsonFn::new(Kind::ArrayContains, "json_array_contains", 2),
        JsonFn::new(Kind::Size, "json_size", 2),
        JsonFn::new(Kind::StringArray, "json_string_array", 1),
        JsonFn::new(Kind::Format, "json_format", 1),
    ]
    .into_iter()
    .map(ScalarUDF::new_from_impl)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("$.a.b"),
            Some(vec![Step::Key("a".into()), Step::Key("b".into())])
        );
        assert_eq!(
            parse_path("$.a[2][\"c d\"]"),
            Some(vec![
                Step::Key("a".into()),
                Step::Index(2),
                Step::Key("c d".into())
            ])
        );
        assert_eq!(parse_path("$"), Some(vec![]));
        assert_eq!(parse_path("a.b"), None);
        assert_eq!(parse_path("$..a"), None);
    }
}
