#!/usr/bin/env python3
"""s3role_moto.py -- a stricter moto S3 + STS + IAM test server for the s3role integration tests.

Runs moto (pinned: moto[server]==5.2.1) in-process on 127.0.0.1, builds a small fixed "world"
(buckets, users, roles, policies), then turns moto's IAM enforcement on and keeps it honest by
patching a handful of moto internals.  Why each patch exists is documented next to it; the short
list (see ../shared/docs/test-servers.md, Appendix A, for the measurements behind it):

  P1 expiry         stock moto never checks the Expiration of assumed-role credentials.
  P2 session policy stock moto stores `Policy` but ignores it and never parses `PolicyArns`.
  P3 trust policy   stock moto: a missing sts:ExternalId passes a StringEquals condition, an
                    `arn:aws:iam::ACCT:root` principal matches nobody, role chaining (an
                    assumed-role session as principal) never matches, a principal without an
                    `AWS` key is an HTTP 500, and AssumeRole of a non-existent role succeeds.
                    (Identity-policy Conditions stay ignored, as in stock moto.)
  P4 federation     AssumeRoleWithWebIdentity/SAML are unsigned; under enforcement stock moto
                    tries to authenticate them and answers HTTP 500.
  P5 error shape    moto renders STS/IAM auth errors as <ErrorResponse><Errors><Error>; the AWS
                    Rust SDK only understands <ErrorResponse><Error>...<RequestId>.
  P6 durations      --force-session-seconds overrides DurationSeconds of every STS session.
  P7 unsigned       an unsigned (or presigned-URL) request under enforcement is a KeyError/HTTP
                    500 (or a body-less 403) in stock moto; here it is a proper 403.
  P8 SigV4 path     stock moto verifies signatures against a partly percent-DECODED URL, so
                    ListObjectsV2 with Delimiter="/" and keys like "a+b", "x:y", "dir/\u00fc"
                    fail with SignatureDoesNotMatch under enforcement.
  plus: a test control endpoint (/s3role-test/...) and an IMDSv2 emulator the Rust SDK accepts.

CLI (all optional):
  --port N                  main endpoint port (0 = pick a free one; default 0)
  --world-out PATH          write the world JSON here (atomically, once everything is ready)
  --force-session-seconds N every STS session (AssumeRole, WebIdentity, SAML) lasts N seconds
  --webid-token FILE        AssumeRoleWithWebIdentity accepts only the (stripped) token in FILE,
                            re-read on every call; anything else -> 400 InvalidIdentityToken
  --container-token FILE    the container credentials endpoint accepts only the (stripped)
                            token in FILE, re-read on every request, instead of the world's
                            container_auth_token (EKS Pod Identity rotates its token file)
  --imds-port N             start the IMDSv2 emulator on port N (0 = pick free; default: off)
  --imds-role NAME          role vended by IMDS (default: imds)
  --imds-duration S         lifetime of IMDS credentials (default 300); rotated when < S/3 left
  --imds-allow-v1           let IMDS GETs through without a session token
                            The emulator's port also serves container credentials (ECS task
                            role, EKS Pod Identity) at /v1/credentials: the same role's session
                            for a request whose Authorization is the world's container_auth_token.
  --no-fixture              do not build the world (enforcement is still turned on unless
                            --no-enforce; toggle with POST /moto-api/reset-auth, body 0 or inf)
  --no-enforce              leave moto's IAM enforcement off
  --quiet                   no request logs
  --ignore-moto-version     run even if moto is not 5.2.1 (the patches target 5.2.1 internals)

Control endpoints on the main port (never authenticated):
  POST /s3role-test/sts   body up|down|drop   down: every STS action -> 503 ServiceUnavailable,
                                              with a request id (x-amzn-RequestId, and in the body)
                                              drop: STS connections are closed without a response
  GET  /s3role-test/sts                        current mode (text/plain)
  POST/GET /s3role-test/imds  up|down|drop     same for the IMDS emulator (down -> 503)
  GET  /s3role-test/sessions                   JSON list of STS sessions issued so far
  GET  /s3role-test/s3-requests                JSON list of the S3 requests seen (method, path,
                                               query, range), oldest first, last 100,000
  GET  /s3role-test/world                      the world JSON
  /moto-api/* (data.json, reset-auth, ...)     moto's own API, also unauthenticated

World JSON (--world-out; also GET /s3role-test/world):
  endpoint, region, account, imds_endpoint (or null), imds_role, container_credentials_uri
  and container_auth_token (null without IMDS), external_id,
  users{admin,alice,bob: access_key_id, secret_access_key, arn}, roles{name: arn},
  policies{data-public-only: arn}, buckets, force_session_seconds, webid_token_file,
  control{sts, imds, sessions}, enforcing, pid.  Removed again on clean exit.

Behaviour worth knowing:
  - A session's permissions = role policies AND every session policy (inline Policy and each
    PolicyArns entry must each allow the action); explicit Deny wins everywhere.
  - Trust-policy conditions: StringEquals/StringLike/StringNotEquals/StringNotLike (+IfExists)
    on sts:ExternalId, sts:RoleSessionName, aws:PrincipalArn, aws:PrincipalAccount; any other
    operator fails the statement (fail closed).
  - RoleSessionName must match [\w+=,.@-]{2,64}; DurationSeconds may be anything >= 1 (short
    sessions are the point), unless --force-session-seconds overrides it.
  - AssumeRoleWithWebIdentity/SAML: any existing role, trust policy not evaluated.
  - IMDS sessions use --imds-duration (not --force-session-seconds); STS down/drop does not
    affect IMDS (use /s3role-test/imds for that).
  - GetSessionToken/GetFederationToken still return moto's fixed example keys (unusable).
  - Anonymous S3 requests and presigned URLs are refused (403) while enforcing.
  - POST /moto-api/reset wipes the world (and the fixture users' keys) -- don't.

The process exits on SIGTERM/SIGINT, and by itself when its parent process goes away.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.etree import ElementTree
from xml.sax.saxutils import escape as xml_escape

ACCOUNT = "123456789012"  # moto's DEFAULT_ACCOUNT_ID; the fixture lives here
REGION = "us-east-1"
PARTITION = "aws"
EXTERNAL_ID = "ext-123"
MOTO_VERSION = "5.2.1"

log = logging.getLogger("s3role_moto")


# ----------------------------------------------------------------------------------------------
# Shared launcher state (written by the control endpoint, read by the patches)
# ----------------------------------------------------------------------------------------------
class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sts_mode = "up"  # up | down | drop
        self.imds_mode = "up"
        self.force_session_seconds: int | None = None
        self.webid_token_file: str | None = None
        self.container_token_file: str | None = None
        self.world: dict = {}
        # Every S3 request seen (method, path, Range), newest last, for tests that count the
        # requests an operation costs.
        self.s3_requests: collections.deque = collections.deque(maxlen=100_000)


STATE = State()


def utcnow() -> datetime.datetime:
    """Naive UTC, like moto.core.utils.utcnow (moto stores naive UTC datetimes)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def iso_z(dt: datetime.datetime) -> str:
    return dt.replace(microsecond=0).isoformat() + "Z"


