#!/usr/bin/env bash
# Makes a throw-away CA, a server cert for localhost and a client cert, for trying the sidecar
# by hand. Usage: scripts/dev-certs.sh DIR   (needs the openssl command).
# shellcheck source=hack/lib/strict.sh
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib/strict.sh"
dir=${1:?usage: dev-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ec ca.key
openssl req -x509 -new -key ca.key -subj "/CN=Edgeway dev CA" -days 30 -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
ec server.key
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -out server.crt \
  -extfile <(printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n") 2>/dev/null
ec client.key
openssl req -new -key client.key -subj "/CN=device-1" -out client.csr
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -out client.crt \
  -extfile <(printf "extendedKeyUsage=clientAuth\n") 2>/dev/null
rm -f ./*.csr ca.srl
chmod 600 ./*.key
echo "wrote $(pwd): ca.crt server.crt server.key client.crt client.key"
