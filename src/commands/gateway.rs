//! `cairn gateway serve | mock-upstream`, and the development defaults used when no
//! configuration file is given.

use std::path::{Path, PathBuf};

use gateway_core::config::{ApiKeyConfig, RawConfig};
use gateway_core::{GatewayConfig, authn};

use crate::cli::{
    CheckArgs, DemoMcpServerArgs, GatewayCommand, MockUpstreamArgs, PolicyPaths, ServeArgs,
};
use crate::exit::{CliError, CliResult, Outcome};

pub fn run(cmd: GatewayCommand) -> CliResult {
    match cmd {
        GatewayCommand::Serve(args) => serve(&args),
        GatewayCommand::MockUpstream(args) => mock_upstream(&args),
        GatewayCommand::DemoMcpServer(args) => demo_mcp_server(&args),
        GatewayCommand::Check(args) => check(&args),
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::input(miette::miette!("cannot start the async runtime: {e}")))
}

/// Resolves on Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    // Registered now, not when the future is first polled: a SIGTERM that arrives while the
    // gateway is still starting (MCP servers, the first JWKS fetch) must stop it gracefully
    // too, instead of the default action killing it before its records are sealed.
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
    }
}

/// What development mode set up.
pub struct DevSetup {
    pub api_key: String,
    pub api_key_file: PathBuf,
    pub policies: PathBuf,
}

/// The policy directory for development: `./policies` when it has a schema, else the embedded
/// default bundle written under `base`.
pub fn dev_policies(base: &Path) -> Result<PathBuf, CliError> {
    let local = PathBuf::from("policies");
    if local.join("schema.cedarschema").is_file() {
        return Ok(local);
    }
    let target = base.join("policies");
    crate::embedded::write_default_policies(&target).map_err(|source| {
        CliError::input(policy_engine::PolicyError::Write {
            path: target.clone(),
            source,
        })
    })?;
    Ok(target)
}

