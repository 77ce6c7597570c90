//! Reading a configuration table into [`RawConfig`] with every problem at once: each failed
//! attempt names one problem; the offending key is set aside (or a missing one filled in) and
//! the table read again, so one run reports them all, each located in the file
//! (`file:line:col`) and, for a misspelt key, with the nearest known one.

use std::path::Path;

use super::raw::RawConfig;

/// One step of a key's path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// At most this many problems are collected from one file.
const MAX_PROBLEMS: usize = 64;

/// Reads `table`; every problem, located in `text` (the file's contents) when there is one.
pub fn read(
    mut table: toml::Table,
    file: Option<&Path>,
    text: &str,
) -> Result<RawConfig, Vec<String>> {
    let mut problems = Vec::new();
    let mut seen: Vec<Vec<Seg>> = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let e = match serde_path_to_error::deserialize::<_, RawConfig>(toml::Value::Table(
            table.clone(),
        )) {
            Ok(raw) if problems.is_empty() => return Ok(raw),
            Ok(_) => return Err(problems),
            Err(e) => e,
        };
        let mut path = segments(e.path());
        // The first line: the rest is toml's own account of where, which the path says.
        let message = e.inner().to_string();
        let message = message.lines().next().unwrap_or_default().to_string();
        let unknown = quoted(&message, "unknown field `");
        if let Some(field) = &unknown
            && path.last() != Some(&Seg::Key(field.clone()))
        {
            path.push(Seg::Key(field.clone()));
        }
        let mut problem = format!("`{}`: {}", dotted(&path), message);
        if let Some(field) = &unknown
            && let Some(near) = nearest(field, &expected(&message))
        {
            problem.push_str(&format!(" (did you mean `{near}`?)"));
        }
        let located = match (file, locate(text, &path)) {
            (Some(f), Some((line, col))) => format!("{}:{line}:{col}: {problem}", f.display()),
            _ => problem,
        };
        // The same place failing twice means it cannot be set aside (and its second message
        // would be about the gateway's own stand-in): stop here.
        if seen.contains(&path) {
            break;
        }
        problems.push(located);
        if path.is_empty() {
            break;
        }
        seen.push(path.clone());
        let fixed = match quoted(&message, "missing field `") {
            Some(field) => {
                let mut p = path.clone();
                p.push(Seg::Key(field));
                set(&mut table, &p, Some(toml::Value::String(String::new())))
            }
            None => set(&mut table, &path, None),
        };
        if !fixed {
            break;
        }
    }
    Err(problems)
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Seq { index } => Some(Seg::Index(*index)),
            _ => None,
        })
        .collect()
}

pub fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() { ".".into() } else { out }
}

/// The text between `prefix` and the next backtick.
fn quoted(message: &str, prefix: &str) -> Option<String> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    Some(rest[..rest.find('`')?].to_string())
}

