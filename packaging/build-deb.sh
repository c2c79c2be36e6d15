#!/usr/bin/env bash
# Builds target/debian/s3role_VERSION_ARCH.deb with dpkg-deb (no other packaging tool):
#   /usr/bin/s3role, /sbin/mount.s3role (the same program, chosen by its name),
#   man pages s3role(1), s3role-mount(1), s3role-check(1), s3role-status(1), mount.s3role(8)
#   generated from the command-line definitions, bash/zsh/fish completions, the systemd unit
#   template s3role@.service and an example /etc/s3role/ directory. Depends on fuse3.
#
#   packaging/build-deb.sh            # then: dpkg -i target/debian/s3role_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
TARGET=${CARGO_TARGET_DIR:-target}
ARCH=$(dpkg --print-architecture)
OUT=target/debian
ROOT=$OUT/s3role_${VERSION}_${ARCH}
rm -rf "$ROOT"
mkdir -p "$ROOT/DEBIAN" "$ROOT/usr/bin" "$ROOT/sbin" "$ROOT/usr/share/man/man1" "$ROOT/usr/share/man/man8" \
    "$ROOT/usr/share/bash-completion/completions" "$ROOT/usr/share/zsh/vendor-completions" \
    "$ROOT/usr/share/fish/vendor_completions.d" "$ROOT/usr/share/doc/s3role/examples" "$ROOT/etc/s3role" \
    "$ROOT/lib/systemd/system"

cargo build --release --quiet --bin s3role
install -m 0755 "$TARGET/release/s3role" "$ROOT/usr/bin/s3role"
strip "$ROOT/usr/bin/s3role" 2>/dev/null || true
# mount(8) looks for /sbin/mount.TYPE; the program acts as the helper when called by that name.
ln -s /usr/bin/s3role "$ROOT/sbin/mount.s3role"

DOCS=$(mktemp -d)
trap 'rm -rf "$DOCS"' EXIT
"$ROOT/usr/bin/s3role" generate-docs "$DOCS"
for page in "$DOCS"/man/*.1; do gzip -9n -c "$page" >"$ROOT/usr/share/man/man1/$(basename "$page").gz"; done
for page in "$DOCS"/man/*.8; do gzip -9n -c "$page" >"$ROOT/usr/share/man/man8/$(basename "$page").gz"; done
install -m 0644 "$DOCS/completions/s3role.bash" "$ROOT/usr/share/bash-completion/completions/s3role"
install -m 0644 "$DOCS/completions/_s3role" "$ROOT/usr/share/zsh/vendor-completions/_s3role"
install -m 0644 "$DOCS/completions/s3role.fish" "$ROOT/usr/share/fish/vendor_completions.d/s3role.fish"

install -m 0644 packaging/etc/README "$ROOT/etc/s3role/README"
install -m 0644 packaging/etc/session-policy.json.example "$ROOT/etc/s3role/session-policy.json.example"
install -m 0644 packaging/etc/data.env.example "$ROOT/etc/s3role/data.env.example"
install -m 0644 packaging/systemd/s3role@.service "$ROOT/lib/systemd/system/s3role@.service"
install -m 0644 packaging/etc/fstab.example "$ROOT/usr/share/doc/s3role/examples/fstab"
install -m 0644 packaging/prometheus/s3role-alerts.yml packaging/prometheus/s3role-alerts.test.yml \
    "$ROOT/usr/share/doc/s3role/examples/"
install -m 0644 README.md "$ROOT/usr/share/doc/s3role/README.md"
printf 'Apache-2.0; see the project repository.\n' >"$ROOT/usr/share/doc/s3role/copyright"

SIZE=$(du -sk "$ROOT" | cut -f1)
cat >"$ROOT/DEBIAN/control" <<CONTROL
Package: s3role
Version: $VERSION
Architecture: $ARCH
Maintainer: s3role developers <s3role@localhost>
Installed-Size: $SIZE
Depends: fuse3, libc6
Section: utils
Priority: optional
Description: mount an S3 bucket through an assumed IAM role
 s3role mounts an S3 bucket, or a prefix of one, as a POSIX directory tree with FUSE.
 Credentials come from an assumed IAM role (external ID, session name, session
 policies, role chains; source identity from the environment, a profile, EC2 instance
 metadata, web identity or SAML) that renews itself in the background. Ownership and
 permissions are kept in object metadata the way s3fs keeps them. Works with
 mount -t s3role and fstab.
CONTROL
printf '/etc/s3role/README\n/etc/s3role/session-policy.json.example\n/etc/s3role/data.env.example\n' >"$ROOT/DEBIAN/conffiles"
dpkg-deb --root-owner-group --build "$ROOT" "$OUT/" >/dev/null
echo "$OUT/s3role_${VERSION}_${ARCH}.deb"
