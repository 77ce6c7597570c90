//! Test suites on disk: Cairn's YAML format (documented in `policies/README.md`) and the Cedar
//! CLI's `run-tests` JSON, both turned into [`PreparedCase`]s checked against the schema.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Context, Decision, Entities, EntityUid, Request, Schema};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::marked::{self, Marked};
use crate::error::{PolicyError, Result};
use crate::problem::{Problem, SourceFile};

/// What a case expects about errors raised while evaluating policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedErrors {
    /// The exact set of policy ids whose evaluation errored.
    Policies(BTreeSet<String>),
    /// The number of evaluation errors (the Cedar CLI's `num_errors`).
    Count(usize),
}

/// A case ready to run: request and entities already built and checked against the schema.
#[derive(Debug, Clone)]
pub struct PreparedCase {
    pub suite: SourceFile,
    pub line: usize,
    pub name: String,
    pub request: Request,
    pub entities: Arc<Entities>,
    pub expect: Decision,
    /// The exact set of determining policy ids, when the case states it.
    pub reasons: Option<BTreeSet<String>>,
    pub errors: Option<ExpectedErrors>,
}

impl PreparedCase {
    pub fn position(&self) -> String {
        format!("{}:{}", self.suite.name, self.line)
    }
}

/// Everything found in a set of suite files: runnable cases and the problems of the rest.
#[derive(Debug, Default)]
pub struct LoadedSuites {
    pub cases: Vec<PreparedCase>,
    /// Cases (or whole files) that could not be prepared, each located at its line.
    pub problems: Vec<Problem>,
    /// How many cases were found, prepared or not.
    pub case_count: usize,
    pub files: Vec<PathBuf>,
}

/// Finds suite files: a file as given, or every `*.yaml`, `*.yml` and `*.json` under a directory.
pub fn discover(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| PolicyError::Read {
            path: dir.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Loads and prepares every case of every file.
pub fn load(files: &[PathBuf], schema: Option<&Schema>) -> Result<LoadedSuites> {
    let mut out = LoadedSuites {
        files: files.to_vec(),
        ..Default::default()
    };
    let mut entity_files = EntityFiles::default();
    for path in files {
        let text = crate::error::read_to_string(path)?;
        let file = SourceFile::new(path, text);
        let dir = path.parent().unwrap_or(Path::new("."));
        load_file(&file, dir, schema, &mut entity_files, &mut out);
    }
    Ok(out)
}

/// Loads one suite already in memory; entity files it names are read relative to `dir`.
pub fn load_source(file: &SourceFile, dir: &Path, schema: Option<&Schema>) -> LoadedSuites {
    let mut out = LoadedSuites {
        files: vec![PathBuf::from(&*file.name)],
        ..Default::default()
    };
    load_file(file, dir, schema, &mut EntityFiles::default(), &mut out);
    out
}

fn load_file(
    file: &SourceFile,
    dir: &Path,
    schema: Option<&Schema>,
    entity_files: &mut EntityFiles,
    out: &mut LoadedSuites,
) {
    let doc = match marked::parse(file) {
        Ok(d) => d,
        Err(p) => {
            out.problems.push(p);
            return;
        }
    };
    let mut loader = SuiteLoader {
        file,
        dir,
        schema,
        entity_files,
        out,
    };
    if doc.value.is_array() {
        loader.load_cedar_cli(&doc);
    } else {
        loader.load_cairn(&doc);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "documentation for readers of the suite; not used when running"
    )]
    name: Option<String>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "documentation for readers of the suite; not used when running"
    )]
    description: Option<String>,
    #[serde(default)]
    entities: Vec<Value>,
    #[serde(default)]
    context: Map<String, Value>,
    #[expect(
        dead_code,
        reason = "checked for presence and type here; the cases are read from the marked tree to keep their lines"
    )]
    cases: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "documentation for readers of the suite; not used when running"
    )]
    description: Option<String>,
    principal: UidRef,
    action: UidRef,
    resource: UidRef,
    #[serde(default)]
    context: Map<String, Value>,
    #[serde(default)]
    entities: Vec<Value>,
    expect: ExpectedDecision,
    #[serde(default)]
    reasons: Option<Vec<String>>,
    #[serde(default)]
    errors: Option<Vec<String>>,
}

