#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use std::process::ExitCode;

/// musl's allocator (the image's) is slow under the operator's many
/// threads and small allocations, and glibc's keeps what a burst took:
/// one allocator, the same in the image and in every benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = mvconf::cli::Cli::parse();
    mvconf::cli::init_logging(&cli);
    mvconf::cli::run(cli)
}
