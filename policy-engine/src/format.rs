//! `cairn policy fmt`: the Cedar formatter applied file by file, with a unified diff per file
//! that would change. Comments survive because the formatter keeps them.

use cedar_policy_formatter::{Config, policies_str_to_pretty};
use similar::TextDiff;

use crate::problem::{Problem, SourceFile};

/// The Cedar formatter's settings used for every file.
pub const LINE_WIDTH: usize = 80;
pub const INDENT_WIDTH: isize = 2;

/// A file whose formatted text differs from what is on disk.
#[derive(Debug, Clone)]
pub struct Reformatted {
    pub file: SourceFile,
    pub formatted: String,
}

impl Reformatted {
    /// A unified diff from the file as it is to the file as formatted.
    pub fn diff(&self) -> String {
        let name = &*self.file.name;
        TextDiff::from_lines(&*self.file.text, &self.formatted)
            .unified_diff()
            .context_radius(3)
            .header(name, &format!("{name} (formatted)"))
            .to_string()
    }
}

/// Formats every file; files that cannot be parsed become problems.
pub fn format_files(files: &[SourceFile]) -> (Vec<Reformatted>, Vec<Problem>) {
    let config = Config {
        line_width: LINE_WIDTH,
        indent_width: INDENT_WIDTH,
    };
    let mut changed = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match policies_str_to_pretty(&file.text, &config) {
            Ok(formatted) => {
                if formatted != *file.text {
                    changed.push(Reformatted {
                        file: file.clone(),
                        formatted,
                    });
                }
            }
            Err(e) => problems.push(
                Problem::error("cairn::fmt", format!("cannot format: {e:#}"))
                    .in_file(file)
                    .with_help("run `cairn policy validate` to see the syntax error"),
            ),
        }
    }
    (changed, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn comments_survive_and_layout_is_fixed() {
        let src = "// who may read\n@id(\"a\")\npermit(principal,action,resource) when { true };\n";
        let file = SourceFile::new(Path::new("a.cedar"), src);
        let (changed, problems) = format_files(&[file]);
        assert!(problems.is_empty());
        let out = &changed[0].formatted;
        assert!(out.contains("// who may read"));
        assert!(
            out.contains("permit (principal, action, resource)"),
            "{out}"
        );
        assert!(changed[0].diff().contains("+++ a.cedar (formatted)"));
    }

    #[test]
    fn formatted_file_is_unchanged() {
        let src = "@id(\"a\")\npermit (principal, action, resource);\n";
        let (changed, _) = format_files(&[SourceFile::new(Path::new("a.cedar"), src)]);
        assert!(
            changed.is_empty(),
            "{:?}",
            changed.first().map(|c| c.diff())
        );
    }
}