# ----------------------------------------------------------------------------------------------
# awsQuery error rendering (STS / IAM)
# ----------------------------------------------------------------------------------------------
AWSQUERY_NS = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/",
               "iam": "https://iam.amazonaws.com/doc/2010-05-08/"}


def awsquery_error_body(code: str, message: str, fault: str = "Sender",
                        service: str = "sts", request_id: str | None = None) -> bytes:
    """The shape real STS/IAM use and the AWS Rust SDK parses (P5)."""
    request_id = request_id or str(uuid.uuid4())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ErrorResponse xmlns="{AWSQUERY_NS.get(service, AWSQUERY_NS["sts"])}">'
        f"<Error><Type>{xml_escape(fault)}</Type><Code>{xml_escape(code)}</Code>"
        f"<Message>{xml_escape(message)}</Message></Error>"
        f"<RequestId>{xml_escape(request_id)}</RequestId></ErrorResponse>"
    ).encode()


def rewrite_awsquery_error(body: bytes, service: str) -> bytes | None:
    """Re-render any moto STS/IAM error body (<ErrorResponse><Errors><Error>, or a bare <Error>)
    in the canonical awsQuery shape. None if the body is not an XML error we understand."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    err = root if local(root.tag) == "Error" else None
    if err is None:
        for el in root.iter():
            if local(el.tag) == "Error":
                err = el
                break
    if err is None:
        return None
    fields = {local(c.tag): (c.text or "") for c in err}
    if "Code" not in fields:
        return None
    return awsquery_error_body(
        fields["Code"], fields.get("Message", ""), fields.get("Type") or "Sender", service
    )


# ----------------------------------------------------------------------------------------------
# Trust-policy evaluation (P3) -- replaces moto's IAMRequestBase._check_role_trust_relationship
# ----------------------------------------------------------------------------------------------
ROLE_ARN_RE = re.compile(r"^arn:[^:]+:iam::(\d{12}):role/(?:.*/)?([^/]+)$")
ASSUMED_ROLE_ARN_RE = re.compile(r"^arn:[^:]+:sts::(\d{12}):assumed-role/([^/]+)/(.+)$")
ROOT_ARN_RE = re.compile(r"^arn:[^:]+:iam::(\d{12}):root$")
ANY_ARN_ACCOUNT_RE = re.compile(r"^arn:[^:]+:(?:iam|sts)::(\d{12}):")


def _as_list(v) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def principal_matches(expected: str, caller_arn: str) -> bool:
    """Does one `Principal.AWS` entry admit the caller?

    - "*" admits everybody;
    - "arn:aws:iam::ACCT:root" or a bare 12-digit account id admits every principal of ACCT
      (that is what AWS does: the account delegates to its own IAM policies);
    - "arn:aws:iam::ACCT:role/NAME" admits sessions of that role,
      "arn:aws:sts::ACCT:assumed-role/NAME/SESSION" (role chaining);
    - otherwise exact ARN match."""
    if expected == "*":
        return True
    m_acct = ANY_ARN_ACCOUNT_RE.match(caller_arn)
    caller_account = m_acct.group(1) if m_acct else None
    if re.fullmatch(r"\d{12}", expected):
        return caller_account == expected
    m = ROOT_ARN_RE.match(expected)
    if m:
        return caller_account == m.group(1)
    if expected == caller_arn:
        return True
    m_role = ROLE_ARN_RE.match(expected)
    m_sess = ASSUMED_ROLE_ARN_RE.match(caller_arn)
    if m_role and m_sess:
        return m_role.group(1) == m_sess.group(1) and m_role.group(2) == m_sess.group(2)
    return False


def statement_principal_matches(stmt: dict, caller_arn: str) -> bool:
    principal = stmt.get("Principal")
    if principal is None:
        # A trust policy statement without Principal is invalid in AWS; match nothing.
        return False
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    # Only the `AWS` key can name an IAM user / role session.  `Service`, `Federated`,
    # `CanonicalUser` never match a signed AssumeRole caller -> 403 instead of moto's HTTP 500.
    return any(principal_matches(e, caller_arn) for e in _as_list(principal.get("AWS")))


def _cond_string_equals(actual: str, expected: list[str]) -> bool:
    return actual in expected


def _cond_string_like(actual: str, expected: list[str]) -> bool:
    return any(fnmatchcase(actual, e) for e in expected)


# Supported condition operators.  A key the request does not carry FAILS the condition (AWS
# semantics for the positive operators; stock moto let it pass).  The negated operators are
# satisfied by a missing key, as in AWS.  Unknown operators fail closed (logged), so a test can
# never pass by accident because the launcher ignored a condition it does not understand.
CONDITION_OPERATORS = {
    "StringEquals": (_cond_string_equals, False),
    "StringLike": (_cond_string_like, False),
    "StringNotEquals": (lambda a, e: not _cond_string_equals(a, e), True),
    "StringNotLike": (lambda a, e: not _cond_string_like(a, e), True),
}


def conditions_hold(conditions: dict | None, context: dict[str, str]) -> bool:
    if not conditions:
        return True
    ctx = {k.lower(): v for k, v in context.items() if v is not None}
    for op, block in conditions.items():
        if_exists = op.endswith("IfExists")
        base_op = op[: -len("IfExists")] if if_exists else op
        if base_op not in CONDITION_OPERATORS or not isinstance(block, dict):
            log.warning("trust policy condition operator %r not supported: condition fails", op)
            return False
        fn, missing_ok = CONDITION_OPERATORS[base_op]
        for key, expected in block.items():
            actual = ctx.get(key.lower())
            if actual is None:
                if missing_ok or if_exists:
                    continue
                return False
            if not fn(actual, [str(x) for x in _as_list(expected)]):
                return False
    return True


def action_matches(patterns, action: str) -> bool:
    return any(fnmatchcase(action.lower(), str(p).lower()) for p in _as_list(patterns))


def trust_policy_allows(policy_doc: str | dict, action: str, caller_arn: str,
                        context: dict[str, str]) -> bool:
    """Standard evaluation: allowed iff some Allow statement matches and no Deny statement does.
    A statement matches when action, principal and all conditions match (a non-matching
    statement is neutral -- stock moto turned a non-matching Allow into an explicit deny)."""
    doc = json.loads(policy_doc) if isinstance(policy_doc, str) else policy_doc
    allowed = False
    for stmt in _as_list(doc.get("Statement")):
        if "NotAction" in stmt:
            if action_matches(stmt["NotAction"], action):
                continue
        elif not action_matches(stmt.get("Action"), action):
            continue
        if not statement_principal_matches(stmt, caller_arn):
            continue
        if not conditions_hold(stmt.get("Condition"), context):
            continue
        if stmt.get("Effect") == "Deny":
            return False
        if stmt.get("Effect") == "Allow":
            allowed = True
    return allowed


# ----------------------------------------------------------------------------------------------
# moto patches
# ----------------------------------------------------------------------------------------------
def patch_s3_result_roots() -> None:
    """Real S3 answers CompleteMultipartUpload with a <CompleteMultipartUploadResult> root;
    moto names the root after the operation (<CompleteMultipartUploadResponse>). boto3 does not
    look at the root, the AWS Rust SDK does and rejects the answer, so rename it."""
    from moto.core.serialize import S3Serializer

    roots = {"CompleteMultipartUpload": "CompleteMultipartUploadResult"}
    original = S3Serializer._serialized_result_to_response

    def serialized_result_to_response(self, resp, result, shape, serialized_result):
        resp = original(self, resp, result, shape, serialized_result)
        name = self.operation_model.name
        body = resp.get("body")
        if name in roots and isinstance(body, (str, bytes)):
            wrong, right = f"{name}Response", roots[name]
            if isinstance(body, bytes):
                body = body.replace(wrong.encode(), right.encode())
            else:
                body = body.replace(wrong, right)
            resp["body"] = body
        return resp

    S3Serializer._serialized_result_to_response = serialized_result_to_response


def install_patches() -> None:  # noqa: C901  (one place for all monkeypatching)
    from werkzeug.exceptions import HTTPException

    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.responses import ActionResult
    from moto.iam import access_control as ac
    from moto.iam.models import iam_backends
    from moto.s3.exceptions import S3AccessDeniedError, S3ClientError
    from moto.sts.models import sts_backends
    from moto.sts.responses import TokenResponse

    # Fail fast (instead of silently not enforcing) if the internals patched below moved.
    required = [
        (ac.AssumedRoleAccessKey, "__init__"), (ac.IAMRequest, "_raise_invalid_access_key"),
        (ac.S3IAMRequest, "_raise_invalid_access_key"),
        (ac.IAMRequestBase, "check_action_permitted"),
        (ac.IAMRequestBase, "_check_role_trust_relationship"),
        (ac.IAMRequestBase, "_create_aws_request"),
        (ac, "CreateAccessKeyFailure"), (ac, "IAMPolicy"), (ac, "PermissionResult"),
        (ActionAuthenticatorMixin, "_authenticate_and_authorize_action"),
        (TokenResponse, "assume_role"), (TokenResponse, "assume_role_with_web_identity"),
        (TokenResponse, "assume_role_with_saml"),
    ]
    from moto.core.serialize import S3Serializer
    required.append((S3Serializer, "_serialized_result_to_response"))
    missing = [f"{getattr(o, '__name__', o)}.{n}" for o, n in required if not hasattr(o, n)]
    if missing:
        raise SystemExit(f"s3role_moto: moto internals changed, cannot patch: {missing}")

    class AwsQueryError(HTTPException):
        """An STS/IAM error already in the real awsQuery shape.  moto's call_action catches
        werkzeug HTTPExceptions from both the authorizer and the action methods."""

        def __init__(self, status: int, code: str, message: str, fault: str = "Sender"):
            super().__init__(description=awsquery_error_body(code, message, fault).decode())
            self.code = status
            self.error_code = code

        def get_headers(self, *args, **kwargs):
            return [("Content-Type", "text/xml"), ("X-Amzn-ErrorType", self.error_code)]

        def get_body(self, *args, **kwargs):
            return self.description

    class S3ExpiredTokenError(S3ClientError):
        # Not in moto's S3 error model -> serialized with the default HTTP 400, which is what
        # S3 answers for expired session credentials.
        def __init__(self) -> None:
            super().__init__("ExpiredToken", "The provided token has expired.")

    def session_for_key(account_id: str, access_key_id: str):
        try:
            backend = sts_backends[account_id][PARTITION]
        except KeyError:
            return None
        for s in backend.assumed_roles:
            if s.access_key_id == access_key_id:
                return s
        return None

    # -- P1: expired assumed-role credentials ---------------------------------------------
    # AssumedRoleAccessKey.__init__ locates the session by access key and checks the session
    # token, but never looks at `expiration`.  Raise CreateAccessKeyFailure("ExpiredToken"),
    # which the request classes below turn into the service-specific error.
    orig_arak_init = ac.AssumedRoleAccessKey.__init__

    def arak_init(self, account_id, partition, access_key_id, headers):
        orig_arak_init(self, account_id, partition, access_key_id, headers)
        sess = session_for_key(account_id, access_key_id)
        self._s3role_session = sess
        if sess is not None and utcnow() >= sess.expiration:
            raise ac.CreateAccessKeyFailure(reason="ExpiredToken")

    ac.AssumedRoleAccessKey.__init__ = arak_init

    orig_iam_invalid = ac.IAMRequest._raise_invalid_access_key

    def iam_raise_invalid_access_key(self, reason):
        if reason == "ExpiredToken":  # STS/IAM: 403 ExpiredToken (awsQuery)
            raise AwsQueryError(403, "ExpiredToken",
                                "The security token included in the request is expired")
        return orig_iam_invalid(self, reason)

    ac.IAMRequest._raise_invalid_access_key = iam_raise_invalid_access_key

    orig_s3_invalid = ac.S3IAMRequest._raise_invalid_access_key

    def s3_raise_invalid_access_key(self, reason):
        if reason == "ExpiredToken":  # S3: 400 ExpiredToken (S3 XML error shape)
            raise S3ExpiredTokenError()
        return orig_s3_invalid(self, reason)

    ac.S3IAMRequest._raise_invalid_access_key = s3_raise_invalid_access_key

    # -- P2 + P3: session policies, trust policies, non-existent roles ---------------------
    def role_exists(role_arn: str) -> bool:
        m = ROLE_ARN_RE.match(role_arn or "")
        if not m:
            return False
        try:
            iam_backends[m.group(1)][PARTITION].get_role_by_arn(role_arn)
            return True
        except Exception:
            return False

    def session_policy_docs(sess) -> list:
        """Inline `Policy` plus every managed `PolicyArns` policy of an assumed-role session."""
        docs = []
        if getattr(sess, "policy", None):
            docs.append(sess.policy)
        for arn in getattr(sess, "s3role_policy_arns", None) or []:
            try:
                acct = arn.split(":")[4]
                backend = iam_backends[acct if acct.isdigit() else sess.account_id][PARTITION]
                docs.append(backend.get_policy(arn))
            except Exception:
                docs.append('{"Version":"2012-10-17","Statement":[]}')  # vanished: allows nothing
        return docs

    orig_check_action_permitted = ac.IAMRequestBase.check_action_permitted

    def check_action_permitted(self, resource):
        if self._action == "sts:GetCallerIdentity":  # always allowed (as in AWS and moto)
            return
        # Stock moto lets AssumeRole of a role that does not exist succeed (trust policy is
        # only evaluated for existing roles).  AWS answers AccessDenied.
        if self._action == "sts:AssumeRole" and not role_exists(resource):
            self._raise_access_denied()
        # Identity policies (with explicit Deny winning) + trust policy via the patched
        # _check_role_trust_relationship below.
        orig_check_action_permitted(self, resource)
        # P2: the session's permissions are the intersection of the role's policies and the
        # session policies: every session policy given must allow the action too.
        sess = getattr(self._access_key, "_s3role_session", None)
        if sess is None:
            return
        for doc in session_policy_docs(sess):
            result = ac.IAMPolicy(doc).is_action_permitted(self._action, resource)
            if result != ac.PermissionResult.PERMITTED:
                self._raise_access_denied()

    ac.IAMRequestBase.check_action_permitted = check_action_permitted

    def check_role_trust_relationship(self, role_arn):
        role = self.backend.get_role_by_arn(role_arn)
        data = self._data or {}

        def first(key):
            v = data.get(key)
            if isinstance(v, list):
                return v[0] if v else None
            return v

        caller = self._access_key.arn
        m = ANY_ARN_ACCOUNT_RE.match(caller)
        context = {
            "sts:ExternalId": first("ExternalId"),
            "sts:RoleSessionName": first("RoleSessionName"),
            "aws:PrincipalArn": caller,
            "aws:PrincipalAccount": m.group(1) if m else None,
        }
        return trust_policy_allows(role.assume_role_policy_document, self._action, caller, context)

    ac.IAMRequestBase._check_role_trust_relationship = check_role_trust_relationship

    # -- P8: canonical request built from the raw request URI ---------------------------------
    # moto re-derives the URL it verifies the SigV4 signature against from werkzeug's
    # `request.url`, which has already percent-DECODED part of the path and query ('/', ':',
    # '@', '+', '=', '&', '(', ';', ',', '$', non-ASCII, ...).  botocore then uses that text
    # verbatim as canonical path/query, so under enforcement stock moto answers
    # SignatureDoesNotMatch for ListObjectsV2 with Delimiter="/" and for keys such as
    # "a+b.txt", "x:y@z", "dir/\u00fc.txt".  Rebuild the canonical URI the way S3/STS do: from
    # the raw request target, path segments and query names/values decoded and re-encoded
    # once with the SigV4 unreserved set (what every compliant client signs).
    from urllib.parse import quote, unquote, urlsplit

    orig_create_aws_request = ac.IAMRequestBase._create_aws_request

    def create_aws_request(self):
        request = orig_create_aws_request(self)
        try:
            from flask import has_request_context
            from flask import request as flask_request

            raw = (flask_request.environ.get("RAW_URI") or flask_request.environ.get(
                "REQUEST_URI")) if has_request_context() else None
        except Exception:  # noqa: BLE001
            raw = None
        if not raw:
            return request
        try:
            raw = raw.encode("latin-1").decode("utf-8")  # undo WSGI's latin-1 "dance"
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
        if "://" in raw:  # absolute-form request target
            parts = urlsplit(raw)
            raw = parts.path + ("?" + parts.query if parts.query else "")
        path, _, query = raw.partition("?")
        if isinstance(self, ac.S3IAMRequest):
            # S3 signs the path encoded exactly once ('/' kept); botocore's S3 signer uses
            # the path verbatim.  (Other services: botocore normalizes/encodes it itself.)
            path = quote(unquote(path), safe="/~")
        pairs = []
        for item in query.split("&"):
            if not item:
                continue
            k, _, v = item.partition("=")
            pairs.append(f"{quote(unquote(k), safe='-_.~')}={quote(unquote(v), safe='-_.~')}")
        request.url = path + ("?" + "&".join(pairs) if pairs else "")
        return request

    ac.IAMRequestBase._create_aws_request = create_aws_request

    # -- P4 + P7: unsigned requests ---------------------------------------------------------
    # moto authenticates every action once enforcement is on, reading headers["Authorization"]
    # unconditionally (KeyError -> HTTP 500 for unsigned requests).  AssumeRoleWithWebIdentity
    # and AssumeRoleWithSAML are unsigned by design: let them through (their own handlers below
    # check the token).  Any other unsigned request is refused with a proper 403.
    UNSIGNED_STS_ACTIONS = {"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"}
    orig_authenticate = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def authenticate_and_authorize_action(self, iam_request_cls, resource="*"):
        if isinstance(self, TokenResponse) and self._get_action() in UNSIGNED_STS_ACTIONS:
            return
        enforcing = (ActionAuthenticatorMixin.request_count
                     >= settings.INITIAL_NO_AUTH_ACTION_COUNT)
        if enforcing and "Authorization" not in self.headers:
            if iam_request_cls is ac.S3IAMRequest:
                # Includes presigned URLs (X-Amz-Signature in the query): moto cannot verify
                # them, so they are refused rather than silently allowed.
                raise S3AccessDeniedError()
            raise AwsQueryError(403, "MissingAuthenticationToken",
                                "Request is missing Authentication Token")
        return orig_authenticate(self, iam_request_cls, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authenticate_and_authorize_action

    # moto routes an unsigned request by its body's Action only for the two federation
    # actions; any other unsigned STS/IAM call (e.g. GetCallerIdentity) falls through to S3 and
    # comes back as an S3 error the STS client cannot parse.  Teach the router every STS and
    # IAM Query action so such calls reach their service and get the 403 above.
    import botocore.session
    from moto.moto_server import werkzeug_app

    bc = botocore.session.get_session()
    for svc in ("sts", "iam"):
        for op in bc.get_service_model(svc).operation_names:
            werkzeug_app.UNSIGNED_ACTIONS.setdefault(op, (svc, REGION))

    # -- STS action handlers (P2 PolicyArns, P6 durations, P4 token check, bookkeeping) -------
    SESSION_NAME_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
    EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")

    def parse_policy_arns(resp) -> list[str]:
        """PolicyArns.member.N.arn -- stock moto never reads it."""
        arns: list[tuple[int, str]] = []
        for key, vals in (resp.querystring or {}).items():
            m = re.fullmatch(r"PolicyArns\.member\.(\d+)\.arn", key)
            if m and vals:
                arns.append((int(m.group(1)), vals[0]))
        if arns:
            return [a for _, a in sorted(arns)]
        parsed = resp._get_param("PolicyArns")  # automated parsing: [{"arn": ...}, ...]
        out = []
        for item in _as_list(parsed):
            if isinstance(item, dict):
                item = item.get("arn") or item.get("Arn")
            if item:
                out.append(str(item))
        return out

    def validate_session_policies(policy: str | None, policy_arns: list[str]) -> None:
        if policy is not None:
            try:
                doc = json.loads(policy)
                if not isinstance(doc, dict) or "Statement" not in doc:
                    raise ValueError("no Statement")
            except ValueError as e:
                raise AwsQueryError(400, "MalformedPolicyDocument",
                                    f"The session policy is not valid JSON policy: {e}")
        if len(policy_arns) > 10:
            raise AwsQueryError(400, "ValidationError",
                                "1 validation error detected: policyArns: at most 10 entries")
        for arn in policy_arns:
            parts = arn.split(":")
            try:
                acct = parts[4]
                iam_backends[acct if acct.isdigit() else ACCOUNT][PARTITION].get_policy(arn)
            except Exception:
                raise AwsQueryError(400, "ValidationError",
                                    f"Policy {arn} does not exist or is not attachable.")

    def effective_duration(requested: int) -> int:
        if STATE.force_session_seconds:
            return STATE.force_session_seconds
        return requested

    def annotate(sess, kind: str, policy_arns: list[str]) -> None:
        sess.s3role_kind = kind
        sess.s3role_issued_at = iso_z(utcnow())
        sess.s3role_policy_arns = list(policy_arns)

    def common_params(resp, kind: str):
        session_name = resp._get_param("RoleSessionName")
        if session_name is None or not SESSION_NAME_RE.match(session_name):
            raise AwsQueryError(400, "ValidationError",
                                f"1 validation error detected: Value '{session_name}' at "
                                "'roleSessionName' failed to satisfy constraint: Member must "
                                "have length 2..64 and match [\\w+=,.@-]*")
        duration = resp._get_int_param("DurationSeconds", 3600)
        if duration is None or duration < 1:
            raise AwsQueryError(400, "ValidationError",
                                "1 validation error detected: durationSeconds must be >= 1")
        policy = resp._get_param("Policy")
        policy_arns = parse_policy_arns(resp)
        validate_session_policies(policy, policy_arns)
        return session_name, effective_duration(duration), policy, policy_arns

    def result_for(sess, extra: dict | None = None) -> ActionResult:
        result = {
            "Credentials": sess,
            "AssumedRoleUser": {"AssumedRoleId": sess.user_id, "Arn": sess.arn},
            "PackedPolicySize": 6,
        }
        result.update(extra or {})
        return ActionResult(result)

    def assume_role(self):
        # Authorization (identity policy, trust policy, existence of the role) already ran in
        # call_action before we get here.
        role_arn = self._get_param("RoleArn")
        session_name, duration, policy, policy_arns = common_params(self, "AssumeRole")
        external_id = self._get_param("ExternalId")
        if external_id is not None and not EXTERNAL_ID_RE.match(external_id):
            raise AwsQueryError(400, "ValidationError",
                                "1 validation error detected: externalId must have length "
                                "2..1224 and match [\\w+=,.@:/-]*")
        sess = self.backend.assume_role(region_name=self.region, role_session_name=session_name,
                                        role_arn=role_arn, policy=policy, duration=duration,
                                        external_id=external_id)
        annotate(sess, "AssumeRole", policy_arns)
        return result_for(sess)

    def assume_role_with_web_identity(self):
        role_arn = self._get_param("RoleArn")
        token = self._get_param("WebIdentityToken")
        session_name, duration, policy, policy_arns = common_params(self, "WebIdentity")
        if not token:
            raise AwsQueryError(400, "ValidationError",
                                "1 validation error detected: webIdentityToken is required")
        if STATE.webid_token_file:
            try:
                with open(STATE.webid_token_file, encoding="utf-8") as f:
                    expected = f.read().strip()
            except OSError:
                expected = None
            if not expected or token.strip() != expected:
                raise AwsQueryError(400, "InvalidIdentityToken",
                                    "The web identity token that was passed could not be "
                                    "validated by AWS. Get a new identity token from the "
                                    "identity provider and then retry the request.")
        if not role_exists(role_arn):
            raise AwsQueryError(403, "AccessDenied",
                                "Not authorized to perform sts:AssumeRoleWithWebIdentity")
        sess = self.backend.assume_role_with_web_identity(
            region_name=self.region, role_session_name=session_name, role_arn=role_arn,
            policy=policy, duration=duration, external_id=None)
        annotate(sess, "AssumeRoleWithWebIdentity", policy_arns)
        return result_for(sess, {
            "SubjectFromWebIdentityToken": "s3role-test-subject",
            "Provider": "s3role-test",
            "Audience": "s3role-test",
        })

    def assume_role_with_saml(self):
        role_arn = self._get_param("RoleArn")
        principal_arn = self._get_param("PrincipalArn")
        assertion = self._get_param("SAMLAssertion")
        policy = self._get_param("Policy")
        policy_arns = parse_policy_arns(self)
        validate_session_policies(policy, policy_arns)
        try:
            # The role and session name come from the assertion (moto ignores RoleArn);
            # a malformed assertion is a 500 in stock moto.
            sess = self.backend.assume_role_with_saml(role_arn=role_arn,
                                                      principal_arn=principal_arn,
                                                      saml_assertion=assertion)
        except Exception as e:  # noqa: BLE001
            raise AwsQueryError(400, "InvalidIdentityToken", f"Malformed SAML assertion: {e!r}")
        if not role_exists(sess.role_arn):
            self.backend.assumed_roles.remove(sess)
            raise AwsQueryError(403, "AccessDenied",
                                "Not authorized to perform sts:AssumeRoleWithSAML")
        sess.policy = policy  # moto drops it
        if STATE.force_session_seconds:
            sess.expiration = utcnow() + datetime.timedelta(seconds=STATE.force_session_seconds)
        annotate(sess, "AssumeRoleWithSAML", policy_arns)
        return result_for(sess, {
            "Subject": sess.session_name, "SubjectType": "persistent",
            "Issuer": "http://localhost/idp", "Audience": "https://signin.aws.amazon.com/saml",
            "NameQualifier": "s3role-test",
        })

    TokenResponse.assume_role = assume_role
    TokenResponse.assume_role_with_web_identity = assume_role_with_web_identity
    TokenResponse.assume_role_with_saml = assume_role_with_saml


# ----------------------------------------------------------------------------------------------
# Session listing
# ----------------------------------------------------------------------------------------------
def list_sessions() -> list[dict]:
    from moto.sts.models import sts_backends

    out = []
    now = utcnow()
    accounts = []
    try:
        accounts = list(sts_backends.keys())
    except Exception:  # noqa: BLE001
        pass
    if ACCOUNT not in accounts:
        accounts.append(ACCOUNT)
    for acct in accounts:
        try:
            sessions = list(sts_backends[acct][PARTITION].assumed_roles)
        except Exception:  # noqa: BLE001
            continue
        for s in sessions:
            out.append({
                "kind": getattr(s, "s3role_kind", "AssumeRole"),
                "role_arn": s.role_arn,
                "session_name": s.session_name,
                "external_id": s.external_id,
                "access_key_id": s.access_key_id,
                "issued_at": getattr(s, "s3role_issued_at", None),
                "expiration": iso_z(s.expiration),
                "expired": now >= s.expiration,
                "policy": s.policy,
                "policy_arns": getattr(s, "s3role_policy_arns", []),
            })
    out.sort(key=lambda d: d["issued_at"] or "")
    return out


# ----------------------------------------------------------------------------------------------
# WSGI front: control endpoint, STS outage simulation, STS/IAM error re-shaping
# ----------------------------------------------------------------------------------------------
MODES = ("up", "down", "drop")


def enforcing() -> bool:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def _read_body(environ) -> bytes:
    try:
        n = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        n = 0
    return environ["wsgi.input"].read(n) if n > 0 else b""


def _simple(start_response, status: str, body: bytes, ctype="text/plain"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def drop_connection(environ):
    """Close the client's TCP connection without a response.  The request body is read first
    so the close is a clean FIN, not a reset with unread data.  Raising a ConnectionError makes
    werkzeug treat it as a dropped connection (no traceback, no 500 written)."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionAbortedError("s3role-test: connection dropped on purpose")


