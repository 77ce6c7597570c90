//! The repository's `policies/` built into the binary, so `cairn demo` and `cairn gateway serve`
//! run with no files around them.

use std::path::Path;

/// Every file of the default bundle, by its path under `policies/`.
pub const DEFAULT_POLICIES: &[(&str, &str)] = &[
    (
        "schema.cedarschema",
        include_str!("../policies/schema.cedarschema"),
    ),
    ("models.cedar", include_str!("../policies/models.cedar")),
    (
        "tools_and_audit.cedar",
        include_str!("../policies/tools_and_audit.cedar"),
    ),
    (
        "entities/directory.json",
        include_str!("../policies/entities/directory.json"),
    ),
    (
        "entities/models.json",
        include_str!("../policies/entities/models.json"),
    ),
    (
        "entities/tools.json",
        include_str!("../policies/entities/tools.json"),
    ),
    (
        "tests/invoke_model.yaml",
        include_str!("../policies/tests/invoke_model.yaml"),
    ),
    (
        "tests/tools_and_audit.yaml",
        include_str!("../policies/tests/tools_and_audit.yaml"),
    ),
    (
        "tests/cedar_cli_format.json",
        include_str!("../policies/tests/cedar_cli_format.json"),
    ),
    ("README.md", include_str!("../policies/README.md")),
];

/// Writes the default policies into `dir` (files that exist are left alone).
pub fn write_default_policies(dir: &Path) -> std::io::Result<()> {
    for (rel, text) in DEFAULT_POLICIES {
        let path = dir.join(rel);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adding a file to `policies/` without embedding it would ship a different default bundle
    /// from the one the repository tests.
    #[test]
    fn every_policy_file_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    on_disk.push(
                        p.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .replace('\\', "/"),
                    );
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = DEFAULT_POLICIES
            .iter()
            .map(|(p, _)| p.to_string())
            .collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }
}
