#!/usr/bin/env bash
# Runs pjdfstest (the POSIX file system test suite, crates.io pjdfstest 0.2.2) against a real
# s3role mount of the local S3+STS+IAM test server, and optionally against an s3fs mount of
# the same server, so that both figures come from one harness.
#
#   scripts/pjdfstest.sh [--s3fs] [--no-s3role] [--naptime SECONDS] [--debug] [-- PATTERN...]
#
#   --s3fs           also run the suite on an s3fs mount (admin keys, path-style requests)
#   --no-s3role      skip the s3role run (with --s3fs: s3fs only)
#   --naptime S      pjdfstest's sleep between a change and the timestamp check (default 1,
#                    the pjdfstest default: s3fs keeps whole seconds only)
#   --debug          RUST_LOG=s3role=debug,fuser=debug (every FUSE request; large log)
#   PATTERN...       only the pjdfstest cases whose name contains one of them (e.g. chmod)
#
# Needs root (pjdfstest switches users; the mount needs allow_other), /dev/fuse, fusermount3,
# Rust, and python3 with moto[server]==5.2.1 (installed with pip if missing). pjdfstest is
# installed once into target/tools (it links libacl: apt-get install libacl1-dev).
# The cases that switch users run as pjdfstest's dummy users, nobody:nogroup and tests:tests;
# user and group `tests` are created if missing. Those users must be able to reach the mount:
# when a directory above target/ is closed to them, the mount points and the local directory
# go to /tmp/s3role-pjdfstest.* instead (else those cases fail with EACCES everywhere).
#
# How it runs: builds s3role, starts scripts/testserver/s3role_moto.py on a free port, runs
# the suite once in a directory of the local disk (the reference, and the list of cases),
# then mounts data:/pjd through role `writer` (user alice, external ID) with --allow-other
# --metadata-ttl 1, runs the suite in a directory inside the mount, unmounts, and does the
# same with s3fs on data:/pjd-s3fs. Mounts and the server are removed on exit, also on
# failure or Ctrl-C. If a filesystem dies part-way (s3fs 1.90 does, once per run), it is
# mounted again and the cases not yet run go on; the summary says how many times it died.
# A full run takes about 3 minutes for s3role and 5 for s3fs, plus the builds.
#
# Where s3role stands: 326 passed, 49 failed, 23 skipped of 398 (ext4: 376 passed, 22
# skipped). Skipped besides ext4's 22: link::link_count_max (LINK_MAX is not known). Every
# failure is one of S3's limits:
#   35  need hard links, which S3 cannot have: link::{changed_ctime_success,remove_link,
#       share_metadata}::*, rename::{preserve_metadata,to_multiply_linked}::*,
#       unlink::{update_ctime_success,unchanged_ctime_failed}::* (they make a hard link first)
#   14  *::enametoolong_path: they create a path of PATH_MAX-1 (4,095) bytes first, and S3
#       keys stop at 1,024 bytes, so s3role answers ENAMETOOLONG long before
#
# What it leaves behind:
#   target/pjdfstest.log          full pjdfstest output for s3role
#   target/pjdfstest-s3fs.log     the same for s3fs (with --s3fs)
#   target/pjdfstest-local.log    the reference run on the local disk
#   target/pjdfstest/             config, server log, s3role log (s3role.log), s3fs log
# The last line printed is `pjdfstest: N passed, M failed, K skipped` for s3role (s3fs gets
# `pjdfstest (s3fs V1.90, ...): ...` just before it). Exit status: 0 when the suite ran
# (failures are expected: S3 is not POSIX), non-zero when the harness failed, a suite could
# not run every case, or s3role crashed.
#
# Environment: S3ROLE_BIN=PATH tests that binary instead of building target/release/s3role;
# PJDFSTEST_TIMEOUT=SECONDS bounds one suite run (default 3600).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
export LC_ALL=C

PJD_VERSION=0.2.2
WORK=$REPO/target/pjdfstest
RUN_S3ROLE=1
RUN_S3FS=0
NAPTIME=1
LOGLEVEL=s3role=info
PATTERNS=()
SUITE_TIMEOUT=${PJDFSTEST_TIMEOUT:-3600}

while [[ $# -gt 0 ]]; do
    case $1 in
        --s3fs) RUN_S3FS=1 ;;
        --no-s3role) RUN_S3ROLE=0 ;;
        --naptime) NAPTIME=${2:?--naptime needs a value}; shift ;;
        --debug) LOGLEVEL=s3role=debug,fuser=debug ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; PATTERNS+=("$@"); break ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) PATTERNS+=("$1") ;;
    esac
    shift
