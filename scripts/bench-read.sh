#!/usr/bin/env bash
# Read benchmark of s3role against a fast local S3 server, in one run:
#   (a) sequential read of a 1 GiB object by a direct parallel ranged-GET client
#       (examples/direct_get.rs, built on s3role's own store layer),
#   (b) sequential read of the same object through a fresh s3role mount (dd bs=1M),
#   (c) their ratio (target: mount >= 0.8 x direct), from the medians of RUNS runs of each
#       (bests shown too); each mount run is a fresh mount, so no cache is warm. (a)-(c) run
#       twice: pinned (server on CPU 0, clients on the others: does the mount keep up with
#       what the server delivers, as it would with S3 on other machines?) and shared (all on
#       every core: the CPU each client spends per byte counts too). The headline is pinned,
#   (d) random 4 KiB preads through a fresh mount (and the same with the direct client),
#   (e) `ls -l` of a directory of 10,000 objects, cold (first after mount) and again.
# For every phase it also reports the S3 requests the server saw and the CPU used by s3role
# and by the server, then prints a summary block. Everything runs on 127.0.0.1; the server's
# data and the source file live on tmpfs; the mount, the server and all files are removed on
# exit, also on failure or Ctrl-C.
#
#   scripts/bench-read.sh          (about 8 minutes on 2 cores once built and installed)
#
# Needs: cargo, python3 with boto3, fuse3 (fusermount3), curl; strace for the optional
# read-size diagnostic; root only for the read-ahead what-if (skipped otherwise).
# The server is installed on first use under target/bench-tools (see scripts/bench-server.sh).
#
# Settings (environment):
#   BENCH_SERVER=seaweedfs|s3s-fs   server (default seaweedfs: s3s-fs 0.14.1 streams bodies in
#                                   4 KiB chunks and tops out near 250 MiB/s on 2 cores, ignores
#                                   If-Match on GET and answers HEAD of a "directory" key with
#                                   500; see scripts/bench-server.sh)
#   BIG_MIB=1024 NFILES=10000 RANDOM_READS=2000 RUNS=5
#   PART_SIZE=8M CONCURRENCY=8      direct client settings
#   MOUNT_OPTS="..."                extra `s3role mount` options (e.g. "--cache-size 1G")
#   S3ROLE_LOG=...                  RUST_LOG for s3role (default: its own default)
#   DIAG=1                          read-size sample and read-ahead what-if (0 to skip)
#   SKIP_BUILD=1                    use the binaries already built (target/release, or
#   S3ROLE_BIN=... DIRECT_GET_BIN=...  these, e.g. copies kept while src/ is being changed)
#   KEEP=1                          keep the work directory (logs) instead of deleting it
#   QUIET_WAIT=600                  wait up to this many seconds for other load to stop first
#   PERF=1                          also profile s3role with `perf record` during one read
#                                   (self time only; for call chains of this release build,
#                                   which has no frame pointers, use --call-graph dwarf)
set -euo pipefail
cd "$(dirname "$0")/.."

BIG_MIB=${BIG_MIB:-1024}
NFILES=${NFILES:-10000}
RANDOM_READS=${RANDOM_READS:-2000}
RUNS=${RUNS:-5}
PART_SIZE=${PART_SIZE:-8M}
CONCURRENCY=${CONCURRENCY:-8}
MOUNT_OPTS=${MOUNT_OPTS:-}
DIAG=${DIAG:-1}
export BENCH_SERVER=${BENCH_SERVER:-seaweedfs}
BUCKET=bench
BIG_KEY=big
# The 10,000 small objects: under many/ of the same bucket, except on s3s-fs, which answers
# HEAD of a "directory" key (many/) with HTTP 500 (it is a directory on its disk), so that a
# mount cannot even look the directory up: there they fill the root of a bucket of their own.
if [[ $BENCH_SERVER == s3s-fs ]]; then
    LS_BUCKET=benchdir LS_DIR=
else
    LS_BUCKET=$BUCKET LS_DIR=many
fi
S3ROLE=${S3ROLE_BIN:-target/release/s3role}
DIRECT=${DIRECT_GET_BIN:-target/release/examples/direct_get}
HELPER=scripts/bench_read_helper.py
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)

