//! `cairn demo`: the whole chain on embedded defaults, saying at each step what it does.

use std::path::{Path, PathBuf};

use gateway_core::GatewayConfig;
use gateway_core::config::ApiKeyConfig;
use policy_engine::bundle::keys;
use policy_engine::load::PolicySources;

use crate::cli::{DemoArgs, PolicyPaths};
use crate::exit::{CliError, CliResult, Outcome};

fn step(n: usize, text: &str) {
    outln!("\n[{n}] {text}");
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

/// A user the demo sends requests as, with an API key of its own.
struct DemoUser {
    name: &'static str,
    key: String,
    groups: &'static [&'static str],
    department: &'static str,
    clearance: i64,
}

fn demo_users() -> Vec<DemoUser> {
    let u = |name, groups, department, clearance| DemoUser {
        name,
        key: format!("demo-{name}-{}", uuid::Uuid::new_v4().simple()),
        groups,
        department,
        clearance,
    };
    vec![
        u("alice", &["engineering"][..], "engineering", 2),
        u("bob", &["sales"][..], "sales", 1),
        u("ivan", &["interns", "engineering"][..], "engineering", 1),
        u("carol", &["ml-platform", "engineering"][..], "research", 3),
    ]
}

/// One scripted request and what came back.
struct Exchange {
    who: String,
    model: String,
    classification: &'static str,
    stream: bool,
    status: u16,
    detail: String,
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
    outln!("everything this run writes goes under {}", dir.display());

