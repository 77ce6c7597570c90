//! Loading a policy directory: find the schema and the `.cedar` files, parse each file on its own
//! (so every span points into the right file), name policies by their `@id`, and collect every
//! problem instead of stopping at the first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{Effect, Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::SourceSpan;

use crate::error::{PolicyError, Result, read_to_string};
use crate::problem::{Problem, Severity, SourceFile};

/// The files that make up a policy set on disk.
#[derive(Debug, Clone)]
pub struct PolicySources {
    /// The directory the policies live in (the parent of a single file).
    pub root: PathBuf,
    /// The schema file; `None` when none was given and none was found.
    pub schema: Option<PathBuf>,
    /// Where the schema was looked for, to say so when it is missing.
    pub schema_searched: PathBuf,
    pub policies: Vec<PathBuf>,
}

impl PolicySources {
    /// Finds the policy files under `policies` (a directory, searched recursively except for
    /// hidden directories and `tests/`, or one `.cedar` file) and the schema beside them.
    pub fn discover(policies: &Path, schema: Option<&Path>) -> Result<Self> {
        let meta = std::fs::metadata(policies).map_err(|source| PolicyError::Read {
            path: policies.to_path_buf(),
            source,
        })?;
        let (root, files) = if meta.is_dir() {
            let mut files = Vec::new();
            collect_cedar_files(policies, &mut files)?;
            files.sort();
            (policies.to_path_buf(), files)
        } else {
            let root = policies
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            (root, vec![policies.to_path_buf()])
        };
        let (schema, schema_searched) = match schema {
            Some(s) => (Some(s.to_path_buf()), s.to_path_buf()),
            None => (find_schema(&root), root.join("schema.cedarschema")),
        };
        Ok(Self {
            root,
            schema,
            schema_searched,
            policies: files,
        })
    }

    /// The default test directory, `tests/` beside the policies.
    pub fn tests_dir(&self) -> PathBuf {
        self.root.join("tests")
    }
}

fn collect_cedar_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| PolicyError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "tests" {
                collect_cedar_files(&path, out)?;
            }
        } else if name.ends_with(".cedar") {
            out.push(
                path.strip_prefix(".")
                    .map(Path::to_path_buf)
                    .unwrap_or(path),
            );
        }
    }
    Ok(())
}

fn find_schema(root: &Path) -> Option<PathBuf> {
    for name in ["schema.cedarschema", "schema.cedarschema.json"] {
        let p = root.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".cedarschema") || n.ends_with(".cedarschema.json")
        })
        .collect();
    found.sort();
    (found.len() == 1).then(|| found.remove(0))
}

/// One policy as written: its id, where it is, and what it does.
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    pub id: String,
    pub file: SourceFile,
    pub span: SourceSpan,
    pub effect: Effect,
    /// Whether the id came from an `@id` annotation (otherwise it is `file:line`).
    pub annotated: bool,
}

impl PolicyInfo {
    pub fn position(&self) -> String {
        let (l, c) = self.file.line_col(self.span.offset());
        format!("{}:{l}:{c}", self.file.name)
    }

    /// The policy's text as written in its file.
    pub fn text(&self) -> &str {
        self.file
            .text
            .get(self.span.offset()..self.span.offset() + self.span.len())
            .unwrap_or("")
    }
}

/// A parsed policy directory with every problem found while loading it.
#[derive(Debug, Clone)]
pub struct LoadedPolicies {
    /// Where the files came from, when they came from disk.
    pub sources: Option<PolicySources>,
    pub schema: Option<Schema>,
    pub schema_file: Option<SourceFile>,
    pub policy_set: PolicySet,
    /// In file order.
    pub policies: Vec<PolicyInfo>,
    pub files: Vec<SourceFile>,
    pub problems: Vec<Problem>,
}

impl LoadedPolicies {
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }

    pub fn policy(&self, id: &str) -> Option<&PolicyInfo> {
        self.policies.iter().find(|p| p.id == id)
    }
}

/// Reads and parses the schema and every policy file. Read failures are errors; everything about
/// the content (syntax, missing schema, missing or duplicate `@id`) is a problem in the result.
pub fn load(sources: &PolicySources) -> Result<LoadedPolicies> {
    let mut problems = Vec::new();
    let schema_file = read_schema(sources, &mut problems)?;
    if sources.policies.is_empty() {
        problems.push(
            Problem::error(
                "cairn::no-policies",
                format!("no `.cedar` files under `{}`", sources.root.display()),
            )
            .with_help("put policies in `*.cedar` files or pass --policies PATH"),
        );
    }
    let mut files = Vec::new();
    for path in &sources.policies {
        files.push(SourceFile::new(path, read_to_string(path)?));
    }
    let mut loaded = parse(schema_file, files);
    problems.append(&mut loaded.problems);
    loaded.problems = problems;
    loaded.sources = Some(sources.clone());
    Ok(loaded)
}

