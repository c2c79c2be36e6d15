#!/usr/bin/env bash
# Runs fsx (the File System eXerciser, crates.io fsx 0.3.2) against a real s3role mount of the
# local S3+STS+IAM test server: random reads, writes, mmap reads and writes, truncates and
# close/reopen on one file, each read checked against what fsx knows the file must hold.
#
#   scripts/fsx.sh [VARIANT...]
#
# Variants (all four by default), each on a fresh file of its own:
#   default      fsx's own mix: pread, pwrite, mmap read, mmap write, ftruncate
#   nommap       the same without mmap reads and writes (C fsx -R -W)
#   closeopen    the default mix, and the file closed and reopened after about one
#                operation in 11 (C fsx -c 11): every close uploads the file, and the next
#                open often comes before the kernel has released the last handle
#   notruncate   the default mix without ftruncate
#
# Environment:
#   FSX_OPS=N       operations per variant (default 100000); lower it for a quick run
#   FSX_SEED=N      seed of the first variant (the others get N+1, N+2, ...); default random.
#                   Each variant prints its seed, so a failure is reproducible:
#                   FSX_SEED=<seed> scripts/fsx.sh <variant>
#   FSX_TIMEOUT=S   bound on one variant (default 3600)
#   S3ROLE_BIN=PATH tests that binary instead of building target/release/s3role
#
# Needs root, /dev/fuse, fusermount3, Rust, and python3 with moto[server]==5.2.1 (installed
# with pip if missing). fsx is installed once into target/tools.
#
# How it runs: builds s3role, starts scripts/testserver/s3role_moto.py on a free port, mounts
# data:/fsx through role `writer` (user alice, external ID) on target/fsx/mnt, and runs fsx
# on target/fsx/mnt/VARIANT.fsx for each variant. The mount and the server are removed on
# exit, also on failure or Ctrl-C.
#
# What it leaves behind, in target/fsx/: VARIANT.toml (fsx's configuration), VARIANT.log (its
# output; on failure fsx also writes VARIANT/*.fsxlog and *.fsxgood there), s3role.log and
# server.log. It prints one line per variant, `fsx VARIANT: ok|FAILED ...` with the seed and
# the time, then `fsx: N passed, M failed`. Exit status: 0 when every variant passed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
export LC_ALL=C

FSX_VERSION=0.3.2
WORK=$REPO/target/fsx
MNT=$WORK/mnt
OPS=${FSX_OPS:-100000}
VARIANT_TIMEOUT=${FSX_TIMEOUT:-3600}
ALL_VARIANTS=(default nommap closeopen notruncate)

