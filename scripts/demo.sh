#!/usr/bin/env bash
# Mounts a demo bucket through an assumed role, with no AWS account needed: starts the local
# S3+STS+IAM server (moto with IAM enforcement) on a free port, fills bucket "data" with a
# few files, and mounts prefix "demo/" through role "reader", whose trust policy demands the
# external ID "ext-123". Ctrl-C unmounts and stops everything.
#
#   scripts/demo.sh [MOUNTPOINT]        (default: ./demo-mnt)
set -euo pipefail
cd "$(dirname "$0")/.."
MNT=${1:-demo-mnt}
mkdir -p "$MNT"
STATE=$(mktemp -d)
cleanup() {
    fusermount3 -u "$MNT" 2>/dev/null || true
    [[ -n ${SERVER_PID:-} ]] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$STATE"
}
trap cleanup EXIT

python3 -c 'import moto' 2>/dev/null || pip install -q 'moto[server]==5.2.1'
echo "building s3role (the first build takes a few minutes)..."
cargo build --release --quiet --bin s3role

python3 scripts/testserver/s3role_moto.py --port 0 --quiet --world-out "$STATE/world.json" &
SERVER_PID=$!
for _ in $(seq 1 100); do [[ -s $STATE/world.json ]] && break; sleep 0.2; done
[[ -s $STATE/world.json ]] || { echo "the demo server did not start" >&2; exit 1; }

# Fill the bucket as the admin user; print the settings for the mount.
eval "$(python3 - "$STATE/world.json" <<'PY'
import json, sys, boto3
w = json.load(open(sys.argv[1]))
a = w["users"]["admin"]
s3 = boto3.client("s3", endpoint_url=w["endpoint"], region_name=w["region"],
                  aws_access_key_id=a["access_key_id"], aws_secret_access_key=a["secret_access_key"])
put = lambda k, body, **meta: s3.put_object(Bucket="data", Key=k, Body=body, Metadata=meta)
put("demo/README.txt", b"Mounted through role 'reader' with external ID ext-123.\n")
put("demo/tables/sales.csv", b"region,amount\nnorth,10\nsouth,32\n", mode="33188", uid="1000", gid="1000", mtime="1700000000")
put("demo/tables/empty-dir/", b"", mode="16877")
put("demo/tools/run.sh", b"#!/bin/sh\necho hello from S3\n", mode="33261")
put("demo/big.bin", bytes(range(256)) * 65536)
u = w["users"]["alice"]
print(f'EP={w["endpoint"]} REGION={w["region"]} ROLE={w["roles"]["reader"]} EXT={w["external_id"]}')
print(f'export AWS_ACCESS_KEY_ID={u["access_key_id"]} AWS_SECRET_ACCESS_KEY={u["secret_access_key"]}')
PY
)"
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

echo
echo "Mounting s3://data/demo/ on $MNT as user alice through $ROLE (external ID $EXT)."
echo "Try in another terminal:  ls -l $MNT $MNT/tables; cat $MNT/tables/sales.csv"
echo "Ctrl-C to unmount."
echo
./target/release/s3role mount data:/demo "$MNT" -f \
    --endpoint-url "$EP" --sts-endpoint "$EP" --path-style --region "$REGION" \
    --role-arn "$ROLE" --external-id "$EXT" --role-session-name demo
