//! The Kubernetes recipe of packaging/kubernetes/: its manifests are valid Kubernetes objects
//! (kubernetes-validate, offline, against pinned versions) and share the mount as the README
//! says; the s3role container of each pod, run here with its volumes as directories, mounts
//! a bucket from the local S3+STS server and keeps it working while its token file is
//! rotated the way the kubelet rotates it; a SIGTERM unmounts it. The image builds where a
//! Docker engine answers.

mod common;

use common::{Server, is_mounted, s3role};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Kubernetes versions the manifests must be valid for: the oldest the recipe asks for
/// (sidecar containers are on by default from 1.29) and the newest the pinned
/// kubernetes-validate knows.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

/// What `.ci/run` installs, and what to install by hand.
const KUBERNETES_VALIDATE: &str = "pip install 'kubernetes-validate==1.37.0'";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every manifest of the recipe.
fn manifests() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join("packaging/kubernetes"))
        .expect("packaging/kubernetes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    out.sort();
    assert!(
        out.len() >= 2,
        "expected the IRSA and Pod Identity manifests, found {out:?}"
    );
    out
}

/// The objects of a YAML file, as JSON (read with PyYAML, which kubernetes-validate needs).
fn documents(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "reading {} with PyYAML ({KUBERNETES_VALIDATE} brings it): {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from PyYAML")
}

fn manifest(name: &str) -> Vec<Value> {
    documents(&repo().join("packaging/kubernetes").join(name))
}

/// `kubernetes-validate --strict` of `file` against `version`: its output if it refused.
fn validate(file: &Path, version: &str) -> Result<(), String> {
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", version])
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!("kubernetes-validate is needed to check the manifests ({e}): {KUBERNETES_VALIDATE}")
        });
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn manifests_are_valid_kubernetes_objects() {
    for file in manifests() {
        for version in KUBERNETES_VERSIONS {
            if let Err(e) = validate(&file, version) {
                panic!("{} is not valid for Kubernetes {version}:\n{e}", file.display());
            }
        }
    }
    // The validator does refuse a mistake: a misspelt field in a copy of a manifest.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = manifest("irsa.yaml");
    let pod = docs.iter_mut().find(|d| d["kind"] == "Pod").expect("a pod");
    pod["spec"]["initContainers"][0]["volumeMounts"][0]["mountPropogation"] = "Bidirectional".into();
    let broken = dir.path().join("broken.yaml");
    let text: Vec<String> = docs.iter().map(Value::to_string).collect();
    std::fs::write(&broken, text.join("\n---\n")).expect("write");
    let e = validate(&broken, KUBERNETES_VERSIONS[0]).expect_err("a misspelt field is refused");
    assert!(e.contains("mountPropogation"), "{e}");
}

/// The pod of a manifest.
fn pod(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| d["kind"] == "Pod")
        .expect("the manifest has a pod")
}