class FrontApp:
    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.dispatcher = DomainDispatcherApplication(create_backend_app)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/s3role-test/"):
            return self.control(environ, start_response, path)
        app = self.dispatcher.get_application(environ)
        service = getattr(app, "service", None)
        if service == "sts":
            mode = STATE.sts_mode
            if mode == "down":
                _read_body(environ)
                # STS names the request in a header too; the SDK reads it from there.
                request_id = str(uuid.uuid4())
                body = awsquery_error_body("ServiceUnavailable",
                                           "Service is unavailable (s3role-test sts=down)",
                                           fault="Receiver", request_id=request_id)
                start_response("503 Service Unavailable",
                               [("Content-Type", "text/xml"), ("Content-Length", str(len(body))),
                                ("x-amzn-RequestId", request_id)])
                return [body]
            if mode == "drop":
                _read_body(environ)
                drop_connection(environ)
        if service in ("sts", "iam"):
            return self.reshape_errors(app, service, environ, start_response)
        if service == "s3":
            STATE.s3_requests.append({"method": environ.get("REQUEST_METHOD"), "path": path,
                                      "query": environ.get("QUERY_STRING", ""),
                                      "range": environ.get("HTTP_RANGE")})
        if (service == "s3" and "HTTP_AUTHORIZATION" not in environ and enforcing()
                and environ.get("REQUEST_METHOD") != "OPTIONS"):
            # P7 for S3: moto answers an anonymous request for an existing key with a bare
            # "403" and an empty body before it even reaches the authorizer (and would serve
            # public-read objects anonymously).  Under enforcement every anonymous S3 request
            # (presigned URLs included -- moto cannot verify them) is refused the S3 way.
            _read_body(environ)
            body = b"" if environ.get("REQUEST_METHOD") == "HEAD" else (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                "<Message>Access Denied (anonymous requests are refused under enforcement)"
                f"</Message><RequestId>{uuid.uuid4()}</RequestId></Error>").encode()
            start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    @staticmethod
    def reshape_errors(app, service, environ, start_response):
        """P5: buffer STS/IAM responses (they are small) and re-render error bodies in the
        awsQuery shape the AWS Rust SDK can parse."""
        captured: dict = {}
        chunks: list[bytes] = []

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return chunks.append

        result = app(environ, capture)
        try:
            for chunk in result:
                chunks.append(chunk)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = captured["status"], list(captured["headers"])
        body = b"".join(chunks)
        if int(status.split()[0]) >= 400:
            new = rewrite_awsquery_error(body, service)
            if new is not None:
                body = new
                headers = [(k, v) for k, v in headers
                           if k.lower() not in ("content-length", "content-type")]
                headers.append(("Content-Type", "text/xml"))
        # moto leaks its internal "status" pseudo-header into STS/IAM error responses.
        headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "status")]
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    @staticmethod
    def control(environ, start_response, path):
        method = environ.get("REQUEST_METHOD", "GET")
        if path in ("/s3role-test/sts", "/s3role-test/imds"):
            attr = "sts_mode" if path.endswith("/sts") else "imds_mode"
            if method == "POST":
                mode = _read_body(environ).decode("utf-8", "replace").strip().lower()
                if mode not in MODES:
                    return _simple(start_response, "400 Bad Request",
                                   f"mode must be one of {', '.join(MODES)}\n".encode())
                with STATE.lock:
                    setattr(STATE, attr, mode)
                log.info("control: %s -> %s", attr, mode)
            return _simple(start_response, "200 OK", getattr(STATE, attr).encode())
        if path == "/s3role-test/sessions" and method == "GET":
            return _simple(start_response, "200 OK", json.dumps(list_sessions(), indent=1).encode(),
                           "application/json")
        if path == "/s3role-test/s3-requests" and method == "GET":
            return _simple(start_response, "200 OK", json.dumps(list(STATE.s3_requests)).encode(),
                           "application/json")
        if path == "/s3role-test/world" and method == "GET":
            return _simple(start_response, "200 OK", json.dumps(STATE.world, indent=1).encode(),
                           "application/json")
        return _simple(start_response, "404 Not Found", b"unknown s3role-test endpoint\n")