WORK=$(mktemp -d /tmp/s3role-bench.XXXXXX)
MNT=$WORK/mnt
mkdir "$MNT"
# The source of the big object, kept to check what the mount returns; on tmpfs.
SRC=$(mktemp "${BENCH_TMPFS:-/dev/shm}/s3role-bench-src.XXXXXX")
MOUNT_PID=
# s3s-fs logs every request (one line each) so requests can be counted; SeaweedFS has counters.
if [[ $BENCH_SERVER == s3s-fs ]]; then
    export BENCH_SERVER_LOGLEVEL=${BENCH_SERVER_LOGLEVEL:-info,s3s::service=debug}
fi
BENCH_SERVER_LOG=$WORK/server.log
# shellcheck source=bench-server.sh
source scripts/bench-server.sh

cleanup() {
    set +e
    trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
    mount_stop
    bench_server_stop
    rm -f "$SRC"
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }
now() { date +%s.%N; }
# CPU ticks (user+system) of a process, all threads.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
# median and best (max) of numbers given as arguments
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
best() { printf '%s\n' "$@" | sort -g | tail -n1; }

# ---- s3role mount --------------------------------------------------------------------------
# mount_start [BUCKET]: a fresh mount of BUCKET (default: the big object's) on $MNT.
mount_start() {
    # No role: the server has static keys only, taken from the environment like any client.
    "${PIN[@]}" env AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        ${S3ROLE_LOG:+RUST_LOG=$S3ROLE_LOG} \
        "$S3ROLE" mount "${1:-$BUCKET}" "$MNT" -f --endpoint-url "$S3_ENDPOINT" --path-style --region us-east-1 \
        $MOUNT_OPTS >>"$WORK/s3role.log" 2>&1 &
    MOUNT_PID=$!
    local i
    for i in $(seq 1 100); do
        if grep -qs " $MNT fuse" /proc/mounts; then
            return 0
        fi
        if ! kill -0 "$MOUNT_PID" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "s3role did not mount; its log:" >&2
    tail -n 20 "$WORK/s3role.log" >&2
    return 1
}

mount_stop() {
    [[ -n $MOUNT_PID ]] || return 0
    if grep -qs " $MNT fuse" /proc/mounts; then
        fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
    fi
    local i
    for i in $(seq 1 50); do
        kill -0 "$MOUNT_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill "$MOUNT_PID" 2>/dev/null || true
    wait "$MOUNT_PID" 2>/dev/null || true
    MOUNT_PID=
}

# ---- request accounting ---------------------------------------------------------------------
# snap NAME: remembers the server's request counters (SeaweedFS) or log length (s3s-fs).
snap() {
    if [[ $BENCH_SERVER == seaweedfs ]]; then
        curl -s "$BENCH_SERVER_METRICS" >"$WORK/snap.$1" || true
    else
        stat -c %s "$BENCH_SERVER_LOG" >"$WORK/snap.$1"
    fi
}
# reqs A B: the requests seen between snapshots A and B, as name=value pairs.
reqs() {
    if [[ $BENCH_SERVER == seaweedfs ]]; then
        python3 "$HELPER" reqdiff --kind seaweedfs --before "$WORK/snap.$1" --after "$WORK/snap.$2"
    else
        sleep 0.2 # let the server flush its log
        python3 "$HELPER" reqdiff --kind s3s-fs --log "$BENCH_SERVER_LOG" \
            --start "$(cat "$WORK/snap.$1")" --end "$(stat -c %s "$BENCH_SERVER_LOG")"
    fi
}

# cpu_of COMMAND...: runs it, printing its output and then "cpu_seconds=N" (user + system).
cpu_of() {
    local tf
    tf=$(mktemp "$WORK/time.XXXXXX")
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -o "$tf" -f "%U %S" "$@"
        awk '{printf "cpu_seconds=%.2f\n", $1 + $2}' "$tf"
    else
        "$@"
        echo "cpu_seconds=0"
    fi
    rm -f "$tf"
}

