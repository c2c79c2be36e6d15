//! The `s3role` command.

use clap::Parser;
use s3role::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    // Installed as /sbin/mount.s3role, the binary is mount(8)'s helper.
    let name = args.first().and_then(|a| a.rsplit('/').next()).unwrap_or_default();
    if name.starts_with("mount.s3role") {
        return s3role::helper::run(args);
    }
    let cli = Cli::parse_from(s3role::mount_opts::expand_args(args));
    match cli.command {
        Command::Mount(args) => s3role::mount::run(args),
        Command::Status { mountpoint } => s3role::status::run(&mountpoint),
        Command::GenerateDocs { dir } => match s3role::docs::generate(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("s3role: {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
        Command::Check(args) => {
            s3role::logging::init();
            s3role::check::run(args)
        }
    }
}
