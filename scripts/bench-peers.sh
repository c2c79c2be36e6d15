#!/usr/bin/env bash
# s3role against its peers, in one run, on one local S3 server: the same workloads through
# s3role, s3fs, rclone mount (--vfs-cache-mode off) and mountpoint-s3 (mount-s3), and a
# direct client, in two settings:
#   loopback  the clients talk to the server (SeaweedFS, data on tmpfs) on 127.0.0.1
#   delay     every client goes through scripts/bench_link.py, which makes each request
#             cost DELAY_MS more each way (10 + 10 = 20 ms) and limits bodies to RATE_MBIT
#             (1000 Mbit/s) in each direction (faultproxy.py's delay, no faults)
# Every test of a filesystem runs on a fresh mount, after `echo 3 > /proc/sys/vm/drop_caches`;
# each figure is the median of ROUNDS rounds (the rounds go round the filesystems in turn).
# It prints one table per setting: each filesystem's figure and its ratio to the direct
# client, and a table of the S3 requests each test cost (last round).
#
# Workloads (rows):
#   1 seqread   sequential read of a BIG_MIB object (dd bs=1M): MiB/s; CPU seconds per GiB
#               of the filesystem's process; its peak resident memory (VmHWM) at the end
#   2 seqwrite  sequential write of BIG_MIB from tmpfs (1 MiB writes), timed until HEAD shows
#               the object (that HEAD is not counted when the object is there at close):
#               MiB/s, CPU per GiB, peak resident memory
#   3 randread  RANDOM_READS (RANDOM_READS_DELAY) 4 KiB preads, one at a time, uniformly over
#               the big object, each checked against its source: reads/s
#   4 creates   CREATE_FILES (CREATE_FILES_DELAY) files of 4 KiB written and closed one after
#               another, timed until a listing shows them all: files/s
#   5 lsl       `ls -l` of a directory of LS_FILES objects, first thing after the mount
#   6 find      `find` over TREE_DIRS directories of TREE_FILES objects
#   7 bigdir    (BIG_DIR=1) `ls -l` of a directory of BIG_DIR_FILES objects, cold: seconds,
#               and the daemon's resident memory (VmRSS) after it
#   fio         (FIO=1) scripts/fio/{seq_read,rand_read,seq_write}.fio, shaped like
#               mountpoint-s3's published fio jobs (256 KiB sync I/O): fio's bandwidth; for
#               seq_write, the bytes over the wall time of the fio run less fio's own start-up
#               and exit (timed on a local directory), as fio's own figure leaves out the
#               close, where rclone (whose fsync does nothing) ends its upload
# The direct client: examples/direct_get and direct_put (s3role's own store layer) for rows 1-3
# and fio, one request at a time (c1) and CONCURRENCY parts in flight (cN); for rows 4-7
# (small objects, listings), boto3, one request at a time (c1) and META_CONCURRENCY in flight,
# except the cN column of rows 5 and 7: examples/direct_list, the listing and then a HEAD of
# every entry with META_CONCURRENCY in flight, what showing POSIX metadata costs at least.
# The ratio of each row is to the direct column marked [c1] or [cN]: the mount's figure
# divided by direct's (for seconds, direct's divided by the mount's), so 1.00 is as fast as
# direct and lower is slower.
#
#   scripts/bench-peers.sh            (about an hour on 2 idle cores with the defaults;
#                                      BIG_DIR=1 adds about 20 minutes)
# At exit, also on Ctrl-C or after a failed test, it unmounts, stops a test still running and
# stops the server and the link (a mount stuck in a FUSE request has its connection aborted).
#
# Needs root (drop_caches), /dev/fuse, fusermount3, python3 with boto3, curl, s3fs, rclone,
# fio (apt-get install s3fs rclone fio), and mountpoint-s3 built by
# scripts/bench-build-mountpoint.sh (skipped with a note when missing). The server is
# installed on first use under target/bench-tools (scripts/bench-server.sh).
#
# Settings (environment):
#   FILESYSTEMS="s3role s3fs rclone mountpoint"  which mounts; DIRECT=0 leaves out the direct client
#   SETTINGS="loopback delay"    WORKLOADS="seqread seqwrite randread creates lsl find"
#   BIG_DIR=0|1 (adds bigdir)    FIO=1|0 (adds the fio jobs)    ROUNDS=3
#   BIG_MIB=1024 RANDOM_READS=2000 RANDOM_READS_DELAY=200 CREATE_FILES=1000
#   CREATE_FILES_DELAY=200 LS_FILES=10000 TREE_DIRS=100 TREE_FILES=100 BIG_DIR_FILES=100000
#   FIO_RUNTIME=30 FIO_RAND_READS=200 (the direct client's 256 KiB random reads, for fio's row)
#   CONCURRENCY=8 PART_SIZE=8M (direct cN, rows 1-2)   META_CONCURRENCY=32 (direct cN, rows 4-7)
#   DELAY_MS=10 RATE_MBIT=1000 (the delay setting; RATE_MBIT=0: no limit)
#   CELL_TIMEOUT=150             seconds one test may take; a test that takes longer is stopped
#                                and its later rounds are skipped (shown as "t/o")
#   PIN=1|0                      1: the server (and the link) on CPU 0, every client (mounts,
#                                test programs, direct clients) on the other CPUs, as in
#                                bench-read.sh's headline; 0: everything on every core
#   S3ROLE_OPTS S3FS_OPTS RCLONE_OPTS MOUNTPOINT_OPTS   extra options for each mount
#   MOUNT_S3_BIN=...             mount-s3 (default target/bench-tools/mountpoint-s3/bin/mount-s3)
#   SKIP_BUILD=1                 use target/release/s3role and examples as they are
#   QUIET_WAIT=600               wait up to this many seconds for other load to calm down
#   KEEP=1                       keep the work directory (logs of every mount)
# The tables also go to target/bench-peers/last.txt, every value to target/bench-peers/last.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

