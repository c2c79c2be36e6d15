#!/usr/bin/env bash
# Write benchmark of s3role against a fast local S3 server, in one run:
#   (a) a direct parallel multipart upload of BIG_MIB MiB (examples/direct_put.rs, on
#       s3role's own store layer, from memory),
#   (b) a sequential write of the same size through a mount (dd from a tmpfs file, bs=1M,
#       timed to the end of close, which is when the object exists),
#   (c) their ratio (target: mount >= 0.8 x direct),
#   (d) the create rate: NFILES files of 4 KiB written and closed one after another.
# Figures are best of RUNS. The server, the mount and every file are removed on exit.
#
#   scripts/bench-write.sh
#
# Settings (environment): BENCH_SERVER=seaweedfs|s3s-fs (see scripts/bench-server.sh),
# BIG_MIB=1024 NFILES=1000 RUNS=3 MOUNT_OPTS="..." SKIP_BUILD=1 KEEP=1
set -euo pipefail
cd "$(dirname "$0")/.."

BIG_MIB=${BIG_MIB:-1024}
NFILES=${NFILES:-1000}
RUNS=${RUNS:-3}
MOUNT_OPTS=${MOUNT_OPTS:-}
export BENCH_SERVER=${BENCH_SERVER:-seaweedfs}
BUCKET=benchw
S3ROLE=target/release/s3role
DIRECT=target/release/examples/direct_put

WORK=$(mktemp -d /tmp/s3role-benchw.XXXXXX)
MNT=$WORK/mnt
mkdir "$MNT"
SRC=$(mktemp "${BENCH_TMPFS:-/dev/shm}/s3role-benchw-src.XXXXXX")
MOUNT_PID=

# shellcheck source=scripts/bench-server.sh
source scripts/bench-server.sh

cleanup() {
    unmount || true
    bench_server_stop || true
    rm -f "$SRC"
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

log() { echo "[bench-write] $*" >&2; }

mount_s3role() {
    # shellcheck disable=SC2086
    AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        "$S3ROLE" mount "$BUCKET" "$MNT" -f --endpoint-url "$S3_ENDPOINT" --path-style --region us-east-1 \
        --staging-dir "$WORK" $MOUNT_OPTS >"$WORK/s3role.log" 2>&1 &
    MOUNT_PID=$!
    for _ in $(seq 1 200); do
        if grep -q " $MNT " /proc/self/mountinfo; then return 0; fi
        if ! kill -0 "$MOUNT_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    echo "s3role did not mount; its log:" >&2
    cat "$WORK/s3role.log" >&2
    exit 1
}

unmount() {
    if grep -q " $MNT " /proc/self/mountinfo 2>/dev/null; then fusermount3 -u "$MNT"; fi
    if [[ -n $MOUNT_PID ]]; then wait "$MOUNT_PID" 2>/dev/null || true; MOUNT_PID=; fi
}

best() { sort -g | tail -1; }

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building (release)"
    cargo build --release --quiet --bin s3role --example direct_put
fi
bench_server_start
python3 - "$S3_ENDPOINT" "$BUCKET" <<'PY'
import sys, boto3, os
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
s3.create_bucket(Bucket=sys.argv[2])
PY
head -c $((BIG_MIB << 20)) /dev/urandom >"$SRC"

# ---- (a) direct multipart upload ------------------------------------------------------------
direct=()
for run in $(seq 1 "$RUNS"); do
    out=$("$DIRECT" "$S3_ENDPOINT" "$BUCKET" "direct-$run" "$BIG_MIB")
    log "direct upload run $run: $out"
    direct+=("$(sed -n 's/.*mib_per_s=\([0-9.]*\).*/\1/p' <<<"$out")")
done
DIRECT_BEST=$(printf '%s\n' "${direct[@]}" | best)

# ---- (b) sequential write through the mount -------------------------------------------------
mount_s3role
mounted=()
for run in $(seq 1 "$RUNS"); do
    start=$(date +%s.%N)
    dd if="$SRC" of="$MNT/big-$run" bs=1M status=none
    end=$(date +%s.%N)
    rate=$(python3 -c "print(f'{$BIG_MIB / ($end - $start):.1f}')")
    log "mount write run $run: $rate MiB/s (dd to the end of close)"
    mounted+=("$rate")
done
MOUNT_BEST=$(printf '%s\n' "${mounted[@]}" | best)
cmp -s "$SRC" "$MNT/big-1" || { echo "the written object differs from its source" >&2; exit 1; }

# ---- (d) create rate ------------------------------------------------------------------------
mkdir "$MNT/small"
CREATE=$(python3 - "$MNT/small" "$NFILES" <<'PY'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
data = os.urandom(4096)
t = time.time()
for i in range(n):
    with open(os.path.join(d, f"f{i:05}"), "wb") as f:
        f.write(data)
print(f"{n / (time.time() - t):.1f}")
PY
)
COUNT=$(find "$MNT/small" -type f | wc -l)
unmount

RATIO=$(python3 -c "print(f'{$MOUNT_BEST / $DIRECT_BEST:.2f}')")
cat <<EOF2

==== s3role write benchmark ($BENCH_SERVER on 127.0.0.1, $(nproc) cores) ====
direct multipart upload, ${BIG_MIB} MiB:   $DIRECT_BEST MiB/s (best of $RUNS)
sequential write through the mount:  $MOUNT_BEST MiB/s (best of $RUNS, to the end of close)
ratio mount / direct:                 $RATIO (target >= 0.8)
create rate, $NFILES files of 4 KiB:  $CREATE files/s ($COUNT listed afterwards)
EOF2
