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
mod output;
mod problem_formats;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    output::install_panic_hook();
    let cli = cli::Cli::parse();
    output::init(&cli.global);
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(err) => err.report(),
    };
    code.into()
}