FILESYSTEMS=${FILESYSTEMS:-s3role s3fs rclone mountpoint}
DIRECT=${DIRECT:-1}
SETTINGS=${SETTINGS:-loopback delay}
WORKLOADS=${WORKLOADS:-seqread seqwrite randread creates lsl find}
BIG_DIR=${BIG_DIR:-0}
FIO=${FIO:-1}
ROUNDS=${ROUNDS:-3}
BIG_MIB=${BIG_MIB:-1024}
RANDOM_READS=${RANDOM_READS:-2000}
RANDOM_READS_DELAY=${RANDOM_READS_DELAY:-200}
CREATE_FILES=${CREATE_FILES:-1000}
CREATE_FILES_DELAY=${CREATE_FILES_DELAY:-200}
LS_FILES=${LS_FILES:-10000}
TREE_DIRS=${TREE_DIRS:-100}
TREE_FILES=${TREE_FILES:-100}
BIG_DIR_FILES=${BIG_DIR_FILES:-100000}
FIO_RUNTIME=${FIO_RUNTIME:-30}
FIO_RAND_READS=${FIO_RAND_READS:-200}
CONCURRENCY=${CONCURRENCY:-8}
PART_SIZE=${PART_SIZE:-8M}
META_CONCURRENCY=${META_CONCURRENCY:-32}
DELAY_MS=${DELAY_MS:-10}
RATE_MBIT=${RATE_MBIT:-1000}
CELL_TIMEOUT=${CELL_TIMEOUT:-150}
PIN=${PIN:-1}
S3ROLE_OPTS=${S3ROLE_OPTS:-}
S3FS_OPTS=${S3FS_OPTS:-}
RCLONE_OPTS=${RCLONE_OPTS:-}
MOUNTPOINT_OPTS=${MOUNTPOINT_OPTS:-}
S3ROLE=target/release/s3role
DIRECT_GET=target/release/examples/direct_get
DIRECT_LIST=target/release/examples/direct_list
DIRECT_PUT=target/release/examples/direct_put
MOUNT_S3=${MOUNT_S3_BIN:-target/bench-tools/mountpoint-s3/bin/mount-s3}
HELPER=scripts/bench_peers_helper.py
RESULTS=target/bench-peers
export BENCH_SERVER=seaweedfs
BUCKET=bench
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)
if [[ $BIG_DIR == 1 ]]; then WORKLOADS="$WORKLOADS bigdir"; fi
if [[ $FIO == 1 ]]; then WORKLOADS="$WORKLOADS fio_seq_read fio_rand_read fio_seq_write"; fi

log() { echo "[bench-peers $(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (drop_caches, mounts)"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing"
command -v fusermount3 >/dev/null || die "needs fusermount3 (apt-get install fuse3)"
python3 -c 'import boto3' 2>/dev/null || die "needs python3 with boto3"
[[ -x /usr/bin/time ]] || die "needs /usr/bin/time (apt-get install time)"
if [[ $FIO == 1 ]]; then command -v fio >/dev/null || die "FIO=1 needs fio (apt-get install fio)"; fi

# ---- which filesystems can run ---------------------------------------------------------------
declare -A SKIPPED=()
FSLIST=()
for fs in $FILESYSTEMS; do
    case $fs in
    s3role) FSLIST+=(s3role) ;;
    s3fs) if command -v s3fs >/dev/null; then FSLIST+=(s3fs); else SKIPPED[s3fs]="not installed (apt-get install s3fs)"; fi ;;
    rclone) if command -v rclone >/dev/null; then FSLIST+=(rclone); else SKIPPED[rclone]="not installed (apt-get install rclone)"; fi ;;
    mountpoint)
        if [[ -x $MOUNT_S3 ]]; then FSLIST+=(mountpoint); else
            SKIPPED[mountpoint]="no $MOUNT_S3 (build it with scripts/bench-build-mountpoint.sh GIT_DIR)"
        fi ;;
    *) die "unknown filesystem $fs (s3role s3fs rclone mountpoint)" ;;
    esac
done
DIRECTS=()
if [[ $DIRECT == 1 ]]; then DIRECTS=(c1 cN); fi

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building s3role and the direct clients (release)"
    cargo build --release --quiet --bin s3role --example direct_get --example direct_put --example direct_list
fi

WORK=$(mktemp -d /tmp/s3role-bench-peers.XXXXXX)
MNT=$WORK/mnt
mkdir -p "$MNT" "$RESULTS"
SRC=$(mktemp /dev/shm/s3role-bench-peers-src.XXXXXX)
FS_PID='' FS_NAME='' LINK_PID=''
BENCH_SERVER_LOG=$WORK/server.log
# shellcheck source=scripts/bench-server.sh
source scripts/bench-server.sh

