//! The `ocedge` command: parses the command line and calls into the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ocedge::cli::Cli::parse();
    match ocedge::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ocedge: {e:#}");
            ExitCode::from(2)
        }
    }
}