/// Parses a schema and policy files already in memory (a bundle's members, for instance).
pub fn parse(schema_file: Option<SourceFile>, files: Vec<SourceFile>) -> LoadedPolicies {
    let mut problems = Vec::new();
    let schema = schema_file
        .as_ref()
        .and_then(|f| parse_schema(f, &mut problems));
    let mut policies: Vec<PolicyInfo> = Vec::new();
    let mut policy_set = PolicySet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();

    for file in &files {
        let path = std::path::Path::new(&*file.name);
        let parsed = match PolicySet::from_str(&file.text) {
            Ok(p) => p,
            Err(errs) => {
                for e in errs.iter() {
                    problems.push(Problem::from_diagnostic(
                        e,
                        Some(file),
                        Severity::Error,
                        "cedar::parse",
                    ));
                }
                continue;
            }
        };
        if parsed.num_of_templates() > 0 {
            problems.push(
                Problem::error(
                    "cairn::template",
                    "policy templates are not supported in bundles",
                )
                .in_file(file)
                .with_help("write static policies; link templates before bundling"),
            );
        }
        // The parser numbers policies `policy0`, `policy1`, ... in file order.
        let mut in_file: Vec<&Policy> = parsed.policies().collect();
        in_file.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let mut cursor = 0;
        for policy in in_file {
            let text = policy.to_string();
            let offset = file
                .text
                .get(cursor..)
                .and_then(|rest| rest.find(text.as_str()))
                .map_or(cursor, |i| cursor + i);
            cursor = offset + text.len();
            let span = SourceSpan::from((offset, text.len()));
            let (line, _) = file.line_col(offset);
            let stem = path
                .file_name()
                .map_or_else(|| "policy".into(), |n| n.to_string_lossy().into_owned());
            let fallback = format!("{stem}:{line}");
            let (id, annotated) = match policy.annotation("id") {
                Some(id) if !id.trim().is_empty() => (id.to_string(), true),
                Some(_) => {
                    problems.push(
                        Problem::error("cairn::empty-id", "policy has an empty `@id`")
                            .at(file, span_of_first_line(file, offset))
                            .with_help("give the policy a unique, descriptive id, e.g. `@id(\"interns-low-cost-only\")`"),
                    );
                    (fallback, false)
                }
                None => {
                    problems.push(
                        Problem::error("cairn::missing-id", "policy has no `@id` annotation")
                            .at(file, span_of_first_line(file, offset))
                            .with_help(format!(
                                "add `@id(\"...\")` above the policy; decisions and test reports name policies by it (until then it is `{fallback}`)"
                            )),
                    );
                    (fallback, false)
                }
            };
            let id = if let Some(&first) = seen.get(&id) {
                let first: &PolicyInfo = &policies[first];
                problems.push(
                    Problem::error("cairn::duplicate-id", format!("duplicate policy id `{id}`"))
                        .at(file, span_of_first_line(file, offset))
                        .with_help(format!(
                            "`{id}` is already used at {}; every `@id` must be unique across the policy set",
                            first.position()
                        )),
                );
                format!("{id}#{stem}:{line}")
            } else {
                id
            };
            seen.insert(id.clone(), policies.len());
            if let Err(e) = policy_set.add(policy.new_id(PolicyId::new(&id))) {
                problems.push(
                    Problem::from_diagnostic(&e, Some(file), Severity::Error, "cedar::policy-set")
                        .at(file, span),
                );
                continue;
            }
            policies.push(PolicyInfo {
                id,
                file: file.clone(),
                span,
                effect: policy.effect(),
                annotated,
            });
        }
    }

    LoadedPolicies {
        sources: None,
        schema,
        schema_file,
        policy_set,
        policies,
        files,
        problems,
    }
}

fn span_of_first_line(file: &SourceFile, offset: usize) -> SourceSpan {
    let rest = file.text.get(offset..).unwrap_or("");
    let len = rest.find('\n').unwrap_or(rest.len());
    (offset, len).into()
}

