//! The command-line surface: clap types only. Command modules turn these into library calls.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Put large language models into the software lifecycle under real control",
    long_about = "Cairn: reviewed Cedar policy -> signed bundle -> enforcing gateway -> signed decision record -> audit lake -> report.",
    after_help = "Examples:\n  cairn demo                       run the whole chain on embedded defaults\n  cairn policy validate            check policies/ against its schema\n  cairn gateway serve              start the gateway on 127.0.0.1:8080"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log level for diagnostics on stderr (`error`, `warn`, `info`, `debug`, `trace`); `CAIRN_LOG`
    /// overrides it with a full filter.
    #[arg(
        long,
        global = true,
        default_value = "warn",
        value_name = "LEVEL",
        help_heading = "Global options"
    )]
    pub log_level: String,
    /// Write logs as JSON lines.
    #[arg(long, global = true, help_heading = "Global options")]
    pub log_json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate, format, test, bundle and verify Cedar policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run the enforcing gateway.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Check decision records.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Turn CloudTrail logs, OpenTelemetry exports and decision records into the Parquet lake.
    #[command(subcommand)]
    Ingest(IngestCommand),
    /// Run SQL over the lake (DataFusion locally, or Amazon Athena).
    #[command(
        after_help = "Examples:\n  cairn query \"SELECT event_name, count(*) FROM cloudtrail GROUP BY 1 ORDER BY 2 DESC\"\n  cairn query --format csv --out denials.csv \"SELECT * FROM decisions WHERE decision = 'deny'\"\n  cairn query --stats \"SELECT count(*) FROM cloudtrail WHERE \\\"date\\\" = DATE '2026-11-25'\"\n  cairn query --engine athena --workgroup primary --output s3://results/ \"SELECT count(*) FROM cloudtrail\"\n\nTables: cloudtrail, genai_spans, decisions, outcomes, bundles, policies, cloudtrail_files, _quarantine; each has a `date` (DATE) partition column.\nList columns (reasons, errors, principal_parents, resources, ...): unnest(reasons), array_has(reasons, 'x'), cardinality(reasons).\nJSON helpers under Trino's names: json_extract_scalar, json_extract, json_array_length, json_array_contains, json_size."
    )]
    Query(QueryArgs),
    /// Render an audit report (access, denials, spend, reconcile, detections, or all).
    #[command(
        after_help = "Examples:\n  cairn report --list\n  cairn report access --from 2026-11-01 --to 2026-11-30 --out access.html\n  cairn report denials --format md\n  cairn report all --out report.html\n  cairn report detections --show-sql"
    )]
    Report(ReportArgs),
    /// Run Sigma detection rules over the lake's CloudTrail (SigmaHQ's CloudTrail rules and
    /// Cairn's own are built in; bring yours with --rules).
    #[command(
        after_help = "Examples:\n  cairn detect --lake lake\n  cairn detect --list\n  cairn detect --show-sql aws_cloudtrail_disable_logging\n  cairn detect --rules my-rules/ --rules builtin --format sarif --out detect.sarif\n  cairn detect --from 2026-11-01 --to 2026-11-30 --format md\n  cairn detect --engine athena --workgroup primary --output s3://results/detect/\n\nA rule runs when its logsource is `product: aws, service: cloudtrail`; --list says why any other does not. Field mapping: docs/detections.md."
    )]
    Detect(DetectArgs),
    /// Amazon Athena helpers.
    #[command(subcommand)]
    Athena(AthenaCommand),
    /// Run the whole chain on embedded defaults: policies, bundle, gateway, records, lake, report.
    #[command(after_help = "Example:\n  cairn demo --dir /tmp/cairn-demo")]
    Demo(DemoArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    #[command(
        after_help = "Examples:\n  source <(cairn completions bash)\n  cairn completions bash > ~/.local/share/bash-completion/completions/cairn\n  cairn completions zsh > \"${fpath[1]}/_cairn\"\n  cairn completions fish > ~/.config/fish/completions/cairn.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `cairn man | man -l -`.
    Man,
}