# cpu_begin / cpu_end WALL_SECONDS: CPU of s3role and of the server over a phase (percent of
# one core), and how many cores the whole machine kept busy (anything else running shows here).
cpu_begin() {
    C_MOUNT=$( [[ -n $MOUNT_PID ]] && ticks "$MOUNT_PID" || echo 0)
    C_SERVER=$(ticks "$BENCH_SERVER_PID")
    read -r C_BUSY C_TOTAL < <(bench_jiffies)
}
cpu_end() {
    local m s busy total
    m=$( [[ -n $MOUNT_PID ]] && ticks "$MOUNT_PID" || echo 0)
    s=$(ticks "$BENCH_SERVER_PID")
    read -r busy total < <(bench_jiffies)
    CPU_MOUNT_SECS=$(calc "($m - $C_MOUNT) / $HZ" 2)
    CPU_SERVER_SECS=$(calc "($s - $C_SERVER) / $HZ" 2)
    CPU_MOUNT=$(calc "$CPU_MOUNT_SECS / $1 * 100" 0)
    CPU_SERVER=$(calc "$CPU_SERVER_SECS / $1 * 100" 0)
    CPU_MACHINE=$(calc "($busy - $C_BUSY) / ($total - $C_TOTAL) * $NCPU" 1)
}

# ---- build, server, data --------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building s3role and examples/direct_get (release)"
    cargo build --release --quiet --bin s3role --example direct_get
fi
python3 -c 'import boto3' 2>/dev/null || { echo "needs python3 with boto3 (pip install boto3)" >&2; exit 1; }
command -v fusermount3 >/dev/null || { echo "needs fusermount3 (apt-get install fuse3)" >&2; exit 1; }

bench_wait_quiet
BG=$BENCH_BUSY
log "background load before measuring: $BG cores busy"

log "starting $BENCH_SERVER"
bench_server_start
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log "creating s3://$BUCKET/$BIG_KEY ($BIG_MIB MiB) and $NFILES objects in s3://$LS_BUCKET/$LS_DIR"
SETUP=$(python3 "$HELPER" setup --endpoint "$S3_ENDPOINT" --bucket "$BUCKET" --big-key "$BIG_KEY" \
    --big-mib "$BIG_MIB" --src "$SRC" --dir-bucket "$LS_BUCKET" --dir "$LS_DIR" --nfiles "$NFILES")
echo "$SETUP" >&2

log "checking that the server honours ranges and If-Match (s3role sends If-Match: ETag)"
if PROBE=$("$DIRECT" "$S3_ENDPOINT" "$BUCKET" "$BIG_KEY" --probe 2>&1); then
    IF_MATCH="honoured (stale ETag -> 412)"
else
    # Not fatal for a read benchmark, but a mount would then miss replaced objects.
    IF_MATCH="NOT honoured: $(echo "$PROBE" | grep FAILED | sed 's/^probe: FAILED: //')"
fi
echo "$PROBE" >&2

# ---- (a)-(c) sequential reads: direct client and mount, alternating ------------------------
# Two settings, RUNS pairs each:
#   pinned  the server on CPU 0, every client (the direct client; s3role and dd) on the other
#           CPUs. The server stands in for S3, which in real use runs on other machines, so
#           this asks whether the mount keeps up with what "the network" delivers.
#   shared  no pinning: server and clients compete for every core, so the ratio also
#           reflects how much CPU each client spends per byte (shown as CPU per GiB).
# The headline ratio is the pinned one (the shared one on a single-core machine).
PIN=()

