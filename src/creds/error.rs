//! Errors of the credential chain, phrased for the person reading them.

/// A step of the chain that failed: which step, what AWS said, and a hint at the usual cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{step} failed: {}{message}{}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(), hint.map(|h| format!(" (hint: {h})")).unwrap_or_default())]
pub struct CredsError {
    /// The step, e.g. `AssumeRole arn:aws:iam::123456789012:role/Reader`.
    pub step: String,
    /// AWS error code, when there is one.
    pub code: Option<String>,
    /// The message from AWS or the SDK.
    pub message: String,
    /// The most likely cause, for the common codes.
    pub hint: Option<&'static str>,
    /// The id STS gave the failed request, when it answered, to quote to AWS support.
    pub request_id: Option<String>,
}

impl CredsError {
    /// Whether STS refused (as opposed to not answering): retrying soon will not help.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(
                "AccessDenied"
                    | "InvalidClientTokenId"
                    | "SignatureDoesNotMatch"
                    | "ValidationError"
                    | "MalformedPolicyDocument"
                    | "PackedPolicyTooLarge"
                    | "RegionDisabledException"
                    | "InvalidIdentityToken"
                    | "IDPRejectedClaim"
                    | "ExpiredTokenException"
            )
        )
    }
}

/// The usual cause of an STS error code on a given step.
pub fn hint_for(code: Option<&str>, assume: bool, external_id_set: bool) -> Option<&'static str> {
    match code? {
        "AccessDenied" if assume && external_id_set => Some(
            "the role's trust policy must admit the caller (and its sts:ExternalId condition must match --external-id), and the caller's own policy must allow sts:AssumeRole on this role",
        ),
        "AccessDenied" if assume => Some(
            "the role's trust policy must admit the caller, and the caller's own policy must allow sts:AssumeRole on this role; if the trust policy requires an ExternalId, pass --external-id",
        ),
        "InvalidClientTokenId" | "SignatureDoesNotMatch" | "InvalidAccessKeyId" => {
            Some("the source credentials are not valid here: check the access key, the profile and the STS endpoint")
        }
        "ExpiredToken" | "ExpiredTokenException" => {
            Some("the source credentials have expired: refresh them (e.g. aws sso login) and try again")
        }
        "ValidationError" => Some(
            "STS rejected a parameter: the session length may exceed the role's MaxSessionDuration, or the 1-hour limit of role chaining",
        ),
        "RegionDisabledException" => Some("STS is not activated in this region: choose another with --sts-region"),
        "MalformedPolicyDocument" | "PackedPolicyTooLarge" => {
            Some("the session policy or policy ARNs were refused: check --session-policy and --policy-arn")
        }
        "InvalidIdentityToken" | "IDPRejectedClaim" => Some(
            "the web identity token was refused: check the token file and the role's trust policy for the identity provider",
        ),
        _ => None,
    }
}