# tmo: the command, stopped after CELL_TIMEOUT seconds (exit 124 then). timeout runs it in a
# process group of its own, which Ctrl-C does not reach, and bash would run the INT trap only
# once a foreground command (or a $(...) whose pipe the command holds) ends; so it runs in the
# background, the shell waits for it (a wait that a trapped signal ends), and cleanup stops
# its process group through the pid in $WORK/cell.pid. tmo_out: the same, its output in OUT.
tmo() {
    local pid rc=0
    timeout -k 10 "$CELL_TIMEOUT" "$@" &
    pid=$!
    echo "$pid" >"$WORK/cell.pid"
    wait "$pid" || rc=$?
    rm -f "$WORK/cell.pid"
    return "$rc"
}
tmo_out() {
    tmo "$@" >"$WORK/cell.out" || return $?
    OUT=$(<"$WORK/cell.out")
}
# Stops a test still running (after Ctrl-C or a failure): TERM to its timeout, which passes it on.
cell_stop() {
    local pid
    pid=$(cat "$WORK/cell.pid" 2>/dev/null) || return 0
    if [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == timeout ]]; then
        kill -TERM -- "-$pid" 2>/dev/null
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$WORK/cell.pid"
}

mounted() { grep -qs " $MNT " /proc/self/mountinfo; }
# umount_tries: up to 3 attempts a second apart; fails if $MNT is still mounted.
umount_tries() {
    for _ in 1 2 3; do
        mounted || return 0
        umount "$MNT" 2>/dev/null && return 0
        sleep 1
    done
    ! mounted
}
# fs_stop [SECONDS]: unmounts $MNT and waits SECONDS (20) for the daemon to exit, then kills it.
# A mount still busy after 3 s (a test stopped in the middle of a FUSE request) has its FUSE
# connection aborted (umount -f), which fails what is pending, so nothing stays stuck on it.
fs_stop() {
    [[ -n $FS_PID ]] || return 0
    if ! umount_tries; then
        log "$FS_NAME: the mount is busy; aborting its FUSE connection"
        umount -f "$MNT" 2>/dev/null
        umount_tries || umount -l "$MNT" 2>/dev/null || true
    fi
    for _ in $(seq 1 $((${1:-20} * 5))); do
        kill -0 "$FS_PID" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$FS_PID" 2>/dev/null; then
        log "$FS_NAME: the daemon did not exit after unmount; killing it"
        kill -9 "$FS_PID" 2>/dev/null || true
    fi
    wait "$FS_PID" 2>/dev/null || true
    FS_PID=''
}

cleanup() {
    set +e
    trap '' INT TERM
    cell_stop
    fs_stop 5
    if [[ -n $LINK_PID ]]; then kill "$LINK_PID" 2>/dev/null; wait "$LINK_PID" 2>/dev/null; fi
    bench_server_stop
    rm -f "$SRC"
    if [[ ${KEEP:-0} == 1 ]]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# CPU ticks of the delaying link (bench_link.py), 0 when there is none
link_ticks() { if [[ -n $LINK_PID ]]; then ticks "$LINK_PID"; else echo 0; fi; }
# kB of a /proc/PID/status field (VmHWM, VmRSS)
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2" | head -n1; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

RUN=()
if [[ $PIN == 1 ]] && ((NCPU >= 2)); then RUN=(taskset -c "1-$((NCPU - 1))"); fi

# ---- mounts ------------------------------------------------------------------------------------
# fs_start FS: a fresh mount of the bucket on $MNT through $EP; FS_PID is its daemon.
fs_start() {
    FS_NAME=$1
    local logf=$WORK/$1.log
    echo "---- mount $(date +%T) ($SETTING)" >>"$logf"
    # AWS_CA_BUNDLE: the endpoints are plain http, and rclone's SDK fails on any bundle set.
    case $1 in
    s3role)
        # shellcheck disable=SC2086
        env -u AWS_CA_BUNDLE AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
            "${RUN[@]}" "$S3ROLE" mount "$BUCKET" "$MNT" -f --endpoint-url "$EP" --path-style --region us-east-1 \
            $S3ROLE_OPTS >>"$logf" 2>&1 &
        ;;
    s3fs)
        # shellcheck disable=SC2086
        env -u AWS_CA_BUNDLE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY \
            "${RUN[@]}" s3fs "$BUCKET" "$MNT" -f \
            -o "url=$EP,use_path_request_style,endpoint=us-east-1,passwd_file=$WORK/s3fs.passwd,dbglevel=warn" \
            $S3FS_OPTS >>"$logf" 2>&1 &
        ;;
    rclone)
        # shellcheck disable=SC2086
        env -u AWS_CA_BUNDLE RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
            RCLONE_CONFIG_BENCH_ENDPOINT="$EP" RCLONE_CONFIG_BENCH_REGION=us-east-1 \
            RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true \
            RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
            RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
            "${RUN[@]}" rclone mount "bench:$BUCKET" "$MNT" --config /dev/null --vfs-cache-mode off \
            $RCLONE_OPTS >>"$logf" 2>&1 &
        ;;
    mountpoint)
        # shellcheck disable=SC2086
        env -u AWS_CA_BUNDLE AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
            "${RUN[@]}" "$MOUNT_S3" "$BUCKET" "$MNT" -f --endpoint-url "$EP" --force-path-style --region us-east-1 \
            --allow-delete --allow-overwrite $MOUNTPOINT_OPTS >>"$logf" 2>&1 &
        ;;
    esac
    FS_PID=$!
    for _ in $(seq 1 300); do
        if mounted; then
            return 0
        fi
        kill -0 "$FS_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "$1 did not mount; its log:"
    tail -n 20 "$logf" >&2
    fs_stop
    return 1
}

