//! The `lazyroot` command: one binary, one subcommand per job.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lazyroot: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