/// The formats every checking command offers.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CheckFormat {
    /// For people: located problems with their source lines, and a summary.
    Human,
    /// One JSON document.
    Json,
    /// GitHub Actions workflow commands: annotations on the pull request's lines.
    Github,
    /// SARIF 2.1.0, for code scanning (regions with start and end, rules described).
    Sarif,
    /// JUnit XML, for CI test reports.
    Junit,
}

#[derive(Debug, Args, Clone)]
pub struct PolicyPaths {
    /// Policy directory (searched recursively) or one `.cedar` file.
    #[arg(long, default_value = "policies", value_name = "PATH")]
    pub policies: PathBuf,
    /// Cedar schema; defaults to the `schema.cedarschema` beside the policies.
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and strictly validate every policy, test entity and test request against the schema.
    #[command(
        after_help = "Examples:\n  cairn policy validate\n  cairn policy validate --policies policies/ --format github --deny-warnings"
    )]
    Validate(ValidateArgs),
    /// Format policies with the Cedar formatter; `--check` shows a diff and fails instead.
    #[command(after_help = "Examples:\n  cairn policy fmt\n  cairn policy fmt --check")]
    Fmt(FmtArgs),
    /// Run the policy test suites and report coverage.
    #[command(
        after_help = "Examples:\n  cairn policy test\n  cairn policy test --format junit --min-coverage 100 > policy-tests.xml\n  cairn policy test --tests cedar-tests.json"
    )]
    Test(TestArgs),
    /// Decide one request, with the Cedar CLI's flags and exit codes (0 ALLOW, 2 DENY, 1 error).
    #[command(
        after_help = "Example:\n  cairn policy authorize --policies policies --entities policies/entities/directory.json \\\n    --principal 'User::\"alice\"' --action 'Action::\"invoke_model\"' --resource 'Model::\"claude-sonnet\"' --context ctx.json"
    )]
    Authorize(AuthorizeArgs),
    /// Pack validated, tested policies into a deterministic signed bundle.
    #[command(
        after_help = "Example:\n  cairn policy bundle --key .cairn/keys/signing.key --out bundle.tar"
    )]
    Bundle(BundleArgs),
    /// Verify a bundle's signature and every member against its manifest.
    #[command(
        after_help = "Example:\n  cairn policy verify bundle.tar --pubkey .cairn/keys/signing.pub"
    )]
    Verify(VerifyArgs),
    /// Prove what a change can do to access (per request environment, with a concrete request
    /// Cedar confirms) and replay recorded decisions to show what it does to real traffic.
    #[command(
        after_help = "Examples:\n  cairn policy diff --base git:origin/main --fail-on widen\n  cairn policy diff --base git:origin/main --records .cairn/records --format markdown > comment.md\n  cairn policy diff --base deployed.tar --base-pubkey signing.pub --records /var/lib/cairn/records --fail-on change\n  cairn policy diff --base ../old-policies --format sarif > diff.sarif\n\nExit codes: 0 no change of the --fail-on kind; 1 such a change, proven or replayed; 2 bad usage\nor input, or a proof that could not complete (no solver with --prove, a timeout, an\nunsupported feature)."
    )]
    Diff(DiffArgs),
    /// Prove each policy does something: dead, always-erroring, shadowed and redundant
    /// policies, never-firing forbids, permits that allow a whole environment.
    #[command(
        after_help = "Examples:\n  cairn policy analyze\n  cairn policy analyze --policies policies/ --format sarif > analyze.sarif\n  cairn policy analyze --deny-warnings\n\nNeeds cvc5 >= 1.3 ($CVC5, --solver, or cvc5 on PATH); `cairn policy validate` runs the same\nanalysis as warnings when a solver is found."
    )]
    Analyze(AnalyzeArgs),
}

/// Finding the solver and caching its answers.
#[derive(Debug, Args, Clone)]
pub struct ProofArgs {
    /// The cvc5 executable (≥ 1.3); default `$CVC5`, then `cvc5` on PATH.
    #[arg(long, value_name = "FILE")]
    pub solver: Option<PathBuf>,
    /// Where solver answers are cached by content hash.
    #[arg(long, value_name = "DIR", default_value = ".cairn/cache/proof")]
    pub cache_dir: PathBuf,
    /// Prove everything again: neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Which changes fail `policy diff` (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Something denied before is allowed now.
    Widen,
    /// Something allowed before is denied now.
    Narrow,
    /// Any change: either direction, or (replayed) decided by other policies.
    Change,
}