say() { printf '[fsx.sh] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

case ${1:-} in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
VARIANTS=("$@")
(( ${#VARIANTS[@]} > 0 )) || VARIANTS=("${ALL_VARIANTS[@]}")
for v in "${VARIANTS[@]}"; do
    [[ " ${ALL_VARIANTS[*]} " == *" $v "* ]] || die "unknown variant $v (one of: ${ALL_VARIANTS[*]})"
done
[[ $OPS =~ ^[1-9][0-9]*$ ]] || die "FSX_OPS must be a positive number"
[[ -z ${FSX_SEED:-} || $FSX_SEED =~ ^[0-9]+$ ]] || die "FSX_SEED must be a number"

[[ $(id -u) -eq 0 ]] || die "run as root: the mount needs /dev/fuse"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing"
command -v fusermount3 >/dev/null || die "fusermount3 is missing (apt-get install fuse3)"

# ---- tools ----------------------------------------------------------------------------------
# shellcheck source=testserver/start.sh
source scripts/testserver/start.sh
FSX=$(testserver_tool fsx "$FSX_VERSION") || die "could not install fsx"
S3ROLE=$(testserver_s3role) || die "no s3role to test"

# ---- state and cleanup ----------------------------------------------------------------------
SERVER_PID= S3ROLE_PID= FSX_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    testserver_stop "$FSX_PID"
    testserver_unmount "$MNT" "$S3ROLE_PID"
    testserver_stop "$SERVER_PID"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if testserver_is_mounted "$MNT"; then say "unmounting a stale mount on $MNT"; fusermount3 -uz "$MNT" || true; fi
rm -rf "$WORK"
mkdir -p "$MNT"

# ---- server and mount -----------------------------------------------------------------------
say "starting the local S3+STS+IAM server..."
testserver_start "$WORK/world.json" "$WORK/server.log" || die "the test server did not start"
eval "$(testserver_settings "$WORK/world.json" writer)"

say "mounting data:/fsx on ${MNT#"$REPO"/} through role writer as alice..."
testserver_as_alice
mounted=1
RUST_BACKTRACE=1 NO_COLOR=1 testserver_mount data:/fsx "$MNT" "$WORK/s3role.log" \
    --endpoint-url "$EP" --sts-endpoint "$EP" --path-style --region "$REGION" \
    --role-arn "$ROLE" --external-id "$EXT" --role-session-name fsx --staging-dir "$WORK" ||
    mounted=0
S3ROLE_PID=$MOUNT_PID
(( mounted )) || die "s3role did not mount"

# ---- variants -------------------------------------------------------------------------------
# fsx's configuration of variant $1: fsx's defaults (pread, pwrite, mmap read and write,
# ftruncate, 10 each; 256 KiB file; operations up to 64 KiB) with one change.
variant_config() {
    echo "# Generated by scripts/fsx.sh: variant $1"
    case $1 in
    default) ;;
    nommap) printf '[weights]\nmapread = 0\nmapwrite = 0\n' ;;
    closeopen) printf '[weights]\nclose_open = 5\n' ;;
    notruncate) printf '[weights]\ntruncate = 0\n' ;;
    esac
}

random_seed() { od -An -N4 -tu4 /dev/urandom | tr -d ' '; }
BASE_SEED=${FSX_SEED:-$(random_seed)}
PASSED=0 FAILED=0 i=0
RESULTS=()
for v in "${VARIANTS[@]}"; do
    seed=$((BASE_SEED + i))
    i=$((i + 1))
    variant_config "$v" >"$WORK/$v.toml"
    mkdir -p "$WORK/$v"
    say "fsx $v: $OPS operations, seed $seed, on ${MNT#"$REPO"/}/$v.fsx..."
    start=$SECONDS rc=0
    (cd "$WORK/$v" && exec timeout --kill-after=30 "$VARIANT_TIMEOUT" \
        "$FSX" -N "$OPS" -S "$seed" -P "$WORK/$v" -f "$WORK/$v.toml" "$MNT/$v.fsx") >"$WORK/$v.log" 2>&1 &
    FSX_PID=$!
    wait "$FSX_PID" || rc=$?
    FSX_PID=
    took=$((SECONDS - start))
    alive=1
    kill -0 "$S3ROLE_PID" 2>/dev/null && timeout 20 stat "$MNT" >/dev/null 2>&1 || alive=0
    if (( rc == 0 )) && grep -q 'A-OK' "$WORK/$v.log" && (( alive )); then
        PASSED=$((PASSED + 1))
        RESULTS+=("fsx $v: ok, $OPS operations, seed $seed, ${took}s")
    else
        FAILED=$((FAILED + 1))
        why="fsx status $rc"
        (( rc != 124 && rc != 137 )) || why="timed out after ${VARIANT_TIMEOUT}s"
        (( alive )) || why="$why; the mount died"
        RESULTS+=("fsx $v: FAILED ($why), seed $seed, ${took}s; log target/fsx/$v.log; again: FSX_SEED=$seed FSX_OPS=$OPS scripts/fsx.sh $v")
        say "last lines of target/fsx/$v.log:"
        tail -n 15 "$WORK/$v.log" | sed 's/^/    /' >&2
        (( alive )) || break
    fi
    say "${RESULTS[-1]}"
done

echo
printf '%s\n' "${RESULTS[@]}"
echo "fsx: $PASSED passed, $FAILED failed"
(( FAILED == 0 ))
