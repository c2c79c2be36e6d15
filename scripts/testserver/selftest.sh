#!/usr/bin/env bash
# Self-test of s3role_moto.py: start it (15 s STS sessions, IMDS on a free port, a web identity
# token file), wait for its world file, then check the enforced behaviour with boto3.
# Prints "N passed, M failed" and exits non-zero when anything failed.  Takes ~25 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/s3role-selftest.XXXXXX")
WORLD="$TMP/world.json"
TOKEN_FILE="$TMP/webid-token"
LOG="$TMP/launcher.log"
printf '  selftest-web-identity-token-%s  \n' "$$" > "$TOKEN_FILE"   # whitespace is stripped

LAUNCHER_PID=
cleanup() {
  if [[ -n "$LAUNCHER_PID" ]] && kill -0 "$LAUNCHER_PID" 2>/dev/null; then
    kill -TERM "$LAUNCHER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$LAUNCHER_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

python3 "$HERE/s3role_moto.py" --port 0 --imds-port 0 --imds-duration 60 \
  --force-session-seconds 15 --webid-token "$TOKEN_FILE" --world-out "$WORLD" --quiet \
  >"$LOG" 2>&1 &
LAUNCHER_PID=$!

for _ in $(seq 1 100); do
  [[ -s "$WORLD" ]] && break
  if ! kill -0 "$LAUNCHER_PID" 2>/dev/null; then
    echo "launcher died:"; cat "$LOG"; exit 1
  fi
  sleep 0.1
done
[[ -s "$WORLD" ]] || { echo "launcher not ready after 10 s:"; cat "$LOG"; exit 1; }

set +e
python3 - "$WORLD" "$TOKEN_FILE" <<'PY'
import base64, datetime, json, sys, time, traceback, urllib.request, urllib.error

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, BotoCoreError

world = json.load(open(sys.argv[1]))
token = open(sys.argv[2]).read().strip()
EP, REGION, EXT = world["endpoint"], world["region"], world["external_id"]
ROLES, USERS = world["roles"], world["users"]
CFG = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
             connect_timeout=5, read_timeout=10)

passed, failed = 0, 0

def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"PASS {name}")
    except Exception as e:  # noqa: BLE001
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        if not isinstance(e, AssertionError):
            traceback.print_exc(limit=3)

def client(service, creds=None, unsigned=False, **kw):
    if unsigned:
        from botocore import UNSIGNED
        cfg = CFG.merge(Config(signature_version=UNSIGNED))
        return boto3.client(service, endpoint_url=EP, region_name=REGION, config=cfg,
                            aws_access_key_id="x", aws_secret_access_key="x")
    c = creds or {}
    return boto3.client(service, endpoint_url=EP, region_name=REGION, config=CFG,
                        aws_access_key_id=c.get("AccessKeyId") or c.get("access_key_id"),
                        aws_secret_access_key=c.get("SecretAccessKey") or c.get("secret_access_key"),
                        aws_session_token=c.get("SessionToken") or c.get("Token"), **kw)

def expect_error(code, fn, status=None):
    try:
        fn()
    except ClientError as e:
        got = e.response.get("Error", {}).get("Code")
        st = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        assert got == code, f"expected {code}, got {got} (HTTP {st}): {e}"
        if status is not None:
            assert st == status, f"expected HTTP {status}, got {st}"
        return e
    raise AssertionError(f"expected {code}, but the call succeeded")

def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()

admin_s3 = client("s3", USERS["admin"])
alice_sts = client("sts", USERS["alice"])

def assume(role, sts=None, **kw):
    sts = sts or alice_sts
    return sts.assume_role(RoleArn=ROLES[role], RoleSessionName=kw.pop("name", "selftest"), **kw)

