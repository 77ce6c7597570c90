//! `cairn demo`: the whole chain on embedded defaults, saying at each step what it does.

use std::path::{Path, PathBuf};

use policy_engine::bundle::keys;
use policy_engine::load::PolicySources;

use crate::cli::{DemoArgs, PolicyPaths};
use crate::exit::{CliError, CliResult, Outcome};

fn step(n: usize, text: &str) {
    outln!("\n[{n}] {text}");
}

/// The policy directory the demo uses: `./policies` when it exists, else the embedded defaults
/// written under the demo directory.
fn policy_dir(dir: &Path) -> Result<PathBuf, CliError> {
    let local = PathBuf::from("policies");
    if local.join("schema.cedarschema").is_file() {
        return Ok(local);
    }
    let target = dir.join("policies");
    crate::embedded::write_default_policies(&target).map_err(|source| {
        CliError::input(policy_engine::PolicyError::Write {
            path: target.clone(),
            source,
        })
    })?;
    Ok(target)
}

/// The dev signing key under `dir/keys`, generated on first use.
pub fn dev_key(dir: &Path) -> Result<(PathBuf, PathBuf), CliError> {
    let keys_dir = dir.join("keys");
    let private = keys_dir.join(keys::PRIVATE_KEY_FILE);
    let public = keys_dir.join(keys::PUBLIC_KEY_FILE);
    if !private.exists() {
        keys::generate(&keys_dir)?;
    }
    Ok((private, public))
}

pub fn run(args: &DemoArgs) -> CliResult {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).map_err(|source| {
        CliError::input(policy_engine::PolicyError::Write {
            path: dir.clone(),
            source,
        })
    })?;
    outln!(
        "Cairn demo: reviewed policy -> signed bundle -> enforcing gateway -> signed record -> lake -> report"
    );
    outln!("working directory for this run: {}", dir.display());

    let policies = policy_dir(dir)?;
    step(
        1,
        &format!("validating the Cedar policies in {}", policies.display()),
    );
    let sources = PolicySources::discover(&policies, None)?;
    let (loaded, problems) = super::policy::check_all(&sources, None)?;
    crate::output::eprint_problems(&problems);
    if problems.iter().any(|p| p.is_error()) {
        outln!("    the policies have errors; the demo stops here");
        return Ok(Outcome::CheckFailed);
    }
    outln!(
        "    {} policies in {} file(s) pass strict validation against {}",
        loaded.policies.len(),
        loaded.files.len(),
        sources
            .schema
            .as_ref()
            .map_or_else(String::new, |p| p.display().to_string())
    );

    step(2, "generating (or reusing) the dev signing key");
    let (private, public) = dev_key(dir)?;
    let vk = keys::load_verifying_key(&public)?;
    outln!("    key {} at {}", keys::key_id(&vk), private.display());

    step(3, "running the policy tests and packing a signed bundle");
    let bundle_path = dir.join("bundle.tar");
    let paths = PolicyPaths {
        policies: policies.clone(),
        schema: None,
    };
    let verified =
        match super::policy::build_bundle(&paths, None, &private, &bundle_path, None, None)? {
            Ok(v) => v,
            Err(o) => return Ok(o),
        };
    if let Some(t) = &verified.manifest.tests {
        outln!(
            "    {}/{} test cases passed; {}% of policies determined a decision in some test",
            t.passed,
            t.cases,
            t.coverage_percent
        );
    }
    outln!("    wrote {} ({})", bundle_path.display(), verified.digest);

    step(4, "verifying the bundle as the gateway will");
    policy_engine::bundle::verify_file(&bundle_path, &vk).map_err(CliError::failed)?;
    outln!("    signature and every member match the manifest");

    outln!(
        "\nNext: `cairn gateway serve` loads this kind of bundle and enforces it on every request."
    );
    Ok(Outcome::Success)
}
