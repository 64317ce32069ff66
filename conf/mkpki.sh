#!/usr/bin/env bash
# Makes postern's development and test PKI into OUTDIR, once.
#
# Usage: conf/mkpki.sh OUTDIR
#
# Nothing here is ever committed: `make pki` and the integration tests run
# this script, so every checkout gets fresh keys and nothing shipped expires.
#
# What it writes (keys mode 600):
#   root.pem, root.key.pem                  "Postern Dev Root CA", ECDSA P-256, 10 years
#   intermediate.pem, intermediate.key.pem  "Postern Dev Intermediate CA", pathlen 0, 5 years
#   for each leaf NAME, signed by the intermediate, 90 days:
#     NAME.cert.pem   the leaf alone
#     NAME.chain.pem  the leaf, then the intermediate (what a server sends, RFC 8446 4.4.2)
#     NAME.key.pem    its key
#   Leaves: localhost (DNS:localhost, IP:127.0.0.1, IP:::1),
#           example.test (example.test, www.example.test),
#           wildcard.example.test (*.example.test),
#           api.example.test (api.example.test).
#   Each leaf is ECDSA P-256; NAME-rsa.* is the same leaf with an RSA-2048 key.
#
# It is skipped when OUTDIR/root.pem exists. Everything is made in a temporary
# directory next to OUTDIR and moved in at the end, root.pem last, so an
# interrupted run leaves nothing half-made behind.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=${1%/}

if [ -e "$out/root.pem" ]; then
  exit 0
fi

command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 1; }

parent=$(dirname "$out")
mkdir -p "$parent"
# The temp dir goes whatever ends the run: a signal becomes a normal exit (a
# shell killed by one skips its EXIT trap), and the EXIT trap is set before
# the dir exists.
tmp=
trap '[ -z "$tmp" ] || rm -rf "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
tmp=$(mktemp -d "$parent/.mkpki.XXXXXX")
umask 077

ROOT_DAYS=3650
INT_DAYS=1825
LEAF_DAYS=90
ORG="Postern Dev"

# A random positive 128-bit serial (RFC 5280 4.1.2.2: positive, at most 20
# octets; unpredictable serials are what CAs are required to use).
serial() {
  local hex
  hex=$(openssl rand -hex 16)
  # Clear the top bit so the DER INTEGER needs no sign byte, and make sure
  # the first byte is not zero so the length is always 16 octets.
  printf '0x%02x%s' $(( (0x${hex:0:2} & 0x7f) | 0x10 )) "${hex:2}"
}

ec_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -pkeyopt ec_param_enc:named_curve -out "$1" 2>/dev/null
}

rsa_key() {
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
}

# The openssl configuration for `req` (which insists on a distinguished_name
# section even with -subj) and the CA extension sections. Each leaf gets its
# own extension file for its SAN and key usage.
cat >"$tmp/ext.cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]

[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF

# Root CA: self-signed.
ec_key "$tmp/root.key.pem"
openssl req -new -x509 -key "$tmp/root.key.pem" -sha256 -days "$ROOT_DAYS" \
  -subj "/O=$ORG/CN=Postern Dev Root CA" -set_serial "$(serial)" \
  -config "$tmp/ext.cnf" -extensions root \
  -out "$tmp/root.pem"

# Intermediate CA: may sign leaves only (pathlen 0).
ec_key "$tmp/intermediate.key.pem"
openssl req -new -key "$tmp/intermediate.key.pem" -subj "/O=$ORG/CN=Postern Dev Intermediate CA" \
  -config "$tmp/ext.cnf" -out "$tmp/intermediate.csr"
openssl x509 -req -in "$tmp/intermediate.csr" -CA "$tmp/root.pem" -CAkey "$tmp/root.key.pem" \
  -set_serial "$(serial)" -sha256 -days "$INT_DAYS" \
  -extfile "$tmp/ext.cnf" -extensions intermediate -out "$tmp/intermediate.pem" 2>/dev/null
rm -f "$tmp/intermediate.csr"

# leaf NAME KEYTYPE SAN...: one leaf signed by the intermediate.
leaf() {
  local name=$1 type=$2 file=$1
  shift 2
  local san usage
  san=$(IFS=,; echo "$*")
  if [ "$type" = rsa ]; then
    file=$name-rsa
    rsa_key "$tmp/$file.key.pem"
    # RSA key exchange is gone from TLS 1.3, but TLS 1.2 clients may still
    # pick an RSA key-transport suite (RFC 5246 7.4.2).
    usage="critical, digitalSignature, keyEncipherment"
  else
    ec_key "$tmp/$file.key.pem"
    usage="critical, digitalSignature"
  fi
  cat >"$tmp/$file.ext" <<EOF
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = $usage
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = $san
EOF
  openssl req -new -key "$tmp/$file.key.pem" -subj "/O=$ORG/CN=$name" \
    -config "$tmp/ext.cnf" -out "$tmp/$file.csr"
  openssl x509 -req -in "$tmp/$file.csr" -CA "$tmp/intermediate.pem" \
    -CAkey "$tmp/intermediate.key.pem" -set_serial "$(serial)" -sha256 -days "$LEAF_DAYS" \
    -extfile "$tmp/$file.ext" -extensions leaf -out "$tmp/$file.cert.pem" 2>/dev/null
  cat "$tmp/$file.cert.pem" "$tmp/intermediate.pem" >"$tmp/$file.chain.pem"
  rm -f "$tmp/$file.csr" "$tmp/$file.ext"
}

for type in ec rsa; do
  leaf localhost "$type" DNS:localhost IP:127.0.0.1 IP:::1
  leaf example.test "$type" DNS:example.test DNS:www.example.test
  leaf wildcard.example.test "$type" "DNS:*.example.test"
  leaf api.example.test "$type" DNS:api.example.test
done
rm -f "$tmp/ext.cnf"

# Every chain must verify against the root alone before anything is moved in.
for chain in "$tmp"/*.chain.pem; do
  openssl verify -CAfile "$tmp/root.pem" -untrusted "$tmp/intermediate.pem" \
    -purpose sslserver "${chain%.chain.pem}.cert.pem" >/dev/null
done

chmod 600 "$tmp"/*.key.pem
chmod 644 "$tmp"/*.cert.pem "$tmp"/*.chain.pem "$tmp/root.pem" "$tmp/intermediate.pem"

if [ ! -e "$out" ]; then
  chmod 755 "$tmp"
  mv "$tmp" "$out"
else
  # OUTDIR exists (empty, or left by something else): move the files in one
  # by one, root.pem last, since its presence means "done".
  for f in "$tmp"/*; do
    [ "$(basename "$f")" = root.pem ] || mv -f "$f" "$out/"
  done
  mv -f "$tmp/root.pem" "$out/root.pem"
fi
trap - EXIT
rm -rf "$tmp"