# ---- request accounting (SeaweedFS' counters) --------------------------------------------------
snap() { curl -s "$BENCH_SERVER_METRICS" >"$WORK/snap.$1" || true; }
reqs() { python3 "$HELPER" reqdiff --before "$WORK/snap.$1" --after "$WORK/snap.$2"; }

# ---- results -----------------------------------------------------------------------------------
declare -A VALS=() REQS=() TIMEDOUT=() FAILED=() TOOK=()
TSV=$RESULTS/last.tsv
printf 'setting\tcolumn\tmetric\tround\tvalue\n' >"$TSV"
# put COLUMN METRIC ROUND VALUE
put() {
    [[ -n $4 ]] || return 0
    VALS[$SETTING|$1|$2]+="$4 "
    printf '%s\t%s\t%s\t%s\t%s\n' "$SETTING" "$1" "$2" "$3" "$4" >>"$TSV"
}

# ---- one test on a mount -----------------------------------------------------------------------
# mount_workload FS WORKLOAD: sets OUT (the helper's line) or returns non-zero (124: timeout).
mount_workload() {
    local fs=$1 w=$2 secs t0 n
    case $w in
    seqread)
        t0=$(date +%s.%N)
        tmo "${RUN[@]}" dd if="$MNT/big" of=/dev/null bs=1M 2>"$WORK/dd.err" || return $?
        secs=$(calc "$(date +%s.%N) - $t0" 3)
        n=$(sed -n 's/^\([0-9]*\) bytes.*/\1/p' "$WORK/dd.err")
        [[ $n == $((BIG_MIB << 20)) ]] || { log "$fs: read $n bytes, expected $((BIG_MIB << 20))"; return 1; }
        OUT="secs=$secs mib_per_s=$(calc "$BIG_MIB / $secs")"
        ;;
    seqwrite)
        tmo_out "${RUN[@]}" python3 "$HELPER" write --endpoint "$S3_ENDPOINT" --bucket "$BUCKET" \
            --src "$SRC" --dst "$MNT/$WKEY" --key "$WKEY" --timeout 60 || return $?
        ;;
    randread)
        tmo_out "${RUN[@]}" python3 "$HELPER" random --file "$MNT/big" --src "$SRC" --count "$NRAND" || return $?
        ;;
    creates)
        tmo_out "${RUN[@]}" python3 "$HELPER" creates --endpoint "$S3_ENDPOINT" --bucket "$BUCKET" \
            --dir "$MNT/$WKEY" --prefix "$WKEY/" --count "$NCREATE" --timeout 60 || return $?
        ;;
    lsl | bigdir)
        local dir=ls want=$LS_FILES
        if [[ $w == bigdir ]]; then dir=bigdir want=$BIG_DIR_FILES; fi
        t0=$(date +%s.%N)
        tmo "${RUN[@]}" ls -l "$MNT/$dir" >"$WORK/ls.out" || return $?
        secs=$(calc "$(date +%s.%N) - $t0" 3)
        n=$(grep -c '^-' "$WORK/ls.out" || true)
        [[ $n == "$want" ]] || { log "$fs: ls -l showed $n files, expected $want"; return 1; }
        OUT="secs=$secs entries_per_s=$(calc "$n / $secs")"
        ;;
    find)
        t0=$(date +%s.%N)
        tmo "${RUN[@]}" find "$MNT/tree" >"$WORK/find.out" || return $?
        secs=$(calc "$(date +%s.%N) - $t0" 3)
        n=$(wc -l <"$WORK/find.out")
        [[ $n == $((1 + TREE_DIRS + TREE_DIRS * TREE_FILES)) ]] ||
            { log "$fs: find printed $n entries, expected $((1 + TREE_DIRS + TREE_DIRS * TREE_FILES))"; return 1; }
        OUT="secs=$secs entries_per_s=$(calc "$n / $secs")"
        ;;
    fio_*)
        local job=${w#fio_} file=big rc=0
        if [[ $job == seq_write ]]; then file=$WKEY; fi
        t0=$(date +%s.%N)
        FIO_FILE=$file FIO_SIZE=$((BIG_MIB << 20)) FIO_RUNTIME=${FIO_RUNTIME}s \
            tmo "${RUN[@]}" fio --thread --eta=never --output-format=json --output="$WORK/fio.json" \
            --directory="$MNT" "scripts/fio/$job.fio" >"$WORK/fio.err" 2>&1 || rc=$?
        secs=$(calc "$(date +%s.%N) - $t0" 3)
        if ((rc != 0)); then tail -n 5 "$WORK/fio.err" >&2; return "$rc"; fi
        # seq_write: fio's own figure ends before the file's close, where rclone (whose fsync
        # does nothing) finishes its upload; so the bytes over the whole fio run instead, less
        # fio's own start-up and exit (FIO_BASE).
        OUT=$(python3 - "$WORK/fio.json" "$(calc "$secs - $FIO_BASE" 3)" "$job" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
d = j["write"] if j["write"]["io_bytes"] else j["read"]
if j.get("error"):
    sys.exit(f"fio error {j['error']}")
mib, wall, fio_bw = d["io_bytes"] / 1048576, float(sys.argv[2]), d["bw"] / 1024
bw = mib / wall if sys.argv[3] == "seq_write" else fio_bw
print(f"mib_per_s={bw:.1f} fio_mib_per_s={fio_bw:.1f} iops={d['iops']:.1f} io_mib={mib:.0f} "
      f"secs={d['runtime'] / 1000:.1f} wall_secs={wall:.2f}")
PY
) || return 1
        ;;
    esac
}

