#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them.
#   - Dovecot (IMAP) and openssl from Debian's packages, when missing (the tests start Dovecot)
#   - Chromium from Debian's packages, when missing (the review console's browser tests;
#     Playwright drives /usr/bin/chromium and never downloads a browser of its own)
#   - the package with its [test] extras, in .venv
# Extra arguments go to pytest, e.g. scripts/test.sh -k imap. With CI=true it runs
# ruff and mypy --strict first.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-imapd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # the TLS tests' certificates
[ -x /usr/bin/chromium ] || missing+=(chromium)  # tests/test_console_browser.py
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing ${missing[*]} for the tests ..."
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
if [ "${CI:-}" = "true" ]; then  # CI also holds the code to the linters, before the tests
  .venv/bin/ruff check responder tests scripts
  .venv/bin/mypy
fi
exec .venv/bin/python -m pytest "$@"
