//! One module per command group; each turns arguments into library calls and prints results.

mod audit;
mod completions;
mod demo;
mod demo_aws;
mod detect;
mod gateway;
mod ingest;
mod keys;
mod policy;
mod policy_diff;
mod policy_proof;
mod query;

use crate::cli::{Cli, Command};
use crate::exit::CliResult;

pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Policy(cmd) => policy::run(cmd),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Gateway(cmd) => gateway::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Ingest(cmd) => ingest::run(cmd),
        Command::Query(args) => query::query(&args),
        Command::Report(args) => query::report(&args),
        Command::Detect(args) => detect::run(&args),
        Command::Athena(cmd) => query::athena(cmd),
        Command::Demo(args) => demo::run(&args),
        Command::Completions { shell } => completions::completions(shell),
        Command::Man => completions::man(),
    }
}