done
(( RUN_S3ROLE || RUN_S3FS )) || { echo "nothing to run" >&2; exit 2; }

say() { printf '[pjdfstest.sh] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root: pjdfstest switches users and the mount needs allow_other"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing"
command -v fusermount3 >/dev/null || die "fusermount3 is missing (apt-get install fuse3)"
if (( RUN_S3FS )); then command -v s3fs >/dev/null || die "s3fs is missing (apt-get install s3fs)"; fi
grep -qs '^user_allow_other' /etc/fuse.conf || say "note: /etc/fuse.conf has no user_allow_other (fine as root)"

# ---- tools ----------------------------------------------------------------------------------
# shellcheck source=testserver/start.sh
source scripts/testserver/start.sh
PJD=$(testserver_tool pjdfstest "$PJD_VERSION") || die "could not install pjdfstest"
if (( RUN_S3ROLE )); then S3ROLE=$(testserver_s3role) || die "no s3role to test"; fi

# ---- dummy users ----------------------------------------------------------------------------
# pjdfstest's own dummy users: nobody (group nogroup) and tests (group tests). The cases that
# switch users (permission checks, owners of new files, setgid rules) run as them. `tests` is
# created here if missing, with useradd/groupadd or, where those are missing, by appending to
# /etc/group and /etc/passwd; running again changes nothing.
ensure_tests_user() {
    if ! getent group tests >/dev/null; then
        if command -v groupadd >/dev/null; then
            groupadd --system tests
        else
            local gid=999
            while getent group "$gid" >/dev/null; do gid=$((gid - 1)); done
            echo "tests:x:$gid:" >>/etc/group
        fi
        say "created group tests"
    fi
    if ! getent passwd tests >/dev/null; then
        if command -v useradd >/dev/null; then
            useradd --system --gid tests --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tests
        else
            local uid=999
            while getent passwd "$uid" >/dev/null; do uid=$((uid - 1)); done
            echo "tests:x:$uid:$(getent group tests | cut -d: -f3)::/nonexistent:/usr/sbin/nologin" >>/etc/passwd
        fi
        say "created user tests"
    fi
}
ensure_tests_user
id nobody >/dev/null 2>&1 || die "no user nobody"
getent group nogroup >/dev/null || die "no group nogroup"
[[ $(id -g tests) -ne $(getent group nogroup | cut -d: -f3) ]] || die "tests and nobody share a group"

# The dummy users must reach the directories the suite runs in: if one of them cannot search
# a directory above target/ (a clone in a 0700 home or temporary directory), every step run
# as them fails with EACCES, and the cases that switch users fail on the local disk and the
# mount alike. The mount points and the local directory then go to /tmp instead.
reachable_by_dummies() {
    local d=$1 u
    for u in nobody tests; do
        setpriv --reuid "$u" --regid "$(id -g "$u")" --clear-groups -- test -x "$d" || return 1
    done
}
RUNDIR=$WORK
mkdir -p "$WORK"
if ! reachable_by_dummies "$WORK"; then
    RUNDIR=/tmp/s3role-pjdfstest.$(printf %s "$REPO" | md5sum | cut -c1-8)
    say "nobody or tests cannot reach ${WORK#"$REPO"/}: the mounts and the local directory go in $RUNDIR"
fi

# ---- state and cleanup ----------------------------------------------------------------------
MNT=$RUNDIR/mnt
MNT_S3FS=$RUNDIR/mnt-s3fs
LOCAL=$RUNDIR/local
SERVER_PID= S3ROLE_PID= S3FS_PID=

is_mounted() { testserver_is_mounted "$1"; }

unmount() { testserver_unmount "$@"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    testserver_stop "${PJD_RUN_PID:-}"
    unmount "$MNT" "$S3ROLE_PID"
    unmount "$MNT_S3FS" "$S3FS_PID"
    rm -f "$WORK/s3fs.passwd"
    testserver_stop "$SERVER_PID"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A previous run killed hard may have left mounts behind.
for m in "$MNT" "$MNT_S3FS"; do
    if is_mounted "$m"; then say "unmounting a stale mount on $m"; fusermount3 -uz "$m" || umount -l "$m" || true; fi
done
rm -rf "$WORK" "$LOCAL"
mkdir -p "$WORK" "$MNT" "$MNT_S3FS"
# pjdfstest runs some steps as the dummy users: they must reach the mount points.
chmod 755 "$WORK" "$RUNDIR" "$MNT" "$MNT_S3FS"
reachable_by_dummies "$MNT" || die "nobody or tests cannot reach $MNT"

# ---- pjdfstest configuration ----------------------------------------------------------------
CONFIG=$WORK/pjdfstest.toml
cat >"$CONFIG" <<EOF
# Generated by scripts/pjdfstest.sh. The features are those of pjdfstest's own Linux (ext4)
# CI configuration, so the suite has 398 cases; an ext4 directory passes 376 and skips 22
# (the EROFS cases need a remount, the EXDEV ones a second filesystem, and rename's ctime
# cases the rename_ctime feature).
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}

[settings]
naptime = $NAPTIME
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["tests", "tests"]]
EOF

