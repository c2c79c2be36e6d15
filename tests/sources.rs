//! Every way to get the source identity, then the role: EC2 instance metadata (IMDSv2), the
//! container endpoint of ECS and EKS Pod Identity, a web identity token file, a SAML
//! assertion, a shared profile; role chains and session policies.

mod common;

use common::{Mount, Server, s3role, shared_server};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    let s = shared_server(&SERVER, &["--imds-port", "0", "--imds-duration", "60"]);
    static FILLED: OnceLock<()> = OnceLock::new();
    FILLED.get_or_init(|| {
        s.put("data", "src/hello.txt", b"hello from a role".to_vec(), &[]);
        s.put("data", "public/open.txt", b"public".to_vec(), &[]);
        s.put("data", "private/closed.txt", b"private".to_vec(), &[]);
    });
    s
}

/// Mounts with exactly `env` (no keys unless given) and waits until it is live.
fn mount_with_env(
    s: &Server,
    source: &str,
    args: &[String],
    env: &[(&str, String)],
) -> Result<(tempfile::TempDir, std::process::Child, std::path::PathBuf), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let log = dir.path().join("log");
    let mut child = common::without_identity(&mut s3role(), &log)
        .arg("mount")
        .arg(source)
        .arg(&mnt)
        .arg("-f")
        .args(s.endpoint_args())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !common::is_mounted(&mnt) {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!(
                "exited {st}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "not mounted: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((dir, child, mnt))
}

fn unmount(child: std::process::Child, mnt: &std::path::Path) {
    common::unmount_and_wait(child, mnt);
}

#[test]
fn instance_profile_then_cross_account_role_with_external_id() {
    let s = server();
    let imds = s.world.imds_endpoint.clone().expect("the server runs an IMDS");
    let env = [
        ("AWS_EC2_METADATA_DISABLED", "false".to_string()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds),
    ];
    let (_d, child, mnt) = mount_with_env(s, "data:/src", &s.reader_args(), &env).expect("mount from IMDS");
    assert_eq!(
        std::fs::read(mnt.join("hello.txt")).expect("read"),
        b"hello from a role"
    );
    unmount(child, &mnt);
}

#[test]
fn container_credentials_as_on_ecs_or_eks_pod_identity() {
    let s = server();
    let (uri, token) = s
        .world
        .container_credentials
        .clone()
        .expect("the server runs a container credentials endpoint");
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("eks-pod-identity-token");
    // Pod Identity rotates the token in a file; ECS passes it inline. The file form is read.
    std::fs::write(&token_file, &token).expect("token file");
    let env = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.clone()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.display().to_string(),
        ),
    ];
    let (_d, child, mnt) =
        mount_with_env(s, "data:/src", &s.reader_args(), &env).expect("mount from the container endpoint");
    assert_eq!(
        std::fs::read(mnt.join("hello.txt")).expect("read"),
        b"hello from a role"
    );
    unmount(child, &mnt);

    // A wrong token is refused by the endpoint, and the mount says which source failed.
    std::fs::write(&token_file, "not-the-token").expect("token file");
    let err = mount_with_env(s, "data:/src", &s.reader_args(), &env).expect_err("a refused token cannot mount");
    assert!(
        err.contains("401") && err.contains("container credentials endpoint"),
        "{err}"
    );
}

#[test]
fn web_identity_token_file() {
    let s = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.fake.token").expect("token");
    let args = vec![
        "--role-arn".into(),
        s.world.role("webid").to_owned(),
        "--web-identity-token-file".into(),
        token.display().to_string(),
    ];
    let (_d, child, mnt) = mount_with_env(s, "data:/src", &args, &[]).expect("mount with web identity");
    assert_eq!(
        std::fs::read(mnt.join("hello.txt")).expect("read"),
        b"hello from a role"
    );
    unmount(child, &mnt);
}

