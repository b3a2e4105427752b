#!/usr/bin/env bash
# The compose stack (compose.yaml) with podman-compose on this project's machines:
#   docker/compose-local.sh up -d      # then: ... exec worker prefect --no-prompt deploy --all
#   docker/compose-local.sh logs worker; docker/compose-local.sh down   # (down -v: volumes too)
# The S3 keys: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment, else from
# .genpt/compose.env (git-ignored, mode 600), made once with random keys. They reach the
# containers by name only (compose.yaml), never on podman's command line, which
# podman-compose prints. Environment: GENPT_COMPOSE_PROJECT (default genpt), GENPT_S3_PORT,
# GENPT_PREFECT_PORT, GENPT_IMAGE (compose.yaml); CONTAINERS_CONF as docker/build-local.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/containers.conf}
env_file=.genpt/compose.env
if [ -z "${AWS_ACCESS_KEY_ID:-}" ] || [ -z "${AWS_SECRET_ACCESS_KEY:-}" ]; then
  if [ ! -f "$env_file" ]; then
    mkdir -p "$(dirname "$env_file")"
    (umask 077 && python3 -c 'import secrets
print(f"AWS_ACCESS_KEY_ID=GENPT{secrets.token_hex(8).upper()}")
print(f"AWS_SECRET_ACCESS_KEY={secrets.token_urlsafe(30)}")' >"$env_file")
    echo "new S3 keys in $env_file" >&2
  fi
  set -a && . "$env_file" && set +a
fi
exec podman-compose -p "${GENPT_COMPOSE_PROJECT:-genpt}" "$@"