# ---- server ---------------------------------------------------------------------------------
say "starting the local S3+STS+IAM server..."
testserver_start "$WORK/world.json" "$WORK/server.log" || die "the test server did not start"
eval "$(testserver_settings "$WORK/world.json" writer)"
testserver_as_alice
say "server at $EP; role $ROLE"

# Directory markers for both mount roots, as s3fs writes them (mode 040755, owned by root),
# so each mount root is an ordinary root-owned 0755 directory.
python3 - "$EP" "$REGION" "$ADMIN_AK" "$ADMIN_SK" <<'PY'
import sys, boto3
ep, region, ak, sk = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=ep, region_name=region,
                  aws_access_key_id=ak, aws_secret_access_key=sk)
for prefix in ("pjd/", "pjd-s3fs/"):
    s3.put_object(Bucket="data", Key=prefix, Body=b"",
                  Metadata={"mode": "16877", "uid": "0", "gid": "0"})
PY

wait_mounted() {
    local mnt=$1 pid=$2 log=$3
    for _ in $(seq 1 300); do
        is_mounted "$mnt" && return 0
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$log" >&2; die "the mount process exited before $mnt was mounted"; }
        sleep 0.2
    done
    tail -n 30 "$log" >&2
    die "$mnt was not mounted within 60 s"
}

# Mounts filesystem $1 (s3role or s3fs) in the foreground of a background job; its output is
# appended to target/pjdfstest/$1.log.
mount_fs() {
    case $1 in
    s3role)
        say "mounting data:/pjd on ${MNT#"$REPO"/} through role writer as alice..."
        local mounted=1
        RUST_LOG=$LOGLEVEL RUST_BACKTRACE=1 NO_COLOR=1 \
            testserver_mount data:/pjd "$MNT" "$WORK/s3role.log" \
            --endpoint-url "$EP" --sts-endpoint "$EP" --path-style --region "$REGION" \
            --role-arn "$ROLE" --external-id "$EXT" --role-session-name pjdfstest \
            --allow-other --metadata-ttl 1 --staging-dir "$WORK" || mounted=0
        S3ROLE_PID=$MOUNT_PID
        (( mounted )) || die "s3role did not mount"
        ;;
    s3fs)
        printf '%s:%s\n' "$ADMIN_AK" "$ADMIN_SK" >"$WORK/s3fs.passwd"
        chmod 600 "$WORK/s3fs.passwd"
        say "mounting data:/pjd-s3fs on ${MNT_S3FS#"$REPO"/} with s3fs (admin keys)..."
        env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY s3fs data:/pjd-s3fs "$MNT_S3FS" -f \
            -o "url=$EP,use_path_request_style,endpoint=$REGION,allow_other" \
            -o "passwd_file=$WORK/s3fs.passwd,dbglevel=warn" \
            >>"$WORK/s3fs.log" 2>&1 &
        S3FS_PID=$!
        wait_mounted "$MNT_S3FS" "$S3FS_PID" "$WORK/s3fs.log"
        ;;
    esac
}

unmount_fs() {
    case $1 in
    s3role) unmount "$MNT" "$S3ROLE_PID"; S3ROLE_PID= ;;
    s3fs) unmount "$MNT_S3FS" "$S3FS_PID"; S3FS_PID= ;;
    esac
}

# Whether filesystem $1 still answers.
fs_alive() {
    local mnt pid
    case $1 in
    s3role) mnt=$MNT pid=$S3ROLE_PID ;;
    s3fs) mnt=$MNT_S3FS pid=$S3FS_PID ;;
    esac
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && timeout 20 stat -f "$mnt" >/dev/null 2>&1
}