/// Output of `policy diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// For people.
    Human,
    /// For a pull-request comment: a table per environment, counterexamples in collapsible
    /// blocks, the replayed decisions that flip.
    Markdown,
    /// One JSON document.
    Json,
    /// GitHub Actions annotations.
    Github,
    /// SARIF 2.1.0, each finding at the policy that causes it.
    Sarif,
    /// JUnit XML.
    Junit,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The proposed policies.
    #[command(flatten)]
    pub paths: PolicyPaths,
    /// What to compare against: a policy directory, a signed bundle (with --base-pubkey), or
    /// `git:REF` (the same policy directory at that commit, e.g. git:origin/main).
    #[arg(long, value_name = "DIR|BUNDLE|git:REF")]
    pub base: String,
    /// Public key the base bundle must verify against.
    #[arg(long, value_name = "FILE")]
    pub base_pubkey: Option<PathBuf>,
    /// Decision records to replay (a gateway's records directory).
    #[arg(long, value_name = "DIR")]
    pub records: Option<PathBuf>,
    /// Verify the records' chain and signatures with this key before replaying them.
    #[arg(long, value_name = "FILE", requires = "records")]
    pub pubkey: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: DiffFormat,
    /// Groups of changed decisions to list; 0 lists all.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Exit 1 when a change of this kind is found, by proof or by replay.
    #[arg(long, value_enum, value_name = "KIND")]
    pub fail_on: Option<FailOn>,
    /// The same as `--fail-on change`.
    #[arg(long, conflicts_with = "fail_on")]
    pub fail_on_change: bool,
    /// Require the proof: a missing solver is an error (exit 2) instead of a one-line notice.
    #[arg(long, conflicts_with = "no_prove")]
    pub prove: bool,
    /// Replay only; do not prove.
    #[arg(long, requires = "records")]
    pub no_prove: bool,
    #[command(flatten)]
    pub proof: ProofArgs,
}

impl DiffArgs {
    pub fn fail_on(&self) -> Option<FailOn> {
        if self.fail_on_change {
            Some(FailOn::Change)
        } else {
            self.fail_on
        }
    }
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub paths: PolicyPaths,
    /// Exit 1 when anything is found.
    #[arg(long)]
    pub deny_warnings: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: CheckFormat,
    #[command(flatten)]
    pub proof: ProofArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub paths: PolicyPaths,
    /// Test suites whose entities and requests are checked too; defaults to `tests/` beside the
    /// policies when it exists.
    #[arg(long, value_name = "PATH")]
    pub tests: Option<PathBuf>,
    /// Fail on warnings as well as errors.
    #[arg(long)]
    pub deny_warnings: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: CheckFormat,
    /// Skip the proof-based analysis (`cairn policy analyze`) that runs when a solver is found.
    #[arg(long)]
    pub no_analyze: bool,
    #[command(flatten)]
    pub proof: ProofArgs,
}

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Policy directory or one `.cedar` file.
    #[arg(long, default_value = "policies", value_name = "PATH")]
    pub policies: PathBuf,
    /// Change nothing; show a diff for each file that would change and exit 1 if any would.
    #[arg(long)]
    pub check: bool,
    /// Output format; `json` is one object with each file, whether it changed (or would), and
    /// its diff; `github`, `sarif` and `junit` name each file that is (or was) not formatted, at
    /// its first line that differs.
    #[arg(long, value_enum, default_value = "human")]
    pub format: CheckFormat,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub paths: PolicyPaths,
    /// A suite file (Cairn YAML or Cedar CLI run-tests JSON) or a directory of them; defaults to
    /// `tests/` beside the policies.
    #[arg(long, value_name = "PATH")]
    pub tests: Option<PathBuf>,
    /// Fail when fewer than this percentage of policies determined a decision in some test.
    #[arg(long, value_name = "PERCENT")]
    pub min_coverage: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: CheckFormat,
}