/// The container named `s3role`, and whether it is a sidecar (an init container that
/// keeps running).
fn s3role_container(pod: &Value) -> (&Value, bool) {
    let named = |list: &str| {
        pod["spec"][list]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == "s3role"))
    };
    match named("initContainers") {
        Some(c) => (c, c["restartPolicy"] == "Always"),
        None => (named("containers").expect("a container named s3role"), false),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

/// The mount point in the s3role container's arguments (`mount SOURCE MOUNTPOINT ...`).
fn mountpoint_arg(container: &Value) -> String {
    let args = strings(&container["args"]);
    assert_eq!(args.first().map(String::as_str), Some("mount"), "{args:?}");
    args.get(2).cloned().expect("mount SOURCE MOUNTPOINT")
}

/// What is wrong with how a manifest shares its mount and stops, as sentences; empty when
/// nothing is.
fn sharing_problems(docs: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let pod = pod(docs);
    let (c, sidecar) = s3role_container(pod);
    if !sidecar {
        problems.push("s3role is not a sidecar (an init container with restartPolicy Always)".into());
    }
    if c["securityContext"]["privileged"] != true {
        problems.push("the s3role container is not privileged (needed for Bidirectional)".into());
    }
    if !c["command"].is_null() {
        problems.push("the s3role container replaces the image's entrypoint".into());
    }
    let mountpoint = mountpoint_arg(c);
    let mounts = |c: &Value| c["volumeMounts"].as_array().cloned().unwrap_or_default();
    let bucket = mounts(c)
        .into_iter()
        .find(|m| m["mountPath"] == mountpoint.as_str() && m["mountPropagation"] == "Bidirectional");
    let Some(bucket) = bucket else {
        problems.push(format!(
            "no Bidirectional volume mounted at the mount point {mountpoint}"
        ));
        return problems;
    };
    let volume = &bucket["name"];
    let apps: Vec<&Value> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|a| {
                    a["name"] != "s3role"
                        && mounts(a)
                            .iter()
                            .any(|m| m["name"] == *volume && m["mountPropagation"] == "HostToContainer")
                })
                .collect()
        })
        .unwrap_or_default();
    if apps.is_empty() {
        problems.push(format!("no other container mounts {volume} with HostToContainer"));
    }
    let is_empty_dir = pod["spec"]["volumes"]
        .as_array()
        .is_some_and(|vs| vs.iter().any(|v| v["name"] == *volume && v["emptyDir"].is_object()));
    if !is_empty_dir {
        problems.push(format!("the shared volume {volume} is not an emptyDir"));
    }
    let probe = strings(&c["startupProbe"]["exec"]["command"]);
    if probe != ["s3role".to_owned(), "status".to_owned(), mountpoint.clone()] {
        problems.push(format!(
            "the startup probe is {probe:?}, not s3role status {mountpoint}"
        ));
    }
    // Unmounting waits up to a minute for pending uploads.
    if pod["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or(30) < 90 {
        problems.push("terminationGracePeriodSeconds leaves pending uploads less than 90 s".into());
    }
    let args = strings(&c["args"]);
    for secret in ["--external-id", "--session-policy"] {
        if args.iter().any(|a| a == secret || a.starts_with(&format!("{secret}="))) {
            problems.push(format!("{secret} in the arguments shows it in every process list"));
        }
    }
    problems
}

#[test]
fn manifests_share_the_mount_with_the_app_and_give_uploads_time_to_finish() {
    for file in manifests() {
        let problems = sharing_problems(&documents(&file));
        assert!(problems.is_empty(), "{}: {problems:#?}", file.display());
    }
    // The check sees a mount that would not reach the app.
    let mut docs = manifest("irsa.yaml");
    let pod = docs.iter_mut().find(|d| d["kind"] == "Pod").expect("a pod");
    pod["spec"]["containers"][0]["volumeMounts"][0]["mountPropagation"] = "None".into();
    let problems = sharing_problems(&docs);
    assert!(problems.iter().any(|p| p.contains("HostToContainer")), "{problems:?}");
}

