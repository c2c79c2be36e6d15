#!/usr/bin/env bash
# Builds mountpoint-s3's `mount-s3` (release) for scripts/bench-peers.sh, from a git
# directory or clone of github.com/awslabs/mountpoint-s3, into target/bench-tools/mountpoint-s3/.
#
#   scripts/bench-build-mountpoint.sh GIT_DIR [COMMIT]      (COMMIT defaults to HEAD)
#
# The AWS Common Runtime (C) is a set of git submodules under mountpoint-s3-crt-sys/crt/. When
# they are not checked out, they are taken from the crates.io release of mountpoint-s3-crt-sys
# whose submodule pins are the same as COMMIT's (the published crate ships the CRT sources);
# the script stops if no release of that crate version has the same pins.
#
# Needs (Debian): cmake, clang and libclang-dev (bindgen), libfuse-dev (the fuser fork links
# libfuse 2), pkg-config, gcc/g++, perl. The toolchain pinned by rust-toolchain.toml is not
# required: the build uses the installed stable toolchain (RUSTUP_TOOLCHAIN, default stable).
# With its release profile (fat LTO, one codegen unit) it takes about 20-30 minutes on 2 cores;
# debug info is turned off (it does not change the code, only the binary's size).
# The result: target/bench-tools/mountpoint-s3/bin/mount-s3 and a file COMMIT beside it, which
# names the commit built: `mount-s3 --version` ends in +<commit> of the nearest enclosing git
# checkout (this one, as the exported tree has none), not mountpoint-s3's.
set -euo pipefail
cd "$(dirname "$0")/.."

GIT_DIR_IN=${1:?usage: $0 GIT_DIR [COMMIT]}
COMMIT=$(git --git-dir="$GIT_DIR_IN" rev-parse "${2:-HEAD}^{commit}")
OUT=$PWD/target/bench-tools/mountpoint-s3
SRC=$OUT/src
mkdir -p "$OUT/bin"

echo "mountpoint-s3 $COMMIT: exporting the tree to $SRC" >&2
rm -rf "$SRC"
mkdir -p "$SRC"
git --git-dir="$GIT_DIR_IN" archive "$COMMIT" | tar -x -C "$SRC"

# The CRT submodules: empty directories in an archive.
CRT=$SRC/mountpoint-s3-crt-sys/crt
if [[ ! -e $CRT/aws-c-common/CMakeLists.txt ]]; then
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$SRC/mountpoint-s3-crt-sys/Cargo.toml" | head -n1)
    echo "CRT submodules missing: taking them from crates.io's mountpoint-s3-crt-sys $version" >&2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # `cargo info` downloads the .crate into the local registry cache.
    (cd "$tmp" && cargo info "mountpoint-s3-crt-sys@$version" >/dev/null)
    crate=$(ls "$HOME"/.cargo/registry/cache/*/"mountpoint-s3-crt-sys-$version.crate" | head -n1)
    tar -xzf "$crate" -C "$tmp"
    published=$(sed -n 's/.*"sha1": "\([0-9a-f]*\)".*/\1/p' "$tmp/mountpoint-s3-crt-sys-$version/.cargo_vcs_info.json")
    if ! diff <(git --git-dir="$GIT_DIR_IN" ls-tree "$published" mountpoint-s3-crt-sys/crt/) \
        <(git --git-dir="$GIT_DIR_IN" ls-tree "$COMMIT" mountpoint-s3-crt-sys/crt/) >/dev/null; then
        echo "crates.io's mountpoint-s3-crt-sys $version (from $published) pins other CRT commits than $COMMIT" >&2
        exit 1
    fi
    echo "  published from $published, whose CRT pins are the same" >&2
    rm -rf "$CRT"
    cp -a "$tmp/mountpoint-s3-crt-sys-$version/crt" "$CRT"
fi

cd "$SRC"
echo "building mount-s3 (release; CARGO_TARGET_DIR=$OUT/target)" >&2
RUSTUP_TOOLCHAIN=${RUSTUP_TOOLCHAIN:-stable} CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_TARGET_DIR="$OUT/target" \
    nice cargo build --release --locked --bin mount-s3
cp "$OUT/target/release/mount-s3" "$OUT/bin/mount-s3"
echo "$COMMIT" >"$OUT/bin/COMMIT"
"$OUT/bin/mount-s3" --version
