//! The `cairn` binary: parse arguments, set up error reporting and logging, dispatch, and turn
//! the outcome into an exit code (0 success, 1 a check failed, 2 usage or input error).

/// `println!` that ends the process quietly when stdout is a closed pipe (`cairn ... | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*) {
            $crate::output::stdout_failed(e);
        }
    }};
}

/// `print!` with the same handling of a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = write!(out, $($arg)*) {
            $crate::output::stdout_failed(e);
        }
    }};
}

mod cli;
mod commands;
mod embedded;
mod exit;
mod findings;
mod output;
mod problem_formats;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    output::install_panic_hook();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // `policy authorize` follows the Cedar CLI, where 2 means DENY: its usage errors
            // are errors (1), so a script never reads a typo as a decision.
            let code = if e.use_stderr() && invoked_authorize() {
                1
            } else {
                e.exit_code()
            };
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    output::init(&cli.global);
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(err) => err.report(),
    };
    code.into()
}

/// Whether the command line names `cairn policy authorize` (the two words in a row, wherever
/// global flags put them).
fn invoked_authorize() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.windows(2)
        .any(|w| w[0] == "policy" && w[1] == "authorize")
}
