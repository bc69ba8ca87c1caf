//! The `medsynth` command line: parses arguments, sets up logging and thread pools, and hands
//! over to the library. Exit codes: 0 success, 1 a pipeline file or argument failed
//! validation, 2 any other error.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args.global);
    if let Err(e) = cli::init_threads(&args.global) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    match cli::dispatch(args.command) {
        Ok(code) => code,
        Err(e) => {
            // The whole chain, outermost first, so the cause is never hidden.
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