# -- setup with the admin user (enforcement is already on) -------------------------------------
def setup():
    admin_s3.put_object(Bucket="data", Key="hello.txt", Body=b"hello world\n",
                        Metadata={"owner": "selftest", "x-any": "value"})
    admin_s3.put_object(Bucket="data", Key="secret/x", Body=b"top secret")
    admin_s3.put_object(Bucket="data", Key="public/a", Body=b"public a")
    admin_s3.put_object(Bucket="data", Key="b", Body=b"private b")
    head = admin_s3.head_object(Bucket="data", Key="hello.txt")
    assert head["Metadata"] == {"owner": "selftest", "x-any": "value"}, head["Metadata"]
    # multipart upload by admin
    mpu = admin_s3.create_multipart_upload(Bucket="data", Key="big.bin", Metadata={"m": "1"})
    part1 = b"a" * (5 * 1024 * 1024)
    p1 = admin_s3.upload_part(Bucket="data", Key="big.bin", UploadId=mpu["UploadId"],
                              PartNumber=1, Body=part1)
    p2 = admin_s3.upload_part(Bucket="data", Key="big.bin", UploadId=mpu["UploadId"],
                              PartNumber=2, Body=b"tail")
    admin_s3.complete_multipart_upload(
        Bucket="data", Key="big.bin", UploadId=mpu["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                                   {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert admin_s3.head_object(Bucket="data", Key="big.bin")["ContentLength"] == len(part1) + 4
check("admin can put objects (metadata, multipart) under enforcement", setup)

# -- the session whose expiry is checked at the end --------------------------------------------
early = {}
def assume_reader():
    t0 = time.time()
    r = assume("reader", ExternalId=EXT, DurationSeconds=3600)
    early["creds"], early["t0"] = r["Credentials"], t0
    exp = r["Credentials"]["Expiration"]
    left = (exp - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 10 < left <= 16, f"forced 15 s session, but Expiration is {left:.1f} s away"
    body = client("s3", r["Credentials"]).get_object(Bucket="data", Key="hello.txt")["Body"].read()
    assert body == b"hello world\n", body
    ident = client("sts", r["Credentials"]).get_caller_identity()
    assert ident["Arn"].endswith(":assumed-role/reader/selftest"), ident["Arn"]
check("alice assumes reader with ExternalId; Expiration forced to 15 s; GetObject works",
      assume_reader)

check("AssumeRole without ExternalId -> AccessDenied",
      lambda: expect_error("AccessDenied", lambda: assume("reader"), 403))
check("AssumeRole with wrong ExternalId -> AccessDenied",
      lambda: expect_error("AccessDenied", lambda: assume("reader", ExternalId="ext-999"), 403))

def noassume():
    raw = {}
    def grab(http_response, **_):
        raw["body"] = http_response.content
    alice_sts.meta.events.register("after-call.sts.AssumeRole", grab)
    try:
        expect_error("AccessDenied", lambda: assume("noassume"), 403)
    finally:
        alice_sts.meta.events.unregister("after-call.sts.AssumeRole", grab)
    b = raw["body"].decode()
    # the shape the AWS Rust SDK needs: <ErrorResponse><Error><Type/><Code/>..</Error><RequestId/>
    assert "<Errors>" not in b and "<ErrorResponse" in b, b
    assert "<Error><Type>Sender</Type><Code>AccessDenied</Code>" in b and "<RequestId>" in b, b
check("noassume -> AccessDenied, awsQuery error shape", noassume)

check("AssumeRole of a role that does not exist -> AccessDenied",
      lambda: expect_error("AccessDenied", lambda: alice_sts.assume_role(
          RoleArn="arn:aws:iam::123456789012:role/nope", RoleSessionName="sess"), 403))
check("bob (no identity policy) cannot assume noassume even though its trust names him",
      lambda: expect_error("AccessDenied", lambda: assume("noassume", sts=client("sts", USERS["bob"])), 403))

def root_principal():
    r = assume("imds")  # imds trusts arn:aws:iam::123456789012:root
    ident = client("sts", r["Credentials"]).get_caller_identity()
    assert ":assumed-role/imds/" in ident["Arn"], ident
check("trust principal ...:root admits alice", root_principal)

def reader_put():
    r = assume("reader", ExternalId=EXT)
    expect_error("AccessDenied", lambda: client("s3", r["Credentials"]).put_object(
        Bucket="data", Key="new.txt", Body=b"x"), 403)
check("reader PutObject -> AccessDenied", reader_put)

def reader_secret():
    s3 = client("s3", assume("reader", ExternalId=EXT)["Credentials"])
    expect_error("AccessDenied", lambda: s3.get_object(Bucket="data", Key="secret/x"), 403)
    s3.get_object(Bucket="data", Key="b")  # allowed next to the denied prefix
    expect_error("AccessDenied", lambda: s3.get_object(Bucket="other", Key="x"), 403)
check("reader GetObject data/secret/x -> AccessDenied (explicit Deny beats Allow)", reader_secret)

def odd_keys_and_delimiter():
    # stock moto fails SigV4 verification for these under enforcement (see launcher, P8)
    keys = ["dir/a b.txt", "dir/a+b=c&d.txt", "dir/x:y@z;,$!*'().txt", "dir/\u00fc\u00df.txt",
            "dir/per%cent~.txt", "dir/sub/deep.txt"]
    for k in keys:
        admin_s3.put_object(Bucket="data", Key=k, Body=k.encode())
    s3 = client("s3", assume("reader", ExternalId=EXT)["Credentials"])
    for k in keys:
        assert s3.get_object(Bucket="data", Key=k)["Body"].read() == k.encode(), k
        s3.head_object(Bucket="data", Key=k)
    r = s3.list_objects_v2(Bucket="data", Prefix="dir/", Delimiter="/")
    got = sorted(o["Key"] for o in r.get("Contents", []))
    assert got == sorted(k for k in keys if "/sub/" not in k), got
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["dir/sub/"], r
    r = s3.list_objects_v2(Bucket="data", Prefix="dir/\u00fc", StartAfter="dir/a")
    assert [o["Key"] for o in r["Contents"]] == ["dir/\u00fc\u00df.txt"], r["Contents"]
    pages = list(s3.get_paginator("list_objects_v2").paginate(
        Bucket="data", Prefix="dir/", PaginationConfig={"PageSize": 2}))
    assert sum(len(p.get("Contents", [])) for p in pages) == len(keys), pages
check("odd key names, Delimiter='/', StartAfter, paging with assumed-role creds",
      odd_keys_and_delimiter)

def session_policy_deny():
    deny = json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]})
    s3 = client("s3", assume("reader", ExternalId=EXT, Policy=deny)["Credentials"])
    expect_error("AccessDenied", lambda: s3.get_object(Bucket="data", Key="hello.txt"), 403)
