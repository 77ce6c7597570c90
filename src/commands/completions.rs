//! `cairn completions SHELL` and `cairn man`: generated from the clap types, so they never
//! drift from the commands.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::{CliError, CliResult, Outcome};

pub fn completions(shell: clap_complete::Shell) -> CliResult {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cairn", &mut buf);
    write_out(&buf)
}

pub fn man() -> CliResult {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| CliError::input(miette::miette!("cannot render the manual page: {e}")))?;
    write_out(&buf)
}

fn write_out(bytes: &[u8]) -> CliResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::input(
            miette::miette!("cannot write to stdout: {e}"),
        )),
        _ => Ok(Outcome::Success),
    }
}