# ---- one test with the direct client -------------------------------------------------------------
direct_workload() {
    local c=$1 w=$2 k=1 mk=1 tf=$WORK/time.out
    if [[ $c == cN ]]; then k=$CONCURRENCY mk=$META_CONCURRENCY; fi
    case $w in
    fio_seq_read | fio_seq_write) return 3 ;; # the table shows rows 1 and 2's direct figures
    seqread)
        tmo_out /usr/bin/time -o "$tf" -f "%U %S %M" "${RUN[@]}" "$DIRECT_GET" "$EP" "$BUCKET" big \
            --concurrency "$k" --part-size "$PART_SIZE" || return $?
        OUT="$OUT $(awk -v g="$BIG_MIB" '{printf "cpu_per_gib=%.2f rss_mib=%.0f", ($1 + $2) / g * 1024, $3 / 1024}' "$tf")"
        ;;
    seqwrite)
        tmo_out /usr/bin/time -o "$tf" -f "%U %S %M" "${RUN[@]}" "$DIRECT_PUT" "$EP" "$BUCKET" "$WKEY" "$BIG_MIB" \
            --concurrency "$k" --part-size "$PART_SIZE" || return $?
        OUT="$OUT $(awk -v g="$BIG_MIB" '{printf "cpu_per_gib=%.2f rss_mib=%.0f", ($1 + $2) / g * 1024, $3 / 1024}' "$tf")"
        ;;
    randread | fio_rand_read)
        [[ $c == c1 ]] || return 3
        local size=4096 count=$NRAND
        if [[ $w == fio_rand_read ]]; then size=262144 count=$FIO_RAND_READS; fi
        tmo_out "${RUN[@]}" "$DIRECT_GET" "$EP" "$BUCKET" big --random "$count" --read-size "$size" || return $?
        if [[ $w == fio_rand_read ]]; then
            OUT="$OUT mib_per_s=$(calc "$(field reads_per_s "$OUT") * $size / 1048576")"
        fi
        ;;
    creates)
        tmo_out "${RUN[@]}" python3 "$HELPER" direct-puts --endpoint "$EP" --bucket "$BUCKET" \
            --prefix "$WKEY/" --count "$NCREATE" --threads "$mk" || return $?
        ;;
    lsl | bigdir)
        local dir=ls
        if [[ $w == bigdir ]]; then dir=bigdir; fi
        if [[ $c == cN ]]; then
            # The listing, then a HEAD of every entry: the least showing metadata costs.
            tmo_out "${RUN[@]}" "$DIRECT_LIST" "$EP" "$BUCKET" "$dir/" --concurrency "$mk" || return $?
            OUT="$OUT secs=$(field total_secs "$OUT")"
        else
            tmo_out "${RUN[@]}" python3 "$HELPER" direct-list --endpoint "$EP" --bucket "$BUCKET" --prefix "$dir/" || return $?
        fi
        ;;
    find)
        tmo_out "${RUN[@]}" python3 "$HELPER" direct-walk --endpoint "$EP" --bucket "$BUCKET" \
            --prefix tree/ --threads "$mk" || return $?
        ;;
    esac
}

# The metric each workload reports, from its line.
record() {
    local col=$1 w=$2 r=$3
    case $w in
    seqread | seqwrite)
        put "$col" "$w" "$r" "$(field mib_per_s "$OUT")"
        put "$col" "${w}_cpu" "$r" "$(field cpu_per_gib "$OUT")"
        put "$col" "${w}_rss" "$r" "$(field rss_mib "$OUT")"
        ;;
    randread) put "$col" "$w" "$r" "$(field reads_per_s "$OUT")" ;;
    creates) put "$col" "$w" "$r" "$(field files_per_s "$OUT")" ;;
    lsl | find) put "$col" "$w" "$r" "$(field entries_per_s "$OUT")" ;;
    bigdir)
        put "$col" "$w" "$r" "$(field secs "$OUT")"
        put "$col" "${w}_rss" "$r" "$(field rss_mib "$OUT")"
        ;;
    fio_*) put "$col" "$w" "$r" "$(field mib_per_s "$OUT")" ;;
    esac
}

