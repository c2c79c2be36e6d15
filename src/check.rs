//! `s3role check`: walks the credential chain and the bucket access one step at a time and
//! prints a line per step, so an operator sees exactly which step IAM refused.

use crate::cli::{CheckArgs, parse_source};
use crate::creds::{Chain, CredsError, SourceSpec};
use crate::mount::explain_list_error;
use crate::store::ObjectStore;
use crate::store::s3::{S3Location, S3Store};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use std::process::ExitCode;

fn ok(step: &str, detail: &str) {
    println!("OK      {step}: {detail}");
}

fn failed(step: &str, detail: &str) -> ExitCode {
    println!("FAILED  {step}: {detail}");
    ExitCode::FAILURE
}

fn creds_failed(e: &CredsError) -> ExitCode {
    println!("FAILED  {e}");
    ExitCode::FAILURE
}

/// Runs `s3role check`.
pub fn run(args: CheckArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("s3role: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(check(args))
}

async fn check(args: CheckArgs) -> ExitCode {
    let source = match parse_source(&args.source) {
        Ok(s) => s,
        Err(e) => return failed("arguments", &e.to_string()),
    };
    let region = args.access.resolve_region().await;
    let cfg = match args.access.creds_config(region.clone()) {
        Ok(c) => c,
        Err(e) => return failed("arguments", &e.to_string()),
    };
    ok(
        "arguments",
        &format!(
            "chain {}; bucket {} prefix '{}'; region {region}",
            cfg.describe(),
            source.bucket,
            source.prefix
        ),
    );
    let chain = Chain::new(cfg.clone()).await;

    let mut current: Option<Credentials> = match chain.source_credentials().await {
        Ok(c) => c,
        Err(e) => return creds_failed(&e),
    };
    match (&current, &cfg.source) {
        (Some(c), _) => match chain.caller_arn(c).await {
            Ok(arn) => ok("source identity (GetCallerIdentity)", &arn),
            Err(e) => {
                return creds_failed(&CredsError {
                    step: "source identity (GetCallerIdentity)".into(),
                    ..e
                });
            }
        },
        (None, SourceSpec::WebIdentity(f)) => {
            ok("source identity", &format!("web identity token from {}", f.display()))
        }
        (None, SourceSpec::Saml { principal_arn, .. }) => {
            ok("source identity", &format!("SAML assertion for {principal_arn}"))
        }
        (None, _) => {}
    }
    for (i, role) in cfg.roles.iter().enumerate() {
        match chain.assume(i, current.as_ref()).await {
            Ok(c) => {
                let who = chain.caller_arn(&c).await.unwrap_or_else(|_| role.arn.clone());
                let exp = c.expiry().map(crate::timefmt::rfc3339).unwrap_or_default();
                ok(&format!("AssumeRole {}", role.arn), &format!("{who}, expires {exp}"));
                current = Some(c);
            }
            Err(e) => return creds_failed(&e),
        }
    }
    let Some(creds) = current else {
        return failed("credentials", "the chain produced none");
    };
    let location = S3Location {
        bucket: source.bucket.clone(),
        endpoint_url: args.access.endpoint_url.clone(),
        path_style: args.access.path_style,
        request_timeout: Some(std::time::Duration::from_secs(args.access.request_timeout)),
    };
    let store = S3Store::new(
        chain.sdk_config(),
        SharedCredentialsProvider::new(creds),
        &location,
        None,
    );
    let who = cfg
        .roles
        .last()
        .map(|r| r.arn.clone())
        .unwrap_or_else(|| cfg.describe());
    let list_step = format!("ListObjectsV2 s3://{}/{}", source.bucket, source.prefix);
    let page = match store.list_page(&source.prefix, None, None, Some(20)).await {
        Ok(p) => p,
        Err(e) => return failed(&list_step, &explain_list_error(&e, &source, &location, &region, &who)),
    };
    ok(&list_step, &format!("{} keys on the first page", page.objects.len()));
    let Some(obj) = page.objects.iter().find(|o| !o.key.ends_with('/')) else {
        ok("HeadObject/GetObject", "skipped: no object under the prefix");
        return ExitCode::SUCCESS;
    };
    let head_step = format!("HeadObject s3://{}/{}", source.bucket, obj.key);
    match store.head(&obj.key).await {
        Ok(info) => {
            let meta = info.metadata.unwrap_or_default();
            let posix: Vec<String> = ["mode", "uid", "gid", "mtime"]
                .iter()
                .filter_map(|k| meta.get(*k).map(|v| format!("{k}={v}")))
                .collect();
            ok(
                &head_step,
                &format!(
                    "{} bytes{}",
                    info.size,
                    if posix.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", posix.join(" "))
                    }
                ),
            );
        }
        Err(e) => {
            return failed(
                &head_step,
                &format!(
                    "{e} (hint: the role's policy must allow s3:GetObject on arn:aws:s3:::{}/*)",
                    source.bucket
                ),
            );
        }
    }
    let get_step = format!("GetObject s3://{}/{} bytes=0-0", source.bucket, obj.key);
    if obj.size == 0 {
        ok(&get_step, "skipped: empty object");
        return ExitCode::SUCCESS;
    }
    match store.get_range(&obj.key, 0..1, None).await {
        Ok(body) => match body.collect().await {
            Ok(b) => ok(&get_step, &format!("{} byte read", b.len())),
            Err(e) => return failed(&get_step, &e.to_string()),
        },
        Err(e) => {
            return failed(
                &get_step,
                &format!(
                    "{e} (hint: the role's policy must allow s3:GetObject on arn:aws:s3:::{}/*)",
                    source.bucket
                ),
            );
        }
    }
    ExitCode::SUCCESS
}
