#!/usr/bin/env bash
# The disk cache (--cache-dir), measured as a data scientist meets it: the first read of a
# file, then the same read after a remount (the next day), with and without the disk cache,
# through a link shaped like a real S3 connection (scripts/bench_link.py: DELAY_MS more each
# way per request, bodies at most RATE_MBIT). On loopback a tmpfs server is faster than any
# disk, so the link is what makes the comparison honest.
#   seq     a BIG_MIB object read with dd bs=1M: MiB/s
#   random  RANDOM_READS 4 KiB preads, uniformly over the object, each checked against its
#           source; the re-read repeats the same offsets: reads/s
# Every read is on a fresh mount with the page cache dropped; each figure is the median of
# ROUNDS rounds (each round starts with an empty cache directory). It prints, per workload,
# first read and re-read with and without the cache, the re-read's speed-up, the GETs the
# re-read cost, and the disk cache's size at the end.
#
#   scripts/bench-cache.sh          (about 10 minutes on 2 cores with the defaults)
#
# Needs root (drop_caches), fusermount3, python3 with boto3. The server (SeaweedFS, data on
# tmpfs) is installed on first use under target/bench-tools (scripts/bench-server.sh).
# Settings: BIG_MIB=1024 RANDOM_READS=300 ROUNDS=3 DELAY_MS=10 RATE_MBIT=1000
#           CACHE_PARENT=/var/tmp (where the cache directory is made: a real disk, not tmpfs)
#           SKIP_BUILD=1 QUIET_WAIT=600 KEEP=1
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

BIG_MIB=${BIG_MIB:-1024}
RANDOM_READS=${RANDOM_READS:-300}
ROUNDS=${ROUNDS:-3}
DELAY_MS=${DELAY_MS:-10}
RATE_MBIT=${RATE_MBIT:-1000}
CACHE_PARENT=${CACHE_PARENT:-/var/tmp}
export BENCH_SERVER=seaweedfs
BUCKET=bench
BIG_KEY=big
S3ROLE=target/release/s3role
HELPER=scripts/bench_read_helper.py

WORK=$(mktemp -d /tmp/s3role-bench-cache.XXXXXX)
MNT=$WORK/mnt
mkdir "$MNT"
SRC=$(mktemp "${BENCH_TMPFS:-/dev/shm}/s3role-bench-src.XXXXXX")
CACHE_DIR=
MOUNT_PID=
LINK_PID=
BENCH_SERVER_LOG=$WORK/server.log
# shellcheck source=bench-server.sh
source scripts/bench-server.sh

log() { echo "[bench-cache $(date +%T)] $*" >&2; }
die() { echo "bench-cache: $*" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

mount_stop() {
    [[ -n $MOUNT_PID ]] || return 0
    if grep -qs " $MNT fuse" /proc/mounts; then
        fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
    fi
    for _ in $(seq 1 100); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$MOUNT_PID" 2>/dev/null || true
    wait "$MOUNT_PID" 2>/dev/null || true
    MOUNT_PID=
}

cleanup() {
    set +e
    trap '' INT TERM
    mount_stop
    if [[ -n $LINK_PID ]]; then kill "$LINK_PID" 2>/dev/null; wait "$LINK_PID" 2>/dev/null; fi
    bench_server_stop
    rm -f "$SRC"
    [[ -n $CACHE_DIR ]] && rm -rf "$CACHE_DIR"
    if [[ ${KEEP:-0} == 1 ]]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || die "needs root (to drop the page cache between reads)"
python3 -c 'import boto3' 2>/dev/null || die "needs python3 with boto3"
command -v fusermount3 >/dev/null || die "needs fusermount3 (apt-get install fuse3)"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building s3role (release)"
    cargo build --release --quiet --bin s3role
fi

bench_wait_quiet
bench_server_start
log "creating s3://$BUCKET/$BIG_KEY ($BIG_MIB MiB)"
python3 "$HELPER" setup --endpoint "$S3_ENDPOINT" --bucket "$BUCKET" --big-key "$BIG_KEY" \
    --big-mib "$BIG_MIB" --src "$SRC" --nfiles 0 >&2
python3 scripts/bench_link.py --upstream "$S3_ENDPOINT" --port-file "$WORK/link.json" \
    --delay-ms "$DELAY_MS" --reply-ms "$DELAY_MS" --rate-mbit "$RATE_MBIT" >"$WORK/link.log" 2>&1 &
LINK_PID=$!
for _ in $(seq 1 100); do [[ -s $WORK/link.json ]] && break; sleep 0.1; done
EP=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$WORK/link.json")

# mount_start [--cache-dir DIR]: a fresh mount through the link, the page cache dropped.
mount_start() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
    env AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        "$S3ROLE" mount "$BUCKET" "$MNT" -f --endpoint-url "$EP" --path-style --region us-east-1 \
        "$@" >>"$WORK/s3role.log" 2>&1 &
    MOUNT_PID=$!
    for _ in $(seq 1 200); do
        grep -qs " $MNT fuse" /proc/mounts && return 0
        kill -0 "$MOUNT_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$WORK/s3role.log" >&2
    die "s3role did not mount"
}

# Ranged GETs the server has answered (SeaweedFS counts them as type GET, code 206).
gets() { curl -s "$BENCH_SERVER_METRICS" | awk '/^SeaweedFS_s3_request_total\{.*code="206".*type="GET"/ {s += $NF} END {print s + 0}'; }

# one_read WORKLOAD: the figure of one read of the workload through $MNT.
one_read() {
    case $1 in
    seq)
        local t0 t1
        t0=$(date +%s.%N)
        dd if="$MNT/$BIG_KEY" of=/dev/null bs=1M status=none
        t1=$(date +%s.%N)
        calc "$BIG_MIB / ($t1 - $t0)" 1
        ;;
    random)
        python3 "$HELPER" random --file "$MNT/$BIG_KEY" --src "$SRC" --count "$RANDOM_READS" --size 4096 --seed 7 |
            grep -o 'reads_per_s=[0-9.]*' | cut -d= -f2
        ;;
    esac
}

