//! Checks of every user-given credential input before any network call, with messages that
//! name the option at fault.

use std::time::Duration;

/// A rejected input: the option and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {problem}")]
pub struct InvalidInput {
    /// The command-line option (e.g. `--role-arn`).
    pub option: &'static str,
    /// What is wrong, in a sentence.
    pub problem: String,
}

fn invalid(option: &'static str, problem: impl Into<String>) -> InvalidInput {
    InvalidInput {
        option,
        problem: problem.into(),
    }
}

fn partition_ok(p: &str) -> bool {
    matches!(
        p,
        "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b" | "aws-iso-e" | "aws-iso-f" | "aws-eusc"
    )
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`, 20–2048 characters.
pub fn role_arn(arn: &str) -> Result<(), InvalidInput> {
    let opt = "--role-arn";
    if !(20..=2048).contains(&arn.len()) {
        return Err(invalid(opt, format!("'{arn}' must be 20 to 2048 characters long")));
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && partition_ok(parts[1])
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|n| {
            !n.is_empty() && !n.ends_with('/') && n.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
        });
    if well_formed {
        Ok(())
    } else {
        Err(invalid(
            opt,
            format!("'{arn}' is not a role ARN; expected arn:aws:iam::123456789012:role/NAME"),
        ))
    }
}

/// A managed policy ARN for `--policy-arn`.
pub fn policy_arn(arn: &str) -> Result<(), InvalidInput> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && partition_ok(parts[1])
        && parts[2] == "iam"
        && (parts[4] == "aws" || (parts[4].len() == 12 && parts[4].bytes().all(|b| b.is_ascii_digit())))
        && parts[5].strip_prefix("policy/").is_some_and(|n| !n.is_empty());
    if ok && (20..=2048).contains(&arn.len()) {
        Ok(())
    } else {
        Err(invalid(
            "--policy-arn",
            format!("'{arn}' is not a policy ARN; expected arn:aws:iam::123456789012:policy/NAME"),
        ))
    }
}

/// 2–1224 characters of `[\w+=,.@:/-]`.
pub fn external_id(id: &str) -> Result<(), InvalidInput> {
    if !(2..=1224).contains(&id.chars().count()) {
        return Err(invalid("--external-id", "must be 2 to 1224 characters long"));
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c)) {
        return Err(invalid(
            "--external-id",
            "may contain only letters, digits and _+=,.@:/-",
        ));
    }
    Ok(())
}

/// 2–64 characters of `[\w+=,.@-]`.
pub fn session_name(name: &str) -> Result<(), InvalidInput> {
    if !(2..=64).contains(&name.len()) {
        return Err(invalid(
            "--role-session-name",
            format!("'{name}' must be 2 to 64 characters long"),
        ));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)) {
        return Err(invalid(
            "--role-session-name",
            format!("'{name}' may contain only letters, digits and _+=,.@-"),
        ));
    }
    Ok(())
}

/// A session name built from `text`, made valid: other characters become `-`, and the
/// result is cut to 64 characters (or padded to 2).
pub fn sanitize_session_name(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    while s.len() < 2 {
        s.push('-');
    }
    s
}

/// 900–43200 seconds.
pub fn duration(d: Duration) -> Result<(), InvalidInput> {
    if (900..=43200).contains(&d.as_secs()) {
        Ok(())
    } else {
        Err(invalid(
            "--duration-seconds",
            format!("{} is outside 900 to 43200 seconds", d.as_secs()),
        ))
    }
}

/// JSON text of at most 2048 characters.
pub fn session_policy(text: &str) -> Result<(), InvalidInput> {
    if text.chars().count() > 2048 {
        return Err(invalid(
            "--session-policy",
            format!("is {} characters long; STS accepts at most 2048", text.chars().count()),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(invalid("--session-policy", "must be a JSON object (a policy document)")),
        Err(e) => Err(invalid("--session-policy", format!("is not valid JSON: {e}"))),
    }
}

/// S3 bucket naming rules: 3–63 characters of lower-case letters, digits, `.` and `-`,
/// starting and ending with a letter or digit, not shaped like an IP address.
pub fn bucket(name: &str) -> Result<(), InvalidInput> {
    let opt = "SOURCE";
    let bad = |why: &str| Err(invalid(opt, format!("'{name}' is not a valid bucket name: {why}")));
    if !(3..=63).contains(&name.len()) {
        return bad("it must be 3 to 63 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return bad("only lower-case letters, digits, '.' and '-' are allowed");
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge(name.chars().next()) || !edge(name.chars().last()) {
        return bad("it must start and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("it must not contain '..'");
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return bad("it must not look like an IP address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        assert!(role_arn("arn:aws:iam::123456789012:role/Reader").is_ok());
        assert!(role_arn("arn:aws-cn:iam::123456789012:role/path/to/Reader").is_ok());
        for bad in [
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws:iam::12345:role/x",
            "arn:aws:s3:::bucket/role/x",
            "Reader",
            "arn:aws:iam::123456789012:role/",
        ] {
            let e = role_arn(bad).unwrap_err();
            assert_eq!(e.option, "--role-arn", "{bad}");
        }
    }

    #[test]
    fn external_ids_and_session_names() {
        assert!(external_id("ext-123").is_ok());
        assert!(external_id("x").is_err());
        assert!(external_id(&"a".repeat(1225)).is_err());
        assert!(external_id("has space").is_err());
        assert!(session_name("host-1.example@x").is_ok());
        assert!(session_name("a").is_err());
        assert!(session_name("a/b").is_err());
        assert!(session_name(&"a".repeat(65)).is_err());
        let s = sanitize_session_name("s3role-my host/1234-with a very long name that goes on and on and on and on");
        assert!(session_name(&s).is_ok(), "{s}");
        assert!(session_name(&sanitize_session_name("")).is_ok());
    }

    #[test]
    fn durations_policies_buckets() {
        assert!(duration(Duration::from_secs(900)).is_ok());
        assert!(duration(Duration::from_secs(899)).is_err());
        assert!(duration(Duration::from_secs(43201)).is_err());
        assert!(session_policy(r#"{"Version":"2012-10-17","Statement":[]}"#).is_ok());
        assert!(session_policy("not json").is_err());
        assert!(session_policy("[]").is_err());
        assert!(session_policy(&format!(r#"{{"a":"{}"}}"#, "x".repeat(2100))).is_err());
        assert!(bucket("analytics-bucket").is_ok());
        assert!(bucket("my.bucket.1").is_ok());
        for b in ["ab", "Upper", "-x-", "a..b", "192.168.1.1", "under_score"] {
            assert!(bucket(b).is_err(), "{b}");
        }
        assert!(policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess").is_ok());
        assert!(policy_arn("arn:aws:iam::123456789012:role/x").is_err());
    }
}