check("session Policy Deny s3:* -> GetObject denied", session_policy_deny)

def session_policy_allow_all():
    allow = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    s3 = client("s3", assume("reader", ExternalId=EXT, Policy=allow)["Credentials"])
    s3.get_object(Bucket="data", Key="hello.txt")
    # a session policy can only narrow the role's permissions
    expect_error("AccessDenied", lambda: s3.put_object(Bucket="data", Key="n", Body=b"x"), 403)
check("session Policy Allow * does not widen the role", session_policy_allow_all)

def policy_arns():
    r = assume("reader", ExternalId=EXT,
               PolicyArns=[{"arn": world["policies"]["data-public-only"]}])
    s3 = client("s3", r["Credentials"])
    assert s3.get_object(Bucket="data", Key="public/a")["Body"].read() == b"public a"
    expect_error("AccessDenied", lambda: s3.get_object(Bucket="data", Key="b"), 403)
check("PolicyArns data-public-only: data/public/a OK, data/b denied", policy_arns)

def chain():
    a = assume("chain-a", name="chain-a-sess")["Credentials"]
    sts_a = client("sts", a)
    expect_error("AccessDenied", lambda: sts_a.assume_role(
        RoleArn=ROLES["reader"], RoleSessionName="chained"), 403)
    r = sts_a.assume_role(RoleArn=ROLES["reader"], RoleSessionName="chained", ExternalId=EXT)
    s3 = client("s3", r["Credentials"])
    assert s3.get_object(Bucket="data", Key="hello.txt")["Body"].read() == b"hello world\n"
    ident = client("sts", r["Credentials"]).get_caller_identity()
    assert ident["Arn"].endswith(":assumed-role/reader/chained"), ident
check("role chaining chain-a -> reader (ExternalId required)", chain)

def sts_outage():
    status, _, body = http("POST", EP + "/s3role-test/sts", b"down")
    assert status == 200 and body == b"down", (status, body)
    try:
        assert http("GET", EP + "/s3role-test/sts")[2] == b"down"
        e = expect_error("ServiceUnavailable", lambda: assume("reader", ExternalId=EXT), 503)
        # S3 is unaffected
        admin_s3.head_object(Bucket="data", Key="hello.txt")
        http("POST", EP + "/s3role-test/sts", b"drop")
        t = time.time()
        try:
            assume("reader", ExternalId=EXT)
            raise AssertionError("drop mode: AssumeRole succeeded")
        except (BotoCoreError, ClientError) as e:
            assert not isinstance(e, ClientError), f"drop mode gave an HTTP answer: {e}"
        assert time.time() - t < 5, "drop mode took too long"
        admin_s3.head_object(Bucket="data", Key="hello.txt")
    finally:
        http("POST", EP + "/s3role-test/sts", b"up")
    assume("reader", ExternalId=EXT)
check("STS down -> 503 ServiceUnavailable, drop -> connection closed, up -> works", sts_outage)