declare -A FIG
for w in seq random; do
    for mode in none disk; do
        for r in $(seq 1 "$ROUNDS"); do
            opts=()
            if [[ $mode == disk ]]; then
                CACHE_DIR=$(mktemp -d "$CACHE_PARENT/s3role-bench-cache.XXXXXX")
                opts=(--cache-dir "$CACHE_DIR/c" --cache-dir-size 4G)
            fi
            mount_start "${opts[@]}"
            first=$(one_read "$w")
            # Let the disk cache finish writing what the first read fetched.
            if [[ $mode == disk ]]; then
                for _ in $(seq 1 100); do
                    now=$("$S3ROLE" status "$MNT" | awk '$1 == "disk_cache_bytes" {print $2}')
                    sleep 0.2
                    [[ $now == $("$S3ROLE" status "$MNT" | awk '$1 == "disk_cache_bytes" {print $2}') ]] && break
                done
            fi
            mount_stop
            g0=$(gets)
            mount_start "${opts[@]}"
            again=$(one_read "$w")
            size=-
            [[ $mode == disk ]] && size=$("$S3ROLE" status "$MNT" | awk '$1 == "disk_cache_bytes" {print $2}')
            mount_stop
            g1=$(gets)
            log "$w $mode round $r: first=$first re-read=$again re-read_gets=$((g1 - g0)) disk_cache_bytes=$size"
            FIG[$w.$mode.first]+="$first "
            FIG[$w.$mode.again]+="$again "
            FIG[$w.$mode.gets]+="$((g1 - g0)) "
            if [[ -n $CACHE_DIR ]]; then rm -rf "$CACHE_DIR"; CACHE_DIR=; fi
        done
    done
done

{
    echo
    echo "== disk cache: first read and re-read after a remount, medians of $ROUNDS rounds"
    echo "   machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -r); cache on $(df -T "$CACHE_PARENT" | awk 'NR == 2 {print $2}') ($CACHE_PARENT)"
    echo "   link: +$DELAY_MS ms each way per request, $RATE_MBIT Mbit/s; server SeaweedFS on tmpfs"
    printf '%-10s %-12s %12s %12s %10s %14s\n' workload cache first re-read speed-up re-read_GETs
    for w in seq random; do
        unit=MiB/s
        [[ $w == random ]] && unit=reads/s
        for mode in none disk; do
            read -r -a f <<<"${FIG[$w.$mode.first]}"
            read -r -a a <<<"${FIG[$w.$mode.again]}"
            read -r -a g <<<"${FIG[$w.$mode.gets]}"
            mf=$(median "${f[@]}")
            ma=$(median "${a[@]}")
            printf '%-10s %-12s %12s %12s %9sx %14s\n' "$w ($unit)" "$mode" "$mf" "$ma" "$(calc "$ma / $mf" 2)" "$(median "${g[@]}")"
        done
    done
} | tee "$WORK/result.txt"
