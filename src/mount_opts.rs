//! The `-o name=value,flag,...` form of options, as mount(8) and fstab pass them: each item
//! becomes the long option of the same name, so every `s3role mount` option works there.

/// Options that belong to mount(8), systemd or the kernel's generic mount flags: accepted
/// and ignored.
const IGNORED: &[&str] = &[
    "_netdev",
    "nofail",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "defaults",
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "async",
    "sync",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "lazytime",
    "nolazytime",
    "diratime",
    "nodiratime",
    "silent",
    "loud",
];

/// Splits an option list at commas not escaped with a backslash.
pub fn split_list(list: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => items.last_mut().map(|s| s.push(next)).unwrap_or_default(),
                None => items.last_mut().map(|s| s.push('\\')).unwrap_or_default(),
            },
            ',' => items.push(String::new()),
            c => items.last_mut().map(|s| s.push(c)).unwrap_or_default(),
        }
    }
    items.into_iter().filter(|s| !s.is_empty()).collect()
}

/// The long options one `-o` list stands for.
pub fn expand_list(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    for item in split_list(list) {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v)),
            None => (item.trim(), None),
        };
        if IGNORED.contains(&name) || name.starts_with("x-") || name == "comment" {
            continue;
        }
        let name = name.replace('_', "-");
        match (name.as_str(), value) {
            ("ro", None) => out.push("--read-only".to_owned()),
            (_, Some(v)) => out.push(format!("--{name}={v}")),
            (_, None) => out.push(format!("--{name}")),
        }
    }
    out
}

/// Replaces every `-o LIST` and `-oLIST` in `args` with the long options it stands for.
pub fn expand_args(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--" {
            out.push(a);
            out.extend(it.by_ref());
            break;
        }
        if a == "-o" {
            if let Some(list) = it.next() {
                out.extend(expand_list(&list));
            } else {
                out.push(a);
            }
        } else if let Some(list) = a.strip_prefix("-o").filter(|l| !l.is_empty()) {
            out.extend(expand_list(list));
        } else {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn fstab_options_become_long_options() {
        let got = expand_list(
            "_netdev,role_arn=arn:aws:iam::1:role/R,external_id=x,allow_other,ro,x-systemd.automount,comment=hi,uid=1000",
        );
        assert_eq!(
            got,
            v(&[
                "--role-arn=arn:aws:iam::1:role/R",
                "--external-id=x",
                "--allow-other",
                "--read-only",
                "--uid=1000"
            ])
        );
    }

    #[test]
    fn escaped_commas_stay_in_values() {
        assert_eq!(
            expand_list(r"session_policy=a\,b,path_style"),
            v(&["--session-policy=a,b", "--path-style"])
        );
    }

    #[test]
    fn both_spellings_of_dash_o() {
        let got = expand_args(v(&[
            "s3role",
            "mount",
            "b",
            "/m",
            "-o",
            "region=eu-west-1",
            "-oread_only",
            "-f",
        ]));
        assert_eq!(
            got,
            v(&["s3role", "mount", "b", "/m", "--region=eu-west-1", "--read-only", "-f"])
        );
    }
}