#[test]
fn the_irsa_manifest_names_one_role_and_reads_the_projected_token() {
    let docs = manifest("irsa.yaml");
    let account = docs
        .iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .expect("a service account");
    let annotated = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        .as_str()
        .expect("the IRSA annotation");
    let pod = pod(&docs);
    assert_eq!(pod["spec"]["serviceAccountName"], account["metadata"]["name"]);
    let (c, _) = s3role_container(pod);
    let env = container_env(c);
    assert_eq!(env.get("S3ROLE_ROLE_ARN").map(String::as_str), Some(annotated));
    let args = strings(&c["args"]);
    let after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| panic!("{flag} in {args:?}"))
    };
    assert_eq!(after("--role-arn"), "$(S3ROLE_ROLE_ARN)");
    let token_file = after("--web-identity-token-file");
    let mount = c["volumeMounts"]
        .as_array()
        .and_then(|ms| {
            ms.iter()
                .find(|m| m["mountPath"].as_str().is_some_and(|p| token_file.starts_with(p)))
        })
        .expect("the token file is in a volume");
    let volume = pod["spec"]["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == mount["name"]))
        .expect("the token volume");
    let token = &volume["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token["audience"], "sts.amazonaws.com");
    let in_volume = format!(
        "{}/{}",
        mount["mountPath"].as_str().unwrap_or_default(),
        token["path"].as_str().unwrap_or_default()
    );
    assert_eq!(token_file, in_volume);
}

/// The container's environment as the manifest sets it (literal values only).
fn container_env(c: &Value) -> HashMap<String, String> {
    c["env"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e["value"].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A token file kept the way the kubelet keeps a projected volume: `DIR/FILE` is a link to
/// `..data/FILE`, and `..data` a link to a directory of this generation, replaced at once
/// (a rename) when the token is rotated.
struct ProjectedFile {
    dir: PathBuf,
    name: String,
    generation: u32,
}

impl ProjectedFile {
    fn new(dir: PathBuf, name: &str, contents: &str) -> ProjectedFile {
        std::fs::create_dir_all(&dir).expect("volume dir");
        let mut f = ProjectedFile {
            dir,
            name: name.to_owned(),
            generation: 0,
        };
        f.rotate(contents);
        std::os::unix::fs::symlink(format!("..data/{name}"), f.path()).expect("link");
        f
    }

    fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    fn rotate(&mut self, contents: &str) {
        self.generation += 1;
        let data = format!("..{}", self.generation);
        std::fs::create_dir(self.dir.join(&data)).expect("generation dir");
        std::fs::write(self.dir.join(&data).join(&self.name), contents).expect("token");
        let link = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &link).expect("link");
        std::fs::rename(&link, self.dir.join("..data")).expect("swap");
        if self.generation > 1 {
            std::fs::remove_dir_all(self.dir.join(format!("..{}", self.generation - 1))).expect("old generation");
        }
    }
}

/// The s3role container of a pod, run here: each of its volumes is a directory, `$(VAR)`s
/// in its arguments are expanded from its environment as the kubelet does, and only what
/// points it at the local server is added (and `--metadata-ttl 0`, so that every access
/// reaches S3 with the session of the moment).
struct Sidecar {
    child: Option<Child>,
    mountpoint: PathBuf,
    log: PathBuf,
    probe: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts the s3role container of `pod` with `values` in place of its environment's,
    /// `injected` added (what EKS gives a pod), and `volumes` for some of its volumes
    /// (the others are empty directories); waits until its startup probe succeeds.
    fn start(
        s: &Server,
        pod: &Value,
        values: &[(&str, String)],
        injected: &[(&str, String)],
        volumes: &[(&str, PathBuf)],
    ) -> Result<Sidecar, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (c, _) = s3role_container(pod);
        let mut paths: Vec<(String, PathBuf)> = Vec::new();
        for m in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
            let name = m["name"].as_str().expect("volume name");
            let host = volumes
                .iter()
                .find(|(v, _)| *v == name)
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| dir.path().join("volumes").join(name));
            std::fs::create_dir_all(&host).expect("volume dir");
            paths.push((m["mountPath"].as_str().expect("mountPath").to_owned(), host));
        }
        let mut env = container_env(c);
        for (k, v) in values {
            assert!(env.contains_key(*k), "the manifest sets no {k}");
            env.insert((*k).to_owned(), v.clone());
        }
        let local = |arg: &str| -> String {
            let mut arg = arg.to_owned();
            for (k, v) in &env {
                arg = arg.replace(&format!("$({k})"), v);
            }
            for (inside, host) in &paths {
                if arg == *inside || arg.starts_with(&format!("{inside}/")) {
                    return format!("{}{}", host.display(), &arg[inside.len()..]);
                }
            }
            arg
        };
        let args: Vec<String> = strings(&c["args"]).iter().map(|a| local(a)).collect();
        let mountpoint = PathBuf::from(&args[2]);
        let probe: Vec<String> = strings(&c["startupProbe"]["exec"]["command"])
            .iter()
            .map(|a| local(a))
            .collect();
        let log = dir.path().join("s3role.log");
        let child = common::without_identity(&mut s3role(), &log)
            .args(&args)
            .args([
                "--endpoint-url",
                &s.world.endpoint,
                "--sts-endpoint",
                &s.world.endpoint,
                "--path-style",
                "--metadata-ttl",
                "0",
            ])
            .envs(env.iter())
            .envs(injected.iter().map(|(k, v)| (*k, v.as_str())))
            .spawn()
            .expect("start s3role");
        let mut sidecar = Sidecar {
            child: Some(child),
            mountpoint,
            log,
            probe,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sidecar.probe_succeeds() {
            if let Some(status) = sidecar.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("s3role exited with {status}:\n{}", sidecar.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("the startup probe failed for 30 s:\n{}", sidecar.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(sidecar)
    }

    /// The container's startup probe, run here.
    fn probe_succeeds(&self) -> bool {
        let (program, args) = self.probe.split_first().expect("a probe command");
        assert_eq!(program, "s3role");
        s3role()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn join(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// Successful renewals of the role session so far, from `s3role status`, or why it
    /// could not say.
    fn renewals(&self) -> Result<u64, String> {
        let out = s3role()
            .arg("status")
            .arg(&self.mountpoint)
            .output()
            .expect("s3role status");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("renewals"))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| format!("s3role status: {}{text}", String::from_utf8_lossy(&out.stderr)))
    }

    /// Rotates `token` and waits until the session has been renewed twice since: the
    /// server now refuses the old token, and the second renewal began after the rotation.
    fn renew_across_rotation(&self, token: &mut ProjectedFile, new: &str) {
        token.rotate(new);
        let before = self.renewals().unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let now = self.renewals();
            if now.as_ref().is_ok_and(|n| *n >= before + 2) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not renewed twice with the rotated token within 90 s (renewals before: {before}, now: {now:?})\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Sends SIGTERM, as the kubelet does when the pod stops, and waits for the exit.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // SAFETY: kill has no memory-safety preconditions; pid is our child's.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("s3role still runs 90 s after SIGTERM\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            common::unmount_and_wait(c, &self.mountpoint);
        }
    }
}

/// What every test pod reads.
const HELLO: &[u8] = b"hello from a pod";

/// A token file in the kubelet's layout under a new directory, and the local server, which
/// accepts only the token now in that file (`flag` is `--webid-token` or
/// `--container-token`), started with `extra` too; `data/k8s/hello.txt` holds [`HELLO`].
fn server_checking(flag: &str, extra: &[&str]) -> (tempfile::TempDir, ProjectedFile, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = ProjectedFile::new(dir.path().join("token-volume"), "token", "token-1");
    let token_path = token.path().display().to_string();
    let s = Server::start(&[extra, &[flag, &token_path]].concat());
    s.put("data", "k8s/hello.txt", HELLO.to_vec(), &[]);
    (dir, token, s)
}

/// The values a test gives the container's environment: `data:/k8s` as the source, the
/// server's region, and `more`.
fn values<'a>(s: &Server, more: &[(&'a str, String)]) -> Vec<(&'a str, String)> {
    [
        ("S3ROLE_SOURCE", "data:/k8s".to_owned()),
        ("AWS_REGION", s.world.region.clone()),
    ]
    .into_iter()
    .chain(more.iter().cloned())
    .collect()
}