    let policies = super::gateway::dev_policies(dir)?;
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
    for line in super::policy_proof::demo_lines(&loaded, &dir.join(".cairn/cache/proof"))? {
        outln!("    {line}");
    }

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
    let verified = match super::policy::build_bundle(
        &paths,
        None,
        &private,
        &bundle_path,
        Default::default(),
        false,
    )? {
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
    policy_engine::bundle::verify_file(&bundle_path, &vk).map_err(CliError::failed)?;
    outln!("    verified as the gateway will: signature and every member match the manifest");

    step(
        4,
        "starting the gateway on embedded defaults (mock provider, dev key, records under the demo directory)",
    );
    let records = dir.join("records");
    let users = demo_users();
    let (exchanges, agent, stand_in) = run_gateway(dir, &users)?;
    outln!(
        "    {:<8} {:<14} {:<13} {:<7} {:<6} what the gateway said",
        "who",
        "model",
        "data",
        "stream",
        "status"
    );
    for e in &exchanges {
        outln!(
            "    {:<8} {:<14} {:<13} {:<7} {:<6} {}",
            e.who,
            e.model,
            e.classification,
            if e.stream { "yes" } else { "no" },
            e.status,
            e.detail
        );
    }

    let trail = stand_in
        .write_trail(&dir.join("cloudtrail-simulated"))
        .map_err(|e| {
            CliError::input(miette::miette!(
                "cannot write the simulated CloudTrail under {}: {e}",
                dir.display()
            ))
        })?;
    outln!(
        "\n    claude-sonnet-us-west-2 went through the Bedrock provider as each user's own role session (STS session tags, source identity): {} call(s) to the simulated Bedrock",
        stand_in.bedrock_calls()
    );
    outln!(
        "    SIMULATED CloudTrail for those calls, as AWS would deliver it: {} log file(s) and {} signed digest(s) under {}",
        trail.log_files,
        trail.digests,
        trail.root.display()
    );
    outln!("\n    an agent (alice) through /mcp, in front of the demo's notes server:");
    for t in &agent {
        outln!("    {:<30} {}", t.what, t.outcome);
    }

    step(
        5,
        "verifying the decision records: hashes, signatures, chain and seals",
    );
    let newest = decision_record::checkpoint::newest(&checkpoints_dir(dir), &[vk])
        .map_err(|e| e.to_string())
        .and_then(|found| found.ok_or_else(|| "the gateway wrote none".to_string()))
        .map_err(|e| {
            CliError::failed(miette::miette!(
                "the gateway's checkpoint in `{}` cannot be read: {e}",
                checkpoints_dir(dir).display()
            ))
        })?;
    let (checkpoint_file, checkpoint) = newest;
    let report = decision_record::verify::verify_dir_anchored(
        &records,
        vec![(keys::key_id(&vk), vk)],
        &[checkpoint.size],
    )
    .map_err(|source| {
        CliError::input(policy_engine::PolicyError::Read {
            path: records.clone(),
            source,
        })
    })?;
    let against = decision_record::verify::against_checkpoint(&report, &checkpoint);
    if !report.ok() || against != decision_record::verify::AgainstCheckpoint::Covered {
        for e in &report.errors {
            eprintln!("    {e}");
        }
        if against != decision_record::verify::AgainstCheckpoint::Covered {
            eprintln!("    the records do not reach the gateway's checkpoint: {against:?}");
        }
        return Ok(Outcome::CheckFailed);
    }
    outln!(
        "    {} records ({} decisions, {} outcomes) in {} segment(s) under {}: chain intact",
        report.records,
        report.decisions,
        report.outcomes,
        report.segments,
        records.display()
    );
    outln!(
        "    the signed checkpoint in {} vouches for {} records: none was removed from the end",
        checkpoint_file.display(),
        checkpoint.size
    );
    outln!(
        "    check them yourself: cairn audit verify {} --pubkey {} --checkpoints {}",
        records.display(),
        public.display(),
        checkpoints_dir(dir).display()
    );

    step(
        6,
        "building the audit lake: decision records and the bundles that decided them (verified on the way in), the gateway's own spans, sample CloudTrail and OpenTelemetry data",
    );
    let lake_dir = dir.join("lake");
    ingest_into_lake(dir, &lake_dir, &records, vk, &trail)?;

    step(
        7,
        "writing the audit reports (access, denials, spend, reconcile, detections, tools) over the lake",
    );
    let report = dir.join("report.html");
    let detections = write_reports(&lake_dir, &report)?;
    outln!("    {detections}");
    outln!(
        "    open {} in a browser; every number comes from SQL that `cairn report all --lake {} --show-sql` prints",
        report.display(),
        lake_dir.display()
    );
    Ok(Outcome::Success)
}

/// Renders every report over the lake into one HTML file; returns a one-line detection summary.
fn write_reports(lake_dir: &Path, out: &Path) -> Result<String, CliError> {
    let rt = super::gateway::runtime()?;
    let lake = lake_dir.display().to_string();
    let runs = rt.block_on(async {
        let engine = reports::Engine::Local(reports::catalog::open(&lake).await?);
        let mut runs = Vec::new();
        for spec in reports::spec::builtin()? {
            runs.push(
                reports::run_report(&engine, &spec, reports::spec::Period::default(), &lake)
                    .await?,
            );
        }
        let evidence =
            reports::run_evidence(&engine, reports::spec::Period::default(), &lake).await?;
        Ok::<_, reports::ReportError>((runs, evidence))
    })?;
    let (runs, evidence) = runs;
    let html =
        reports::render::render(&runs, Some(&evidence), reports::render::Format::Html, None)?;
    super::policy::write_atomically(out, html.as_bytes())?;
    let hits: Vec<String> = runs
        .iter()
        .filter(|r| r.spec.name == "detections")
        .flat_map(|r| &r.sections)
        .filter(|s| s.output.rows() > 0)
        .map(|s| {
            let id = s
                .spec
                .rule_id
                .as_deref()
                .map(|id| format!(" [{id}]"))
                .unwrap_or_default();
            format!("{}{id} ({})", s.spec.title, s.output.rows())
        })
        .collect();
    // The reconcile's summary: CloudTrail's Bedrock calls, matched to decisions or not.
    let reconciled = runs
        .iter()
        .filter(|r| r.spec.name == "reconcile")
        .flat_map(|r| &r.sections)
        .find(|s| s.spec.name == "summary")
        .and_then(|s| reports::output::to_json_rows(&s.output.batches).ok())
        .and_then(|rows| rows.into_iter().next());
    if let Some(r) = reconciled {
        outln!(
            "    reconcile: {} Bedrock call(s) in CloudTrail, {} matched to the gateway's decisions (the simulated trail), {} bypassed the gateway (the sample data); see the reconcile's provenance section for each call's policies and bundle",
            r["bedrock_calls"],
            r["through_gateway"],
            r["bypassed"]
        );
    }
    Ok(if hits.is_empty() {
        "detections: no hits".to_string()
    } else {
        format!(
            "detections with hits ({} Sigma rules and SQL detections ran; details: cairn detect --lake {}): {}",
            runs.iter()
                .filter(|r| r.spec.name == "detections")
                .map(|r| r.sections.len())
                .sum::<usize>(),
            lake,
            hits.join("; ")
        )
    })
}

/// Ingests the demo's records and the embedded sample data into `lake_dir`.
fn ingest_into_lake(
    dir: &Path,
    lake_dir: &Path,
    records: &Path,
    vk: ed25519_dalek::VerifyingKey,
    trail: &super::demo_aws::Written,
) -> Result<(), CliError> {
    let trail_keys = std::fs::read_to_string(&trail.public_keys)
        .map_err(|e| e.to_string())
        .and_then(|t| audit_ingest::integrity::PublicKeys::from_json(&t))
        .map_err(|e| {
            CliError::input(miette::miette!(
                "the simulated trail's keys `{}`: {e}",
                trail.public_keys.display()
            ))
        })?;
    let trail_src = trail.root.display().to_string();
    let samples = dir.join("samples");
    crate::embedded::write_sample_data(&samples).map_err(|source| {
        CliError::input(policy_engine::PolicyError::Write {
            path: samples.clone(),
            source,
        })
    })?;
    let lake = audit_ingest::lake::Lake::open(&lake_dir.display().to_string())?;
    let rt = super::gateway::runtime()?;
    let handle = rt.handle().clone();
    let opts = audit_ingest::ingest::Options {
        lake,
        filter: Default::default(),
        jobs: 0,
        flush_rows: 0,
        progress: std::sync::Arc::new(audit_ingest::ingest::NoProgress),
    };
    let keys = vec![(keys::key_id(&vk), vk)];
    let records_src = records.display().to_string();
    let bundles_src = bundles_dir(dir).display().to_string();
    let ct_src = samples.join("cloudtrail").display().to_string();
    let otel_src = samples.join("otlp").display().to_string();
    let own_spans = spans_file(dir);
    let own_spans = own_spans.is_file().then(|| own_spans.display().to_string());
    let summaries = rt
        .block_on(async move {
            tokio::task::spawn_blocking(move || -> Result<Vec<_>, audit_ingest::IngestError> {
                let mut out = vec![
                    audit_ingest::decisions::run(&records_src, keys.clone(), &opts, &handle)?,
                    audit_ingest::bundles::run(&bundles_src, keys, &opts, &handle)?,
                    // The simulated trail, its digests checked offline on the way in.
                    audit_ingest::ingest::cloudtrail_verified(
                        &trail_src,
                        &trail_keys,
                        &opts,
                        &handle,
                    )?,
                    audit_ingest::ingest::cloudtrail(&ct_src, &opts, &handle)?,
                ];
                // The gateway's own spans, then the sample export.
                if let Some(own) = &own_spans {
                    out.push(audit_ingest::ingest::otel(own, &opts, &handle)?);
                }
                out.push(audit_ingest::ingest::otel(&otel_src, &opts, &handle)?);
                Ok(out)
            })
            .await
        })
        .map_err(|e| CliError::input(miette::miette!("ingest failed: {e}")))??;
    for s in &summaries {
        if !s.integrity.is_empty() {
            outln!(
                "    simulated CloudTrail checked against its signed digests: {}",
                audit_ingest::integrity::Report::describe(&s.integrity)
            );
        }
        let skipped = s.sources.iter().filter(|x| x.skipped.is_some()).count();
        outln!(
            "    {:<12} {:>3} source(s){}: {} read, {} written, {} duplicates skipped, {} quarantined",
            s.table,
            s.sources.len(),
            if skipped > 0 {
                format!(" ({skipped} already in the lake)")
            } else {
                String::new()
            },
            s.read(),
            s.written(),
            s.duplicates(),
            s.quarantined()
        );
    }
    outln!(
        "    lake at {} (Hive-partitioned zstd Parquet; DuckDB, pyarrow and Athena read it as is)",
        lake_dir.display()
    );
    Ok(())
}

/// Where the demo gateway keeps its log's checkpoints.
fn checkpoints_dir(dir: &Path) -> PathBuf {
    dir.join("checkpoints")
}

/// Where the demo gateway keeps the bundles it loaded.
fn bundles_dir(dir: &Path) -> PathBuf {
    dir.join("bundles")
}

/// Where the demo gateway appends its spans.
fn spans_file(dir: &Path) -> PathBuf {
    dir.join("spans").join("gateway-spans.jsonl")
}

/// Starts the gateway in this process, sends the scripted requests, and shuts it down cleanly.
/// One step of the demo agent's loop.
struct ToolStep {
    what: String,
    outcome: String,
}

/// What the demo's gateway run gave: the chat exchanges, the agent's MCP steps, and the AWS
/// stand-in with the CloudTrail records of its Bedrock calls.
type GatewayRun = (Vec<Exchange>, Vec<ToolStep>, super::demo_aws::StandIn);

fn run_gateway(dir: &Path, users: &[DemoUser]) -> Result<GatewayRun, CliError> {
    let mut raw = gateway_core::config::load(None, std::iter::empty())?;
    raw.server.listen = "127.0.0.1:0".into();
    let dev = super::gateway::dev_setup(&mut raw, dir)?;
    // Every bundle the gateway loads is kept, so the lake can name the policies behind each
    // decision (`cairn ingest bundles`).
    raw.policy.deposit_dir = bundles_dir(dir).display().to_string();
    // A signed checkpoint of the log outside the record directory, so that records removed
    // from the end are detected (`cairn audit verify --checkpoints`).
    raw.records.checkpoint_dir = checkpoints_dir(dir).display().to_string();
    for u in users {
        raw.auth.api_keys.push(ApiKeyConfig {
            id: format!("demo-{}", u.name),
            sha256: gateway_core::authn::hash_key(&u.key),
            principal: format!("User::\"{}\"", u.name),
            groups: u.groups.iter().map(|g| g.to_string()).collect(),
            attributes: [
                (
                    "department".to_string(),
                    toml::Value::String(u.department.into()),
                ),
                ("clearance".to_string(), toml::Value::Integer(u.clearance)),
            ]
            .into(),
        });
    }
    // Claude Sonnet is served by two deployments; the first one is throttled (answers 429), so
    // the router falls back to the second.
    let mut models = gateway_core::catalogue::default_models();
    let sonnet = models
        .iter()
        .find(|m| m.id == "claude-sonnet")
        .cloned()
        .ok_or_else(|| {
            CliError::input(miette::miette!(
                "the built-in catalogue has no claude-sonnet"
            ))
        })?;
    for (id, region, throttled) in [
        ("claude-sonnet-us-east-1", "us-east-1", true),
        ("claude-sonnet-us-west-2", "us-west-2", false),
    ] {
        let mut m = sonnet.clone();
        m.id = id.into();
        m.region = region.into();
        m.mock = throttled.then(|| gateway_core::config::MockConfig {
            fail_status: 429,
            ..Default::default()
        });
        if !throttled {
            // Served through the Bedrock provider, as the user (STS session tags and source
            // identity), against the demo's stand-in for Bedrock and STS.
            m.provider = "bedrock".into();
            m.upstream_model = Some("anthropic.claude-3-5-sonnet-20240620-v1:0".into());
        }
        models.push(m);
    }
    let aws_listener = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr().map(|a| (l, a)))
        .map_err(|e| {
            CliError::input(miette::miette!("cannot start the demo's AWS stand-in: {e}"))
        })?;
    let aws_url = format!("http://{}", aws_listener.1);
    raw.providers.bedrock.endpoint_url = aws_url.clone();
    raw.providers.bedrock.identity.role_arn = super::demo_aws::role_arn();
    raw.providers.bedrock.identity.sts_endpoint_url = aws_url;
    if let Some(alias) = models.iter_mut().find(|m| m.id == "claude-sonnet") {
        alias.deployments = vec![
            gateway_core::config::DeploymentConfig {
                model: "claude-sonnet-us-east-1".into(),
                priority: 0,
                weight: 1,
            },
            gateway_core::config::DeploymentConfig {
                model: "claude-sonnet-us-west-2".into(),
                priority: 1,
                weight: 1,
            },
        ];
    }
    raw.models = models;
    // The research team's daily budget runs out during the demo: each Opus request reserves
    // its worst case (64 completion tokens) and is charged what it used.
    raw.limits.rules.push(gateway_core::config::LimitRule {
        name: "research-daily".into(),
        scope: "team".into(),
        value: "research".into(),
        usd_per_day: 0.008,
        ..Default::default()
    });
    // The demo's MCP server, spawned by the gateway over stdio: notes under `dir/notes`.
    let notes = dir.join("notes");
    std::fs::create_dir_all(notes.join("scratch"))
        .and_then(|()| std::fs::create_dir_all(notes.join("private")))
        .map_err(|source| {
            CliError::input(policy_engine::PolicyError::Write {
                path: notes.clone(),
                source,
            })
        })?;
    for (name, text) in [
        (
            "incident-review.md",
            "Incident review: the outage began with an expired certificate.\n",
        ),
        (
            "roadmap.md",
            "Roadmap: MCP tools behind the gateway next quarter.\n",
        ),
        (
            "private/oncall.md",
            "On-call rota and pager numbers (SRE only).\n",
        ),
    ] {
        let _ = std::fs::write(notes.join(name), text);
    }
    let exe = std::env::current_exe()
        .map_err(|e| CliError::input(miette::miette!("cannot find the cairn binary: {e}")))?;
    raw.mcp.servers.push(gateway_core::config::McpServerConfig {
        owner_team: "platform".into(),
        ..gateway_core::config::McpServerConfig::local(
            "notes",
            vec![
                exe.display().to_string(),
                "gateway".into(),
                "demo-mcp-server".into(),
                "--root".into(),
                notes.display().to_string(),
            ],
        )
    });
    // The gateway's own spans, as OTLP/JSON lines, for the lake (step 6).
    raw.telemetry.otlp_file = spans_file(dir).display().to_string();
    raw.telemetry.batch_delay_ms = 50;
    let mut config = GatewayConfig::resolve(raw)?;
    config.aws_base_credentials = Some(aws_credential_types::Credentials::new(
        super::demo_aws::GATEWAY_ACCESS_KEY,
        super::demo_aws::GATEWAY_SECRET,
        None,
        None,
        "cairn-demo",
    ));
    let rt = super::gateway::runtime()?;
    let stand_in = {
        let _in_runtime = rt.enter();
        super::demo_aws::StandIn::start(aws_listener.0).map_err(|e| {
            CliError::input(miette::miette!("cannot start the demo's AWS stand-in: {e}"))
        })?
    };
    outln!(
        "    simulated AWS (STS and Bedrock Runtime, writing CloudTrail) at {}",
        stand_in.url()
    );
    rt.block_on(async move {
        let gateway = gateway_core::bind(config).await?;
        let addr = gateway
            .local_addr()
            .map_err(|e| CliError::input(miette::miette!("cannot read the bound address: {e}")))?;
        outln!("    gateway listening on http://{addr}");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(gateway.run(async move {
            let _ = stop_rx.await;
        }));
        let key = |name: &str| {
            users
                .iter()
                .find(|u| u.name == name)
                .map_or_else(|| dev.api_key.clone(), |u| u.key.clone())
        };
        const SUMMARY: &str = "Summarise our incident review in two sentences.";
        const WITH_CONTACT: &str =
            "Draft a reply to jane.doe@example.com (+1 415 555 0132) about the outage.";
        const WITH_SECRET: &str = "Why does AKIAIOSFODNN7EXAMPLE get AccessDenied on s3:GetObject?";
        // (who, model, data classification, stream, prompt). Each user sends with their own key,
        // `dev-key` with the dev key (`key` falls back to it), `stranger` with no valid key.
        let script = [
            ("alice", "claude-sonnet", "internal", false, SUMMARY),
            ("alice", "claude-sonnet", "confidential", true, SUMMARY),
            ("alice", "claude-opus", "internal", false, SUMMARY),
            ("alice", "claude-haiku", "internal", false, WITH_CONTACT),
            ("bob", "claude-sonnet", "confidential", false, SUMMARY),
            ("ivan", "claude-haiku", "internal", false, SUMMARY),
            ("ivan", "claude-sonnet", "internal", false, SUMMARY),
            ("carol", "claude-opus", "restricted", false, SUMMARY),
            ("carol", "claude-opus", "restricted", false, SUMMARY),
            ("carol", "claude-opus", "restricted", false, SUMMARY),
            ("dev-key", "llama-apac", "internal", false, SUMMARY),
            ("dev-key", "claude-haiku", "public", true, SUMMARY),
            ("dev-key", "claude-haiku", "internal", false, WITH_SECRET),
            ("stranger", "claude-haiku", "internal", false, SUMMARY),
        ];
        let client = reqwest::Client::new();
        let mut out = Vec::new();
        for (who, model, classification, stream, prompt) in script {
            let api_key = if who == "stranger" {
                "not-a-key".to_string()
            } else {
                key(who)
            };
            let body = serde_json::json!({
                "model": model,
                "stream": stream,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": prompt}],
            });
            let resp = client
                .post(format!("http://{addr}/v1/chat/completions"))
                .bearer_auth(&api_key)
                .header("x-cairn-data-classification", classification)
                .json(&body)
                .send()
                .await
                .map_err(|e| CliError::input(miette::miette!("demo request failed: {e}")))?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let mut redacted = header("x-cairn-redacted")
                .map(|r| format!("; prompt redacted ({r}) before it left"))
                .unwrap_or_default();
            if let (Some(d), Some(n)) = (header("x-cairn-deployment"), header("x-cairn-attempts")) {
                redacted.push_str(&format!(
                    "; served by {d} after {} throttled attempt(s)",
                    n.parse::<u32>().unwrap_or(1).saturating_sub(1)
                ));
            }
            let text = resp.text().await.unwrap_or_default();
            let detail = if status == 200 && stream {
                let n = text.matches("data: {").count();
                format!("allowed; {n} streamed chunks{redacted}")
            } else if status == 200 {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                format!(
                    "allowed; {} tokens in, {} out{redacted}",
                    v["usage"]["prompt_tokens"], v["usage"]["completion_tokens"]
                )
            } else {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                v["error"]["message"].as_str().unwrap_or("").to_string()
            };
            out.push(Exchange {
                who: who.to_string(),
                model: model.to_string(),
                classification,
                stream,
                status,
                detail,
            });
        }
        let agent = agent_loop(&client, &addr.to_string(), &key("alice"), &notes).await?;
        let _ = stop_tx.send(());
        server
            .await
            .map_err(|e| CliError::input(miette::miette!("gateway task failed: {e}")))??;
        outln!("    gateway stopped; records flushed and sealed");
        Ok((out, agent, stand_in))
    })
}

