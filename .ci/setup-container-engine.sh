#!/usr/bin/env bash
# The container engines for the tests marked `container` (idempotent: installs only what is missing).
#
#   .ci/setup-container-engine.sh [DIR]        (default /opt/auto-infer-ci/container)
#
# - Debian packages: docker.io (dockerd 20.10 + containerd + runc), docker-compose (Compose v1.29),
#   mmdebstrap (the base image: a Debian root filesystem from Debian's archive), podman with runc,
#   netavark, aardvark-dns, slirp4netns, uidmap (crun fails on these cgroup-hybrid hosts).
# - podman-compose from PyPI (1.6: Debian's 1.0.3 breaks `network_mode: host`), in DIR/podman-compose-venv.
# Starts no daemon: tests/container_engine.py starts a private dockerd per test session and stops it.
# A failure here is reported in one line; the container tests then skip and say why.
set -euo pipefail

DEST="$(realpath -m "${1:-/opt/auto-infer-ci/container}")"
PODMAN_COMPOSE="podman-compose==1.6.0"
PKGS=(docker.io docker-compose mmdebstrap podman runc netavark aardvark-dns slirp4netns uidmap iproute2)
SAY="[container-engine]"
say() { echo "$SAY $*"; }

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    say "FAILED: apt-get install ${missing[*]}: the container tests will skip"
    exit 1
  fi
fi

venv="$DEST/podman-compose-venv"
if ! "$venv/bin/podman-compose" --version >/dev/null 2>&1; then
  say "pip install $PODMAN_COMPOSE into $venv"
  mkdir -p "$DEST"
  python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check "$PODMAN_COMPOSE" \
    || { say "FAILED: pip install $PODMAN_COMPOSE: the Podman tests will skip"; exit 1; }
fi
say "ready: $(dockerd --version 2>/dev/null | head -n1); $(docker-compose version --short 2>/dev/null); \
podman $(podman --version 2>/dev/null | awk '{print $3}'); podman-compose $("$venv/bin/podman-compose" --version 2>/dev/null | head -n1 | awk '{print $NF}')"
