//! `cairn query`, `cairn report`, `cairn athena ddl`.

use std::io::{Read, Write};

use chrono::NaiveDate;
use reports::spec::{self, Period};
use reports::{Engine, output, render};

use crate::cli::{
    AthenaCommand, EngineArgs, EngineKind, PeriodArgs, QueryArgs, QueryFormat, ReportArgs,
    ReportFormat,
};
use crate::exit::{CliError, CliResult, Outcome};

pub(super) async fn engine(args: &EngineArgs) -> Result<Engine, CliError> {
    Ok(match args.engine {
        EngineKind::Local => Engine::Local(reports::catalog::open(&args.lake).await?),
        EngineKind::Athena => Engine::Athena(
            reports::athena::AthenaEngine::new(
                &args.workgroup,
                args.output.as_deref(),
                &args.database,
            )
            .await,
        ),
    })
}

pub(super) fn sink(out: &Option<std::path::PathBuf>) -> Result<Box<dyn Write>, CliError> {
    Ok(match out {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|source| {
            CliError::input(policy_engine::PolicyError::Write {
                path: p.clone(),
                source,
            })
        })?),
        None => Box::new(std::io::stdout()),
    })
}

pub(super) fn finish(result: std::io::Result<()>) -> Result<(), CliError> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => {
            other.map_err(|e| CliError::input(miette::miette!("cannot write the output: {e}")))
        }
    }
}

pub fn query(args: &QueryArgs) -> CliResult {
    let sql = if args.sql == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::input(miette::miette!("cannot read SQL from stdin: {e}")))?;
        s
    } else {
        args.sql.clone()
    };
    let rt = super::gateway::runtime()?;
    let result = rt.block_on(async {
        let engine = engine(&args.engine).await?;
        engine.query(&sql).await.map_err(CliError::from)
    })?;
    if args.format == QueryFormat::Parquet
        && args.out.is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
    {
        return Err(CliError::input(miette::miette!(
            help = "add --out FILE.parquet",
            "refusing to write Parquet to a terminal"
        )));
    }
    let format = match args.format {
        QueryFormat::Table => output::Format::Table,
        QueryFormat::Csv => output::Format::Csv,
        QueryFormat::Json => output::Format::Json,
        QueryFormat::Jsonl => output::Format::Jsonl,
        QueryFormat::Markdown => output::Format::Markdown,
        QueryFormat::Parquet => output::Format::Parquet,
    };
    let mut out = sink(&args.out)?;
    match output::write(format, &result.schema, &result.batches, &mut out) {
        Ok(()) => {}
        Err(reports::ReportError::Execution(m)) if m.contains("Broken pipe") => {
            return Ok(Outcome::Success);
        }
        Err(e) => return Err(e.into()),
    }
    finish(out.flush())?;
    if args.stats {
        let s = &result.stats;
        if s.from_metadata {
            eprintln!(
                "{} row(s) in {:.3} s; answered from the files' metadata (the row counts and statistics in their Parquet footers): no rows read",
                result.rows(),
                result.elapsed.as_secs_f64()
            );
            return Ok(Outcome::Success);
        }
        eprintln!(
            "{} row(s) in {:.3} s; scanned {} file(s), {} bytes, partitions: {}",
            result.rows(),
            result.elapsed.as_secs_f64(),
            s.files,
            s.bytes_scanned,
            if s.partitions.is_empty() {
                "-".to_string()
            } else {
                s.partitions.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        );
    }
    Ok(Outcome::Success)
}

/// The `--{flag}` date option (`YYYY-MM-DD`), if given.
pub(super) fn date(flag: &str, v: &Option<String>) -> Result<Option<NaiveDate>, CliError> {
    v.as_ref()
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| {
                CliError::input(miette::miette!(
                    help = "write it as YYYY-MM-DD",
                    "--{flag} `{s}` is not a date: {e}"
                ))
            })
        })
        .transpose()
}

/// The period `--from`/`--to` say, by default everything.
pub(super) fn period(args: &PeriodArgs) -> Result<Period, CliError> {
    let mut period = Period::default();
    if let Some(f) = date("from", &args.from)? {
        period.from = f;
    }
    if let Some(t) = date("to", &args.to)? {
        period.to = t;
    }
    if period.from > period.to {
        return Err(CliError::input(miette::miette!(
            help = "--from is the first day and --to the last; swap them",
            "the period is empty: --from {} is after --to {}",
            period.from,
            period.to
        )));
    }
    Ok(period)
}

pub fn report(args: &ReportArgs) -> CliResult {
    let templates = args.templates.as_deref();
    if args.list {
        for s in spec::list(templates)? {
            outln!("{:<12} {}", s.name, s.description);
        }
        outln!("{:<12} every report above in one file", "all");
        return Ok(Outcome::Success);
    }
    let specs = spec::find_many(&args.names, templates)?;
    let period = period(&args.period)?;
    let rt = super::gateway::runtime()?;
    let runs = rt.block_on(async {
        let engine = engine(&args.engine).await?;
        if args.show_sql {
            for s in specs
                .iter()
                .chain(std::iter::once(&reports::spec::evidence()?))
            {
                for q in &s.queries {
                    outln!(
                        "-- {} / {}: {}\n{};\n",
                        s.name,
                        q.name,
                        q.title,
                        engine.sql_for(q, &period)
                    );
                }
            }
            return Ok::<_, CliError>(None);
        }
        let mut runs = Vec::new();
        for s in &specs {
            runs.push(reports::run_report(&engine, s, period, &args.engine.lake).await?);
        }
        let evidence = reports::run_evidence(&engine, period, &args.engine.lake).await?;
        Ok(Some((runs, evidence)))
    })?;
    let Some((runs, evidence)) = runs else {
        return Ok(Outcome::Success);
    };
    if args.timings {
        for r in runs.iter().chain([&evidence]) {
            for s in &r.sections {
                eprintln!(
                    "timing {}/{}: {:.4} s, {} row(s), {} file(s), {} bytes scanned",
                    r.spec.name,
                    s.spec.name,
                    s.output.elapsed.as_secs_f64(),
                    s.output.rows(),
                    s.output.stats.files,
                    s.output.stats.bytes_scanned
                );
            }
        }
    }
    let format = match args.format {
        ReportFormat::Html => render::Format::Html,
        ReportFormat::Md => render::Format::Markdown,
        ReportFormat::Json => render::Format::Json,
    };
    let text = render::render(&runs, Some(&evidence), format, templates)?;
    let mut out = sink(&args.out)?;
    finish(out.write_all(text.as_bytes()).and_then(|()| out.flush()))?;
    if let Some(p) = &args.out {
        eprintln!("wrote {}", p.display());
    }
    Ok(Outcome::Success)
}

pub fn athena(cmd: AthenaCommand) -> CliResult {
    match cmd {
        AthenaCommand::Ddl {
            lake,
            database,
            replace,
        } => {
            out!("{}", reports::athena::ddl(&lake, &database, replace)?);
            Ok(Outcome::Success)
        }
    }
}
