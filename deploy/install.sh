#!/usr/bin/env bash
# Install the Halo approval responder as a systemd service on Debian/Ubuntu (as root):
#
#   sudo deploy/install.sh [SOURCE]
#
# SOURCE is what pip installs: this repository (the default) or a built wheel
# (halo_approval_responder-*.whl). Run it again to upgrade: the config is kept.
#
#   1. python3 with venv (apt-get when missing)
#   2. the system user "responder" (no login, home = the state folder)
#   3. a virtualenv in /opt/halo-approval-responder with the package
#   4. /etc/halo-approval-responder (root:responder, mode 0750) and, the first time,
#      config.toml from config.example.toml (responder:responder, mode 0600)
#   5. the unit in /etc/systemd/system, checked with `systemd-analyze verify`
#   6. systemctl daemon-reload and enable (skipped where systemd is not running,
#      e.g. in a container or a CI job); it is not started: fill in the config first.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: sudo deploy/install.sh [SOURCE]

Install (or upgrade) the Halo approval responder as a systemd service, as root.
SOURCE is what pip installs: this repository (the default) or a built wheel
(halo_approval_responder-*.whl). Running it again upgrades and keeps the config.

It creates the system user "responder", a virtualenv in /opt/halo-approval-responder,
/etc/halo-approval-responder (root:responder, 0750) with config.toml (0600, written
from config.example.toml the first time only), installs the systemd unit, checks it
with systemd-analyze verify, then runs systemctl daemon-reload and enable (skipped
where systemd is not running). It does not start the service.

options:
  -h, --help   show this help and exit

exit codes: 0 installed; 2 not run as root, an unknown option, or SOURCE does not
exist; other: the failing step's own code (the last ==> line says which step)
EOF
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  -*) echo "install.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
esac
if [ $# -gt 1 ]; then
  echo "install.sh: one SOURCE at most (see --help)" >&2
  exit 2
fi
umask 022  # the service user must be able to read and run the virtualenv
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin  # useradd, runuser

NAME=halo-approval-responder
SERVICE_USER=responder
PREFIX=/opt/$NAME
ETC=/etc/$NAME
STATE=/var/lib/$NAME
UNIT=/etc/systemd/system/$NAME.service
REPO=$(cd "$(dirname "$0")/.." && pwd)
SOURCE=${1:-$REPO}
# Debian's own Python, which every user may run (not one under a person's home).
PYTHON=${PYTHON:-/usr/bin/python3}

step() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run it as root (sudo $0)" >&2
  exit 2
fi
if [ ! -e "$SOURCE" ]; then
  echo "install.sh: no such file or folder: $SOURCE" >&2
  exit 2
fi

step "$PYTHON with venv"
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
fi

step "user $SERVICE_USER"
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
  echo "    exists"
else
  useradd --system --user-group --home-dir "$STATE" --no-create-home \
    --shell /usr/sbin/nologin "$SERVICE_USER"
fi

step "virtualenv $PREFIX with $SOURCE"
[ -x "$PREFIX/bin/python" ] || "$PYTHON" -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$SOURCE"
# The service runs it as its own user: that user must be able to (interpreter included).
runuser -u "$SERVICE_USER" -- "$PREFIX/bin/responder" --version

step "$ETC (mode 0750, group $SERVICE_USER)"
install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC"
if [ -e "$ETC/config.toml" ]; then
  echo "    $ETC/config.toml exists: kept"
else
  install -m 0600 -o "$SERVICE_USER" -g "$SERVICE_USER" "$REPO/config.example.toml" \
    "$ETC/config.toml"
  echo "    $ETC/config.toml written from config.example.toml: fill it in"
fi

step "unit $UNIT"
install -m 0644 "$REPO/deploy/$NAME.service" "$UNIT"
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify "$UNIT"
  echo "    systemd-analyze verify: ok"
else
  echo "    systemd-analyze is not installed: unit not verified"
fi

step "systemctl daemon-reload, enable"
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable "$NAME"
else
  echo "    systemd is not running here: skipped systemctl daemon-reload and enable"
fi

cat <<EOF

Installed. Next:
  1. edit $ETC/config.toml (every key is documented in it)
  2. secrets: one file each, readable by the service user, named in the config as
     client_secret = "file:$ETC/halo-client-secret" (and so on), e.g.
       printf '%s' 'THE-SECRET' | install -m 0640 -o root -g $SERVICE_USER /dev/stdin $ETC/halo-client-secret
     The service and an admin's "sudo -u $SERVICE_USER responder ..." then read the same
     files (Environment= in "systemctl edit $NAME" reaches the service only).
  3. sudo -u $SERVICE_USER $PREFIX/bin/responder check --config $ETC/config.toml
  4. systemctl start $NAME && journalctl -u $NAME -f
EOF