/// A JSON-RPC request to the gateway's `/mcp` in the stateless revision (2026-07-28).
async fn mcp_call(
    client: &reqwest::Client,
    addr: &str,
    key: &str,
    method: &str,
    mut params: serde_json::Value,
) -> Result<serde_json::Value, CliError> {
    params["_meta"] = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "cairn-demo-agent", "version": "1" },
    });
    use gateway_core::mcp::wire;
    let mut req = client
        .post(format!("http://{addr}/mcp"))
        .bearer_auth(key)
        .header(wire::PROTOCOL_VERSION_HEADER, "2026-07-28")
        .header(wire::METHOD_HEADER, method);
    if let Some(name) = wire::name_param(method).and_then(|k| params[k].as_str()) {
        req = req.header(wire::NAME_HEADER, wire::encode_header_value(name));
    }
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let resp = req
        .json(&body)
        .send()
        .await
        .map_err(|e| CliError::input(miette::miette!("demo MCP request failed: {e}")))?;
    resp.json()
        .await
        .map_err(|e| CliError::input(miette::miette!("demo MCP answer is not JSON: {e}")))
}

/// An agent's loop as alice (engineering): list the tools, ask a model that is offered them,
/// run the tool call it returns, then three calls the controls refuse or hide.
async fn agent_loop(
    client: &reqwest::Client,
    addr: &str,
    key: &str,
    notes: &Path,
) -> Result<Vec<ToolStep>, CliError> {
    let mut steps = Vec::new();
    let listed = mcp_call(client, addr, key, "tools/list", serde_json::json!({})).await?;
    let tools: Vec<serde_json::Value> = listed["result"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    steps.push(ToolStep {
        what: "tools/list".into(),
        outcome: format!(
            "{} listed ({}); notes__delete_note filtered out: no policy lets engineering call a destructive tool",
            names.len(),
            names.join(", ")
        ),
    });
    let functions: Vec<serde_json::Value> = tools
        .iter()
        .map(|t| {
            serde_json::json!({ "type": "function", "function": {
                "name": t["name"], "description": t["description"], "parameters": t["inputSchema"] } })
        })
        .collect();
    let chat = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&serde_json::json!({
            "model": "claude-haiku",
            "max_tokens": 64,
            "tools": functions,
            "messages": [{ "role": "user", "content": "incident review" }],
        }))
        .send()
        .await
        .map_err(|e| CliError::input(miette::miette!("demo request failed: {e}")))?;
    let chat: serde_json::Value = chat.json().await.unwrap_or_default();
    let call = &chat["choices"][0]["message"]["tool_calls"][0]["function"];
    let tool = call["name"]
        .as_str()
        .unwrap_or("notes__search_notes")
        .to_string();
    let args: serde_json::Value = call["arguments"]
        .as_str()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_else(|| serde_json::json!({ "query": "incident review" }));
    steps.push(ToolStep {
        what: "model call with tools".into(),
        outcome: format!("claude-haiku answered with a tool call: {tool} {args}"),
    });
    let scratch = notes.join("scratch");
    let calls = [
        (tool.as_str(), args.clone()),
        (
            "notes__delete_note",
            serde_json::json!({ "note_id": "roadmap.md" }),
        ),
        (
            "notes__write_file",
            serde_json::json!({
                "path": scratch.join("creds.txt").display().to_string(),
                "content": "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
            }),
        ),
    ];
    for (name, arguments) in calls {
        let answer = mcp_call(
            client,
            addr,
            key,
            "tools/call",
            serde_json::json!({ "name": name, "arguments": arguments }),
        )
        .await?;
        let outcome = match (&answer["result"], &answer["error"]) {
            (r, _) if r.is_object() => format!(
                "allowed: {}",
                r["content"][0]["text"].as_str().unwrap_or_default()
            ),
            (_, e) => format!(
                "refused ({}): {}{}",
                e["code"],
                e["message"].as_str().unwrap_or_default(),
                e["data"]["decision_id"]
                    .as_str()
                    .map(|d| format!(" [decision {d}]"))
                    .unwrap_or_default()
            ),
        };
        steps.push(ToolStep {
            what: format!("tools/call {name}"),
            outcome,
        });
    }
    resources_and_prompts(client, addr, key, &mut steps).await?;
    Ok(steps)
}

