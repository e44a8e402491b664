#!/usr/bin/env bash
# The second seed (Traefik v1 sticky sessions on Swarm) as its article runs it, command by
# command, with Tether in Traefik's place. The whoami service and its four labels are the seed's,
# unchanged; the proxy service is created as the seed creates Traefik's (global, on managers,
# the Docker socket mounted, on the whoami network), running Tether instead:
#
#   examples/swarm/traefik-seed/run.sh up      # on a Swarm manager
#   curl -c jar -b jar localhost:8080/         # the same "I'm <container>" every time
#   examples/swarm/traefik-seed/run.sh down
#
# Where the seed's cookie read `_a49bc=http://10.0.0.5:8000` (a backend address, forgeable),
# Tether's names no address and cannot be forged.
#
# Variables (the tests set them; the defaults are the seed's): NETWORK (whoaminet), SERVICE
# (whoami-service), PROXY (traefik), WHOAMI_IMAGE (tether-whoami:dev, the seed's
# jwilder/whoami answers on 8000 as this one is told to), TETHER_IMAGE (tether:dev),
# WHOAMI_PORT (80), PROXY_PORT (8080), PUBLISH_MODE (ingress; host where the routing mesh has no
# IPVS), LABEL (an extra label on both services, for cleaning up), TETHER_ARGS (more arguments
# to `tether run`, e.g. --docker-constraint LABEL).
#
# Tether reads every service of the swarm, as Traefik does: in a shared swarm, give
# TETHER_ARGS="--docker-constraint com.example.team=web" and that label to your services.
set -euo pipefail
NETWORK="${NETWORK:-whoaminet}"
SERVICE="${SERVICE:-whoami-service}"
PROXY="${PROXY:-traefik}"
WHOAMI_IMAGE="${WHOAMI_IMAGE:-tether-whoami:dev}"
TETHER_IMAGE="${TETHER_IMAGE:-tether:dev}"
WHOAMI_PORT="${WHOAMI_PORT:-80}"
PROXY_PORT="${PROXY_PORT:-8080}"
PUBLISH_MODE="${PUBLISH_MODE:-ingress}"
extra=()
[ -n "${LABEL:-}" ] && extra=(--label "$LABEL" --container-label "$LABEL")

case "${1:-up}" in
  up)
    docker network create "$NETWORK" -d overlay ${LABEL:+--label "$LABEL"} >/dev/null
    # The seed's service (jwilder/whoami listens on 8000; whoami here is told to).
    docker service create --detach --name "$SERVICE" --mode global --network "$NETWORK" \
      --publish "mode=$PUBLISH_MODE,published=$WHOAMI_PORT,target=8000" "${extra[@]}" \
      "$WHOAMI_IMAGE" --listen 0.0.0.0:8000 >/dev/null
    # The seed's four labels, unchanged.
    docker service update --detach \
      --label-add "traefik.docker.network=$NETWORK" \
      --label-add "traefik.port=8000" \
      --label-add "traefik.frontend.rule=PathPrefix:/" \
      --label-add "traefik.backend.loadbalancer.stickiness=true" \
      "$SERVICE" >/dev/null
    # Traefik's service as the seed creates it, Tether in its place: it reads the Swarm API
    # (the socket, read only) and reaches the tasks on the whoami network.
    docker service create --detach --name "$PROXY" \
      --publish "mode=$PUBLISH_MODE,published=$PROXY_PORT,target=80" \
      --mount type=bind,source=/var/run/docker.sock,destination=/var/run/docker.sock,readonly \
      --mode=global --constraint 'node.role == manager' --network "$NETWORK" "${extra[@]}" \
      "$TETHER_IMAGE" run --swarm --listen 0.0.0.0:80 --admin 127.0.0.1:8081 ${TETHER_ARGS:-} >/dev/null
    echo "up: curl -c jar -b jar localhost:$PROXY_PORT/"
    ;;
  down)
    docker service rm "$PROXY" "$SERVICE" >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do
      docker network rm "$NETWORK" >/dev/null 2>&1 && break
      sleep 0.2
    done
    ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