#[test]
fn saml_assertion_file() {
    let s = server();
    let role = s.world.role("reader").to_owned();
    let provider = format!("arn:aws:iam::{}:saml-provider/idp", s.world.account);
    let xml = format!(
        r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_2" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>http://localhost/idp</saml:Issuer><saml:AttributeStatement><saml:Attribute Name="https://aws.amazon.com/SAML/Attributes/Role"><saml:AttributeValue>{role},{provider}</saml:AttributeValue></saml:Attribute><saml:Attribute Name="https://aws.amazon.com/SAML/Attributes/RoleSessionName"><saml:AttributeValue>alice@example.com</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion></samlp:Response>"#
    );
    let out = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(xml.as_bytes())?;
            c.wait_with_output()
        });
    let b64 = String::from_utf8(out.expect("base64").stdout).expect("utf8");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("assertion");
    std::fs::write(&file, b64).expect("write");
    let args = vec![
        "--role-arn".into(),
        role,
        "--saml-assertion-file".into(),
        file.display().to_string(),
        "--saml-principal-arn".into(),
        provider,
    ];
    let (_d, child, mnt) = mount_with_env(s, "data:/src", &args, &[]).expect("mount with SAML");
    assert_eq!(
        std::fs::read(mnt.join("hello.txt")).expect("read"),
        b"hello from a role"
    );
    unmount(child, &mnt);
}

#[test]
fn shared_profile_as_source() {
    let s = server();
    let (ak, sk) = s.world.keys("alice").clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        format!("[partner]\naws_access_key_id = {ak}\naws_secret_access_key = {sk}\n"),
    )
    .expect("write");
    let mut args = s.reader_args();
    args.extend(["--profile".to_string(), "partner".to_string()]);
    let env = [("AWS_SHARED_CREDENTIALS_FILE", creds.display().to_string())];
    let (_d, child, mnt) = mount_with_env(s, "data:/src", &args, &env).expect("mount from a profile");
    assert_eq!(
        std::fs::read(mnt.join("hello.txt")).expect("read"),
        b"hello from a role"
    );
    unmount(child, &mnt);
}

#[test]
fn role_chain_assumes_each_role_in_order() {
    let s = server();
    let args = vec![
        "--role-arn".into(),
        s.world.role("chain-a").to_owned(),
        "--role-arn".into(),
        s.world.role("reader").to_owned(),
        "--external-id".into(),
        s.world.external_id.clone(),
        "--role-session-name".into(),
        "chained".into(),
    ];
    let m = Mount::start(s, "alice", "data:/src", &args).expect("mount through a chain");
    assert_eq!(std::fs::read(m.join("hello.txt")).expect("read"), b"hello from a role");
    let roles: Vec<String> = s.sessions_named("chained").into_iter().map(|x| x.role_arn).collect();
    assert_eq!(
        roles,
        vec![s.world.role("chain-a").to_owned(), s.world.role("reader").to_owned()]
    );
    m.unmount();
}

#[test]
fn session_policies_narrow_the_role() {
    let s = server();
    let mut args = s.reader_args();
    args.extend(["--policy-arn".to_string(), s.world.policies["data-public-only"].clone()]);
    let m = Mount::start(s, "alice", "data", &args).expect("mount with a managed session policy");
    assert_eq!(std::fs::read(m.join("public/open.txt")).expect("allowed"), b"public");
    let e = std::fs::read(m.join("private/closed.txt")).expect_err("outside the session policy");
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    m.unmount();

    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"},{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/private/*"}]}"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.json");
    std::fs::write(&file, deny).expect("policy file");
    let mut args = s.reader_args();
    args.extend(["--session-policy".to_string(), format!("@{}", file.display())]);
    let m = Mount::start(s, "alice", "data", &args).expect("mount with an inline session policy");
    assert_eq!(
        std::fs::read(m.join("private/closed.txt")).expect("allowed"),
        b"private"
    );
    let e = std::fs::read(m.join("public/open.txt")).expect_err("outside the inline policy");
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    m.unmount();
}
