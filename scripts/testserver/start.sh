# Sourced by the project's scripts (demo, soak, pjdfstest, fsx, package test) to run the local
# S3+STS+IAM server (s3role_moto.py), and mounts of it, the same way everywhere. Run from the
# repository root.

# testserver_tool CRATE VERSION
#   Prints the path of the binary of crates.io CRATE VERSION in target/tools, installing it
#   there first (cargo install, a minute or two) if it is missing or another version; also
#   makes sure python3 has moto for the server.
testserver_tool() {
    local bin=$PWD/target/tools/bin/$1
    if ! "$bin" --version 2>/dev/null | grep -q " $2\$"; then
        echo "installing $1 $2 into target/tools (a minute or two)..." >&2
        cargo install "$1" --version "$2" --locked --root target/tools --quiet >&2 || return 1
    fi
    python3 -c 'import moto' 2>/dev/null || pip install -q 'moto[server]==5.2.1' >&2 || return 1
    echo "$bin"
}

# testserver_s3role
#   Prints the s3role binary to test: $S3ROLE_BIN if set, else target/release/s3role, built
#   first.
testserver_s3role() {
    if [[ -z ${S3ROLE_BIN:-} ]]; then
        echo "building s3role (release)..." >&2
        cargo build --release --quiet --bin s3role >&2 || return 1
    fi
    local bin=${S3ROLE_BIN:-$PWD/target/release/s3role}
    [[ -x $bin ]] || { echo "no s3role binary at $bin" >&2; return 1; }
    echo "$bin"
}

# testserver_wait PID COMMAND...
#   Runs COMMAND every 0.2 s until it succeeds, process PID exits or 60 s have passed;
#   returns COMMAND's last status.
testserver_wait() {
    local pid=$1 _
    shift
    for _ in $(seq 1 300); do
        if "$@"; then return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    "$@"
}

# testserver_start WORLD LOG [s3role_moto.py options...]
#   Starts the server on a free port in the background (its pid in SERVER_PID) and returns
#   once it has written its world file WORLD; on failure prints the end of LOG and returns 1.
testserver_start() {
    local world=$1 log=$2
    shift 2
    python3 scripts/testserver/s3role_moto.py --port 0 --quiet --world-out "$world" "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    testserver_wait "$SERVER_PID" test -s "$world" && return 0
    echo "the local S3+STS server did not start; its log:" >&2
    tail -n 20 "$log" >&2
    return 1
}

# testserver_settings WORLD ROLE
#   Prints, for eval, EP and REGION (the endpoint), ROLE (the ARN of role ROLE) and EXT (its
#   external ID), ALICE_AK/ALICE_SK (the user who may assume it) and ADMIN_AK/ADMIN_SK.
testserver_settings() {
    python3 - "$1" "$2" <<'PY'
import json, shlex, sys
w = json.load(open(sys.argv[1]))
v = {
    "EP": w["endpoint"], "REGION": w.get("region") or "us-east-1",
    "ROLE": w["roles"][sys.argv[2]], "EXT": w["external_id"],
    "ALICE_AK": w["users"]["alice"]["access_key_id"], "ALICE_SK": w["users"]["alice"]["secret_access_key"],
    "ADMIN_AK": w["users"]["admin"]["access_key_id"], "ADMIN_SK": w["users"]["admin"]["secret_access_key"],
}
for k, x in v.items():
    print(f"{k}={shlex.quote(x)}")
PY
}

# testserver_as_alice
#   Exports alice's keys and keeps every AWS default chain away from the machine's own
#   configuration and from the EC2 metadata address.
testserver_as_alice() {
    export AWS_ACCESS_KEY_ID=$ALICE_AK AWS_SECRET_ACCESS_KEY=$ALICE_SK
    export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
}

# testserver_put_big PREFIX
#   Puts PREFIX/big.bin, 32 MiB of Python's random.Random(424242) bytes, and PREFIX/big.seed
#   (the seed) in bucket data, directly as the admin (needs testserver_settings' variables):
#   a large object a workload can read at random and check.
testserver_put_big() {
    python3 - "$EP" "$REGION" "$ADMIN_AK" "$ADMIN_SK" "$1" <<'PY'
import random, sys, boto3
ep, region, ak, sk, prefix = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=ep, region_name=region,
                  aws_access_key_id=ak, aws_secret_access_key=sk)
s3.put_object(Bucket="data", Key=f"{prefix}/big.bin", Body=random.Random(424242).randbytes(32 << 20))
s3.put_object(Bucket="data", Key=f"{prefix}/big.seed", Body=b"424242")
PY
}

# testserver_is_mounted DIR
#   Whether DIR is a mount point now.
testserver_is_mounted() { awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; }

# testserver_stop PID
#   Stops background job PID, if PID is set, and reaps it.
testserver_stop() {
    [[ -n ${1:-} ]] || return 0
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# testserver_unmount DIR [PID]
#   Unmounts DIR if it is mounted, then gives its daemon PID (if set) 5 s to exit before
#   stopping it.
testserver_unmount() {
    local dir=$1 pid=${2:-} _
    if testserver_is_mounted "$dir"; then
        fusermount3 -u "$dir" 2>/dev/null || fusermount3 -uz "$dir" 2>/dev/null || umount -l "$dir" 2>/dev/null || true
    fi
    [[ -n $pid ]] || return 0
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    testserver_stop "$pid"
}

# testserver_mount SOURCE MOUNTPOINT LOG [s3role mount options...]
#   Runs "$S3ROLE" mount in the foreground of a background job (its pid in MOUNT_PID), logging
#   to the end of LOG, and returns once the mount is live; if it is not within 30 s, prints
#   LOG and returns 1.
testserver_mount() {
    local source=$1 mnt=$2 log=$3
    shift 3
    "$S3ROLE" mount "$source" "$mnt" -f "$@" 2>>"$log" &
    MOUNT_PID=$!
    local _
    for _ in $(seq 1 300); do mountpoint -q "$mnt" && return 0; sleep 0.1; done
    cat "$log" >&2
    return 1
}