/// Starts the s3role container of the pod of `docs` ([`Sidecar::start`], with [`values`]),
/// reads [`HELLO`], rotates the token, sees two renewals, and reads again.
fn mount_across_rotation(
    s: &Server,
    docs: &[Value],
    more: &[(&str, String)],
    injected: &[(&str, String)],
    volumes: &[(&str, PathBuf)],
    token: &mut ProjectedFile,
) -> Sidecar {
    let m =
        Sidecar::start(s, pod(docs), &values(s, more), injected, volumes).expect("the pod's s3role container mounts");
    assert_eq!(std::fs::read(m.join("hello.txt")).expect("read"), HELLO);
    m.renew_across_rotation(token, "token-2");
    assert_eq!(std::fs::read(m.join("hello.txt")).expect("read after rotation"), HELLO);
    m
}

/// SIGTERM, as the kubelet sends it: s3role exits cleanly and the mount is gone.
fn stop(mut m: Sidecar) {
    let status = m.terminate();
    assert!(status.success(), "{status}\n{}", m.log());
    assert!(!is_mounted(&m.mountpoint), "still mounted after SIGTERM");
}

#[test]
fn the_irsa_pod_mounts_with_its_service_account_token_while_the_kubelet_rotates_it() {
    let (_dir, mut token, s) = server_checking("--webid-token", &["--force-session-seconds", "20"]);
    let docs = manifest("irsa.yaml");
    let role = [("S3ROLE_ROLE_ARN", s.world.role("webid").to_owned())];
    let volume = [("aws-token", token.dir.clone())];
    let m = mount_across_rotation(&s, &docs, &role, &[], &volume, &mut token);
    std::fs::write(m.join("from-the-pod.txt"), b"written after a rotation").expect("write");
    assert_eq!(
        s.object("data", "k8s/from-the-pod.txt")
            .map(|(body, _)| body)
            .as_deref(),
        Some(&b"written after a rotation"[..])
    );
    let sessions = s
        .sessions()
        .into_iter()
        .filter(|(role, _)| role == s.world.role("webid"))
        .count();
    assert!(sessions >= 3, "{sessions} web identity sessions\n{}", m.log());
    stop(m);
}

