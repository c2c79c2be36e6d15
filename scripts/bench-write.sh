#!/usr/bin/env bash
# Write benchmark of s3role against a fast local S3 server, in one run:
#   (a) a direct parallel multipart upload of BIG_MIB MiB (examples/direct_put.rs, on
#       s3role's own store layer, from memory),
#   (b) a sequential write of the same size through a mount (dd from a tmpfs file, bs=1M,
#       timed to the end of close, which is when the object exists),
#   (c) their ratio (target: mount >= 0.8 x direct), from the medians of RUNS alternating
#       runs, in two settings: pinned (server on CPU 0, clients on the others) and shared
#       (see write_phase below); the headline is pinned,
#   (d) the create rate: NFILES files of 4 KiB written and closed one after another,
#   (e) what the write-access check costs: the first create in a directory after a remount
#       (it asks S3 whether the role may write there) against the creates after it.
# The server, the mount and every file are removed on exit.
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
PIN=()

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
        "${PIN[@]}" "$S3ROLE" mount "$BUCKET" "$MNT" -f --endpoint-url "$S3_ENDPOINT" --path-style --region us-east-1 \
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
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

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

# ---- (a)-(c) sequential writes: direct upload and mount, alternating --------------------
# Two settings, as in bench-read.sh: pinned (the server on CPU 0, the clients on the other
# CPUs, so the question is whether the mount keeps up with what the server accepts, as it
# would with S3 on other machines) and shared (everything on every core, so the CPU each
# client spends per byte counts too). The headline ratio is the pinned one.
PIN=()
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
# cpu_gib START_TICKS END_TICKS: CPU seconds per GiB written.
cpu_gib() { python3 -c "print(f'{($2 - $1) / $HZ / $BIG_MIB * 1024:.2f}')"; }

# write_phase NAME: RUNS pairs; stores the summary lines in SUMMARY_<NAME>, the ratio of the
# medians in RATIO_<NAME>.
write_phase() {
    local name=$1 run out start end rate s0 s1 m0 m1 c
    local direct=() mounted=() direct_cpu="" mount_cpu=""
    mount_s3role
    for run in $(seq 1 "$RUNS"); do
        s0=$(ticks "$BENCH_SERVER_PID")
        c=$( { /usr/bin/time -f "%U %S" "${PIN[@]}" "$DIRECT" "$S3_ENDPOINT" "$BUCKET" "direct-$run" "$BIG_MIB" >"$WORK/direct.out"; } 2>&1 | tail -1)
        s1=$(ticks "$BENCH_SERVER_PID")
        out=$(cat "$WORK/direct.out")
        log "$name: direct upload run $run: $out"
        direct+=("$(sed -n 's/.*mib_per_s=\([0-9.]*\).*/\1/p' <<<"$out")")
        direct_cpu="client $(python3 -c "print(f'{sum(map(float, \"$c\".split())) / $BIG_MIB * 1024:.2f}')") s, server $(cpu_gib "$s0" "$s1") s"

        s0=$(ticks "$BENCH_SERVER_PID") m0=$(ticks "$MOUNT_PID")
        start=$(date +%s.%N)
        "${PIN[@]}" dd if="$SRC" of="$MNT/big-$run" bs=1M status=none
        end=$(date +%s.%N)
        s1=$(ticks "$BENCH_SERVER_PID") m1=$(ticks "$MOUNT_PID")
        rate=$(python3 -c "print(f'{$BIG_MIB / ($end - $start):.1f}')")
        log "$name: mount write run $run: $rate MiB/s (dd to the end of close)"
        mounted+=("$rate")
        mount_cpu="s3role $(cpu_gib "$m0" "$m1") s, server $(cpu_gib "$s0" "$s1") s"
    done
    cmp -s "$SRC" "$MNT/big-1" || { echo "the written object differs from its source" >&2; exit 1; }
    rm -f "$MNT"/big-* "$MNT"/direct-* # the server's data is on tmpfs
    unmount
    local dmed mmed dbest mbest ratio
    dmed=$(printf '%s\n' "${direct[@]}" | median) mmed=$(printf '%s\n' "${mounted[@]}" | median)
    dbest=$(printf '%s\n' "${direct[@]}" | best) mbest=$(printf '%s\n' "${mounted[@]}" | best)
    ratio=$(python3 -c "print(f'{$mmed / $dmed:.2f}')")
    printf -v "RATIO_$name" '%s' "$ratio"
    printf -v "SUMMARY_$name" '%s\n' \
        "  direct multipart upload:  ${direct[*]} -> median $dmed, best $dbest MiB/s" \
        "  write through the mount:  ${mounted[*]} -> median $mmed, best $mbest MiB/s (to the end of close)" \
        "  ratio mount / direct:     $ratio (medians), $(python3 -c "print(f'{$mbest / $dbest:.2f}')") (bests)" \
        "  CPU per GiB (last runs):  direct: $direct_cpu; mount: $mount_cpu"
}

NCPU=$(nproc)
if ((NCPU >= 2)); then
    bench_server_pin 0
    PIN=(taskset -c "1-$((NCPU - 1))")
    write_phase pinned
    bench_server_pin "0-$((NCPU - 1))"
    PIN=()
fi
write_phase shared
if ((NCPU >= 2)); then RATIO=$RATIO_pinned HEADLINE=pinned; else RATIO=$RATIO_shared HEADLINE=shared; fi

# ---- (d) create rate ------------------------------------------------------------------------
mount_s3role
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

# ---- (e) what the write-access check costs a create ----------------------------------------
# The first create in a directory this mount has not written to asks S3 whether the role may
# write there (a multipart upload started and aborted); the answer holds for a minute. After
# a remount, time that first create against the ones after it.
mount_s3role
PROBE=$(python3 - "$MNT/small" <<'PY'
import os, statistics, sys, time
d = sys.argv[1]
data = os.urandom(4096)
def create(name):
    t = time.perf_counter()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    return (time.perf_counter() - t) * 1000
first = create("probe-first")
rest = [create(f"probe-{i:03}") for i in range(100)]
print(f"{first:.1f} ms, then a median of {statistics.median(rest):.1f} ms")
PY
)
unmount

VERDICT=$(python3 -c "print('meets the 0.8 target' if $RATIO >= 0.8 else 'BELOW the 0.8 target')")
cat <<EOF2

==== s3role write benchmark ($BENCH_SERVER on 127.0.0.1, $NCPU cores, ${BIG_MIB} MiB, $RUNS runs each) ====
pinned (server on CPU 0, clients on the others):
${SUMMARY_pinned:-  (single core: not run)
}shared (server and clients on every core):
${SUMMARY_shared}ratio:                       $RATIO ($HEADLINE, medians): $VERDICT
create rate, $NFILES files of 4 KiB:  $CREATE files/s ($COUNT listed afterwards)
first create in a directory after a remount (write-access check): $PROBE
EOF2
