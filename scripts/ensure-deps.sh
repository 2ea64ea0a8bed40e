#!/usr/bin/env bash
# Installs what a fresh machine lacks for building and testing portcullis
# (Pingora's zlib-ng build needs cmake; TLS to upstreams reads
# ca-certificates; the fleet-mode tests start a real PostgreSQL server from
# Debian's postgresql package, the PROXY protocol tests a real HAProxy from
# Debian's haproxy package), then runs the given command. Idempotent:
# does nothing when all is present.
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ $# -gt 0 ]; then
  exec "$@"
fi
