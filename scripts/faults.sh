#!/usr/bin/env bash
# Faults run: one mount whose S3 misbehaves, ordinary file work for a long time, every result
# checked. It shows that throttling, server errors, torn connections, short bodies and silent
# requests cost no operation and no byte.
#
#   scripts/faults.sh               (FAULTS_SECONDS=600: 10 minutes)
#
# Starts the local S3+STS+IAM server (scripts/testserver/s3role_moto.py) with role sessions
# cut to SESSION_SECONDS, and the fault proxy (scripts/testserver/faultproxy.py) in front of
# it. S3 requests through the proxy fail at FAULT_RATE in all, in these shares: 30% 503
# SlowDown, 20% 500 InternalError, 17% reset while sending the request, 17% reset while
# answering, 15% truncated GET bodies (other requests drawn for this pass), 1% never answered
# (S3 stalls: --request-timeout 10 gives up on them after 10 s, and the request is tried
# again). STS is not faulted.
# It mounts data:/faults through role `writer` with a 64 MiB block cache and runs
# scripts/faults_workload.py: writes of 0 B to 20 MiB read back and compared, stats,
# listings, renames of files and directories, appends, deletes, random reads of a 32 MiB
# object. At the end it compares what S3 holds (read directly, not through the proxy) with
# what the workload wrote.
#
# Settings (environment): FAULTS_SECONDS=600 FAULT_RATE=0.10 SESSION_SECONDS=60 SEED=1
#   S3ROLE=path (a built binary; default: build the release one) KEEP=1 keeps the work
#   directory (server, proxy and s3role logs, the workload's result and its trace of every
#   operation).
# Needs: cargo, python3 with boto3 and moto[server]==5.2.1, fusermount3.
# Exit status: 0 when no operation failed, no byte was wrong, and S3 holds what was written.
set -euo pipefail
cd "$(dirname "$0")/.."

FAULTS_SECONDS=${FAULTS_SECONDS:-600}
FAULT_RATE=${FAULT_RATE:-0.10}
SESSION_SECONDS=${SESSION_SECONDS:-60}
SEED=${SEED:-1}
WORK=$(mktemp -d)
MNT=$WORK/mnt
SERVER_PID= PROXY_PID= MOUNT_PID=
cleanup() {
    fusermount3 -u "$MNT" 2>/dev/null || true
    [[ -n $MOUNT_PID ]] && wait "$MOUNT_PID" 2>/dev/null || true
    [[ -n $PROXY_PID ]] && kill "$PROXY_PID" 2>/dev/null || true
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
log() { echo "== $*" >&2; }

if [[ -z ${S3ROLE:-} ]]; then
    cargo build --release --quiet --bin s3role
    S3ROLE=$PWD/target/release/s3role
fi

# shellcheck source=testserver/start.sh
source scripts/testserver/start.sh
testserver_start "$WORK/world.json" "$WORK/server.log" --force-session-seconds "$SESSION_SECONDS"
eval "$(testserver_settings "$WORK/world.json" writer)"

FAULTS=$(python3 -c '
import json, sys
rate = float(sys.argv[1])
shares = {"slowdown": .30, "internal": .20, "reset_request": .17, "reset_response": .17,
          "truncate": .15, "stall": .01}
print(json.dumps({"s3": {k: round(rate * v, 6) for k, v in shares.items()}}))' "$FAULT_RATE")
python3 scripts/testserver/faultproxy.py --upstream "$EP" --port-file "$WORK/proxy.json" \
    --seed "$SEED" --faults "$FAULTS" --quiet 2>"$WORK/proxy.log" &
PROXY_PID=$!
for _ in $(seq 1 100); do [[ -s $WORK/proxy.json ]] && break; sleep 0.1; done
PX=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$WORK/proxy.json")

# A 32 MiB object to read at random, and the seed that made it, put directly.
testserver_put_big faults
testserver_as_alice

mkdir "$MNT"
log "mounting data:/faults through $PX ($FAULTS); sessions last ${SESSION_SECONDS}s; running ${FAULTS_SECONDS}s"
testserver_mount data:/faults "$MNT" "$WORK/s3role.log" --endpoint-url "$PX" --sts-endpoint "$PX" \
    --path-style --region "$REGION" --role-arn "$ROLE" --external-id "$EXT" \
    --role-session-name faults --cache-size 64M --request-timeout 10

start=$(date +%s)
FAULTS_TRACE=$WORK/trace.txt python3 scripts/faults_workload.py "$MNT" "$FAULTS_SECONDS" >"$WORK/result.json"
elapsed=$(($(date +%s) - start))
renewals=$("$S3ROLE" status "$MNT" 2>/dev/null | awk '$1 == "renewals" { print $2 }')
curl -s "$PX/faultproxy/state" >"$WORK/proxy-state.json"
# What S3 holds is checked without faults, after the mount has finished every upload.
fusermount3 -u "$MNT"
wait "$MOUNT_PID" || true
MOUNT_PID=

python3 - "$WORK/result.json" "$WORK/proxy-state.json" "$elapsed" "${renewals:-0}" \
    "$EP" "$REGION" "$ADMIN_AK" "$ADMIN_SK" <<'PY'
import hashlib, json, sys, boto3
result, state = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
elapsed, renewals = int(sys.argv[3]), int(sys.argv[4] or 0)
ep, region, ak, sk = sys.argv[5:9]
s3 = boto3.client("s3", endpoint_url=ep, region_name=region,
                  aws_access_key_id=ak, aws_secret_access_key=sk)
held = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="data", Prefix="faults/"):
    for o in page.get("Contents", []):
        key = o["Key"][len("faults/"):]
        if key not in ("big.bin", "big.seed"):
            held[key] = hashlib.md5(s3.get_object(Bucket="data", Key=o["Key"])["Body"].read()).hexdigest()
want = dict(result["files"])
want.update({d + "/": hashlib.md5(b"").hexdigest() for d in result["dirs"]})
differ = sorted(k for k in set(held) | set(want) if held.get(k) != want.get(k))
injected = state["injected"]["s3"]
total = sum(injected.values())
requests = state["requests"]["s3"]
print(f"faults: {elapsed} s, {result['rounds']} rounds, {result['ops']} operations "
      f"({', '.join(f'{k} {v}' for k, v in sorted(result['by_op'].items()))})")
print(f"  injected into {requests} S3 requests: {total} faults ({100 * total / max(requests, 1):.1f}%): "
      + ", ".join(f"{k} {v}" for k, v in injected.items()))
print(f"  STS requests: {state['requests']['sts']}; renewals: {renewals}")
print(f"  failed operations: {result['failed']}")
print(f"  wrong bytes: {result['wrong']}")
print(f"  S3 holds what was written: {'yes' if not differ else 'no'} "
      f"({len(want)} objects expected, {len(held)} held"
      + (f"; differ: {', '.join(differ[:10])}" if differ else "") + ")")
for e in result["first_errors"]:
    print(f"  error: {e}")
if differ:
    # What S3 saw for those keys, oldest first (the server logs every S3 request).
    import urllib.request
    seen = json.load(urllib.request.urlopen(ep + "/s3role-test/s3-requests"))
    for k in differ[:5]:
        path = "/data/faults/" + k
        print(f"  requests for {k}: " + ", ".join(
            f"{r['method']}{'?' + r['query'] if r['query'] else ''}" for r in seen if r["path"] == path))
sys.exit(0 if result["failed"] == 0 and result["wrong"] == 0 and not differ else 1)
PY
