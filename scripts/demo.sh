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

# shellcheck source=testserver/start.sh
source scripts/testserver/start.sh
testserver_start "$STATE/world.json" "$STATE/server.log"
eval "$(testserver_settings "$STATE/world.json" reader)"

# Fill the bucket as the admin user.
python3 - "$EP" "$REGION" "$ADMIN_AK" "$ADMIN_SK" <<'PY'
import sys, boto3
ep, region, ak, sk = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=ep, region_name=region,
                  aws_access_key_id=ak, aws_secret_access_key=sk)
put = lambda k, body, **meta: s3.put_object(Bucket="data", Key=k, Body=body, Metadata=meta)
put("demo/README.txt", b"Mounted through role 'reader' with external ID ext-123.\n")
put("demo/tables/sales.csv", b"region,amount\nnorth,10\nsouth,32\n", mode="33188", uid="1000", gid="1000", mtime="1700000000")
put("demo/tables/empty-dir/", b"", mode="16877")
put("demo/tools/run.sh", b"#!/bin/sh\necho hello from S3\n", mode="33261")
put("demo/big.bin", bytes(range(256)) * 65536)
PY
testserver_as_alice

echo
echo "Mounting s3://data/demo/ on $MNT as user alice through $ROLE (external ID $EXT)."
echo "Try in another terminal:  ls -l $MNT $MNT/tables; cat $MNT/tables/sales.csv"
echo "Ctrl-C to unmount."
echo
./target/release/s3role mount data:/demo "$MNT" -f \
    --endpoint-url "$EP" --sts-endpoint "$EP" --path-style --region "$REGION" \
    --role-arn "$ROLE" --external-id "$EXT" --role-session-name demo