# sequential_phase NAME: runs the pairs and stores the summary lines in SUMMARY_<NAME> and
# the median ratio in RATIO_<NAME>.
sequential_phase() {
    local name=$1 run out secs mibs client_cpu dd_cpu
    local direct=() mount=() direct_cpu direct_gib direct_reqs seq_cpu mount_gib seq_reqs
    for run in $(seq 1 "$RUNS"); do
        log "$name: direct client run $run/$RUNS (part $PART_SIZE, $CONCURRENCY in flight)"
        snap d0
        cpu_begin
        t0=$(now)
        out=$(cpu_of "${PIN[@]}" "$DIRECT" "$S3_ENDPOINT" "$BUCKET" "$BIG_KEY" \
            --part-size "$PART_SIZE" --concurrency "$CONCURRENCY")
        secs=$(calc "$(now) - $t0" 3)
        cpu_end "$secs"
        snap d1
        mibs=$(echo "$out" | grep -o 'mib_per_s=[0-9.]*' | cut -d= -f2)
        client_cpu=$(echo "$out" | grep -o 'cpu_seconds=[0-9.]*' | cut -d= -f2)
        direct+=("$mibs")
        direct_cpu="client ${client_cpu}s CPU (incl. start-up), server ${CPU_SERVER}%, machine ${CPU_MACHINE}/$NCPU cores busy"
        direct_gib="client $(calc "$client_cpu / $BIG_MIB * 1024" 2) s, server $(calc "$CPU_SERVER_SECS / $BIG_MIB * 1024" 2) s"
        direct_reqs=$(reqs d0 d1)
        echo "   $mibs MiB/s; $direct_cpu; $direct_reqs" >&2

        log "$name: mount sequential read run $run/$RUNS (fresh mount, dd bs=1M)"
        mount_start
        snap m0
        cpu_begin
        t0=$(now)
        out=$(cpu_of "${PIN[@]}" dd if="$MNT/$BIG_KEY" of=/dev/null bs=1M status=none)
        secs=$(calc "$(now) - $t0" 3)
        cpu_end "$secs"
        snap m1
        dd_cpu=$(echo "$out" | grep -o 'cpu_seconds=[0-9.]*' | cut -d= -f2)
        mount_gib="s3role $(calc "$CPU_MOUNT_SECS / $BIG_MIB * 1024" 2) s + reader (dd) $(calc "$dd_cpu / $BIG_MIB * 1024" 2) s, server $(calc "$CPU_SERVER_SECS / $BIG_MIB * 1024" 2) s"
        mibs=$(calc "$BIG_MIB / $secs")
        mount+=("$mibs")
        seq_reqs=$(reqs m0 m1)
        seq_cpu="s3role ${CPU_MOUNT}%, server ${CPU_SERVER}%, machine ${CPU_MACHINE}/$NCPU cores busy"
        echo "   $mibs MiB/s in $secs s; $seq_cpu; $seq_reqs" >&2
        mount_stop
    done
    local dmed dbest mmed mbest ratio rbest
    dmed=$(median "${direct[@]}") dbest=$(best "${direct[@]}")
    mmed=$(median "${mount[@]}") mbest=$(best "${mount[@]}")
    ratio=$(calc "$mmed / $dmed" 2) rbest=$(calc "$mbest / $dbest" 2)
    printf -v "RATIO_$name" '%s' "$ratio"
    printf -v "DIRECT_MED_$name" '%s' "$dmed"
    printf -v "SUMMARY_$name" '%s\n' \
        "    direct      ${direct[*]}  -> median $dmed, best $dbest  (part $PART_SIZE, $CONCURRENCY in flight)" \
        "                last run: $direct_cpu" \
        "                requests: $direct_reqs" \
        "    mount       ${mount[*]}  -> median $mmed, best $mbest  (fresh mount each, dd bs=1M)" \
        "                last run: $seq_cpu" \
        "                requests: $seq_reqs" \
        "    ratio       mount/direct = $ratio (medians), $rbest (bests)" \
        "    CPU per GiB direct: $direct_gib; mount: $mount_gib (last runs)"
}

if ((NCPU >= 2)); then
    CLIENT_CPUS=1-$((NCPU - 1))
    bench_server_pin 0
    PIN=(taskset -c "$CLIENT_CPUS")
    sequential_phase pinned
    bench_server_pin "0-$((NCPU - 1))"
    PIN=()
    PINNED_DESC="server on CPU 0, clients on CPUs $CLIENT_CPUS"
fi
sequential_phase shared
if ((NCPU >= 2)); then
    RATIO=$RATIO_pinned HEADLINE="pinned" DIRECT_MED=$DIRECT_MED_pinned
else
    RATIO=$RATIO_shared HEADLINE="shared (single core)" DIRECT_MED=$DIRECT_MED_shared