/// The notes as resources (a private one hidden from alice, and refused when she names it),
/// and a prompt.
async fn resources_and_prompts(
    client: &reqwest::Client,
    addr: &str,
    key: &str,
    steps: &mut Vec<ToolStep>,
) -> Result<(), CliError> {
    let private = "cairn://notes/note:///private/oncall.md";
    let listed = mcp_call(client, addr, key, "resources/list", serde_json::json!({})).await?;
    let uris: Vec<&str> = listed["result"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    steps.push(ToolStep {
        what: "resources/list".into(),
        outcome: if uris.contains(&private) {
            format!("{} listed, {private} among them", uris.len())
        } else {
            format!(
                "{} listed; {private} filtered out: private notes are SRE's",
                uris.len()
            )
        },
    });
    let read = mcp_call(
        client,
        addr,
        key,
        "resources/read",
        serde_json::json!({ "uri": private }),
    )
    .await?;
    steps.push(ToolStep {
        what: format!("resources/read {private}"),
        outcome: if read["result"].is_object() {
            "allowed".to_string()
        } else {
            format!(
                "refused ({}): {}",
                read["error"]["code"],
                read["error"]["message"].as_str().unwrap_or_default()
            )
        },
    });
    let prompt = mcp_call(
        client,
        addr,
        key,
        "prompts/get",
        serde_json::json!({ "name": "notes__summarize_note", "arguments": { "note_id": "roadmap.md" } }),
    )
    .await?;
    let outcome = match prompt["result"]["messages"].as_array() {
        Some(messages) => format!(
            "allowed: {} messages, linking {}",
            messages.len(),
            messages
                .first()
                .and_then(|m| m["content"]["uri"].as_str())
                .unwrap_or_default()
        ),
        None => format!(
            "refused: {}",
            prompt["error"]["message"].as_str().unwrap_or_default()
        ),
    };
    steps.push(ToolStep {
        what: "prompts/get notes__summarize_note".into(),
        outcome,
    });
    Ok(())
}