def make_wsgi_server(port: int, app, quiet: bool):
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Handler(WSGIRequestHandler):
        def log_request(self, code="-", size="-"):
            if not quiet:  # plain text (werkzeug adds ANSI colours even when logging to files)
                self.log("info", '"%s" %s %s', self.requestline, code, size)

    return make_server("127.0.0.1", port, app, threaded=True, request_handler=Handler)


# ----------------------------------------------------------------------------------------------
# IMDSv2 emulator (Appendix A item 7)
# ----------------------------------------------------------------------------------------------
class Imds:
    INSTANCE_ID = "i-0fake0imds0000001"
    # The container credentials endpoint (ECS, EKS Pod Identity) shares the emulator's port.
    CONTAINER_PATH = "/v1/credentials"
    CONTAINER_AUTH_TOKEN = "s3role-test-pod-identity-token"

    @staticmethod
    def container_token() -> str | None:
        """The token the container endpoint wants now: --container-token's file, read
        again for every request, or the fixed one."""
        if not STATE.container_token_file:
            return Imds.CONTAINER_AUTH_TOKEN
        try:
            with open(STATE.container_token_file, encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError:
            return None

    def __init__(self, role: str, duration: int, allow_v1: bool):
        self.role = role
        self.duration = duration
        self.allow_v1 = allow_v1
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.lock = threading.Lock()
        self.current = None  # moto AssumedRole

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/{self.role}"

    def role_exists(self) -> bool:
        from moto.iam.models import iam_backends

        try:
            iam_backends[ACCOUNT][PARTITION].get_role(self.role)
            return True
        except Exception:  # noqa: BLE001
            return False

    def credentials(self):
        """A real moto STS session of the instance role; a new one when less than a third of
        the lifetime remains (real IMDS rotates well before expiry, too)."""
        from moto.sts.models import sts_backends

        with self.lock:
            now = utcnow()
            cur = self.current
            if cur is None or (cur.expiration - now).total_seconds() < self.duration / 3:
                cur = sts_backends[ACCOUNT][PARTITION].assume_role(
                    region_name=REGION, role_session_name=self.INSTANCE_ID,
                    role_arn=self.role_arn, policy=None, duration=self.duration,
                    external_id=None)
                cur.s3role_kind = "IMDS"
                cur.s3role_issued_at = iso_z(now)
                cur.s3role_policy_arns = []
                cur.s3role_last_updated = iso_z(now)
                self.current = cur
            return cur

    def new_token(self, ttl: int) -> str:
        tok = secrets.token_urlsafe(32)
        with self.lock:
            now = time.monotonic()
            self.tokens = {t: e for t, e in self.tokens.items() if e > now}
            self.tokens[tok] = now + ttl
        return tok

    def token_valid(self, tok: str | None) -> bool:
        if not tok:
            return False
        with self.lock:
            exp = self.tokens.get(tok)
        return exp is not None and exp > time.monotonic()

    def make_handler(imds, quiet: bool):  # noqa: N805
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "EC2ws"
            sys_version = ""

            def log_message(self, fmt, *args):
                if not quiet:
                    sys.stderr.write("imds: %s - %s\n" % (self.address_string(), fmt % args))

            def send(self, code: int, body: str | bytes = b"", headers: dict | None = None):
                if isinstance(body, str):
                    body = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def drain(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)

            def outage(self) -> bool:
                mode = STATE.imds_mode
                if mode == "down":
                    self.send(503, "Service Unavailable")
                    return True
                if mode == "drop":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return True
                return False

            def do_PUT(self):
                self.drain()
                if self.outage():
                    return
                if self.path.split("?")[0] != "/latest/api/token":
                    return self.send(404, "Not Found")
                if self.headers.get("X-Forwarded-For"):
                    return self.send(403, "Forbidden")
                ttl_raw = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                try:
                    ttl = int(ttl_raw)
                except (TypeError, ValueError):
                    return self.send(400, "Bad Request: missing or invalid "
                                          "X-aws-ec2-metadata-token-ttl-seconds")
                if not 1 <= ttl <= 21600:
                    return self.send(400, "Bad Request: TTL must be 1..21600")
                tok = imds.new_token(ttl)
                self.send(200, tok, {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})

            def do_GET(self):
                self.drain()
                if self.outage():
                    return
                path = self.path.split("?")[0]
                if path == Imds.CONTAINER_PATH:
                    return self.container_credentials()
                if path == "/latest/api/token":
                    return self.send(405, "Method Not Allowed")
                if not imds.allow_v1 and not imds.token_valid(
                        self.headers.get("X-aws-ec2-metadata-token")):
                    return self.send(401, "Unauthorized")
                return self.metadata(path)

            do_HEAD = do_GET

            def container_credentials(self):
                """The ECS task / EKS Pod Identity agent endpoint: the instance role's
                session for a caller that presents the authorization token."""
                if self.headers.get("Authorization") != Imds.container_token():
                    return self.send(401, json.dumps({"Message": "invalid authorization token"}))
                if not imds.role_exists():
                    return self.send(404, "Not Found")
                s = imds.credentials()
                return self.send(200, json.dumps({
                    "AccessKeyId": s.access_key_id,
                    "SecretAccessKey": s.secret_access_key,
                    "Token": s.session_token,
                    "Expiration": iso_z(s.expiration),
                    "AccountId": ACCOUNT,
                }), {"Content-Type": "application/json"})

            def metadata(self, path: str):
                role = imds.role
                has_role = imds.role_exists()
                now = iso_z(utcnow())
                md = "/latest/meta-data/"
                if path in ("/latest", "/latest/"):
                    return self.send(200, "dynamic\nmeta-data\n")
                if path == md:
                    return self.send(200, "ami-id\nhostname\niam/\ninstance-id\ninstance-type\n"
                                          "local-hostname\nlocal-ipv4\nplacement/")
                simple = {
                    md + "ami-id": "ami-0fake0000000000001",
                    md + "instance-id": Imds.INSTANCE_ID,
                    md + "instance-type": "t3.micro",
                    md + "hostname": "ip-127-0-0-1.ec2.internal",
                    md + "local-hostname": "ip-127-0-0-1.ec2.internal",
                    md + "local-ipv4": "127.0.0.1",
                    md + "placement/": "availability-zone\nregion",
                    md + "placement/region": REGION,
                    md + "placement/availability-zone": REGION + "a",
                }
                if path in simple:
                    return self.send(200, simple[path])
                if path in (md + "iam", md + "iam/"):
                    if not has_role:
                        return self.send(404, "Not Found")
                    return self.send(200, "info\nsecurity-credentials/")
                if path == md + "iam/info":
                    if not has_role:
                        return self.send(404, "Not Found")
                    return self.send(200, json.dumps({
                        "Code": "Success", "LastUpdated": now,
                        "InstanceProfileArn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{role}",
                        "InstanceProfileId": "AIPAFAKE0IMDS0PROFILE",
                    }, indent=2))
                if path == md + "iam/security-credentials" or path == md + "iam/security-credentials/":
                    if not has_role:
                        return self.send(404, "Not Found")
                    return self.send(200, role)
                if path.startswith(md + "iam/security-credentials/"):
                    name = path[len(md + "iam/security-credentials/"):].rstrip("/")
                    if name != role or not has_role:
                        return self.send(404, "Not Found")
                    s = imds.credentials()
                    return self.send(200, json.dumps({
                        "Code": "Success",
                        "LastUpdated": getattr(s, "s3role_last_updated", now),
                        "Type": "AWS-HMAC",
                        "AccessKeyId": s.access_key_id,
                        "SecretAccessKey": s.secret_access_key,
                        "Token": s.session_token,
                        "Expiration": iso_z(s.expiration),
                        "AccountId": ACCOUNT,
                    }, indent=2))
                if path == "/latest/dynamic/instance-identity/document":
                    return self.send(200, json.dumps({
                        "accountId": ACCOUNT, "architecture": "x86_64",
                        "availabilityZone": REGION + "a", "imageId": "ami-0fake0000000000001",
                        "instanceId": Imds.INSTANCE_ID, "instanceType": "t3.micro",
                        "privateIp": "127.0.0.1", "region": REGION, "version": "2017-09-30",
                        "pendingTime": now,
                    }, indent=2))
                return self.send(404, "Not Found")

        return Handler


class QuietThreadingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients hanging up mid-request are normal in tests (and in drop mode).
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout)):
            return
        super().handle_error(request, client_address)


