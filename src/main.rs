//! The `s3role` command.

use clap::Parser;
use s3role::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let cli = Cli::parse_from(s3role::mount_opts::expand_args(args));
    match cli.command {
        Command::Mount(args) => s3role::mount::run(args),
        Command::Check(args) => {
            s3role::logging::init();
            s3role::check::run(args)
        }
    }
}