fi
VERDICT=$(awk "BEGIN { print ($RATIO >= 0.8) ? \"meets the 0.8 target\" : \"BELOW the 0.8 target\" }")

# ---- (d) random 4 KiB reads ------------------------------------------------------------------
log "random 4 KiB reads: $RANDOM_READS preads on a fresh mount, checked against the source"
mount_start
snap r0
cpu_begin
t0=$(now)
RAND=$(python3 "$HELPER" random --file "$MNT/$BIG_KEY" --src "$SRC" --count "$RANDOM_READS" --size 4096)
secs=$(calc "$(now) - $t0" 3)
cpu_end "$secs"
snap r1
RAND_REQS=$(reqs r0 r1)
RAND_CPU="s3role ${CPU_MOUNT}%, server ${CPU_SERVER}%"
echo "   $RAND; $RAND_CPU; $RAND_REQS" >&2
mount_stop
log "random 4 KiB reads with the direct client (one GET of 4 KiB each, one at a time)"
RAND_DIRECT=$("$DIRECT" "$S3_ENDPOINT" "$BUCKET" "$BIG_KEY" --random "$RANDOM_READS" --read-size 4096)
echo "   $RAND_DIRECT" >&2

# ---- (e) ls -l of a big directory ------------------------------------------------------------
log "ls -l of s3://$LS_BUCKET/$LS_DIR ($NFILES objects) on a fresh mount"
mount_start "$LS_BUCKET"
snap l0
cpu_begin
t0=$(now)
n=$(ls -l "$MNT/$LS_DIR" | grep -c '^-' || true)
LS_COLD=$(calc "$(now) - $t0" 2)
cpu_end "$LS_COLD"
snap l1
LS_COLD_REQS=$(reqs l0 l1)
LS_COLD_CPU="s3role ${CPU_MOUNT}%, server ${CPU_SERVER}%"
[[ $n == "$NFILES" ]] || echo "   WARNING: ls -l showed $n files, expected $NFILES" >&2
echo "   cold: $LS_COLD s ($n files); $LS_COLD_CPU; $LS_COLD_REQS" >&2
t0=$(now)
ls -l "$MNT/$LS_DIR" >/dev/null
LS_WARM=$(calc "$(now) - $t0" 2)
snap l2
LS_WARM_REQS=$(reqs l1 l2)
echo "   again: $LS_WARM s; $LS_WARM_REQS" >&2
mount_stop

