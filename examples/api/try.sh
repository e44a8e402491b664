#!/usr/bin/env bash
# The admin API by hand, against `tether run --config examples/admin.toml` (docs/api.md).
#   TETHER_ADMIN_TOKEN=secret tether run --config examples/admin.toml &
#   TOKEN=secret examples/api/try.sh
set -euo pipefail
cd "$(dirname "$0")"
api="${API:-http://127.0.0.1:8081}"
auth=(-H "Authorization: Bearer ${TOKEN:?set TOKEN to the admin token}")
curl -sS "$api/api/version"; echo
curl -sS -X PUT "${auth[@]}" --data-binary @services.go-demo.json "$api/api/services/go-demo"; echo
curl -sS -X PUT "${auth[@]}" --data-binary @routes.go-demo.json "$api/api/routes/go-demo"; echo
curl -sS -X POST "${auth[@]}" --data-binary @changes.json "$api/api/changes"; echo
curl -sS "$api/api/routes"; echo
# A TCP service and its router: every connection to the `cache` entrypoint (port 6380).
curl -sS -X PUT "${auth[@]}" --data-binary @tcp-services.cache.json "$api/api/tcp/services/cache"; echo
curl -sS -X PUT "${auth[@]}" --data-binary @tcp-routers.cache.json "$api/api/tcp/routers/cache"; echo
curl -sS "$api/api/tcp/routers"; echo