# cell COLUMN WORKLOAD ROUND: one test, fresh mount (or direct client), caches dropped.
cell() {
    local col=$1 w=$2 r=$3 rc=0 t0 t1 s0 s1 l0 l1 hwm rss key="$SETTING|$1|$2"
    [[ -z ${TIMEDOUT[$key]:-} && -z ${FAILED[$key]:-} ]] || return 0
    WKEY=w-$SETTING-$col-$w-$r
    NRAND=$RANDOM_READS NCREATE=$CREATE_FILES
    if [[ $SETTING == delay ]]; then NRAND=$RANDOM_READS_DELAY NCREATE=$CREATE_FILES_DELAY; fi
    OUT=''
    drop_caches
    if [[ $col == c1 || $col == cN ]]; then
        snap a
        s0=$(ticks "$BENCH_SERVER_PID") l0=$(link_ticks)
        direct_workload "$col" "$w" || rc=$?
        s1=$(ticks "$BENCH_SERVER_PID") l1=$(link_ticks)
        snap b
    else
        fs_start "$col" || { FAILED[$key]=1; return 0; }
        snap a
        t0=$(ticks "$FS_PID") s0=$(ticks "$BENCH_SERVER_PID") l0=$(link_ticks)
        mount_workload "$col" "$w" "$r" || rc=$?
        t1=$(ticks "$FS_PID") s1=$(ticks "$BENCH_SERVER_PID") l1=$(link_ticks)
        snap b
        hwm=$(status_kb "$FS_PID" VmHWM) rss=$(status_kb "$FS_PID" VmRSS)
        if ((rc == 0)); then
            case $w in
            seqread | seqwrite)
                OUT="$OUT cpu_per_gib=$(calc "($t1 - $t0) / $HZ / $BIG_MIB * 1024" 2) rss_mib=$(calc "$hwm / 1024" 0)" ;;
            bigdir) OUT="$OUT rss_mib=$(calc "$rss / 1024" 0)" ;;
            esac
        fi
        fs_stop
    fi
    case $rc in
    0)
        record "$col" "$w" "$r"
        REQS[$key]="$(reqs a b) server_cpu_s=$(calc "($s1 - $s0) / $HZ" 2)"
        if [[ -n ${t1:-} ]]; then REQS[$key]+=" fs_cpu_s=$(calc "($t1 - $t0) / $HZ" 2)"; fi
        if [[ -n $LINK_PID ]]; then REQS[$key]+=" link_cpu_s=$(calc "($l1 - $l0) / $HZ" 2)"; fi
        log "$SETTING $w round $r $col: $OUT; $(cut -d' ' -f1 <<<"${REQS[$key]}")"
        ;;
    3) ;; # not measured for this column
    124 | 137)
        TIMEDOUT[$key]=1
        log "$SETTING $w round $r $col: stopped after ${CELL_TIMEOUT}s; its later rounds are skipped"
        ;;
    *)
        FAILED[$key]=1
        log "$SETTING $w round $r $col: FAILED (exit $rc); its later rounds are skipped"
        ;;
    esac
    # What the test wrote goes again (and SeaweedFS gets the memory back).
    case $w in
    seqwrite | creates | fio_seq_write)
        python3 "$HELPER" delete --endpoint "$S3_ENDPOINT" --bucket "$BUCKET" --prefix "$WKEY" >/dev/null || true
        bench_server_vacuum
        ;;
    esac
}