# ----------------------------------------------------------------------------------------------
# Fixture
# ----------------------------------------------------------------------------------------------
def policy(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource, **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def build_fixture(endpoint: str) -> dict:
    """Create the world with enforcement OFF (moto accepts the dummy testing/testing key)."""
    import boto3
    from botocore.config import Config

    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    kw = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
              aws_secret_access_key="testing", config=cfg)
    s3 = boto3.client("s3", **kw)
    iam = boto3.client("iam", **kw)

    buckets = ["data", "other"]
    for b in buckets:
        s3.create_bucket(Bucket=b)

    users = {}
    user_policies = {
        "admin": policy(allow("*", "*")),
        "alice": policy(allow("sts:AssumeRole", "*")),
        "bob": None,
    }
    for name, doc in user_policies.items():
        iam.create_user(UserName=name)
        if doc:
            iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=doc)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users[name] = {"access_key_id": key["AccessKeyId"],
                       "secret_access_key": key["SecretAccessKey"],
                       "arn": f"arn:aws:iam::{ACCOUNT}:user/{name}"}

    def role_arn(n):
        return f"arn:aws:iam::{ACCOUNT}:role/{n}"

    def user_arn(n):
        return f"arn:aws:iam::{ACCOUNT}:user/{n}"

    data_read = [
        allow("s3:ListBucket", "arn:aws:s3:::data"),
        allow("s3:GetObject", "arn:aws:s3:::data/*"),
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/secret/*"},
    ]
    # reader/writer: alice, role chaining from chain-a, and the instance role `imds` (so an
    # instance profile can assume reader, as the fixture description promises), each only with
    # the ExternalId.
    ext_trust = policy({
        "Effect": "Allow",
        "Principal": {"AWS": [user_arn("alice"), role_arn("chain-a"), role_arn("imds")]},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}},
    })
    roles = {
        "reader": (ext_trust, policy(*data_read)),
        "writer": (ext_trust, policy(allow("s3:*", ["arn:aws:s3:::data", "arn:aws:s3:::data/*"]))),
        "noassume": (policy({"Effect": "Allow", "Principal": {"AWS": user_arn("bob")},
                             "Action": "sts:AssumeRole"}),
                     policy(allow("s3:ListBucket", "arn:aws:s3:::data"))),
        "chain-a": (policy({"Effect": "Allow", "Principal": {"AWS": user_arn("alice")},
                            "Action": "sts:AssumeRole"}),
                    policy(allow("sts:AssumeRole", "*"))),
        "imds": (policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                         "Action": "sts:AssumeRole"}),
                 policy(allow("sts:AssumeRole", "*"),
                        allow("s3:ListBucket", "arn:aws:s3:::data"),
                        allow("s3:GetObject", "arn:aws:s3:::data/*"))),
        # Informational only: web identity calls are not trust-checked by the launcher.
        # It reads the data bucket and writes under k8s/ (the pod of packaging/kubernetes/).
        "webid": (policy({"Effect": "Allow",
                          "Principal": {"Federated": "s3role-test-oidc"},
                          "Action": "sts:AssumeRoleWithWebIdentity"}),
                  policy(*data_read,
                         allow(["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                               "arn:aws:s3:::data/k8s/*"))),
    }
    for name, (trust, perms) in roles.items():
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
        iam.put_role_policy(RoleName=name, PolicyName=f"{name}-permissions", PolicyDocument=perms)

    public = iam.create_policy(PolicyName="data-public-only", PolicyDocument=policy(
        allow("s3:ListBucket", "arn:aws:s3:::data"),
        allow("s3:GetObject", "arn:aws:s3:::data/public/*"),
    ))["Policy"]["Arn"]

    return {
        "users": users,
        "roles": {n: role_arn(n) for n in roles},
        "policies": {"data-public-only": public},
        "buckets": buckets,
    }


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------
def write_atomically(path: str, data: dict) -> None:
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="main port (0 = free port)")
    p.add_argument("--world-out", metavar="PATH", help="write the world JSON here when ready")
    p.add_argument("--force-session-seconds", type=int, metavar="N",
                   help="every STS session lasts N seconds, whatever DurationSeconds says")
    p.add_argument("--container-token", metavar="FILE",
                   help="the container endpoint accepts only the token in FILE (re-read)")
    p.add_argument("--webid-token", metavar="FILE",
                   help="only this (stripped, re-read per call) web identity token is valid")
    p.add_argument("--imds-port", type=int, metavar="N",
                   help="start the IMDSv2 emulator on N (0 = free port)")
    p.add_argument("--imds-role", default="imds", metavar="NAME", help="IMDS role (imds)")
    p.add_argument("--imds-duration", type=int, default=300, metavar="S",
                   help="IMDS credential lifetime in s (300), rotated below S/3")
    p.add_argument("--imds-allow-v1", action="store_true", help="IMDS GETs without a token")
    p.add_argument("--fixture", dest="fixture", action="store_true", default=True,
                   help="build the test world (default)")
    p.add_argument("--no-fixture", dest="fixture", action="store_false")
    p.add_argument("--no-enforce", action="store_true", help="leave IAM enforcement off")
    p.add_argument("--quiet", action="store_true", help="no request logs")
    p.add_argument("--ignore-moto-version", action="store_true")
    a = p.parse_args(argv)
    if a.force_session_seconds is not None and a.force_session_seconds < 1:
        p.error("--force-session-seconds must be >= 1")
    if a.imds_duration < 3:
        p.error("--imds-duration must be >= 3")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="s3role_moto: %(message)s", stream=sys.stderr)
    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

    start = time.monotonic()
    parent = os.getppid()
    if args.world_out:
        try:
            os.unlink(args.world_out)  # never let a poller see a stale world
        except FileNotFoundError:
            pass

    import moto
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    if moto.__version__ != MOTO_VERSION and not args.ignore_moto_version:
        print(f"s3role_moto: moto {moto.__version__} found, the patches target {MOTO_VERSION} "
              f"(pip install 'moto[server]=={MOTO_VERSION}' or --ignore-moto-version)",
              file=sys.stderr)
        return 2

    STATE.force_session_seconds = args.force_session_seconds
    STATE.webid_token_file = os.path.abspath(args.webid_token) if args.webid_token else None
    STATE.container_token_file = (os.path.abspath(args.container_token)
                                  if args.container_token else None)

    # Enforcement off while the fixture is built.
    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    ActionAuthenticatorMixin.request_count = 0
    install_patches()
    patch_s3_result_roots()

    server = make_wsgi_server(args.port, FrontApp(), args.quiet)
    port = server.server_address[1]
    endpoint = f"http://127.0.0.1:{port}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="moto",
                     daemon=True).start()

    imds_server = None
    imds_endpoint = None
    if args.imds_port is not None:
        imds = Imds(args.imds_role, args.imds_duration, args.imds_allow_v1)
        imds_server = QuietThreadingHTTPServer(("127.0.0.1", args.imds_port),
                                               imds.make_handler(args.quiet))
        imds_endpoint = f"http://127.0.0.1:{imds_server.server_address[1]}"
        threading.Thread(target=imds_server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="imds", daemon=True).start()

    world = {
        "endpoint": endpoint,
        "region": REGION,
        "account": ACCOUNT,
        "imds_endpoint": imds_endpoint,
        "imds_role": args.imds_role if imds_endpoint else None,
        "container_credentials_uri": imds_endpoint + Imds.CONTAINER_PATH if imds_endpoint else None,
        "container_auth_token": Imds.CONTAINER_AUTH_TOKEN if imds_endpoint else None,
        "external_id": EXTERNAL_ID,
        "users": {},
        "roles": {},
        "policies": {},
        "buckets": [],
        "force_session_seconds": args.force_session_seconds,
        "webid_token_file": STATE.webid_token_file,
        "control": {"sts": endpoint + "/s3role-test/sts",
                    "imds": endpoint + "/s3role-test/imds",
                    "sessions": endpoint + "/s3role-test/sessions"},
        "enforcing": not args.no_enforce,
        "pid": os.getpid(),
    }
    if args.fixture:
        world.update(build_fixture(endpoint))

    if not args.no_enforce:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
    STATE.world = world
    if args.world_out:
        write_atomically(args.world_out, world)
    log.warning("ready in %.1fs: endpoint=%s imds=%s world=%s", time.monotonic() - start,
                endpoint, imds_endpoint, args.world_out)

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_signal)

    # Exit when the parent dies (a crashed test must not leave servers behind).
    while not stop.wait(0.5):
        if os.getppid() != parent:
            log.warning("parent process %d went away: shutting down", parent)
            break

    server.shutdown()
    if imds_server is not None:
        imds_server.shutdown()
    if args.world_out:
        try:
            with open(args.world_out, encoding="utf-8") as f:
                mine = json.load(f).get("pid") == os.getpid()
        except (OSError, ValueError):
            mine = False
        if mine:
            os.unlink(args.world_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
