#!/usr/bin/env bash
# Installs what postern needs to build, test and run on Debian 12, and builds
# wolfSSL from Debian's source package into deps/ with postern's flags.
#
# Usage: .ci/deps.sh [packages|wolfssl|all|build] [extra Debian packages...]
#   build: only what building postern needs (no test tools): the container
#   image's build stage (deploy/kubernetes/Containerfile).
# Idempotent: packages already installed are not reinstalled, and the wolfSSL
# build is skipped when deps/ holds one made with the same flags.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
shift || true
extra=("$@")

BUILD_PACKAGES=(
  build-essential pkg-config autoconf automake libtool dpkg-dev patch ca-certificates
  libuv1-dev libnghttp2-dev libyaml-dev node-llhttp libhiredis-dev
)
PACKAGES=(
  "${BUILD_PACKAGES[@]}" libcmocka-dev
  python3 python3-pytest python3-h2 curl openssl nghttp2-client
  procps psmisc clang-format clang libfuzzer-14-dev
  python3-cryptography prometheus redis-server groff-base logrotate nginx-light h2o
)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_update() {
  if [ "$apt_updated" = 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
}

install_packages() {
  local missing=()
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    apt_update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# apt-get source needs deb-src lines; a fresh Debian 12 image has only deb.
ensure_deb_src() {
  if grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return
  fi
  echo "deps: adding deb-src entries for bookworm and bookworm-security"
  as_root tee /etc/apt/sources.list.d/postern-deb-src.sources >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt_updated=0
}

# Why postern builds wolfSSL itself, and what each flag, define and patch is
# for: docs/wolfssl.md. Keep it in step with what is set here.
WOLFSSL_CONFIGURE=(
  --disable-shared --enable-static --with-pic --disable-examples --disable-crypttests
  --enable-tls13 --enable-tlsv12 --disable-oldtls --enable-earlydata --enable-session-ticket
  --enable-sni --enable-alpn --enable-supportedcurves --enable-ocsp --enable-ocspstapling
  --disable-secure-renegotiation --enable-sp=yes --enable-sp-asm --enable-sp-math-all
  --enable-intelasm --enable-aesni --enable-curve25519 --enable-ed25519
  --enable-opensslextra --enable-opensslall
  --enable-aesgcm=word --enable-pkcallbacks
)
WOLFSSL_CFLAGS="-O2 -fstack-protector-strong -DHAVE_EX_DATA -DWOLFSSL_VALIDATE_ECC_IMPORT -DWOLFSSL_GETRANDOM -DPOSTERN_NO_PRIVATE_IMPORT_VALIDATION -DWOLFSSL_NO_KEEP_PEER_CERT -DWOLFSSL_TLS13_MIDDLEBOX_COMPAT"
# Our patches to Debian's source, applied in order (see each file's header).
WOLFSSL_PATCHES=("$top"/.ci/wolfssl-*.patch)

build_wolfssl() {
  local prefix="$top/deps/wolfssl"
  local stamp="$prefix/.postern-flags"
  local want
  want=$(printf '%s\n' "${WOLFSSL_CONFIGURE[@]}" "CFLAGS=$WOLFSSL_CFLAGS" "internal.h"; sha256sum "${WOLFSSL_PATCHES[@]}" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$prefix/lib/libwolfssl.a" ]; then
    echo "deps: wolfSSL already built in deps/ with the same flags"
    return
  fi
  ensure_deb_src
  apt_update
  local work="$top/deps/src"
  rm -rf "$work" "$prefix"
  mkdir -p "$work"
  echo "deps: fetching Debian's wolfssl source package"
  (cd "$work" && apt-get source -qq wolfssl >/dev/null)
  local dir
  dir=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'wolfssl-*' | head -1)
  [ -n "$dir" ] || { echo "deps: apt-get source wolfssl produced no source tree" >&2; exit 1; }
  echo "deps: building wolfSSL in $dir (a few minutes)"
  (
    cd "$dir"
    for p in "${WOLFSSL_PATCHES[@]}"; do
      patch -p1 --quiet <"$p" || { echo "deps: $p does not apply" >&2; exit 1; }
    done
    ./autogen.sh >autogen.log 2>&1 || { tail -30 autogen.log; exit 1; }
    ./configure --prefix="$prefix" "${WOLFSSL_CONFIGURE[@]}" CFLAGS="$WOLFSSL_CFLAGS" \
      >configure.log 2>&1 || { tail -30 configure.log; exit 1; }
    make -j"$(nproc)" >make.log 2>&1 || { tail -30 make.log; exit 1; }
    make install >install.log 2>&1 || { tail -30 install.log; exit 1; }
    # src/tls.c's pst_tls_conn_trim reads the WOLFSSL structure (docs/wolfssl.md)
    cp wolfssl/internal.h "$prefix/include/wolfssl/internal.h"
  )
  printf '%s\n' "$want" >"$stamp"
  rm -rf "$work"
  echo "deps: wolfSSL installed in $prefix"
}

case "$what" in
  packages) install_packages "${PACKAGES[@]}" "${extra[@]}" ;;
  wolfssl) build_wolfssl ;;
  all) install_packages "${PACKAGES[@]}" "${extra[@]}"; build_wolfssl ;;
  build) install_packages "${BUILD_PACKAGES[@]}" "${extra[@]}"; build_wolfssl ;;
  *) echo "usage: $0 [packages|wolfssl|all|build] [extra packages...]" >&2; exit 2 ;;
esac