/// Development defaults under `base` (normally `.cairn`): a dev signing key, the policies
/// bundled and signed with it, records under `base/records`, and a dev API key for a service
/// account allowed every catalogue model.
pub fn dev_setup(raw: &mut RawConfig, base: &Path) -> Result<DevSetup, CliError> {
    let (private, public) = super::demo::dev_key(base)?;
    let policies = dev_policies(base)?;
    let bundle = base.join("bundle.tar");
    let paths = PolicyPaths {
        policies: policies.clone(),
        schema: None,
    };
    match super::policy::build_bundle(&paths, None, &private, &bundle, Default::default(), false)? {
        Ok(_) => {}
        Err(_) => {
            return Err(CliError::failed(miette::miette!(
                help = "run `cairn policy validate` and `cairn policy test` on the policies",
                "the policies in `{}` did not pass review; the gateway will not start with them",
                policies.display()
            )));
        }
    }
    raw.policy.bundle = bundle.display().to_string();
    raw.policy.public_key = public.display().to_string();
    raw.records.signing_key = private.display().to_string();
    raw.records.dir = base.join("records").display().to_string();

    let key_file = base.join("dev-api-key");
    let api_key = match std::fs::read_to_string(&key_file) {
        Ok(k) if !k.trim().is_empty() => k.trim().to_string(),
        _ => {
            let key = format!("cairn-dev-{}", uuid::Uuid::new_v4().simple());
            write_private(&key_file, &key)?;
            key
        }
    };
    let models: Vec<toml::Value> = gateway_core::catalogue::Catalogue::new(&raw.models)
        .models()
        .iter()
        .map(|m| {
            let mut t = toml::Table::new();
            t.insert("type".into(), toml::Value::String("Model".into()));
            t.insert("id".into(), toml::Value::String(m.id.clone()));
            toml::Value::Table(t)
        })
        .collect();
    raw.auth.api_keys.push(ApiKeyConfig {
        id: "dev".into(),
        sha256: authn::hash_key(&api_key),
        principal: "ServiceAccount::\"dev\"".into(),
        groups: vec!["engineering".into()],
        attributes: [
            (
                "owner_team".to_string(),
                toml::Value::String("platform".into()),
            ),
            ("clearance".to_string(), toml::Value::Integer(1)),
            ("allowed_models".to_string(), toml::Value::Array(models)),
        ]
        .into(),
    });
    Ok(DevSetup {
        api_key,
        api_key_file: key_file,
        policies,
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(path)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")
    };
    write().map_err(|source| {
        CliError::input(policy_engine::PolicyError::Write {
            path: path.to_path_buf(),
            source,
        })
    })
}

fn check(args: &CheckArgs) -> CliResult {
    let raw = gateway_core::config::load(Some(&args.config), std::env::vars())?;
    let config = GatewayConfig::resolve_from(raw, Some(&args.config))?;
    let rt = runtime()?;
    rt.block_on(async move {
        let report = gateway_core::check(&config).await?;
        outln!("configuration: {} resolves", args.config.display());
        outln!(
            "  {} model(s), {} API key(s), OIDC {}, {} MCP server(s)",
            report.models,
            report.api_keys,
            if report.oidc { "on" } else { "off" },
            report.mcp_servers
        );
        outln!(
            "  records: {} (signed with {})",
            config.records_dir.display(),
            config.signing_key.display()
        );
        match report.bundle {
            Ok(digest) => {
                outln!("  bundle: {digest} verifies and decides");
                Ok(Outcome::Success)
            }
            Err(e) => Err(CliError::failed(miette::miette!(
                help = "build it with `cairn policy bundle` and check `policy.public_key`",
                "the bundle would not be in force: {e}"
            ))),
        }
    })
}

fn serve(args: &ServeArgs) -> CliResult {
    let mut raw = gateway_core::config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(listen) = &args.listen {
        raw.server.listen = listen.clone();
    }
    for spec in &args.mcp {
        raw.mcp.servers.push(mcp_server_arg(spec)?);
    }
    let dev = if args.config.is_none() {
        Some(dev_setup(&mut raw, Path::new(".cairn"))?)
    } else {
        None
    };
    let config = GatewayConfig::resolve_from(raw, args.config.as_deref())?;
    let records = config.records_dir.clone();
    let mcp_names: Vec<String> = config
        .raw
        .mcp
        .servers
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let rt = runtime()?;
    rt.block_on(async move {
        let gateway = gateway_core::bind(config).await?;
        let addr = gateway
            .local_addr()
            .map_err(|e| CliError::input(miette::miette!("cannot read the bound address: {e}")))?;
        outln!("cairn gateway listening on http://{addr}");
        match gateway.bundle() {
            Ok(b) => outln!("bundle: {b}"),
            Err(e) => {
                outln!("bundle: NONE - every request gets 503 until a valid bundle is loaded ({e})")
            }
        }
        outln!(
            "records: {}{}",
            records.display(),
            if gateway.records_healthy() {
                ""
            } else {
                " (NOT WRITABLE - every request gets 503)"
            }
        );
        let servers: Vec<&str> = mcp_names.iter().map(String::as_str).collect();
        if !servers.is_empty() {
            outln!("MCP: http://{addr}/mcp ({})", servers.join(", "));
        }
        if let Some(dev) = &dev {
            outln!(
                "dev API key: {} (also in {}; policies from {})",
                dev.api_key,
                dev.api_key_file.display(),
                dev.policies.display()
            );
        }
        gateway.run(shutdown_signal()).await?;
        eprintln!("gateway stopped; records flushed and sealed");
        Ok(Outcome::Success)
    })
}

/// `NAME=COMMAND` of `--mcp`.
fn mcp_server_arg(spec: &str) -> Result<gateway_core::config::McpServerConfig, CliError> {
    let Some((name, command)) = spec.split_once('=') else {
        return Err(CliError::input(miette::miette!(
            help = "for example --mcp 'everything=npx -y @modelcontextprotocol/server-everything'",
            "`--mcp {spec}` must be NAME=COMMAND"
        )));
    };
    Ok(gateway_core::config::McpServerConfig::local(
        name.trim(),
        command.split_whitespace().map(str::to_string).collect(),
    ))
}

fn mock_upstream(args: &MockUpstreamArgs) -> CliResult {
    let config = gateway_core::config::MockConfig {
        latency_ms: args.latency_ms,
        chunk_delay_ms: args.chunk_delay_ms,
        fail_status: args.fail_status,
        ..Default::default()
    };
    serve_local(&args.listen, "mock upstream", "", |listener| {
        gateway_core::mock_upstream::serve(listener, config, shutdown_signal())
    })
}

/// Serves one of the local test servers on `listen` until Ctrl-C or SIGTERM, printing the
/// address it bound (`path` appended) for scripts to read.
fn serve_local<F, Fut>(listen: &str, what: &str, path: &str, serve: F) -> CliResult
where
    F: FnOnce(tokio::net::TcpListener) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| gateway_core::StartError::Bind {
                addr: listen.to_string(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::input(miette::miette!("cannot read the bound address: {e}")))?;
        outln!("{what} listening on http://{addr}{path}");
        serve(listener)
            .await
            .map_err(|e| CliError::input(miette::miette!("{what} failed: {e}")))?;
        Ok(Outcome::Success)
    })
}

fn demo_mcp_server(args: &DemoMcpServerArgs) -> CliResult {
    let Some(listen) = &args.listen else {
        gateway_core::mock_mcp::serve_stdio(&args.root);
        return Ok(Outcome::Success);
    };
    serve_local(listen, "demo MCP server", "/mcp", |listener| {
        gateway_core::mock_mcp::serve_http(listener, args.root.clone(), shutdown_signal())
    })
}