#[test]
fn the_pod_identity_pod_mounts_through_the_container_endpoint_while_its_token_rotates() {
    let (_dir, mut token, s) = server_checking("--container-token", &["--imds-port", "0", "--imds-duration", "20"]);
    let (uri, _) = s
        .world
        .container_credentials
        .clone()
        .expect("the server runs a container credentials endpoint");
    let docs = manifest("pod-identity.yaml");
    // What EKS gives a pod whose service account has a Pod Identity association.
    let injected = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token.path().display().to_string(),
        ),
    ];
    stop(mount_across_rotation(&s, &docs, &[], &injected, &[], &mut token));
}

#[test]
fn the_variables_the_eks_webhook_injects_for_irsa_are_enough() {
    let (_dir, mut token, s) = server_checking("--webid-token", &["--force-session-seconds", "20"]);
    // The Pod Identity pod's command names no role: on a cluster whose webhook gives the
    // pod IRSA variables instead, s3role assumes their role, through --sts-endpoint.
    let docs = manifest("pod-identity.yaml");
    let injected = [
        ("AWS_ROLE_ARN", s.world.role("webid").to_owned()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.path().display().to_string()),
        ("AWS_STS_REGIONAL_ENDPOINTS", "regional".to_owned()),
        ("AWS_DEFAULT_REGION", s.world.region.clone()),
    ];
    stop(mount_across_rotation(&s, &docs, &[], &injected, &[], &mut token));
}

#[test]
fn the_image_runs_s3role_as_the_manifests_expect_and_builds_where_docker_answers() {
    let dockerfile = std::fs::read_to_string(repo().join("packaging/kubernetes/Dockerfile")).expect("Dockerfile");
    let entrypoint = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("ENTRYPOINT in exec form");
    assert_eq!(
        entrypoint.last().map(String::as_str),
        Some("/usr/bin/s3role"),
        "the manifests give s3role's arguments only"
    );
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    if !engine.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIPPED: no Docker engine answers here (`docker info` failed), so the image of packaging/kubernetes/Dockerfile was not built"
        );
        return;
    }
    let tag = format!("s3role-test-k8s:{}", std::process::id());
    let built = Command::new("docker")
        .args(["build", "-f", "packaging/kubernetes/Dockerfile", "-t", &tag, "."])
        .current_dir(repo())
        .stdin(Stdio::null())
        .status()
        .expect("docker build");
    assert!(built.success(), "docker build failed: {built}");
    let out = Command::new("docker")
        .args(["run", "--rm", &tag, "--version"])
        .stdin(Stdio::null())
        .output()
        .expect("docker run");
    let _ = Command::new("docker").args(["rmi", &tag]).output();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && version.starts_with("s3role "),
        "{version}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