/// The names serde lists after "expected one of".
fn expected(message: &str) -> Vec<String> {
    let Some(i) = message.find("expected") else {
        return Vec::new();
    };
    message[i..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn nearest(name: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

/// Sets (or, with `None`, removes) the value at `path`; false when the path is not there.
fn set(table: &mut toml::Table, path: &[Seg], value: Option<toml::Value>) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut here: &mut toml::Value = match parents.first() {
        Some(Seg::Key(k)) => match table.get_mut(k) {
            Some(v) => v,
            None => return false,
        },
        Some(Seg::Index(_)) => return false,
        None => {
            let Seg::Key(k) = last else { return false };
            return match value {
                Some(v) => {
                    table.insert(k.clone(), v);
                    true
                }
                None => table.remove(k).is_some(),
            };
        }
    };
    for s in &parents[1..] {
        let next = match (s, here) {
            (Seg::Key(k), toml::Value::Table(t)) => t.get_mut(k),
            (Seg::Index(i), toml::Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => here = v,
            None => return false,
        }
    }
    match (last, here, value) {
        (Seg::Key(k), toml::Value::Table(t), Some(v)) => {
            t.insert(k.clone(), v);
            true
        }
        (Seg::Key(k), toml::Value::Table(t), None) => t.remove(k).is_some(),
        (Seg::Index(i), toml::Value::Array(a), Some(v)) if *i < a.len() => {
            a[*i] = v;
            true
        }
        // An array element cannot go without shifting the later ones' indices: blank it.
        (Seg::Index(i), toml::Value::Array(a), None) if *i < a.len() => {
            a[*i] = toml::Value::Table(toml::Table::new());
            true
        }
        _ => false,
    }
}

/// The key path a problem's message starts with (`` `models[1].provider` ... ``), as segments.
fn leading_path(problem: &str) -> Option<Vec<Seg>> {
    let rest = problem.strip_prefix('`')?;
    let key = &rest[..rest.find('`')?];
    let mut path = Vec::new();
    for part in key.split('.') {
        let (name, mut indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() {
            return None;
        }
        path.push(Seg::Key(name.to_string()));
        while let Some(r) = indices.strip_prefix('[') {
            let end = r.find(']')?;
            path.push(Seg::Index(r[..end].parse().ok()?));
            indices = &r[end + 1..];
        }
    }
    Some(path)
}

/// Prefixes each problem whose key the file names with `file:line:col: ` (a problem about a
/// key the environment set, or about no key, stays as it is).
pub fn locate_all(problems: Vec<String>, file: &Path, text: &str) -> Vec<String> {
    problems
        .into_iter()
        .map(|p| {
            match leading_path(&p)
                .filter(|path| !path.is_empty())
                .and_then(|path| locate(text, &path))
            {
                Some((line, col)) => format!("{}:{line}:{col}: {p}", file.display()),
                None => p,
            }
        })
        .collect()
}

/// Line and column (1-based) of the key at `path` in a TOML text: the line that names the
/// longest prefix of the path (a key, a `[table]` or the nth `[[array]]` header). Best effort:
/// a path set from the environment has no line.
pub fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let mut table: Vec<Seg> = Vec::new();
    let mut arrays: std::collections::HashMap<Vec<Seg>, usize> = Default::default();
    let mut best: Option<(usize, usize, usize)> = None; // (matched segments, line, col)
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let col = raw.len() - line.len() + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let candidate = if let Some(h) = line.strip_prefix("[[") {
            let keys = keys(h.split("]]").next().unwrap_or(""));
            let Some((name, outer)) = keys.split_last() else {
                continue;
            };
            let mut base = with_indices(outer, &arrays);
            base.push(Seg::Key(name.clone()));
            let count = arrays.entry(base.clone()).or_insert(usize::MAX);
            *count = count.wrapping_add(1);
            let mut p = base;
            p.push(Seg::Index(*count));
            table = p.clone();
            p
        } else if let Some(h) = line.strip_prefix('[') {
            let keys = keys(h.split(']').next().unwrap_or(""));
            table = with_indices(&keys, &arrays);
            table.clone()
        } else if let Some((k, _)) = line.split_once('=') {
            let mut p = table.clone();
            p.extend(keys(k).into_iter().map(Seg::Key));
            p
        } else {
            continue;
        };
        // The line that names the whole path: a key set from the environment, which no line
        // names, gets no location rather than its section's.
        let matched = candidate.len();
        if matched == path.len() && path[..] == candidate[..] && best.is_none() {
            best = Some((matched, n + 1, col));
        }
    }
    best.map(|(_, l, c)| (l, c))
}

/// A header's keys with the index of the latest element of each array of tables on the way.
fn with_indices(keys: &[String], arrays: &std::collections::HashMap<Vec<Seg>, usize>) -> Vec<Seg> {
    let mut out = Vec::new();
    for k in keys {
        out.push(Seg::Key(k.clone()));
        if let Some(i) = arrays.get(&out) {
            out.push(Seg::Index(*i));
        }
    }
    out
}

fn keys(s: &str) -> Vec<String> {
    s.split('.')
        .map(|k| k.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|k| !k.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"[server]
max_body_byte = 10
listen = 5

[[models]]
id = "a"

[[models]]
id = "b"
base_url = "http://x"

[[mcp.servers]]
name = "files"
command = ["x"]
[mcp.servers.tools.write_file]
risk = "wrong"
"#;

    fn read_text(text: &str) -> Vec<String> {
        let table: toml::Table = text.parse().expect("toml");
        read(table, Some(Path::new("c.toml")), text).expect_err("problems")
    }

    #[test]
    fn every_problem_at_once_located_with_suggestions() {
        let problems = read_text(TEXT);
        let all = problems.join("\n");
        assert!(
            all.contains("c.toml:2:1: `server.max_body_byte`: unknown field"),
            "{all}"
        );
        assert!(all.contains("did you mean `max_body_bytes`?"), "{all}");
        assert!(all.contains("c.toml:3:1: `server.listen`"), "{all}");
        assert!(all.contains("c.toml:10:1: `models[1].base_url`"), "{all}");
        assert_eq!(problems.len(), 3, "{all}");
    }

    #[test]
    fn locations_follow_arrays_of_tables() {
        let at = |p: &[Seg]| locate(TEXT, p);
        let k = |s: &str| Seg::Key(s.into());
        assert_eq!(at(&[k("models"), Seg::Index(1), k("id")]), Some((9, 1)));
        assert_eq!(
            at(&[
                k("mcp"),
                k("servers"),
                Seg::Index(0),
                k("tools"),
                k("write_file"),
                k("risk")
            ]),
            Some((16, 1))
        );
        assert_eq!(at(&[k("limits")]), None);
    }

    #[test]
    fn value_problems_are_located_at_the_key_they_name() {
        let text = "[server]\nmax_body_bytes = 0\n\n[[models]]\nid = \"a\"\n\n[[models]]\nid = \"b\"\n  provider = \"nosuch\"\n";
        let located = locate_all(
            vec![
                "`server.max_body_bytes` must be positive".into(),
                "`models[1].provider` `nosuch` is not a provider".into(),
                "`routing.max_attempts` must be at least 1".into(),
                "no key at all".into(),
            ],
            Path::new("c.toml"),
            text,
        );
        assert_eq!(
            located[0],
            "c.toml:2:1: `server.max_body_bytes` must be positive"
        );
        assert_eq!(
            located[1],
            "c.toml:9:3: `models[1].provider` `nosuch` is not a provider"
        );
        assert_eq!(
            located[2], "`routing.max_attempts` must be at least 1",
            "not in the file"
        );
        assert_eq!(located[3], "no key at all");
    }
}
