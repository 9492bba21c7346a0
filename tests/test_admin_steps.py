"""The admin steps of the guides, as written: ``responder`` run as a shell runs it.

Each test is one step an admin takes (issue 20, "Admin steps that fail as written"):
a read-only command from a shell without the service's secrets, the ledger's place
without ``[state]``, SIGHUP, Ctrl-C, /healthz while Halo is down, a ledger from a newer
release. Real servers throughout; ``tests/test_admin.py`` holds the helpers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.harness import Harness, gmail_reply
from tests.test_admin import maildir_config, responder

SECRET = "RESPONDER_TEST_HALO_SECRET"  # set only where a test says so


def with_secret_from_env(config: Path) -> Path:
    """The config as the install guide's systemd setup has it: the secret in the env."""
    text = config.read_text().replace('client_secret = "s3cret-value-xyz"',
                                      f'client_secret = "env:{SECRET}"')
    config.write_text(text)
    return config


# -- 1. read-only commands need no secret ---------------------------------------------

def test_backup_audit_and_explain_work_from_a_shell_without_the_services_secrets(
    tmp_path: Path,
) -> None:
    config = with_secret_from_env(maildir_config(tmp_path))
    (tmp_path / "mail").mkdir()
    ran = responder("once", "-c", config, env={SECRET: "s3cret-value-xyz"})  # the service
    assert ran.returncode == 0, ran.stderr
    assert SECRET not in os.environ
    message = tmp_path / "reply.eml"
    message.write_bytes(gmail_reply("alice@example.com", 1234, "Approve"))

    backup = responder("backup", "-c", config, tmp_path / "before-upgrade.sqlite3")
    audit = responder("audit", "-c", config, "--json")
    explain = responder("explain", message, "--config", config)

    assert (backup.returncode, audit.returncode, explain.returncode) == (0, 0, 0), (
        backup.stderr + audit.stderr + explain.stderr)
    assert backup.stdout.startswith(f"backed up {tmp_path / 'state' / 'ledger.sqlite3'} to ")
    assert explain.stdout.startswith("would ")
    # what needs Halo still says which secret it misses, naming the key
    online = responder("explain", message, "--config", config, "--online")
    once = responder("once", "-c", config)
    for done in (online, once):
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            "config error:", f"halo.client_secret: environment variable {SECRET} is not set"]


def test_check_without_a_secret_fails_that_part_and_checks_the_others(
    harness: Harness, tmp_path: Path
) -> None:
    harness.overrides = {"halo": {"client_secret": f"env:{SECRET}"}}
    config = harness.write_config(tmp_path / "config.toml")

    done = responder("check", "-c", config)

    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "config   ok     valid"
    assert lines[1].startswith("mailbox  ok     ")  # signed in to Dovecot all the same
    assert lines[2].startswith("smtp     ok     ")
    assert lines[3] == f"halo     FAILED halo.client_secret: environment variable {SECRET} " \
                       "is not set"
    assert lines[-1] == "1 of 5 parts FAILED: halo"
    assert "Traceback" not in done.stderr
    assert harness.halo.requests == []  # Halo was not contacted without its secret

    ok = responder("check", "-c", config, "--json", env={SECRET: harness.halo.client_secret})
    assert ok.returncode == 0, ok.stdout
    assert json.loads(ok.stdout)["halo"]["ok"] is True


def test_a_secret_file_readable_by_the_service_user_works_for_the_service_and_a_shell(
    harness: Harness, tmp_path: Path
) -> None:
    """The install guide's way: ``file:`` secrets, which systemd and a shell read alike."""
    secret = tmp_path / "halo-client-secret"
    secret.write_text(harness.halo.client_secret + "\n")
    secret.chmod(0o640)
    harness.overrides = {"halo": {"client_secret": f"file:{secret}"}}
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))

    once = responder("once", "-c", config)

    assert (once.returncode, once.stdout) == (0, "1 message: 1 approved; 1 answer sent\n")
    assert responder("check", "-c", config).returncode == 0
    assert harness.halo.client_secret not in once.stderr