fn read_schema(sources: &PolicySources, problems: &mut Vec<Problem>) -> Result<Option<SourceFile>> {
    let Some(path) = &sources.schema else {
        problems.push(
            Problem::error(
                "cairn::schema-missing",
                format!(
                    "schema file `{}` not found",
                    sources.schema_searched.display()
                ),
            )
            .with_help("create `schema.cedarschema` beside the policies or pass --schema FILE"),
        );
        return Ok(None);
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(SourceFile::new(path, text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            problems.push(
                Problem::error(
                    "cairn::schema-missing",
                    format!("schema file `{}` not found", path.display()),
                )
                .with_help("check the --schema path, or create the file"),
            );
            Ok(None)
        }
        Err(source) => Err(PolicyError::Read {
            path: path.clone(),
            source,
        }),
    }
}

/// Parses a schema in the Cedar schema language, or JSON when the name ends in `.json`.
pub fn parse_schema(file: &SourceFile, problems: &mut Vec<Problem>) -> Option<Schema> {
    let is_json = file.name.ends_with(".json");
    let failed = |e: &dyn miette::Diagnostic, problems: &mut Vec<Problem>| {
        problems.push(Problem::from_diagnostic(
            e,
            Some(file),
            Severity::Error,
            "cedar::schema",
        ));
        None
    };
    if is_json {
        return match Schema::from_json_str(&file.text) {
            Ok(s) => Some(s),
            Err(e) => failed(&e, problems),
        };
    }
    match Schema::from_cedarschema_str(&file.text) {
        Ok((schema, warnings)) => {
            for w in warnings {
                problems.push(Problem::from_diagnostic(
                    &w,
                    Some(file),
                    Severity::Warning,
                    "cedar::schema",
                ));
            }
            Some(schema)
        }
        Err(e) => failed(&e, problems),
    }
}

/// Strictly validates the loaded policies against the schema and appends what the validator says.
/// Cedar reports a policy whose action can never apply to its principal or resource as a
/// warning; Cairn makes it an error because such a policy is always a mistake.
pub fn validate(loaded: &mut LoadedPolicies) {
    let Some(schema) = &loaded.schema else {
        return;
    };
    let result =
        Validator::new(schema.clone()).validate(&loaded.policy_set, ValidationMode::Strict);
    let by_id: HashMap<&str, &PolicyInfo> =
        loaded.policies.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut found = Vec::new();
    for e in result.validation_errors() {
        let info = by_id.get(e.policy_id().to_string().as_str()).copied();
        let mut p = Problem::from_diagnostic(
            e,
            info.map(|i| &i.file),
            Severity::Error,
            "cedar::validation",
        );
        name_policy(&mut p, e.policy_id().as_ref());
        found.push(with_hint(p));
    }
    for w in result.validation_warnings() {
        let info = by_id.get(w.policy_id().to_string().as_str()).copied();
        let escalate = matches!(
            w,
            cedar_policy::ValidationWarning::InvalidActionApplication(_)
        );
        let severity = if escalate {
            Severity::Error
        } else {
            Severity::Warning
        };
        let mut p =
            Problem::from_diagnostic(w, info.map(|i| &i.file), severity, "cedar::validation");
        name_policy(&mut p, w.policy_id().as_ref());
        if p.location.as_ref().is_some_and(|l| l.span.is_none())
            && let Some(info) = info
        {
            p = p.at(
                &info.file,
                span_of_first_line(&info.file, info.span.offset()),
            );
        }
        found.push(with_hint(p));
    }
    loaded.problems.extend(found);
}

/// Makes sure the message names the policy, without saying it twice.
fn name_policy(p: &mut Problem, id: &str) {
    let prefix = format!("for policy `{id}`, ");
    if let Some(rest) = p.message.strip_prefix(&prefix) {
        p.message = format!("policy `{id}`: {rest}");
    } else if !p.message.contains(&format!("`{id}`")) {
        p.message = format!("policy `{id}`: {}", p.message);
    }
    if let Some(h) = &p.help
        && let Some(rest) = h.strip_prefix(&prefix)
    {
        p.help = Some(rest.to_string());
    }
}

/// Adds a fix hint to validator findings that come without one.
fn with_hint(mut p: Problem) -> Problem {
    if p.help.is_some() {
        return p;
    }
    let m = p.message.to_lowercase();
    let hint = if m.contains("unable to find an applicable action") || m.contains("applied to") {
        Some(
            "check the `appliesTo` of the action in the schema: the principal and resource types in the policy scope must be listed there",
        )
    } else if m.contains("does not have the attribute")
        || m.contains("attribute") && m.contains("not found")
    {
        Some("use an attribute declared for this entity type in the schema, or declare it there")
    } else if m.contains("unexpected type") {
        Some("compare values of the same type; the schema says which type each attribute has")
    } else if m.contains("impossible") {
        Some("this policy can never match; check its scope and conditions")
    } else {
        None
    };
    if let Some(h) = hint {
        p.help = Some(h.to_string());
    }
    p
}

/// Loads and validates in one step.
pub fn load_and_validate(sources: &PolicySources) -> Result<LoadedPolicies> {
    let mut loaded = load(sources)?;
    validate(&mut loaded);
    Ok(loaded)
}
