#!/usr/bin/env bash
# Makes a CA and a serving certificate for the Asya admission webhook and prints the caBundle
# (base64 CA) for the MutatingWebhookConfiguration. Same recipe as webhook/certs.ts.
#
#   certs/gen-certs.sh [-s service] [-n namespace] [-d out-dir] [-days N] [-san DNS:extra]...
#
# Writes <out-dir>/ca.crt, ca.key, tls.crt, tls.key. Then, for example:
#   kubectl -n asya-system create secret tls asya-webhook-tls --cert=out/tls.crt --key=out/tls.key
#   caBundle=$(certs/gen-certs.sh ... | tail -1)
set -euo pipefail
service=asya-webhook
namespace=asya-system
out=./webhook-certs
days=365
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -s|--service) service="$2"; shift 2 ;;
    -n|--namespace) namespace="$2"; shift 2 ;;
    -d|--dir) out="$2"; shift 2 ;;
    -days|--days) days="$2"; shift 2 ;;
    -san|--san) extra+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
mkdir -p "$out"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$out/ca.key" -out "$out/ca.crt" -days $((days * 10)) \
  -subj "/CN=asya-webhook-ca-$namespace" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
san="DNS:$service,DNS:$service.$namespace,DNS:$service.$namespace.svc,DNS:$service.$namespace.svc.cluster.local"
for s in "${extra[@]+"${extra[@]}"}"; do san="$san,$s"; done
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$san" > "$tmp/ext"
openssl req "${ec[@]}" -keyout "$out/tls.key" -out "$tmp/csr" -subj "/CN=$service.$namespace.svc" 2>/dev/null
openssl x509 -req -in "$tmp/csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
  -out "$out/tls.crt" -days "$days" -extfile "$tmp/ext" 2>/dev/null
chmod 644 "$out/ca.crt" "$out/tls.crt"
echo "wrote $out/ca.crt $out/ca.key $out/tls.crt $out/tls.key for $service.$namespace.svc" >&2
echo "caBundle (base64 of ca.crt):" >&2
base64 < "$out/ca.crt" | tr -d '\n'
echo
