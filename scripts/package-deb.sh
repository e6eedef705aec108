#!/usr/bin/env bash
# Builds the Debian package hearken_<version>_<arch>.deb with dpkg-deb: the
# three binaries, the systemd unit with its sysusers/tmpfiles snippets, the
# default config as a conffile (/etc/hearken/hearken.toml), the example
# catalogs, the JSON Schemas, and maintainer scripts that never start the
# service before it is configured (scripts/debian/).
#
# Usage: scripts/package-deb.sh [--bin-dir DIR] [--arch ARCH] [--out DIR]
#   --bin-dir DIR  package the binaries already in DIR (e.g. a cross build's
#                  target/aarch64-unknown-linux-gnu/release) instead of
#                  building the release profile here
#   --arch ARCH    Debian architecture of those binaries (default: this host's)
#   --out DIR      where the .deb goes (default: $CARGO_TARGET_DIR/debian)
#   --fast         no compression (the tests package large debug binaries)
# Prints the package's path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
bin_dir=""
arch=$(dpkg --print-architecture)
out="$target/debian"
compression=(-Zxz)
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir=$2; shift 2 ;;
        --arch) arch=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --fast) compression=(-Znone); shift ;;
        *) echo "package-deb: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done

if [ -z "$bin_dir" ]; then
    # The engines on their own, so they are built without the test harness's
    # remote-API simulation (--fault, --delay-ms), then the hearken binary.
    cargo build --release --locked -p hearken-whisper -p hearken-llama >&2
    cargo build --release --locked -p hearken-cli >&2
    bin_dir="$target/release"
fi
for bin in hearken hearken-whisper hearken-llama; do
    [ -x "$bin_dir/$bin" ] || { echo "package-deb: $bin_dir/$bin is missing; build it first" >&2; exit 1; }
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "package-deb: no version in Cargo.toml [workspace.package]" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/hearken_${version}_$arch"

install -d "$root/DEBIAN"
install -D -m 0755 -t "$root/usr/bin" "$bin_dir/hearken" "$bin_dir/hearken-whisper" "$bin_dir/hearken-llama"
install -D -m 0644 systemd/hearken.service "$root/usr/lib/systemd/system/hearken.service"
install -D -m 0644 systemd/hearken.sysusers "$root/usr/lib/sysusers.d/hearken.conf"
install -D -m 0644 systemd/hearken.tmpfiles "$root/usr/lib/tmpfiles.d/hearken.conf"
install -D -m 0644 systemd/hearken.toml "$root/etc/hearken/hearken.toml"
install -D -m 0644 -t "$root/usr/share/hearken/catalogs" devices/*.toml
install -D -m 0644 -t "$root/usr/share/hearken/schemas" schemas/*.json
install -D -m 0644 scripts/debian/copyright "$root/usr/share/doc/hearken/copyright"
install -D -m 0644 README.md "$root/usr/share/doc/hearken/README.md"
install -D -m 0644 systemd/README.md "$root/usr/share/doc/hearken/systemd.md"
gzip -9n "$root/usr/share/doc/hearken/README.md" "$root/usr/share/doc/hearken/systemd.md"
install -m 0755 scripts/debian/postinst scripts/debian/prerm scripts/debian/postrm "$root/DEBIAN/"
echo /etc/hearken/hearken.toml >"$root/DEBIAN/conffiles"

# Library dependencies from the binaries themselves where dpkg-shlibdeps can
# read them (this host's architecture); a cross build gets the same floor.
depends="libasound2 (>= 1.0.29), libc6 (>= 2.34), libgcc-s1 (>= 4.2), libstdc++6 (>= 11)"
if [ "$arch" = "$(dpkg --print-architecture)" ] && command -v dpkg-shlibdeps >/dev/null; then
    install -d "$stage/debian"
    printf 'Source: hearken\n\nPackage: hearken\nArchitecture: any\n' >"$stage/debian/control"
    depends=$(cd "$stage" && dpkg-shlibdeps -O "$root/usr/bin/"* 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
fi

cat >"$root/DEBIAN/control" <<EOF
Package: hearken
Version: $version
Architecture: $arch
Maintainer: hearken developers <hearken@users.noreply.github.com>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends, systemd
Recommends: python3-pip
Suggests: mosquitto
Section: sound
Priority: optional
Homepage: https://github.com/hearken/hearken
Description: voice control for edge boxes, checked against a device catalog
 hearken transcribes speech locally (whisper.cpp), turns it into device
 commands with a small local model constrained by a JSON Schema built from
 the site's device catalog (llama.cpp), publishes them over MQTT, waits for
 each device's acknowledgement, and records every step in a hash-chained
 audit log. Runs as the systemd service hearken.service, which this package
 installs but does not enable: configure /etc/hearken first.
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/hearken_${version}_$arch.deb"
dpkg-deb --root-owner-group "${compression[@]}" --build "$root" "$deb" >&2
echo "$deb"
