#!/usr/bin/env bash
# Installs a built portcullis binary as a service: the binary, the system
# user, /etc/portcullis (the example config and policies, an env file for
# secrets), /var/lib/portcullis (state), and the systemd unit. The
# Dockerfile runs it too (with --no-systemd).
#
#   cargo build --release && sudo scripts/install.sh
#   scripts/install.sh --destdir /tmp/stage     # staged, no root needed
#
# Idempotent: run it again after a new build to replace the binary, the
# unit and portcullis.yaml.example; an existing portcullis.yaml, policies
# folder and env file are never overwritten.
#
# With --destdir (or DESTDIR=), everything goes below that folder, as a
# package build stages it: no user is created and no owner is changed (the
# modes are set all the same).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/../target/release/portcullis"
conf="$here/../conf"
prefix=/usr/local
destdir="${DESTDIR:-}"
user=portcullis
uid=""
systemd=1
make_user=1

usage() {
  cat <<EOF
usage: $0 [options]
  --bin PATH       the portcullis binary (default: target/release/portcullis)
  --prefix DIR     the binary goes to DIR/bin (default: /usr/local)
  --destdir DIR    stage below DIR: no user created, no owner changed (also DESTDIR=)
  --conf DIR       where portcullis.yaml, policies/ and portcullis.service are (default: conf/)
  --user NAME      the service's system user and group (default: portcullis)
  --uid N          their numeric id when created (default: the next free system id)
  --no-systemd     do not install the systemd unit (containers)
  --no-user        do not create the user, leave files owned by root
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --destdir) destdir="$2"; shift 2 ;;
    --conf) conf="$2"; shift 2 ;;
    --user) user="$2"; shift 2 ;;
    --uid) uid="$2"; shift 2 ;;
    --no-systemd) systemd=0; shift ;;
    --no-user) make_user=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

die() { echo "install.sh: $*" >&2; exit 1; }

[ -x "$bin" ] || die "no executable portcullis binary at $bin (cargo build --release, or --bin PATH)"
for f in portcullis.yaml policies portcullis.service; do
  [ -e "$conf/$f" ] || die "$conf/$f is missing (--conf DIR)"
done
case "$prefix" in /*) ;; *) die "--prefix must be an absolute path" ;; esac
if [ -n "$destdir" ]; then
  make_user=0                       # staging: the target system makes its own user
  destdir="$(mkdir -p "$destdir" && cd "$destdir" && pwd)"
elif [ "$(id -u)" -ne 0 ]; then
  die "run as root, or stage with --destdir DIR"
fi

etc="$destdir/etc/portcullis"
state="$destdir/var/lib/portcullis"
say() { echo "install.sh: $*"; }

# The user and group the service runs as. The unit's DynamicUser= uses an
# existing user of that name; a container runs as it.
owner=root:root
if [ "$make_user" = 1 ]; then
  if ! getent group "$user" >/dev/null; then
    groupadd --system ${uid:+--gid "$uid"} "$user"
  fi
  if ! getent passwd "$user" >/dev/null; then
    useradd --system ${uid:+--uid "$uid"} --gid "$user" --home-dir /var/lib/portcullis \
      --no-create-home --shell /usr/sbin/nologin --comment "portcullis identity-aware proxy" "$user"
    say "created system user $user"
  fi
  owner="root:$user"
fi

# owned OWNER PATH: chown unless staging.
owned() {
  [ "$make_user" = 1 ] && chown "$1" "$2"
  return 0
}

mkdir -p "$destdir$prefix/bin"
install -m 0755 "$bin" "$destdir$prefix/bin/portcullis"
say "installed $destdir$prefix/bin/portcullis"

# Config: readable by the service's group, writable by root only.
install -d -m 0750 "$etc"
owned "$owner" "$etc"
install -m 0644 "$conf/portcullis.yaml" "$etc/portcullis.yaml.example"
if [ ! -e "$etc/portcullis.yaml" ]; then
  install -m 0640 "$conf/portcullis.yaml" "$etc/portcullis.yaml"
  owned "$owner" "$etc/portcullis.yaml"
  say "installed $etc/portcullis.yaml (an example: edit it)"
else
  say "kept $etc/portcullis.yaml (the new example is portcullis.yaml.example)"
fi
if [ ! -e "$etc/policies" ]; then
  install -d -m 0750 "$etc/policies"
  owned "$owner" "$etc/policies"
  for p in "$conf"/policies/*.yaml; do
    install -m 0640 "$p" "$etc/policies/"
    owned "$owner" "$etc/policies/$(basename "$p")"
  done
  say "installed $etc/policies/"
fi
# Secrets for ${VAR} in the config, read by systemd (root) only.
if [ ! -e "$etc/env" ]; then
  install -m 0600 /dev/null "$etc/env"
  cat >"$etc/env" <<'EOF'
# Environment of the portcullis service (EnvironmentFile= of the unit):
# the secrets the config names as ${VAR}. Or use client_secret_file: and
# the like in the config instead.
#OKTA_CLIENT_SECRET=
#OKTA_API_TOKEN=
#PORTCULLIS_SCIM_SECRET=
EOF
  say "installed $etc/env (mode 0600)"
fi

# State: the SQLite store and the signing keys, the service's alone.
mkdir -p "$destdir/var/lib"
install -d -m 0700 "$state"
owned "$user:$user" "$state"

if [ "$systemd" = 1 ]; then
  unit="$destdir/etc/systemd/system/portcullis.service"
  mkdir -p "$(dirname "$unit")"
  sed "s|/usr/local/bin/portcullis|$prefix/bin/portcullis|g" "$conf/portcullis.service" >"$unit.tmp"
  chmod 0644 "$unit.tmp"
  mv "$unit.tmp" "$unit"
  say "installed $unit"
  if [ -z "$destdir" ]; then
    say "next: edit /etc/portcullis/portcullis.yaml, then"
    say "  portcullis check -c /etc/portcullis/portcullis.yaml"
    say "  systemctl daemon-reload && systemctl enable --now portcullis"
  fi
fi
