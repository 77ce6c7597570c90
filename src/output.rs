//! Everything that knows about terminals: error rendering, log setup, progress and colour
//! decisions. Data goes to stdout, diagnostics and progress to stderr.

use std::io::IsTerminal;

use miette::{GraphicalReportHandler, GraphicalTheme};
use policy_engine::Problem;

use crate::cli::GlobalArgs;

/// True when output should stay plain and quiet: not a terminal, or running in CI.
pub fn quiet_terminal() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
        || !std::io::stderr().is_terminal()
}

fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

pub fn init(global: &GlobalArgs) {
    let theme = if color() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .graphical_theme(theme.clone())
                .terminal_links(false)
                .context_lines(1)
                .build(),
        )
    }));
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(global.log_level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color());
    // JSON is for log shippers: the fields at the top level, and the target (the access log's
    // is `cairn::access`) to route on.
    let _ = if global.log_json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

pub fn print_report(report: &miette::Report) {
    eprintln!("{report:?}");
}

fn handler() -> GraphicalReportHandler {
    let theme = if color() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    GraphicalReportHandler::new_themed(theme)
        .with_context_lines(1)
        .with_links(false)
}

/// Renders one problem the way a person reads it: position, message, the source line with the
/// span marked, and the fix hint.
pub fn render_problem(p: &Problem) -> String {
    let mut out = String::new();
    if handler().render_report(&mut out, p).is_err() {
        out.push_str(&p.to_string());
    }
    out
}

pub fn eprint_problems(problems: &[Problem]) {
    for p in problems {
        eprintln!("{}", render_problem(p));
    }
}

/// Called when writing to stdout fails: a closed pipe means the reader has what it wanted.
pub fn stdout_failed(e: std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {e}");
    std::process::exit(2);
}

/// A panic is a bug in Cairn: say so plainly, without a backtrace, and exit 101.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "internal error: {msg}{at}\nthis is a bug in cairn; please report it with the command you ran"
        );
    }));
}