# Names of the cases a pjdfstest output reports a result for.
reported() { sed -nE 's/^([a-z_0-9:]+) +(ok|FAILED|skipped|failed as expected|PASSED UNEXPECTEDLY)$/\1/p' "$1"; }

# Runs pjdfstest in directory $2 with the case selection "${@:3}"; output appended to $1.
# Returns pjdfstest's status.
# pjdfstest exits non-zero when any case failed: that is the expected outcome here. It runs
# as a background job so that a signal reaches the cleanup trap at once (the trap stops it);
# its live output is in target/pjdfstest/run.*.
PJD_RUN_PID=
pjdfstest_in() {
    local out=$1 dir=$2 rc=0 tmp config=${PJD_CONFIG:-$CONFIG}
    shift 2
    tmp=$(mktemp "$WORK/run.XXXXXX")
    (cd "$dir" && exec env NO_COLOR=1 RUST_BACKTRACE=0 timeout --kill-after=30 "$SUITE_TIMEOUT" \
        "$PJD" -c "$config" -p "$dir" "$@") >"$tmp" 2>&1 &
    PJD_RUN_PID=$!
    wait "$PJD_RUN_PID" || rc=$?
    PJD_RUN_PID=
    sed 's/\x1b\[[0-9;]*m//g' "$tmp" >>"$out"
    rm -f "$tmp"
    return "$rc"
}

# The reference run: the same cases in a directory of the local disk (target/), with a short
# naptime (local disks keep nanoseconds). It lists the cases, so a run cut short by a crash
# can go on where it stopped.
CASES=$WORK/cases.txt
LOCAL_LOG=$REPO/target/pjdfstest-local.log
sed 's/^naptime = .*/naptime = 0.01/' "$CONFIG" >"$WORK/pjdfstest-local.toml"
mkdir -m 755 "$LOCAL"
: >"$LOCAL_LOG"
PJD_CONFIG=$WORK/pjdfstest-local.toml pjdfstest_in "$LOCAL_LOG" "$LOCAL" -- "${PATTERNS[@]}" || true
grep -q '^Summary: ' "$LOCAL_LOG" || { tail -n 20 "$LOCAL_LOG" >&2; die "pjdfstest does not run on the local disk (see $LOCAL_LOG)"; }
reported "$LOCAL_LOG" | sort >"$CASES"
LOCAL_FS=$(stat -f -c %T "$LOCAL")
say "reference run on the local disk ($LOCAL_FS): $(grep '^Summary: ' "$LOCAL_LOG" | sed 's/^Summary: //')"

declare -A PASSED FAILED SKIPPED CRASHES INCOMPLETE TOOK
MAX_RESTARTS=5