# ---- diagnostics -----------------------------------------------------------------------------
# CPU ticks of each thread of process $1, summed by thread name: "name ticks" lines.
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        echo "$(cat "$t/comm" 2>/dev/null | tr ' ' _) $(awk '{print $14 + $15}' "$t/stat" 2>/dev/null || echo 0)"
    done | awk '{n[$1] += $2} END {for (k in n) print k, n[k]}' | sort
}
RA_KB="?" READ_SIZES="(skipped)" WHATIF="(skipped)" THREADS="(skipped)" PERF_TOP=""
if [[ $DIAG == 1 ]]; then
    log "diagnostic: CPU of s3role's threads during one sequential read (perf record if PERF=1)"
    mount_start
    RA_KB=$(cat "/sys/class/bdi/$(mountpoint -d "$MNT")/read_ahead_kb" 2>/dev/null || echo "?")
    thread_ticks "$MOUNT_PID" >"$WORK/threads.0"
    PERF_PID=
    if [[ ${PERF:-0} == 1 ]] && command -v perf >/dev/null; then
        perf record -q -F 499 -o "$WORK/perf.data" -p "$MOUNT_PID" 2>/dev/null &
        PERF_PID=$!
        sleep 0.5
    fi
    t0=$(now)
    dd if="$MNT/$BIG_KEY" of=/dev/null bs=1M status=none
    secs=$(calc "$(now) - $t0" 3)
    thread_ticks "$MOUNT_PID" >"$WORK/threads.1"
    if [[ -n $PERF_PID ]]; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
        perf report -i "$WORK/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null >"$WORK/perf.txt" || true
        PERF_TOP=$(grep -E '^ +[0-9.]+%' "$WORK/perf.txt" | head -n 15 | sed 's/^ */                 /' || true)
    fi
    # "name: % of one core" for each thread name, busiest first.
    THREADS="$(calc "$BIG_MIB / $secs") MiB/s; $(join -a1 -e0 -o 0,1.2,2.2 "$WORK/threads.1" "$WORK/threads.0" |
        awk -v hz="$HZ" -v s="$secs" '{printf "%s %.0f\n", $1, ($2 - $3) / hz / s * 100}' |
        sort -k2 -rn | awk '$2 > 0 {printf "%s%s %s%%", sep, $1, $2; sep = ", "}')"
    mount_stop

    mount_start
    if command -v strace >/dev/null; then
        log "diagnostic: sizes of the kernel's FUSE read requests (strace of s3role while reading 64 MiB)"
        strace -f -qq -e trace=writev -e signal=none -o "$WORK/strace.txt" -p "$MOUNT_PID" &
        STRACE_PID=$!
        sleep 1
        dd if="$MNT/$BIG_KEY" of=/dev/null bs=1M count=64 status=none
        kill "$STRACE_PID" 2>/dev/null || true
        wait "$STRACE_PID" 2>/dev/null || true
        # Each reply is writev(/dev/fuse) of a 16-byte header plus the data.
        READ_SIZES=$(grep -o '= [0-9]*$' "$WORK/strace.txt" | awk '$2 > 4096 {n[$2 - 16]++}
            END {for (s in n) printf "%dx%dKiB ", n[s], s / 1024}')
        READ_SIZES=${READ_SIZES:-"(none seen)"}
    fi
    mount_stop
    if [[ -w /sys/class/bdi ]] || [[ $(id -u) == 0 ]]; then
        log "diagnostic what-if: one sequential read with the mount's read_ahead_kb raised to 1024"
        mount_start
        if echo 1024 >"/sys/class/bdi/$(mountpoint -d "$MNT")/read_ahead_kb" 2>/dev/null; then
            t0=$(now)
            dd if="$MNT/$BIG_KEY" of=/dev/null bs=1M status=none
            secs=$(calc "$(now) - $t0" 3)
            WHATIF="$(calc "$BIG_MIB / $secs") MiB/s ($(calc "$BIG_MIB / $secs / $DIRECT_MED" 2) of direct median)"
        fi
        mount_stop
    fi
fi

# ---- summary ---------------------------------------------------------------------------------
REV="$S3ROLE built $(date -r "$S3ROLE" '+%F %T'), tree $(git describe --always --dirty 2>/dev/null || echo "?")"
cat <<EOF

==================== s3role read benchmark ====================
server           $BENCH_SERVER at $S3_ENDPOINT (data on tmpfs); If-Match on GET: $IF_MATCH
machine          $NCPU cores, kernel $(uname -r), background load $BG cores before the runs, load avg at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg); s3role $REV
object           $BIG_MIB MiB; $RUNS runs each, direct and mount alternating; figures are MiB/s
(a)-(c) pinned   ${PINNED_DESC:-(single core: not run)}
${SUMMARY_pinned:-}(a)-(c) shared   server and clients on all $NCPU cores
${SUMMARY_shared}ratio            $RATIO ($HEADLINE, medians): $VERDICT
(d) random 4KiB  mount:  $(echo "$RAND" | sed 's/random_reads=[0-9]* read_size=[0-9]* //')
                 requests: $RAND_REQS
                 direct: $(echo "$RAND_DIRECT" | sed 's/random_reads=[0-9]* read_size=[0-9]* //')
(e) ls -l        $NFILES objects (s3://$LS_BUCKET/$LS_DIR): cold $LS_COLD s, again $LS_WARM s
                 cold requests: $LS_COLD_REQS ($LS_COLD_CPU)
                 again requests: $LS_WARM_REQS
kernel           mount read_ahead_kb=$RA_KB; FUSE read requests seen: $READ_SIZES
what-if          read_ahead_kb=1024: $WHATIF
s3role threads   $THREADS${PERF_TOP:+
perf (s3role)
$PERF_TOP}
===============================================================
EOF
