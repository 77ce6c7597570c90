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
        "tests/tools.yaml",
        include_str!("../policies/tests/tools.yaml"),
    ),
    (
        "tests/audit.yaml",
        include_str!("../policies/tests/audit.yaml"),
    ),
    (
        "tests/resources_and_prompts.yaml",
        include_str!("../policies/tests/resources_and_prompts.yaml"),
    ),
    (
        "tests/cedar_cli_format.json",
        include_str!("../policies/tests/cedar_cli_format.json"),
    ),
    ("README.md", include_str!("../policies/README.md")),
];

/// Sample audit data (real CloudTrail from Stratus Red Team detonations, Apache-2.0, and an OTLP
/// GenAI sample), by path under `tests/fixtures/`, for the demo's lake.
pub const SAMPLE_DATA: &[(&str, &[u8])] = &[
    (
        "cloudtrail/stratus-red-team/LICENSE",
        include_bytes!("../tests/fixtures/cloudtrail/stratus-red-team/LICENSE"),
    ),
    (
        "cloudtrail/stratus-red-team/aws.credential-access.ec2-get-password-data.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.credential-access.ec2-get-password-data.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.credential-access.ec2-steal-instance-credentials.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.credential-access.ec2-steal-instance-credentials.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.credential-access.secretsmanager-batch-retrieve-secrets.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.credential-access.secretsmanager-batch-retrieve-secrets.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.credential-access.secretsmanager-retrieve-secrets.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.credential-access.secretsmanager-retrieve-secrets.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.credential-access.ssm-retrieve-securestring-parameters.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.credential-access.ssm-retrieve-securestring-parameters.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.defense-evasion.bedrock-guardrail-delete.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.defense-evasion.bedrock-guardrail-delete.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.defense-evasion.cloudtrail-delete.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.defense-evasion.cloudtrail-delete.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.defense-evasion.cloudtrail-event-selectors.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.defense-evasion.cloudtrail-event-selectors.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.defense-evasion.cloudtrail-stop.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.defense-evasion.cloudtrail-stop.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.defense-evasion.dns-delete-logs.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.defense-evasion.dns-delete-logs.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.defense-evasion.organizations-leave.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.defense-evasion.organizations-leave.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.defense-evasion.vpc-remove-flow-logs.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.defense-evasion.vpc-remove-flow-logs.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.discovery.ec2-download-user-data.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.discovery.ec2-download-user-data.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.execution.ec2-launch-unusual-instances.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.execution.ec2-launch-unusual-instances.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.execution.ec2-user-data.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.execution.ec2-user-data.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.execution.ssm-send-command.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.execution.ssm-send-command.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.execution.ssm-start-session.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.execution.ssm-start-session.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.exfiltration.ec2-security-group-open-port-22-ingress.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.exfiltration.ec2-security-group-open-port-22-ingress.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.exfiltration.ec2-share-ami.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.exfiltration.ec2-share-ami.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.exfiltration.ec2-share-ebs-snapshot.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.exfiltration.ec2-share-ebs-snapshot.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.exfiltration.rds-share-snapshot.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.exfiltration.rds-share-snapshot.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.impact.bedrock-invoke-model.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.impact.bedrock-invoke-model.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.initial-access.console-login-without-mfa.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.initial-access.console-login-without-mfa.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.lateral-movement.ec2-instance-connect.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.lateral-movement.ec2-instance-connect.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.lateral-movement.ec2-serial-console-send-ssh-public-key.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.lateral-movement.ec2-serial-console-send-ssh-public-key.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.persistence.iam-backdoor-role.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.persistence.iam-backdoor-role.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.persistence.iam-backdoor-user.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.persistence.iam-backdoor-user.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.persistence.iam-create-admin-user.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.persistence.iam-create-admin-user.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.persistence.iam-create-backdoor-role.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.persistence.iam-create-backdoor-role.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.persistence.iam-create-user-login-profile.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.persistence.iam-create-user-login-profile.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.persistence.lambda-backdoor-function.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.persistence.lambda-backdoor-function.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.persistence.lambda-layer-extension.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.persistence.lambda-layer-extension.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.persistence.lambda-overwrite-code.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.persistence.lambda-overwrite-code.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.persistence.rolesanywhere-create-trust-anchor.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.persistence.rolesanywhere-create-trust-anchor.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.persistence.sts-federation-token.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.persistence.sts-federation-token.json"
        ),
    ),
    (
        "cloudtrail/stratus-red-team/aws.privilege-escalation.iam-update-user-login-profile.json",
        include_bytes!(
            "../tests/fixtures/cloudtrail/stratus-red-team/aws.privilege-escalation.iam-update-user-login-profile.json"
        ),
    ),
    (
        "otlp/genai_example.jsonl",
        include_bytes!("../tests/fixtures/otlp/genai_example.jsonl"),
    ),
    ("README.md", include_bytes!("../tests/fixtures/README.md")),
];

/// Writes `files` (path under `dir`, contents) into `dir`; files that exist are left alone.
fn write_missing<B: AsRef<[u8]>>(dir: &Path, files: &[(&str, B)]) -> std::io::Result<()> {
    for (rel, contents) in files {
        let path = dir.join(rel);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, contents.as_ref())?;
    }
    Ok(())
}

/// Writes the sample data into `dir` (files that exist are left alone).
pub fn write_sample_data(dir: &Path) -> std::io::Result<()> {
    write_missing(dir, SAMPLE_DATA)
}

/// Writes the default policies into `dir` (files that exist are left alone).
pub fn write_default_policies(dir: &Path) -> std::io::Result<()> {
    write_missing(dir, DEFAULT_POLICIES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adding a file to `policies/` without embedding it would ship a different default bundle
    /// from the one the repository tests.
    #[test]
    fn every_sample_file_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut on_disk: Vec<String> = std::fs::read_dir(root.join("cloudtrail/stratus-red-team"))
            .unwrap()
            .map(|e| {
                format!(
                    "cloudtrail/stratus-red-team/{}",
                    e.unwrap().file_name().to_string_lossy()
                )
            })
            .collect();
        on_disk.push("otlp/genai_example.jsonl".into());
        on_disk.push("README.md".into());
        on_disk.sort();
        let mut embedded: Vec<String> = SAMPLE_DATA.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

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
