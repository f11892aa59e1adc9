#!/usr/bin/env bash
# Set-up for session-testnet on a fresh machine: Python package, system tools, Docker engine,
# node images. Safe to run again (every step checks before it acts).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python >= 3.11 is required (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11"

say "installing session-testnet and its test dependencies"
"$PY" -m pip install --disable-pip-version-check -q -e ".[test]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

# Debian packages, installed only where apt exists and only those missing:
# - mmdebstrap builds the node image's Debian base where no container registry can be reached;
# - the run-time libraries of the production storage server (../shared/real-storage-server,
#   Debian 12 names), openssl (its dh.pem) and iproute2 (the loopback-only namespaces its tests
#   run in), so the real-server tests run instead of skipping;
# - chromium: headless, it opens the HTML run report in tests/integration/test_report_browser.py.
REAL_SERVER_PACKAGES="libssl3 libcurl4 libsodium23 libzmq5 libevent-core-2.1-7 libevent-pthreads-2.1-7
  libgnutls30 libspdlog1.10 libfmt9 libsqlite3-0 openssl iproute2"
if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
  wanted=""
  command -v mmdebstrap >/dev/null 2>&1 || wanted="mmdebstrap"
  command -v chromium >/dev/null 2>&1 || wanted="$wanted chromium"
  for pkg in $REAL_SERVER_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || wanted="$wanted $pkg"
  done
  if [ -n "$wanted" ]; then
    say "installing Debian packages:$wanted"
    as_root apt-get update -qq >/dev/null || say "apt-get update failed; trying to install anyway"
    available=""
    for pkg in $wanted; do  # names differ between releases: install what this one has
      if apt-cache show "$pkg" >/dev/null 2>&1; then available="$available $pkg"
      else say "no Debian package $pkg here: tests that need it will skip with the reason"; fi
    done
    # one group at a time, so that a package this release cannot install (e.g. a chromium that
    # is only a snap stub) does not hold back the others
    core=$(printf '%s\n' $available | { grep -vx chromium || true; } | tr '\n' ' ')
    # shellcheck disable=SC2086
    [ -z "${core// }" ] || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $core >/dev/null \
      || say "could not install $core: image builds need a reachable registry, real-server tests will skip"
    case " $available " in *" chromium "*)
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
        || say "could not install chromium: the browser test of the HTML report will be skipped";;
    esac
  fi
fi

if [ "${SESSION_TESTNET_SKIP_DOCKER:-0}" = 1 ]; then
  say "SESSION_TESTNET_SKIP_DOCKER=1: skipping the Docker engine and images"
  exit 0
fi

say "checking the Docker engine"
if ! docker_ok=$("$PY" -c 'import docker; docker.from_env().ping(); print("ok")' 2>/dev/null); then
  say "Docker engine not answering; trying to start it"
  if command -v systemctl >/dev/null 2>&1 && systemctl list-unit-files docker.service >/dev/null 2>&1; then
    as_root systemctl start docker || true
  fi
  if ! "$PY" -c 'import docker; docker.from_env().ping()' 2>/dev/null && command -v service >/dev/null; then
    as_root service docker start >/dev/null 2>&1 || true
  fi
  if ! "$PY" -c 'import docker; docker.from_env().ping()' 2>/dev/null && command -v dockerd >/dev/null; then
    as_root sh -c 'nohup dockerd >/var/log/dockerd-session-testnet.log 2>&1 &' || true
  fi
  for _ in $(seq 1 60); do
    "$PY" -c 'import docker; docker.from_env().ping()' 2>/dev/null && break
    sleep 1
  done
  "$PY" -c 'import docker; docker.from_env().ping()' 2>/dev/null \
    || die "the Docker engine is not running and could not be started; start it (e.g. 'sudo systemctl start docker') and run this again, or set SESSION_TESTNET_SKIP_DOCKER=1 to use only the process backend"
fi

say "building the node images (only when nodes/ or dependencies changed)"
"$PY" -m harness images build
say "set-up complete: try 'testnet up --json'"