# Runs the suite on filesystem $1 (mounting it), output to $2. When the filesystem dies
# part-way (s3fs 1.90 segfaults on a FLUSH whose path libfuse lost: s3fs-fuse#2903), the
# case that was running keeps the result it got, the filesystem is mounted again and the
# cases not yet run go on, up to $MAX_RESTARTS times. Each restart is noted in the output.
run_suite() {
    local name=$1 out=$2 mnt attempt=0 rc start remaining
    case $name in s3role) mnt=$MNT ;; s3fs) mnt=$MNT_S3FS ;; esac
    : >"$out"
    CRASHES[$name]=0 INCOMPLETE[$name]=
    start=$SECONDS
    while :; do
        mapfile -t remaining < <(comm -23 "$CASES" <(reported "$out" | sort))
        (( ${#remaining[@]} > 0 )) || break
        fs_alive "$name" || mount_fs "$name"
        local dir=$mnt/pjdfstest.$attempt
        mkdir -m 755 "$dir"
        say "running pjdfstest on $name (${#remaining[@]} cases in ${dir#"$REPO"/}), output in ${out#"$REPO"/}..."
        rc=0
        if (( attempt == 0 )); then
            pjdfstest_in "$out" "$dir" -- "${PATTERNS[@]}" || rc=$?
        else
            # -e matches the full name, before pjdfstest strips its module prefix.
            pjdfstest_in "$out" "$dir" -e -- "${remaining[@]/#/pjdfstest::tests::}" || rc=$?
        fi
        if fs_alive "$name"; then
            grep -q '^Summary: ' "$out" || INCOMPLETE[$name]="pjdfstest stopped (status $rc)"
            break
        fi
        CRASHES[$name]=$(( ${CRASHES[$name]} + 1 ))
        {
            echo "### $name DIED during this run (pjdfstest status $rc); last result above: $(reported "$out" | tail -n 1)"
            echo "### last lines of its log:"
            tail -n 5 "$WORK/$name.log" | sed 's/^/###   /'
            dmesg 2>/dev/null | grep -E "$name\[[0-9]+\]: segfault" | tail -n 1 | sed 's/^/###   kernel: /' || true
        } >>"$out"
        say "$name died during the run (crash ${CRASHES[$name]}); mounting it again for the cases left"
        unmount_fs "$name"
        if (( ${CRASHES[$name]} > MAX_RESTARTS )); then INCOMPLETE[$name]="died more than $MAX_RESTARTS times"; break; fi
        attempt=$((attempt + 1))
    done
    TOOK[$name]=$((SECONDS - start))
    PASSED[$name]=$(grep -cE ' ok$' "$out" || true)
    FAILED[$name]=$(grep -cE ' (FAILED|PASSED UNEXPECTEDLY)$' "$out" || true)
    SKIPPED[$name]=$(grep -cE ' skipped$' "$out" || true)
    local left
    left=$(comm -23 "$CASES" <(reported "$out" | sort) | wc -l)
    [[ $left -eq 0 || -n ${INCOMPLETE[$name]} ]] || INCOMPLETE[$name]="$left cases never ran"
    echo "# $name: ${PASSED[$name]} passed, ${FAILED[$name]} failed, ${SKIPPED[$name]} skipped of $(wc -l <"$CASES"); died ${CRASHES[$name]} times; ${TOOK[$name]}s; naptime $NAPTIME${INCOMPLETE[$name]:+; INCOMPLETE: ${INCOMPLETE[$name]}}" >>"$out"
    unmount_fs "$name"
}

# One line for filesystem $1.
result_line() {
    local n=$1
    printf '%s passed, %s failed, %s skipped' "${PASSED[$n]}" "${FAILED[$n]}" "${SKIPPED[$n]}"
    (( ${CRASHES[$n]} == 0 )) || printf ' (the filesystem died %s times; the run went on after remounting)' "${CRASHES[$n]}"
    [[ -z ${INCOMPLETE[$n]} ]] || printf ' (INCOMPLETE: %s)' "${INCOMPLETE[$n]}"
}

print_failures() {
    local out=$1 name=$2 failed
    failed=$(grep -E ' (FAILED|PASSED UNEXPECTEDLY)$' "$out" | awk '{print $1}' | sort || true)
    [[ -n $failed ]] || return 0
    echo "failing cases on $name ($(wc -l <<<"$failed")):"
    sed 's/^/  /' <<<"$failed"
}

if (( RUN_S3ROLE )); then run_suite s3role "$REPO/target/pjdfstest.log"; fi
if (( RUN_S3FS )); then run_suite s3fs "$REPO/target/pjdfstest-s3fs.log"; fi

# ---- summary --------------------------------------------------------------------------------
echo
echo "reference, local disk ($LOCAL_FS): $(grep '^Summary: ' "$LOCAL_LOG" | sed -E 's/^Summary: ([0-9]+) failed, ([0-9]+) skipped, ([0-9]+) passed.*/\3 passed, \1 failed, \2 skipped/')  [target/pjdfstest-local.log]"
if (( RUN_S3FS )); then
    print_failures "$REPO/target/pjdfstest-s3fs.log" s3fs
    echo "pjdfstest (s3fs $(s3fs --version | head -n 1 | grep -oE 'V[0-9.]+'), ${TOOK[s3fs]}s): $(result_line s3fs)  [target/pjdfstest-s3fs.log]"
fi
if (( RUN_S3ROLE )); then
    print_failures "$REPO/target/pjdfstest.log" s3role
    echo "pjdfstest: $(result_line s3role)  [target/pjdfstest.log, ${TOOK[s3role]}s]"
fi
# A suite that could not run every case is a harness failure, and an s3role crash is a bug,
# even though the counts were printed.
for n in s3role s3fs; do [[ -z ${INCOMPLETE[$n]:-} ]] || exit 1; done
if (( RUN_S3ROLE )) && (( ${CRASHES[s3role]} > 0 )); then exit 1; fi