/// An entity uid written as `Type::"id"` or as `{type, id}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum UidRef {
    Text(String),
    Parts {
        #[serde(rename = "type")]
        ty: String,
        id: String,
    },
}

impl UidRef {
    fn parse(&self) -> std::result::Result<EntityUid, String> {
        match self {
            UidRef::Text(t) => EntityUid::from_str(t).map_err(|e| {
                format!("`{t}` is not an entity uid ({e}); write it as Type::\"id\", e.g. User::\"alice\"")
            }),
            UidRef::Parts { ty, id } => {
                let tn = cedar_policy::EntityTypeName::from_str(ty)
                    .map_err(|e| format!("`{ty}` is not an entity type name ({e})"))?;
                Ok(EntityUid::from_type_name_and_id(
                    tn,
                    cedar_policy::EntityId::new(id),
                ))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ExpectedDecision {
    Allow,
    Deny,
}

impl From<ExpectedDecision> for Decision {
    fn from(d: ExpectedDecision) -> Self {
        match d {
            ExpectedDecision::Allow => Decision::Allow,
            ExpectedDecision::Deny => Decision::Deny,
        }
    }
}

/// The Cedar CLI `run-tests` case: `request`, `entities` (inline or a file name), `decision`,
/// `reason`, `num_errors`.
#[derive(Debug, Deserialize)]
struct CedarCliCase {
    #[serde(default)]
    name: Option<String>,
    request: CedarCliRequest,
    entities: Value,
    decision: ExpectedDecision,
    reason: Vec<String>,
    num_errors: usize,
}

#[derive(Debug, Deserialize)]
struct CedarCliRequest {
    principal: String,
    action: String,
    resource: String,
    #[serde(default)]
    context: Value,
}

/// Entity files read once and shared by every suite that names them.
#[derive(Default)]
struct EntityFiles {
    loaded: HashMap<PathBuf, std::result::Result<Vec<Value>, String>>,
}

impl EntityFiles {
    fn get(&mut self, path: &Path) -> std::result::Result<Vec<Value>, String> {
        let key = path.to_path_buf();
        self.loaded
            .entry(key)
            .or_insert_with(|| {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read entities file `{}`: {e}", path.display()))?;
                let value: Value = serde_json::from_str(&text).map_err(|e| {
                    format!(
                        "entities file `{}` is not valid JSON at {}:{}: {e}",
                        path.display(),
                        e.line(),
                        e.column()
                    )
                })?;
                match value {
                    Value::Array(items) => Ok(items),
                    _ => Err(format!(
                        "entities file `{}` must hold a JSON array of entities",
                        path.display()
                    )),
                }
            })
            .clone()
    }
}

struct SuiteLoader<'a> {
    file: &'a SourceFile,
    dir: &'a Path,
    schema: Option<&'a Schema>,
    entity_files: &'a mut EntityFiles,
    out: &'a mut LoadedSuites,
}

impl SuiteLoader<'_> {
    fn problem(&self, line: usize, message: impl Into<String>, help: &str) -> Problem {
        Problem::error("cairn::test-case", message)
            .at_line(self.file, line)
            .with_help(help.to_string())
    }

    fn load_cairn(&mut self, doc: &Marked) {
        let suite: RawSuite = match serde_path_to_error::deserialize(&doc.value) {
            Ok(s) => s,
            Err(e) => {
                let path = e.path().to_string();
                let line = error_line(doc, &path, e.inner());
                let p = self.problem(
                    line,
                    format!("invalid suite: {}", describe_serde_error(&path, e.inner())),
                    "a suite has `cases:` and optionally `name`, `description`, `entities` and `context`; see policies/README.md",
                );
                self.out.problems.push(p);
                return;
            }
        };
        let suite_entities_line = doc.field_line("entities");
        let suite_entities = match self.resolve_entities(&suite.entities, suite_entities_line) {
            Ok(e) => e,
            Err(p) => {
                self.out.problems.push(p);
                return;
            }
        };
        // When the suite's entities are invalid its cases cannot run, but their requests are
        // still checked so one run reports every problem.
        let shared = match self.build_entities(&suite_entities, suite_entities_line) {
            Ok(e) => Some(Arc::new(e)),
            Err(p) => {
                self.out.problems.push(p);
                None
            }
        };
        let Some(cases) = doc.field("cases") else {
            return;
        };
        let empty = Arc::new(Entities::empty());
        for node in &cases.items {
            self.out.case_count += 1;
            let entities = shared.as_ref().unwrap_or(&empty);
            match self.prepare_cairn_case(node, &suite.context, &suite_entities, entities) {
                Ok(c) if shared.is_some() => self.out.cases.push(c),
                Ok(_) => {}
                Err(p) => self.out.problems.push(p),
            }
        }
    }

    fn prepare_cairn_case(
        &mut self,
        node: &Marked,
        context_defaults: &Map<String, Value>,
        suite_entities: &[Value],
        shared: &Arc<Entities>,
    ) -> std::result::Result<PreparedCase, Problem> {
        let case: RawCase = serde_path_to_error::deserialize(&node.value).map_err(|e| {
            let path = e.path().to_string();
            let line = error_line(node, &path, e.inner());
            self.problem(
                line,
                format!("invalid test case: {}", describe_serde_error(&path, e.inner())),
                "a case has `name`, `principal`, `action`, `resource`, `expect` and optionally `context`, `entities`, `reasons`, `errors`, `description`",
            )
        })?;
        let uid = |r: &UidRef, field: &str| {
            r.parse().map_err(|m| {
                self.problem(
                    node.field_line(field),
                    format!("`{field}`: {m}"),
                    "entity uids look like User::\"alice\"",
                )
            })
        };
        let principal = uid(&case.principal, "principal")?;
        let action = uid(&case.action, "action")?;
        let resource = uid(&case.resource, "resource")?;

        let mut context = context_defaults.clone();
        context.extend(case.context);
        let entities = if case.entities.is_empty() {
            shared.clone()
        } else {
            let line = node.field_line("entities");
            let own = self.resolve_entities(&case.entities, line)?;
            let merged = merge_entities(suite_entities, &own);
            Arc::new(self.build_entities(&merged, line)?)
        };
        let request =
            self.build_request(principal, action, resource, Value::Object(context), node)?;
        Ok(PreparedCase {
            suite: self.file.clone(),
            line: node.line,
            name: case.name,
            request,
            entities,
            expect: case.expect.into(),
            reasons: case.reasons.map(|r| r.into_iter().collect()),
            errors: case
                .errors
                .map(|e| ExpectedErrors::Policies(e.into_iter().collect())),
        })
    }

    fn load_cedar_cli(&mut self, doc: &Marked) {
        for node in &doc.items {
            self.out.case_count += 1;
            match self.prepare_cedar_cli_case(node) {
                Ok(c) => self.out.cases.push(c),
                Err(p) => self.out.problems.push(p),
            }
        }
    }

    fn prepare_cedar_cli_case(
        &mut self,
        node: &Marked,
    ) -> std::result::Result<PreparedCase, Problem> {
        let case: CedarCliCase = serde_path_to_error::deserialize(&node.value).map_err(|e| {
            let path = e.path().to_string();
            let line = error_line(node, &path, e.inner());
            self.problem(
                line,
                format!("invalid Cedar run-tests case: {}", describe_serde_error(&path, e.inner())),
                "Cedar CLI cases have `request` {principal, action, resource, context}, `entities`, `decision`, `reason` and `num_errors`",
            )
        })?;
        let req_node = node.field("request").unwrap_or(node);
        let parse = |text: &str, field: &str| {
            EntityUid::from_str(text).map_err(|e| {
                self.problem(
                    req_node.field_line(field),
                    format!("`request.{field}`: `{text}` is not an entity uid ({e})"),
                    "entity uids look like User::\"alice\"",
                )
            })
        };
        let principal = parse(&case.request.principal, "principal")?;
        let action = parse(&case.request.action, "action")?;
        let resource = parse(&case.request.resource, "resource")?;
        let line = node.field_line("entities");
        let entity_values = match &case.entities {
            Value::String(_) => {
                self.resolve_entities(std::slice::from_ref(&case.entities), line)?
            }
            Value::Array(items) => items.clone(),
            _ => {
                return Err(self.problem(
                    line,
                    "`entities` must be a list of entities or the name of an entities file",
                    "see the Cedar CLI run-tests format",
                ));
            }
        };
        let entities = Arc::new(self.build_entities(&entity_values, line)?);
        let context = if case.request.context.is_null() {
            Value::Object(Map::new())
        } else {
            case.request.context
        };
        let request = self.build_request(principal, action, resource, context, req_node)?;
        Ok(PreparedCase {
            suite: self.file.clone(),
            line: node.line,
            name: case
                .name
                .unwrap_or_else(|| format!("case at line {}", node.line)),
            request,
            entities,
            expect: case.decision.into(),
            reasons: Some(case.reason.into_iter().collect()),
            errors: Some(ExpectedErrors::Count(case.num_errors)),
        })
    }

    /// Expands file references (strings, relative to the suite) into entity objects.
    fn resolve_entities(
        &mut self,
        items: &[Value],
        line: usize,
    ) -> std::result::Result<Vec<Value>, Problem> {
        let mut out = Vec::new();
        for item in items {
            match item {
                Value::String(rel) => {
                    let path = self.dir.join(rel);
                    let loaded = self.entity_files.get(&path).map_err(|m| {
                        self.problem(line, m, "entity files are JSON arrays of Cedar entities, named relative to the suite file")
                    })?;
                    out.extend(loaded);
                }
                Value::Object(_) => out.push(item.clone()),
                _ => {
                    return Err(self.problem(
                        line,
                        "each `entities` item must be a file name or an entity object",
                        "write `- ../entities/directory.json` or `- {uid: {type: User, id: alice}, attrs: {...}, parents: []}`",
                    ));
                }
            }
        }
        Ok(out)
    }

    fn build_entities(
        &self,
        values: &[Value],
        line: usize,
    ) -> std::result::Result<Entities, Problem> {
        Entities::from_json_value(Value::Array(values.to_vec()), self.schema).map_err(|e| {
            let mut p = self.problem(
                line,
                format!("invalid entities (used here): {}", crate::problem::chain(&e)),
                "entities must match the schema: declared types, declared attributes with the right types, and allowed parents",
            );
            p.code = "cairn::test-entities".into();
            p
        })
    }

    fn build_request(
        &self,
        principal: EntityUid,
        action: EntityUid,
        resource: EntityUid,
        context: Value,
        node: &Marked,
    ) -> std::result::Result<Request, Problem> {
        let schema_and_action = self.schema.map(|s| (s, &action));
        let context = Context::from_json_value(context, schema_and_action).map_err(|e| {
            self.problem(
                node.field_line("context"),
                format!("invalid context for `{action}`: {}", crate::problem::chain(&e)),
                "the context must have exactly the attributes the schema declares for this action, with the declared types",
            )
        })?;
        Request::new(principal, action, resource, context, self.schema).map_err(|e| {
            let msg = crate::problem::chain(&e);
            if msg.starts_with("context") {
                self.problem(
                    node.field_line("context"),
                    format!("invalid request: {msg}"),
                    "a context attribute has the wrong type or a required one is missing; compare with the action's context type in the schema",
                )
            } else {
                self.problem(
                    node.line,
                    format!("invalid request: {msg}"),
                    "the principal and resource types must be ones the action applies to in the schema",
                )
            }
        })
    }
}

/// Suite entities then case entities; a case entity replaces a suite entity with the same uid.
fn merge_entities(suite: &[Value], case: &[Value]) -> Vec<Value> {
    let uid_of = |v: &Value| v.get("uid").map(|u| u.to_string());
    let overridden: BTreeSet<String> = case.iter().filter_map(uid_of).collect();
    suite
        .iter()
        .filter(|v| uid_of(v).is_none_or(|u| !overridden.contains(&u)))
        .chain(case.iter())
        .cloned()
        .collect()
}

/// The line of the field an error is about: for "unknown field `x`" serde reports the parent
/// path, so the field's own line is looked up by name.
fn error_line(node: &Marked, path: &str, e: &serde_json::Error) -> usize {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some(name) = rest.split('`').next()
        && (path.is_empty() || path == ".")
    {
        return node.field_line(name);
    }
    node.line_of_path(path)
}

fn describe_serde_error(path: &str, e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if path.is_empty() || path == "." {
        msg
    } else {
        format!("field `{path}`: {msg}")
    }
}
