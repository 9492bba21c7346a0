#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them.
#   - Dovecot (IMAP) from Debian's packages, when it is missing (the tests start it themselves)
#   - the package with its [test] extras, in .venv
# Extra arguments go to pytest, e.g. scripts/test.sh -k imap
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing Dovecot (dovecot-imapd) for the IMAP tests ..."
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest "$@"