# ---- the table -----------------------------------------------------------------------------------
fmt() {
    awk -v v="$1" 'BEGIN { a = v < 0 ? -v : v
        if (a >= 1000) printf "%.0f", v; else if (a >= 100) printf "%.0f", v;
        else if (a >= 10) printf "%.1f", v; else printf "%.2f", v }'
}
# value COLUMN METRIC: the median, or t/o / fail / - / ?.
value() {
    local key="$SETTING|$1|$2" base=${2%_cpu}
    base=${base%_rss}
    local k2="$SETTING|$1|$base"
    if [[ -n ${TIMEDOUT[$k2]:-} ]]; then echo "t/o"; return; fi
    if [[ -n ${FAILED[$k2]:-} ]]; then echo "fail"; return; fi
    local v=${VALS[$key]:-}
    if [[ -z ${v// /} ]]; then echo "-"; return; fi
    # shellcheck disable=SC2086
    median $v
}
is_num() { [[ $1 =~ ^-?[0-9.]+$ ]]; }

print_table() {
    local fs w row metric dmetric label unit ref kind d1 dn ref_v v cellv ratio line
    local w1=36 w2=10 wc=16
    echo
    case $SETTING in
    loopback) echo "== loopback: clients -> SeaweedFS on 127.0.0.1 (no proxy); medians of $ROUNDS rounds" ;;
    delay) echo "== delay: clients -> bench_link.py (+${DELAY_MS} ms each way per request, $([[ $RATE_MBIT == 0 ]] && echo "no rate limit" || echo "bodies at most $RATE_MBIT Mbit/s each way")) -> SeaweedFS; medians of $ROUNDS rounds" ;;
    esac
    echo "   (x.xx) = the filesystem's figure / the direct column marked in brackets; c1: one request at a time;"
    echo "   cN: $CONCURRENCY parts in flight (rows 1, 2, fio), $META_CONCURRENCY requests in flight (rows 4, 6; rows 5, 7: LIST, then a HEAD of each entry); t/o: over ${CELL_TIMEOUT}s"
    printf "%-${w1}s %-${w2}s %10s %10s |" "workload" "unit" "direct c1" "direct cN"
    for fs in "${FSLIST[@]}"; do printf " %-${wc}s" "$fs"; done
    echo
    local rows=(
        "seqread|seqread|1 seq read ${BIG_MIB} MiB [cN]|MiB/s|cN|rate"
        "seqread|seqread_cpu|    CPU per GiB (fs process)|s|-|plain"
        "seqread|seqread_rss|    peak resident memory|MiB|-|plain"
        "seqwrite|seqwrite|2 seq write ${BIG_MIB} MiB, visible [cN]|MiB/s|cN|rate"
        "seqwrite|seqwrite_cpu|    CPU per GiB (fs process)|s|-|plain"
        "seqwrite|seqwrite_rss|    peak resident memory|MiB|-|plain"
        "randread|randread|3 random 4 KiB reads ($RANDOM_READS/$RANDOM_READS_DELAY) [c1]|reads/s|c1|rate"
        "creates|creates|4 create 4 KiB files ($CREATE_FILES/$CREATE_FILES_DELAY) [c1]|files/s|c1|rate"
        "lsl|lsl|5 ls -l $LS_FILES, cold [c1]|entries/s|c1|rate"
        "find|find|6 find ${TREE_DIRS}x$TREE_FILES [c1]|entries/s|c1|rate"
        "bigdir|bigdir|7 ls -l $BIG_DIR_FILES, cold [c1]|s|c1|secs"
        "bigdir|bigdir_rss|    resident memory after|MiB|-|plain"
        "fio_seq_read|fio_seq_read|fio seq_read 256k [cN]|MiB/s|cN|rate"
        "fio_rand_read|fio_rand_read|fio rand_read 256k [c1]|MiB/s|c1|rate"
        "fio_seq_write|fio_seq_write|fio seq_write 256k, to exit [cN]|MiB/s|cN|rate"
    )
    for row in "${rows[@]}"; do
        IFS='|' read -r w metric label unit ref kind <<<"$row"
        [[ " $WORKLOADS " == *" $w "* ]] || continue
        dmetric=$metric
        case $metric in fio_seq_read) dmetric=seqread ;; fio_seq_write) dmetric=seqwrite ;; esac
        d1=$(value c1 "$dmetric") dn=$(value cN "$dmetric")
        ref_v='-'
        if [[ $ref == c1 ]]; then ref_v=$d1; elif [[ $ref == cN ]]; then ref_v=$dn; fi
        line=$(printf "%-${w1}s %-${w2}s %10s %10s |" "$label" "$unit" \
            "$(is_num "$d1" && fmt "$d1" || echo "$d1")" "$(is_num "$dn" && fmt "$dn" || echo "$dn")")
        for fs in "${FSLIST[@]}"; do
            v=$(value "$fs" "$metric")
            if is_num "$v"; then
                cellv=$(fmt "$v")
                if [[ $kind != plain ]] && is_num "$ref_v" && awk "BEGIN { exit !($v > 0 && $ref_v > 0) }"; then
                    if [[ $kind == secs ]]; then ratio=$(calc "$ref_v / $v" 2); else ratio=$(calc "$v / $ref_v" 2); fi
                    cellv="$cellv ($ratio)"
                fi
            else
                cellv=$v
            fi
            line+=$(printf " %-${wc}s" "$cellv")
        done
        echo "$line"
    done
}

print_requests() {
    local fs w col r
    echo
    echo "   S3 requests of one test (last round; HEAD/GET = HEAD or whole-object GET, GET = ranged GET;"
    echo "   sent_mib, received_mib: body bytes the server sent and received; server_cpu_s, fs_cpu_s, link_cpu_s: CPU the server, the filesystem's process and the link used):"
    for w in $WORKLOADS; do
        for col in "${DIRECTS[@]}" "${FSLIST[@]}"; do
            r=${REQS[$SETTING|$col|$w]:-}
            [[ -n $r ]] || continue
            printf "   %-14s %-11s %s\n" "$w" "$col" "$r"
        done
    done
}

# ---- run ---------------------------------------------------------------------------------------
bench_wait_quiet
BG=$BENCH_BUSY
START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log "starting SeaweedFS"
bench_server_start
if [[ $PIN == 1 ]] && ((NCPU >= 2)); then bench_server_pin 0; fi
printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$WORK/s3fs.passwd"
chmod 600 "$WORK/s3fs.passwd"
BIGDIR_N=0
if [[ $BIG_DIR == 1 ]]; then BIGDIR_N=$BIG_DIR_FILES; fi
log "creating s3://$BUCKET/big ($BIG_MIB MiB), ls/ ($LS_FILES), tree/ (${TREE_DIRS}x$TREE_FILES)$([[ $BIG_DIR == 1 ]] && echo ", bigdir/ ($BIG_DIR_FILES)")"
SETUP=$("${RUN[@]}" python3 "$HELPER" setup --endpoint "$S3_ENDPOINT" --bucket "$BUCKET" --src "$SRC" \
    --big-mib "$BIG_MIB" --ls-files "$LS_FILES" --tree-dirs "$TREE_DIRS" --tree-files "$TREE_FILES" \
    --bigdir-files "$BIGDIR_N")
log "$SETUP"