#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    /// Policy directory or one `.cedar` file.
    #[arg(long, short = 'p', value_name = "PATH")]
    pub policies: PathBuf,
    /// Cedar schema, for schema-based parsing and validation of the request.
    #[arg(long, short = 's', value_name = "FILE")]
    pub schema: Option<PathBuf>,
    /// Entities (Cedar entity JSON); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub entities: PathBuf,
    /// The request as JSON: `principal`, `action`, `resource`, `context`; `-` reads standard
    /// input.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["principal", "action", "resource", "context"])]
    pub request_json: Option<PathBuf>,
    /// The principal, as an entity uid (`User::"alice"`).
    #[arg(
        long,
        short = 'l',
        value_name = "UID",
        required_unless_present = "request_json"
    )]
    pub principal: Option<String>,
    /// The action, as an entity uid (`Action::"invoke_model"`).
    #[arg(
        long,
        short = 'a',
        value_name = "UID",
        required_unless_present = "request_json"
    )]
    pub action: Option<String>,
    /// The resource, as an entity uid (`Model::"claude-sonnet"`).
    #[arg(
        long,
        short = 'r',
        value_name = "UID",
        required_unless_present = "request_json"
    )]
    pub resource: Option<String>,
    /// Context as a JSON file; `-` reads standard input.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub context: Option<PathBuf>,
    /// Also say when no policy applied.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Output format; `json` is `{decision, reasons, errors}` (exit codes stay the Cedar CLI's).
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    #[command(flatten)]
    pub paths: PolicyPaths,
    /// Test suites that must pass; defaults to `tests/` beside the policies.
    #[arg(long, value_name = "PATH")]
    pub tests: Option<PathBuf>,
    /// Ed25519 private key (PKCS#8 PEM), e.g. from `cairn keys generate`.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The bundle file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Version recorded in the manifest; defaults to the source commit's short id.
    #[arg(long = "bundle-version", value_name = "VERSION")]
    pub bundle_version: Option<String>,
    /// Creation time (RFC 3339); defaults to SOURCE_DATE_EPOCH, then the commit time, then the
    /// newest input file's modification time, so the same inputs give the same bytes.
    #[arg(long, value_name = "TIME")]
    pub created: Option<String>,
    /// The policies' repository recorded in the manifest (a URL, credentials removed), e.g.
    /// \"$GITHUB_SERVER_URL/$GITHUB_REPOSITORY\" in CI; not recorded when not given.
    #[arg(long, value_name = "URL")]
    pub source_repository: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle file.
    pub bundle: PathBuf,
    /// Ed25519 public key (SPKI PEM).
    #[arg(long, value_name = "FILE")]
    pub pubkey: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: CheckFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// For people.
    Human,
    /// One JSON document, for machines.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate an Ed25519 key pair: DIR/signing.key (mode 0600) and DIR/signing.pub.
    #[command(after_help = "Example:\n  cairn keys generate --out .cairn/keys")]
    Generate {
        /// The directory for the key pair (created; existing keys are never overwritten).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: OutputFormat,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo writes its keys, bundle, records, lake and report.
    #[arg(long, default_value = ".cairn/demo", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Serve the OpenAI-compatible API. With no --config: 127.0.0.1:8080, the mock provider,
    /// ./policies bundled with a dev key under .cairn/, records in .cairn/records/, and a dev
    /// API key printed and written to .cairn/dev-api-key.
    #[command(
        after_help = "Examples:\n  cairn gateway serve\n  cairn gateway serve --listen 127.0.0.1:0\n  cairn gateway serve --config cairn.toml\n  CAIRN_SERVER__MAX_BODY_BYTES=65536 cairn gateway serve"
    )]
    Serve(ServeArgs),
    /// Resolve and check a configuration without serving: every key, the bundle against its
    /// public key, the signing key and API keys; OIDC, providers and limits are parsed, not
    /// contacted. Nothing listens and no upstream is called.
    #[command(after_help = "Example:\n  cairn gateway check --config cairn.toml")]
    Check(CheckArgs),
    /// Serve the mock provider alone as an OpenAI-compatible API (no authentication, no
    /// records): the baseline for benchmarks and an upstream for tests.
    #[command(
        name = "mock-upstream",
        after_help = "Example:\n  cairn gateway mock-upstream --listen 127.0.0.1:9000 --latency-ms 20"
    )]
    MockUpstream(MockUpstreamArgs),
    /// The MCP server `cairn demo` puts behind the gateway (stdio, or Streamable HTTP with
    /// --listen): notes to search, read, write and delete under --root.
    #[command(name = "demo-mcp-server", hide = true)]
    DemoMcpServer(DemoMcpServerArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The TOML configuration to check (environment overrides apply, as for `serve`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoMcpServerArgs {
    /// The directory the server's files live in.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Serve stateless Streamable HTTP here instead of stdio (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration; every key can also be set as CAIRN_<SECTION>__<KEY>.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address (port 0 picks a free port); overrides the configuration.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// A local MCP server to serve at /mcp: its name, `=`, and the command that runs it with
    /// stdio as its transport (split on whitespace), e.g.
    /// `--mcp 'everything=npx -y @modelcontextprotocol/server-everything'`. Repeatable; added
    /// to the configuration's `[[mcp.servers]]`.
    #[arg(long = "mcp", value_name = "NAME=COMMAND")]
    pub mcp: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MockUpstreamArgs {
    /// Listen address; port 0 picks a free port (the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: String,
    /// Delay before the first byte of each answer, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,
    /// Delay between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub chunk_delay_ms: u64,
    /// Answer every request with this HTTP status instead (0: never).
    #[arg(long, default_value_t = 0, value_name = "STATUS")]
    pub fail_status: u16,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every record segment: hashes, signatures, the chain and the seals. Exits 1 naming
    /// the first record that was altered, removed, reordered, inserted or truncated.
    #[command(
        after_help = "Examples:\n  cairn audit verify .cairn/records --pubkey .cairn/keys/signing.pub\n  cairn audit verify .cairn/records --pubkey .cairn/keys/signing.pub --checkpoints /mnt/worm/cairn-checkpoints"
    )]
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// The record directory.
    pub dir: PathBuf,
    /// Public key(s) the records may be signed with (repeat for rotated keys).
    #[arg(long, value_name = "FILE", required = true)]
    pub pubkey: Vec<PathBuf>,
    /// Fail when the last segment is not sealed (the gateway is still running or crashed).
    #[arg(long)]
    pub require_sealed: bool,
    /// The gateway's checkpoint store (`records.checkpoint_dir`: a directory, s3://bucket/prefix,
    /// or one checkpoint file):
    /// fail, naming the missing range, when the records end before the newest checkpoint or
    /// differ from it. Without it, records removed from the end go unnoticed.
    #[arg(long, value_name = "DIR|S3_URL|FILE")]
    pub checkpoints: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutputFormat,
}

#[derive(Debug, Args, Clone)]
pub struct IngestCommon {
    /// The lake: a directory or s3://bucket/prefix.
    #[arg(long, default_value = "lake", value_name = "LAKE")]
    pub lake: String,
    /// Only objects whose delivery path (YYYY/MM/DD) is on or after this date.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub since: Option<String>,
    /// Only objects whose delivery path is on or before this date.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub until: Option<String>,
    /// Exit 1 when anything was quarantined, or (with --verify-integrity) a CloudTrail file did
    /// not verify (`no_digest` aside).
    #[arg(long)]
    pub strict: bool,
    /// Worker threads that parse [default: one per core] (0 means the same).
    #[arg(long, default_value_t = 0, hide_default_value = true, value_name = "N")]
    pub jobs: usize,
    /// List every source read, however many (by default beyond 10 only the summary).
    #[arg(long)]
    pub verbose: bool,
    /// Rows per Parquet file written; smaller means less memory and more files.
    #[arg(long, default_value_t = audit_ingest::lake::writer::FLUSH_ROWS, value_name = "ROWS")]
    pub flush_rows: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// CloudTrail events: a file, a directory, `-`, s3://bucket/prefix in the delivery layout
    /// (AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/*.json.gz), or --lookup.
    #[command(
        after_help = "Examples:\n  cairn ingest cloudtrail trail/ --lake lake\n  cairn ingest cloudtrail s3://trail-bucket/AWSLogs/ --lake s3://audit/lake --since 2026-11-01\n  cairn ingest cloudtrail --lookup --since 2026-11-24 --lake lake\n  cairn ingest cloudtrail trail-copy/ --verify-integrity --public-keys keys.json --lake lake"
    )]
    Cloudtrail {
        /// Where the events are.
        #[arg(required_unless_present = "lookup")]
        src: Option<String>,
        /// Read events from the CloudTrail LookupEvents API instead (AWS credentials from the environment).
        #[arg(long, conflicts_with = "src")]
        lookup: bool,
        /// Check CloudTrail's digest files first (AWSLogs/<account>/CloudTrail-Digest/...):
        /// each digest's signature, each log file's SHA-256 and the chain of digests; every row
        /// carries its file's integrity and every file's verdict goes to `cloudtrail_files`.
        #[arg(long, requires = "public_keys", conflicts_with = "lookup")]
        verify_integrity: bool,
        /// CloudTrail's public keys for --verify-integrity: the JSON `aws cloudtrail
        /// list-public-keys --start-time ... --end-time ...` prints.
        #[arg(long, value_name = "FILE", requires = "verify_integrity")]
        public_keys: Option<PathBuf>,
        #[command(flatten)]
        common: IngestCommon,
    },
    /// OpenTelemetry spans as OTLP JSON (the collector file exporter's JSON Lines, or one export per file).
    #[command(after_help = "Example:\n  cairn ingest otel traces.jsonl --lake lake")]
    Otel {
        /// A file or directory of OTLP JSON, `-` for standard input, or s3://bucket/prefix.
        src: String,
        #[command(flatten)]
        common: IngestCommon,
    },
    /// The gateway's decision record segments, verified (chain and signatures) on the way in.
    #[command(
        after_help = "Example:\n  cairn ingest decisions .cairn/records --pubkey .cairn/keys/signing.pub --lake lake"
    )]
    Decisions {
        /// The gateway's record directory (segment-*.jsonl), or s3://bucket/prefix.
        src: String,
        /// Public key(s) the records may be signed with.
        #[arg(long, value_name = "FILE", required = true)]
        pubkey: Vec<PathBuf>,
        #[command(flatten)]
        common: IngestCommon,
    },
    /// Signed policy bundles, verified on the way in: their digest, commit, repository and
    /// signer to `bundles`, each policy's id, effect, file, line and text to `policies`. A
    /// bundle that does not verify goes to `_quarantine` with why.
    #[command(
        after_help = "Examples:\n  cairn ingest bundles .cairn/bundles/ --pubkey .cairn/keys/signing.pub --lake lake\n  cairn ingest bundles bundle.tar --pubkey old.pub --pubkey new.pub --lake s3://audit/lake"
    )]
    Bundles {
        /// A bundle file, a directory of them (*.tar), or s3://bucket/prefix.
        src: String,
        /// Public key(s) the bundles may be signed with.
        #[arg(long, value_name = "FILE", required = true)]
        pubkey: Vec<PathBuf>,
        #[command(flatten)]
        common: IngestCommon,
    },
    /// Merge the small files of each partition.
    #[command(after_help = "Example:\n  cairn ingest compact --lake lake")]
    Compact {
        /// The lake: a directory or s3://bucket/prefix.
        #[arg(long, default_value = "lake", value_name = "LAKE")]
        lake: String,
        /// One table (default: all).
        #[arg(long)]
        table: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: OutputFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum QueryFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row (lists and structs as JSON text).
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// A GitHub-flavoured Markdown table.
    Markdown,
    /// A Parquet file (with --out).
    Parquet,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum EngineKind {
    /// DataFusion, here, over the lake's files.
    Local,
    /// Amazon Athena, over the same lake on S3 (see `cairn athena ddl`).
    Athena,
}

#[derive(Debug, Args, Clone)]
pub struct EngineArgs {
    /// The lake: a directory or s3://bucket/prefix.
    #[arg(long, default_value = "lake", value_name = "LAKE")]
    pub lake: String,
    /// Where the SQL runs: DataFusion over the lake here, or Amazon Athena.
    #[arg(long, value_enum, default_value = "local")]
    pub engine: EngineKind,
    /// Athena workgroup.
    #[arg(long, default_value = "primary", value_name = "NAME")]
    pub workgroup: String,
    /// Athena results location (s3://...), unless the workgroup sets one.
    #[arg(long, value_name = "S3_URL")]
    pub output: Option<String>,
    /// Athena database holding the tables (see `cairn athena ddl`).
    #[arg(long, default_value = "cairn", value_name = "NAME")]
    pub database: String,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL statement, or - to read it from stdin.
    pub sql: String,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: QueryFormat,
    /// Write results to a file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print what the query scanned (files, partitions, bytes) on stderr.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    /// One self-contained HTML file.
    Html,
    /// Markdown that fits a pull-request comment.
    Md,
    /// Every row of every section, with its SQL.
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The reports (see --list), one file for all of them; `all` is every report.
    #[arg(required_unless_present = "list", value_name = "NAME")]
    pub names: Vec<String>,
    /// List the reports.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "html")]
    pub format: ReportFormat,
    /// Write the report to a file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// A directory of templates (report.html.j2, report.md.j2, <name>.html.j2, ...) and extra
    /// report definitions (<name>.toml) that override the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Print the SQL behind every number instead of rendering.
    #[arg(long)]
    pub show_sql: bool,
    /// Print each query's run time and what it scanned on stderr.
    #[arg(long)]
    pub timings: bool,
}

/// The days a report or detection run covers.
#[derive(Debug, Args)]
pub struct PeriodArgs {
    /// First day of the period (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last day of the period (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Sigma rules: a file or a directory (searched for *.yml and *.yaml), repeatable; `builtin`
    /// is the built-in set, which is what runs when none is given.
    #[arg(long, value_name = "PATH")]
    pub rules: Vec<String>,
    /// Run only these rules (by name, id or file name; repeatable).
    #[arg(long, value_name = "RULE")]
    pub rule: Vec<String>,
    /// List the rules: name, level, id, title, and why a rule does not compile.
    #[arg(long)]
    pub list: bool,
    /// Print one rule's SQL (by name, id or file name) for the period, and exit.
    #[arg(long, value_name = "RULE")]
    pub show_sql: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: DetectFormat,
    /// Write the results to a file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 1 when any rule has a hit (for CI and schedulers).
    #[arg(long)]
    pub fail_on_hits: bool,
    /// Show at most this many hits per rule (every hit is counted); 0 shows them all.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_hits: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DetectFormat {
    /// Each rule with hits, its metadata and its hits as a table.
    Table,
    /// One JSON document: rules run, rules not compiled, and every hit with its rule.
    Json,
    /// Markdown for a ticket or a pull-request comment.
    Md,
    /// SARIF 2.1.0: one result per hit, placed at the rule's file.
    Sarif,
}

#[derive(Debug, Subcommand)]
pub enum AthenaCommand {
    /// Print CREATE EXTERNAL TABLE statements for the lake's tables (partition projection on date).
    #[command(after_help = "Example:\n  cairn athena ddl --lake s3://audit/lake --database cairn")]
    Ddl {
        /// The lake on S3 (s3://bucket/prefix) the tables point at.
        #[arg(long, value_name = "S3_URL")]
        lake: String,
        /// The Athena (Glue) database to create the tables in.
        #[arg(long, default_value = "cairn", value_name = "NAME")]
        database: String,
        /// Drop each table before creating it (the tables are external: no data is deleted), so
        /// the statements also bring existing tables to the current layout.
        #[arg(long)]
        replace: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every option and argument of every command says what it is for.
    #[test]
    fn every_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "cairn", &mut missing);
        assert!(
            missing.is_empty(),
            "without a description:\n{}",
            missing.join("\n")
        );
    }
}
