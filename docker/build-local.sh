#!/usr/bin/env bash
# Build the genpt image with podman on a machine without a container registry or a GPU
# (this project's machines). Docker/GPU hosts use `docker build -t genpt .` instead.
#   docker/build-local.sh            # -> localhost/genpt:latest, then a smoke test
# The base image: python:3.11-slim-bookworm if it is here or can be pulled, else a bookworm
# root filesystem made with mmdebstrap and imported as localhost/genpt-base:bookworm.
# torch: the CPU wheel from pip's find-links folder (GENPT_WHEELS, default: pip's own
# find-links), mounted into the build; without one, pip gets torch from the index.
# Environment: GENPT_IMAGE (tag), GENPT_BASE_IMAGE (skip the base logic), GENPT_WHEELS,
# CONTAINERS_CONF (default docker/containers.conf: the sandbox's podman settings).
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/containers.conf}
image=${GENPT_IMAGE:-localhost/genpt:latest}
official=docker.io/library/python:3.11-slim-bookworm
local_base=localhost/genpt-base:bookworm
ca=/etc/ssl/certs/ca-certificates.crt  # the host's bundle: it trusts the TLS proxy, if any

base=${GENPT_BASE_IMAGE:-}
if [ -z "$base" ]; then
  if podman image exists "$official" || podman pull -q "$official" >/dev/null 2>&1; then
    base=$official
  else
    base=$local_base
    if ! podman image exists "$base"; then
      echo "no registry reachable: building $base with mmdebstrap" >&2
      tar=$(mktemp --suffix=.tar)
      trap 'rm -f "$tar"' EXIT
      nice -n 10 mmdebstrap --quiet --variant=minbase \
        --include=python3,python3-venv,python-is-python3,ca-certificates bookworm "$tar"
      podman import -q "$tar" "$base" >/dev/null
    fi
  fi
fi

wheels=${GENPT_WHEELS-$(pip config get global.find-links 2>/dev/null || true)}
wheels=${wheels%% *}  # the first folder, if pip lists several
args=(--build-arg "PYTHON_IMAGE=$base" --network host
  --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
if [ -f "$ca" ]; then
  args+=(-v "$ca:$ca:ro" --build-arg "PIP_CERT=$ca")
fi
if [ -n "$wheels" ] && [ -d "$wheels" ]; then
  args+=(-v "$(realpath "$wheels"):/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels)
fi

start=$SECONDS
nice -n 10 podman build "${args[@]}" -t "$image" .
echo "built $image from $base in $((SECONDS - start)) s," \
  "$(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec) uncompressed" >&2
# smoke test: the entrypoint starts as the non-root user
podman run --rm "$image" --help >/dev/null
echo "$image: genpt --help runs as uid $(podman run --rm --entrypoint id "$image" -u)" >&2
