#!/usr/bin/env bash
# Installs the package built by packaging/build-deb.sh and checks it as an administrator
# would use it: man s3role works, and mount -t s3role (the packaged /sbin/mount.s3role)
# mounts a bucket through a role from the local S3+STS server, then umount ends it.
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
check "bash completion installed" test -s /usr/share/bash-completion/completions/s3role

python3 scripts/testserver/s3role_moto.py --port 0 --quiet --world-out "$WORK/world.json" &
SERVER_PID=$!
for _ in $(seq 1 100); do [[ -s $WORK/world.json ]] && break; sleep 0.2; done
eval "$(python3 - "$WORK/world.json" <<'PY'
import json, sys, boto3
w = json.load(open(sys.argv[1]))
a = w["users"]["admin"]
boto3.client("s3", endpoint_url=w["endpoint"], region_name=w["region"], aws_access_key_id=a["access_key_id"],
             aws_secret_access_key=a["secret_access_key"]).put_object(Bucket="data", Key="pkg/hello.txt", Body=b"from the package\n")
u = w["users"]["alice"]
print(f'EP={w["endpoint"]} ROLE={w["roles"]["reader"]} EXT={w["external_id"]}')
print(f'export AWS_ACCESS_KEY_ID={u["access_key_id"]} AWS_SECRET_ACCESS_KEY={u["secret_access_key"]}')
PY
)"
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
mkdir "$WORK/mnt"
check "mount -t s3role through the packaged helper" \
    mount -t s3role data:/pkg "$WORK/mnt" -o "role_arn=$ROLE,external_id=$EXT,endpoint_url=$EP,sts_endpoint=$EP,path_style,region=us-east-1,allow_other"
check "a file is readable at once" grep -q "from the package" "$WORK/mnt/hello.txt"
check "s3role status" sh -c "s3role status '$WORK/mnt' | grep -q '^session_name'"
check "umount" umount "$WORK/mnt"
sleep 1
check "the daemon exited" sh -c "! pgrep -f '[m]ount.s3role data:/pkg' >/dev/null"
echo "package: $passed passed, $failed failed"
((failed == 0))