def imds():
    ep = world["imds_endpoint"]
    assert ep, "no imds endpoint in world"
    assert http("PUT", ep + "/latest/api/token")[0] == 400  # TTL header required
    assert http("GET", ep + "/latest/meta-data/iam/security-credentials/")[0] == 401
    st, hdrs, tok = http("PUT", ep + "/latest/api/token",
                         headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
    assert st == 200 and tok, st
    ttl = {k.lower(): v for k, v in hdrs.items()}.get("x-aws-ec2-metadata-token-ttl-seconds")
    assert ttl == "21600", hdrs
    h = {"X-aws-ec2-metadata-token": tok.decode()}
    st, _, role = http("GET", ep + "/latest/meta-data/iam/security-credentials/", headers=h)
    assert st == 200 and role == world["imds_role"].encode(), (st, role)
    st, _, body = http("GET", ep + "/latest/meta-data/iam/security-credentials/" + role.decode(),
                       headers=h)
    creds = json.loads(body)
    assert creds["Code"] == "Success" and creds["AccessKeyId"].startswith("ASIA"), creds
    s3 = client("s3", creds)
    assert s3.get_object(Bucket="data", Key="hello.txt")["Body"].read() == b"hello world\n"
    expect_error("AccessDenied", lambda: s3.put_object(Bucket="data", Key="i", Body=b"x"), 403)
    # the instance role may assume reader (with the ExternalId)
    client("sts", creds).assume_role(RoleArn=ROLES["reader"], RoleSessionName="from-imds",
                                     ExternalId=EXT)
check("IMDSv2 token flow -> real creds that can GetObject", imds)

def webid():
    sts = client("sts", unsigned=True)
    r = sts.assume_role_with_web_identity(RoleArn=ROLES["webid"], RoleSessionName="web",
                                          WebIdentityToken=token)
    s3 = client("s3", r["Credentials"])
    assert s3.get_object(Bucket="data", Key="hello.txt")["Body"].read() == b"hello world\n"
    expect_error("AccessDenied", lambda: s3.put_object(Bucket="data", Key="w", Body=b"x"), 403)
    expect_error("InvalidIdentityToken", lambda: sts.assume_role_with_web_identity(
        RoleArn=ROLES["webid"], RoleSessionName="web", WebIdentityToken="wrong"), 400)
    r = sts.assume_role_with_web_identity(
        RoleArn=ROLES["webid"], RoleSessionName="web", WebIdentityToken=token,
        PolicyArns=[{"arn": world["policies"]["data-public-only"]}])
    s3 = client("s3", r["Credentials"])
    s3.get_object(Bucket="data", Key="public/a")
    expect_error("AccessDenied", lambda: s3.get_object(Bucket="data", Key="hello.txt"), 403)
check("AssumeRoleWithWebIdentity: right token works, wrong -> InvalidIdentityToken", webid)

def saml():
    acct = world["account"]
    xml = f"""<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z">
  <saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_2" Version="2.0" IssueInstant="2026-01-01T00:00:00Z">
    <saml:Issuer>http://localhost/idp</saml:Issuer>
    <saml:AttributeStatement>
      <saml:Attribute Name="https://aws.amazon.com/SAML/Attributes/Role">
        <saml:AttributeValue>{ROLES['webid']},arn:aws:iam::{acct}:saml-provider/idp</saml:AttributeValue>
      </saml:Attribute>
      <saml:Attribute Name="https://aws.amazon.com/SAML/Attributes/RoleSessionName">
        <saml:AttributeValue>alice@example.com</saml:AttributeValue>
      </saml:Attribute>
    </saml:AttributeStatement>
  </saml:Assertion>
</samlp:Response>"""
    sts = client("sts", unsigned=True)
    r = sts.assume_role_with_saml(RoleArn=ROLES["webid"],
                                  PrincipalArn=f"arn:aws:iam::{acct}:saml-provider/idp",
                                  SAMLAssertion=base64.b64encode(xml.encode()).decode())
    left = (r["Credentials"]["Expiration"]
            - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert left <= 16, f"SAML session not forced to 15 s: {left}"
    client("s3", r["Credentials"]).get_object(Bucket="data", Key="hello.txt")
check("AssumeRoleWithSAML works under enforcement", saml)

def unsigned_rejected():
    expect_error("MissingAuthenticationToken",
                 lambda: client("sts", unsigned=True).get_caller_identity(), 403)
    expect_error("AccessDenied",
                 lambda: client("s3", unsigned=True).get_object(Bucket="data", Key="hello.txt"), 403)
check("unsigned STS / S3 requests -> 403 (not 500)", unsigned_rejected)

def sessions():
    st, _, body = http("GET", EP + "/s3role-test/sessions")
    lst = json.loads(body)
    assert st == 200 and any(s["session_name"] == "chained" for s in lst), lst
    s = next(s for s in lst if s["session_name"] == "chained")
    assert s["role_arn"] == ROLES["reader"] and s["external_id"] == EXT and s["expiration"], s
check("GET /s3role-test/sessions lists issued sessions", sessions)

def expiry():
    wait = early["t0"] + 17 - time.time()
    if wait > 0:
        time.sleep(wait)
    expect_error("ExpiredToken", lambda: client("s3", early["creds"]).get_object(
        Bucket="data", Key="hello.txt"), 400)
    expect_error("ExpiredToken", lambda: client("s3", early["creds"]).list_objects_v2(
        Bucket="data"), 400)
    expect_error("ExpiredToken", lambda: client("sts", early["creds"]).get_caller_identity(), 403)
check("15 s credentials rejected with ExpiredToken after 17 s (S3 400, STS 403)", expiry)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  echo "--- launcher log ($LOG) ---"; tail -n 50 "$LOG"
fi
exit $rc
