#!/usr/bin/env bash
# Give Tether a certificate through the admin API (docs/api.md, "Certificates"). It is kept in the
# API's store: with `--store etcd://...` every replica serves it, within milliseconds, and running
# this again with the renewed files rotates it on all of them (no restart, no dropped connection).
#   TETHER_ADMIN_TOKEN=secret tether run --config examples/tls.toml --admin 127.0.0.1:8081 &
#   TOKEN=secret examples/api/certificate.sh shop /etc/letsencrypt/live/shop/fullchain.pem \
#     /etc/letsencrypt/live/shop/privkey.pem
set -euo pipefail
api="${API:-http://127.0.0.1:8081}"
usage="usage: TOKEN=... $0 NAME CHAIN.pem KEY.pem"
name="${1:?$usage}"
chain="${2:?$usage}"
key="${3:?$usage}"
# One PEM text holding the chain and the key; checked before it is stored (400 names the problem).
cat "$chain" "$key" | curl -sS --fail-with-body -X PUT \
  -H "Authorization: Bearer ${TOKEN:?set TOKEN to the admin token}" \
  -H 'Content-Type: application/x-pem-file' --data-binary @- "$api/api/certificates/$name"
echo
# What every source serves now: names, serial, expiry (never a key).
curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" "$api/api/certificates"
echo
