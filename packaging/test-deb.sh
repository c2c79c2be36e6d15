#!/usr/bin/env bash
# Installs the package built by packaging/build-deb.sh and checks it as an administrator
# would use it: man s3role works and documents systemd and the journal, the systemd unit is
# installed and valid, and mount -t s3role (the packaged /sbin/mount.s3role) mounts a bucket
# through a role from the local S3+STS server, then umount ends it.
# Run as root. Prints "package: N passed, M failed" and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB=$(ls -t target/debian/s3role_*.deb | head -1)
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    umount "$WORK/mnt" 2>/dev/null || true
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
passed=0 failed=0
check() {
    local what=$1; shift
    if "$@"; then echo "ok      $what"; passed=$((passed + 1)); else echo "FAILED  $what"; failed=$((failed + 1)); fi
}

# The integration tests point /sbin/mount.s3role at the build under test; the package owns it.
rm -f /sbin/mount.s3role
check "dpkg -i $DEB" dpkg -i "$DEB"
check "the helper is the packaged program" test "$(readlink -f /sbin/mount.s3role)" = /usr/bin/s3role
check "man s3role" sh -c 'man s3role 2>/dev/null | grep -q "role.arn"'
check "man mount.s3role shows fstab examples" sh -c 'man 8 mount.s3role 2>/dev/null | grep -q "x-systemd.automount"'
check "man s3role documents the metrics options" sh -c 'MANWIDTH=200 man s3role 2>/dev/null | grep -q "metrics-addr" && MANWIDTH=200 man s3role 2>/dev/null | grep -q "metrics-label"'
check "the alert rules are installed, and promtool accepts them where it is present" sh -c \
    'test -s /usr/share/doc/s3role/examples/s3role-alerts.yml && { ! command -v promtool >/dev/null || promtool check rules /usr/share/doc/s3role/examples/s3role-alerts.yml >/dev/null; }'
check "bash completion installed" test -s /usr/share/bash-completion/completions/s3role
check "man s3role: systemd readiness and journal fields" \
    sh -c 'man s3role 2>/dev/null | grep -q "Type=notify" && man s3role-mount 2>/dev/null | grep -q "AWS_ERROR_CODE"'
check "man s3role-mount: --foreground tells systemd READY=1" \
    sh -c 'man s3role-mount 2>/dev/null | grep -A3 -e "--foreground" | grep -q "READY=1"'
UNIT=/lib/systemd/system/s3role@.service
check "the unit is installed" test -s "$UNIT"
check "the unit runs a foreground mount as Type=notify" \
    sh -c "grep -qx 'Type=notify' $UNIT && grep -q '^ExecStart=/usr/bin/s3role mount --foreground ' $UNIT"
if command -v systemd-analyze >/dev/null; then
    # verify exits 0 on most mistakes and says them on stderr: it must say nothing.
    unit_verifies() {
        local out
        out=$(cd / && systemd-analyze verify "$UNIT" 2>&1) && [[ -z $out ]] || { echo "$out" >&2; return 1; }
    }
    check "systemd-analyze verify s3role@.service" unit_verifies
else
    echo "skip    systemd-analyze verify (not installed)"
fi

# shellcheck source=../scripts/testserver/start.sh
source scripts/testserver/start.sh
testserver_start "$WORK/world.json" "$WORK/server.log"
eval "$(testserver_settings "$WORK/world.json" reader)"
python3 - "$EP" "$REGION" "$ADMIN_AK" "$ADMIN_SK" <<'PY'
import sys, boto3
ep, region, ak, sk = sys.argv[1:]
boto3.client("s3", endpoint_url=ep, region_name=region, aws_access_key_id=ak,
             aws_secret_access_key=sk).put_object(Bucket="data", Key="pkg/hello.txt", Body=b"from the package\n")
PY
testserver_as_alice
mkdir "$WORK/mnt"
install -m 0600 /dev/null "$WORK/external-id"
echo "$EXT" >"$WORK/external-id"
check "mount -t s3role through the packaged helper" \
    mount -t s3role data:/pkg "$WORK/mnt" -o "role_arn=$ROLE,external_id_file=$WORK/external-id,endpoint_url=$EP,sts_endpoint=$EP,path_style,region=us-east-1,allow_other"
check "a file is readable at once" grep -q "from the package" "$WORK/mnt/hello.txt"
check "s3role status" sh -c "s3role status '$WORK/mnt' | grep -q '^session_name'"
# The daemon left behind is `s3role mount ...`, started with the helper's options.
daemon_pid() { pgrep -f '[s]3role mount data:/pkg' | head -1; }
check "the daemon runs" test -n "$(daemon_pid)"
daemon_shows_the_file_not_the_id() {
    local cmd
    cmd=$(tr '\0' ' ' </proc/"$(daemon_pid)"/cmdline)
    [[ $cmd == *external-id-file=* && $cmd != *"$EXT"* ]]
}
check "its command line names the external ID file, not the ID" daemon_shows_the_file_not_the_id
check "umount" umount "$WORK/mnt"
sleep 1
check "the daemon exited" sh -c "! pgrep -f '[s]3role mount data:/pkg' >/dev/null"
echo "package: $passed passed, $failed failed"
((failed == 0))
