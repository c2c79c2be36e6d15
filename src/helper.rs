//! `mount.s3role`, the helper mount(8) runs for `mount -t s3role` and fstab lines of type
//! s3role: `mount.s3role SOURCE DIR [-s] [-f] [-n] [-v] [-o OPTIONS] [-N NS] [-t TYPE]`.
//! Every `-o` option is the `s3role mount` option of the same name; options of mount(8) and
//! systemd are accepted and ignored.

use crate::cli::{Cli, Command};
use crate::mount_opts;
use clap::{CommandFactory, Parser};
use std::process::ExitCode;

/// The helper's own arguments.
#[derive(Parser, Debug)]
#[command(
    name = "mount.s3role",
    about = "mount(8) helper for s3role: mount -t s3role SOURCE DIR -o OPTIONS"
)]
struct HelperArgs {
    /// BUCKET, BUCKET:/PREFIX or s3://BUCKET/PREFIX.
    source: String,
    /// Directory to mount on.
    mountpoint: String,
    /// Mount options (repeatable, comma-separated).
    #[arg(short = 'o', action = clap::ArgAction::Append)]
    options: Vec<String>,
    /// Sloppy: ignore options s3role does not know.
    #[arg(short = 's')]
    sloppy: bool,
    /// Fake: check everything, mount nothing.
    #[arg(short = 'f')]
    fake: bool,
    /// Do not write /etc/mtab (there is none to write; accepted).
    #[arg(short = 'n')]
    no_mtab: bool,
    /// Verbose: say what is done.
    #[arg(short = 'v')]
    verbose: bool,
    /// Mount namespace (accepted, not supported).
    #[arg(short = 'N')]
    namespace: Option<String>,
    /// File system type (accepted).
    #[arg(short = 't')]
    fstype: Option<String>,
}

/// The helper's command-line definition (for its man page).
pub fn command() -> clap::Command {
    HelperArgs::command()
}

/// Long option names `s3role mount` knows, for sloppy mode.
fn known_options() -> Vec<String> {
    let cmd = Cli::command();
    cmd.find_subcommand("mount")
        .map(|m| {
            m.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Shows an option for -v without exposing values that should not be printed.
fn shown(arg: &str) -> String {
    match arg.split_once('=') {
        Some((name, _)) if name == "--external-id" || name == "--session-policy" => format!("{name}=(set)"),
        _ => arg.to_owned(),
    }
}

/// The `s3role mount` command line a helper invocation stands for.
fn translate(h: &HelperArgs) -> Vec<String> {
    let mut args = vec![
        "s3role".to_owned(),
        "mount".to_owned(),
        h.source.clone(),
        h.mountpoint.clone(),
    ];
    let known = known_options();
    for list in &h.options {
        for opt in mount_opts::expand_list(list) {
            let name = opt
                .trim_start_matches("--")
                .split('=')
                .next()
                .unwrap_or_default()
                .to_owned();
            if h.sloppy && !known.contains(&name) {
                if h.verbose {
                    eprintln!("mount.s3role: ignoring unknown option {name}");
                }
                continue;
            }
            args.push(opt);
        }
    }
    args
}

/// Runs `mount.s3role`.
pub fn run(argv: Vec<String>) -> ExitCode {
    let h = match HelperArgs::try_parse_from(&argv) {
        Ok(h) => h,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(1);
        }
    };
    let args = translate(&h);
    if h.verbose {
        eprintln!(
            "mount.s3role: {}",
            args.iter().map(|a| shown(a)).collect::<Vec<_>>().join(" ")
        );
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "mount.s3role: {}",
                e.to_string().lines().next().unwrap_or("invalid options")
            );
            return ExitCode::from(1);
        }
    };
    let Command::Mount(mount) = cli.command else {
        return ExitCode::from(1);
    };
    if h.fake {
        return match crate::mount::validate(&mount) {
            Ok(_) => {
                if h.verbose {
                    eprintln!("mount.s3role: options valid; not mounting (-f)");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mount.s3role: {e}");
                ExitCode::from(1)
            }
        };
    }
    // The daemon's command line is made from `args`, without the secrets.
    crate::mount::run_with_argv(mount, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper(argv: &[&str]) -> HelperArgs {
        HelperArgs::try_parse_from(argv).unwrap()
    }

    #[test]
    fn mount8_argument_forms() {
        let h = helper(&[
            "mount.s3role",
            "bkt:/raw",
            "/data",
            "-sv",
            "-o",
            "ro,_netdev",
            "-oallow_other",
            "-n",
            "-t",
            "s3role",
        ]);
        assert!(h.sloppy && h.verbose && h.no_mtab && !h.fake);
        assert_eq!(
            translate(&h),
            vec!["s3role", "mount", "bkt:/raw", "/data", "--read-only", "--allow-other"]
        );
    }

    #[test]
    fn unknown_options_pass_through_unless_sloppy() {
        let strict = helper(&["mount.s3role", "b", "/m", "-o", "bogus=1,uid=5"]);
        assert_eq!(
            translate(&strict),
            vec!["s3role", "mount", "b", "/m", "--bogus=1", "--uid=5"]
        );
        assert!(Cli::try_parse_from(translate(&strict)).is_err(), "clap refuses it");
        let sloppy = helper(&["mount.s3role", "b", "/m", "-s", "-o", "bogus=1,uid=5"]);
        assert_eq!(translate(&sloppy), vec!["s3role", "mount", "b", "/m", "--uid=5"]);
    }

    #[test]
    fn upload_checksum_in_the_o_form() {
        let upload_checksum = |argv: Vec<String>| match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(crate::cli::Command::Mount(m)) => Ok(m.files.upload_checksum),
            Ok(_) => panic!("not a mount"),
            Err(e) => Err(e.kind()),
        };
        use crate::store::s3::UploadChecksum;
        let h = helper(&["mount.s3role", "b", "/m", "-o", "upload_checksum=signed-payload"]);
        assert_eq!(upload_checksum(translate(&h)), Ok(UploadChecksum::SignedPayload));
        let argv = ["s3role", "mount", "b", "/m", "-oupload-checksum=crc32c"].map(String::from);
        let expanded = crate::mount_opts::expand_args(argv.to_vec());
        assert_eq!(upload_checksum(expanded), Ok(UploadChecksum::Crc32c));
        let h = helper(&["mount.s3role", "b", "/m"]);
        assert_eq!(
            upload_checksum(translate(&h)),
            Ok(UploadChecksum::Crc32c),
            "the default"
        );
        let h = helper(&["mount.s3role", "b", "/m", "-o", "upload_checksum=sha256"]);
        assert_eq!(
            upload_checksum(translate(&h)),
            Err(clap::error::ErrorKind::InvalidValue)
        );
    }

    #[test]
    fn fstab_and_systemd_options_are_ignored() {
        let h = helper(&[
            "mount.s3role",
            "b",
            "/m",
            "-o",
            "rw,_netdev,nofail,noauto,user,users,nouser,defaults,dev,nodev,suid,nosuid,exec,noexec,x-systemd.automount,comment=x,noatime",
        ]);
        assert_eq!(translate(&h), vec!["s3role", "mount", "b", "/m"]);
    }

    #[test]
    fn secrets_are_not_shown() {
        assert_eq!(shown("--external-id=abc"), "--external-id=(set)");
        assert_eq!(shown("--role-arn=x"), "--role-arn=x");
    }
}
