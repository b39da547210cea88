#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = mvconf::cli::Cli::parse();
    mvconf::cli::init_logging(&cli);
    mvconf::cli::run(cli)
}
