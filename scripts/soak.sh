#!/usr/bin/env bash
# Soak test: one mount, short role sessions, ordinary file work for a long time. It shows
# what months of running look like in minutes: the session renews many times, no operation
# fails, and the daemon's memory, file descriptors and threads stay flat.
#
#   scripts/soak.sh                 (SOAK_SECONDS=1200: 20 minutes, about 40 renewals)
#
# Starts the local S3+STS+IAM server (scripts/testserver/s3role_moto.py) on a free port with
# every role session cut to SESSION_SECONDS, mounts data:/soak through role `writer` (user
# alice, external ID) with a 64 MiB block cache, and runs scripts/soak_workload.py on it:
# writes of 0 B to 9 MiB (multipart) read back and compared, stats, listings, renames,
# appends, random reads of a 32 MiB object, deletes. Every SAMPLE_SECONDS it records the
# daemon's resident memory, open descriptors and threads, and from `s3role status` its heap
# in use, renewals, inodes and cached attributes. The summary compares memory after the warm-up (the first quarter, when
# the cache and the pools have filled) with the end, as growth per hour.
#
# Settings (environment): SOAK_SECONDS=1200 SESSION_SECONDS=30 SAMPLE_SECONDS=15
#   KEEP=1 keeps the work directory (server and s3role logs, samples.tsv).
# Needs: cargo, python3 with boto3 and moto[server]==5.2.1, fusermount3.
# Exit status: 0 when every operation succeeded and the session renewed; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECONDS=${SOAK_SECONDS:-1200}
SESSION_SECONDS=${SESSION_SECONDS:-30}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-15}
WORK=$(mktemp -d)
MNT=$WORK/mnt
SERVER_PID= MOUNT_PID= LOAD_PID=
cleanup() {
    [[ -n $LOAD_PID ]] && kill "$LOAD_PID" 2>/dev/null || true
    fusermount3 -u "$MNT" 2>/dev/null || true
    [[ -n $MOUNT_PID ]] && wait "$MOUNT_PID" 2>/dev/null || true
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
log() { echo "== $*" >&2; }

cargo build --release --quiet --bin s3role
S3ROLE=$PWD/target/release/s3role

# shellcheck source=testserver/start.sh
source scripts/testserver/start.sh
testserver_start "$WORK/world.json" "$WORK/server.log" --force-session-seconds "$SESSION_SECONDS"
eval "$(testserver_settings "$WORK/world.json" writer)"

# A 32 MiB object to read at random, and the seed that made it, for the workload's checks.
testserver_put_big soak
testserver_as_alice

mkdir "$MNT"
log "mounting data:/soak through $ROLE; sessions last ${SESSION_SECONDS}s; running ${SOAK_SECONDS}s"
testserver_mount data:/soak "$MNT" "$WORK/s3role.log" --endpoint-url "$EP" --sts-endpoint "$EP" \
    --path-style --region "$REGION" --role-arn "$ROLE" --external-id "$EXT" \
    --role-session-name soak --cache-size 64M

python3 scripts/soak_workload.py "$MNT" "$SOAK_SECONDS" >"$WORK/result.json" &
LOAD_PID=$!

field() { awk -v k="$1" '$1 == k { $1 = ""; sub(/^ +/, ""); print }' <<<"$STATUS"; }
printf 'secs\trss_kib\theap_kib\tfds\tthreads\trenewals\tinodes\tattributes\n' >"$WORK/samples.tsv"
start=$(date +%s)
while kill -0 "$LOAD_PID" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$MOUNT_PID/status")
    fds=$(ls "/proc/$MOUNT_PID/fd" | wc -l)
    threads=$(awk '/^Threads/ { print $2 }' "/proc/$MOUNT_PID/status")
    STATUS=$("$S3ROLE" status "$MNT" 2>/dev/null || true)
    heap=$(field heap_in_use)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $(($(date +%s) - start)) "$rss" "$((${heap:-0} / 1024))" \
        "$fds" "$threads" "$(field renewals)" "$(field inodes)" "$(field cached_attributes)" >>"$WORK/samples.tsv"
    sleep "$SAMPLE_SECONDS"
done
LOAD_PID=
STATUS=$("$S3ROLE" status "$MNT" 2>/dev/null || true)
last_error=$(field last_error)
renewals=$(field renewals)

python3 - "$WORK/samples.tsv" "$WORK/result.json" "$SOAK_SECONDS" "${renewals:-0}" \
    "${last_error:--}" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
result = json.load(open(sys.argv[2]))
seconds, renewals, last_error = float(sys.argv[3]), int(sys.argv[4] or 0), sys.argv[5]
warm = [r for r in rows if float(r["secs"]) >= seconds / 4] or rows
first, last = warm[0], rows[-1]
def slope(col):
    """Least-squares slope of column `col` (KiB) after the warm-up, in MiB per hour."""
    xs = [float(r["secs"]) / 3600 for r in warm]
    ys = [int(r[col]) / 1024 for r in warm]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
print(f"soak: {seconds:.0f} s, {result['rounds']} rounds, {result['errors']} errors, "
      f"{renewals} renewals (last error: {last_error})")
for col, what in (("rss_kib", "resident"), ("heap_kib", "heap in use")):
    print(f"  {what}: {int(rows[0][col]) // 1024} MiB at start, "
          f"{int(first[col]) // 1024} MiB after warm-up ({first['secs']} s), "
          f"{int(last[col]) // 1024} MiB at the end, max {max(int(r[col]) for r in rows) // 1024} MiB; "
          f"{slope(col):+.1f} MiB/hour after warm-up (least squares, {len(warm)} samples)")
def span(col):
    peak = max(int(r[col] or 0) for r in rows)
    return f"{rows[0][col]} -> {first[col]} -> {last[col]} (max {peak})"
print(f"  descriptors: {span('fds')}; threads: {span('threads')}")
print(f"  inodes: {span('inodes')}; cached attributes: {span('attributes')}")
for e in result["first_errors"]:
    print(f"  error: {e}")
sys.exit(0 if result["errors"] == 0 and renewals > 0 else 1)
PY