# fio's own start-up and exit: the seq_write job on 1 MiB in a local directory, median of 3.
FIO_BASE=0
if [[ " $WORKLOADS " == *" fio_seq_write "* ]]; then
    mkdir -p "$WORK/fio-base"
    base=()
    for _ in 1 2 3; do
        t0=$(date +%s.%N)
        FIO_FILE=base FIO_SIZE=1m FIO_RUNTIME=10s "${RUN[@]}" fio --thread --eta=never --output-format=json \
            --output="$WORK/fio-base/out.json" --directory="$WORK/fio-base" scripts/fio/seq_write.fio >/dev/null
        base+=("$(calc "$(date +%s.%N) - $t0" 3)")
    done
    FIO_BASE=$(median "${base[@]}")
fi

# ---- versions -----------------------------------------------------------------------------------
ver() { "$@" 2>&1 | head -n1 || true; }
HEADER=$(
    echo "==================== s3role and its peers ===================="
    echo "date         $(date '+%F %T %Z'), $(($(date +%s) - START)) s of setup so far"
    echo "machine      $NCPU cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) memory, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "load         $BG cores busy before the run, load average at start $LOAD_START"
    echo "pinning      $([[ ${#RUN[@]} -gt 0 ]] && echo "server and link on CPU 0; mounts, test programs and direct clients on CPUs 1-$((NCPU - 1))" || echo "none: everything on every core")"
    echo "server       SeaweedFS $(ver "$BENCH_TOOLS/seaweedfs-venv/bin/weed" version | awk '{print $2, $3}') (weed mini, data on tmpfs)"
    echo "s3role       $(ver "$S3ROLE" --version), tree $(git describe --always --dirty 2>/dev/null || echo '?'), built $(date -r "$S3ROLE" '+%F %T'); options: defaults${S3ROLE_OPTS:+ + $S3ROLE_OPTS}"
    for fs in s3fs rclone mountpoint; do
        if [[ -n ${SKIPPED[$fs]:-} ]]; then echo "$(printf '%-12s' "$fs") SKIPPED: ${SKIPPED[$fs]}"; continue; fi
        [[ " ${FSLIST[*]} " == *" $fs "* ]] || continue
        case $fs in
        s3fs) echo "s3fs         $(ver s3fs --version | sed 's/^Amazon Simple Storage Service File System //'); options: defaults${S3FS_OPTS:+ + $S3FS_OPTS}" ;;
        rclone) echo "rclone       $(ver rclone version); rclone mount --vfs-cache-mode off${RCLONE_OPTS:+ $RCLONE_OPTS}" ;;
        mountpoint)
            # The version's +suffix names whatever git checkout held the build, not mountpoint's
            # commit (COMMIT, written by bench-build-mountpoint.sh, does). Without IMDS it
            # targets 10 Gbit/s unless --maximum-throughput-gbps says otherwise.
            echo "mountpoint   $(ver "$MOUNT_S3" --version | sed 's/+.*//'), commit $(cat "$(dirname "$MOUNT_S3")/COMMIT" 2>/dev/null || echo '?'); options: --allow-delete --allow-overwrite${MOUNTPOINT_OPTS:+ $MOUNTPOINT_OPTS} (throughput target 10 Gbit/s unless set)" ;;
        esac
    done
    echo "direct       examples/direct_get, direct_put (part $PART_SIZE); boto3 $(python3 -c 'import boto3; print(boto3.__version__)') for rows 4-7"
    [[ $FIO == 1 ]] && echo "fio          $(ver fio --version), jobs scripts/fio/*.fio, at most ${FIO_RUNTIME}s each; seq_write: start to exit, less fio's own ${FIO_BASE}s"
    echo "setup        $SETUP"
)
echo "$HEADER" >&2

for SETTING in $SETTINGS; do
    case $SETTING in
    loopback) EP=$S3_ENDPOINT ;;
    delay)
        log "starting the delaying link (+${DELAY_MS} ms each way, $RATE_MBIT Mbit/s)"
        pin_link=()
        if [[ ${#RUN[@]} -gt 0 ]]; then pin_link=(taskset -c 0); fi
        "${pin_link[@]}" python3 scripts/bench_link.py --upstream "$S3_ENDPOINT" --port-file "$WORK/link.json" \
            --delay-ms "$DELAY_MS" --reply-ms "$DELAY_MS" --rate-mbit "$RATE_MBIT" >"$WORK/link.log" 2>&1 &
        LINK_PID=$!
        for _ in $(seq 1 100); do [[ -s $WORK/link.json ]] && break; sleep 0.1; done
        EP=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$WORK/link.json")
        ;;
    *) die "unknown setting $SETTING (loopback delay)" ;;
    esac
    SET_START=$(date +%s)
    for w in $WORKLOADS; do
        for r in $(seq 1 "$ROUNDS"); do
            for col in "${DIRECTS[@]}" "${FSLIST[@]}"; do
                cell "$col" "$w" "$r"
            done
        done
    done
    TOOK[$SETTING]=$(($(date +%s) - SET_START))
    if [[ -n $LINK_PID ]]; then kill "$LINK_PID" 2>/dev/null || true; wait "$LINK_PID" 2>/dev/null || true; LINK_PID=''; fi
done

{
    echo
    echo "$HEADER"
    for SETTING in $SETTINGS; do
        print_table
        print_requests
        echo "   ($SETTING took ${TOOK[$SETTING]} s)"
    done
    echo
    echo "total        $(($(date +%s) - START)) s; load average at end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "=============================================================="
} | tee "$RESULTS/last.txt"
