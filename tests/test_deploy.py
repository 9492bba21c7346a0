"""Deploying as written: deploy/install.sh run for real, the unit and the image agreeing.

``test_install_script_runs_the_install_steps`` runs the install script the way the
docs/operations.md says (as root; CI runs as root, without systemd): it creates the user, the
virtualenv in /opt, /etc/halo-approval-responder, installs the unit and checks it with
``systemd-analyze verify`` when that is installed. It changes this machine (a system
user, /opt, /etc), so it only runs as root and otherwise reports itself skipped.
"""

from __future__ import annotations

import configparser
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from responder import __version__

REPO = Path(__file__).parent.parent
UNIT = REPO / "deploy" / "halo-approval-responder.service"
CONTAINERFILE = REPO / "deploy" / "Containerfile"
EXAMPLE = tomllib.loads((REPO / "config.example.toml").read_text())
STATE = Path(EXAMPLE["state"]["path"]).parent
CONFIG = Path("/etc/halo-approval-responder/config.toml")
RUNUSER = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "runuser"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_a_config_error_is_not_restarted_in_a_loop() -> None:
    service = unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # `responder run` exits 2 on bad config


def test_unit_and_image_use_the_paths_of_the_config_example() -> None:
    service = unit()["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[command.index("--config") + 1] == str(CONFIG)
    assert Path("/var/lib", service["StateDirectory"]) == STATE

    image = CONTAINERFILE.read_text()
    [volume] = re.findall(r'^VOLUME \["([^"]+)"\]', image, re.M)
    assert Path(volume) == STATE  # the ledger of the example config is on the volume
    [cmd] = re.findall(r"^CMD (\[.*\])", image, re.M)
    args = json.loads(cmd)
    assert args[args.index("--config") + 1] == str(CONFIG)
    assert re.search(r"^HEALTHCHECK .*CMD .*/healthz", image, re.M | re.S)
    assert re.search(r"^USER responder$", image, re.M)
    assert "--uid 10001" in image
    guide = (REPO / "docs" / "operations.md").read_text()
    assert f"-v /srv/responder/config.toml:{CONFIG}:ro" in guide
    assert "install -m 600 -o 10001 -g 10001 config.toml" in guide


@pytest.mark.skipif(os.geteuid() != 0, reason="installs a system user and /opt: root only")
def test_install_script_runs_the_install_steps() -> None:
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh")], cwd="/",
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr

    user = pwd.getpwnam("responder")
    assert (user.pw_dir, user.pw_shell) == (str(STATE), "/usr/sbin/nologin")
    prefix = Path("/opt/halo-approval-responder")
    version = subprocess.run([RUNUSER, "-u", "responder", "--", str(prefix / "bin/responder"),
                              "--version"], capture_output=True, text=True, check=True)
    assert version.stdout == f"responder {__version__}\n"
    etc = CONFIG.parent.stat()
    assert stat.S_IMODE(etc.st_mode) == 0o750 and etc.st_gid == user.pw_gid
    config = CONFIG.stat()
    assert stat.S_IMODE(config.st_mode) == 0o600 and config.st_uid == user.pw_uid
    installed = Path("/etc/systemd/system/halo-approval-responder.service")
    assert installed.read_text() == UNIT.read_text()
    if shutil.which("systemd-analyze"):
        assert "systemd-analyze verify: ok" in done.stdout
    if not Path("/run/systemd/system").is_dir():
        assert "systemd is not running here: skipped systemctl daemon-reload and enable" \
            in done.stdout

    # As an admin checks it: the service user reads the config; the example's unset
    # secrets fail the parts that need them (one line each), nothing is contacted.
    responder = [RUNUSER, "-u", "responder", "--", str(prefix / "bin/responder")]
    check = subprocess.run([*responder, "check", "--config", str(CONFIG)],
                           capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin"})
    if "HALO_CLIENT_SECRET" not in CONFIG.read_text():
        pytest.fail("the installed config was edited: cannot show the missing secrets")
    assert check.returncode == 1, check.stdout + check.stderr
    lines = check.stdout.splitlines()
    assert "halo     FAILED halo.client_secret: environment variable HALO_CLIENT_SECRET is " \
        "not set" in lines
    assert "mailbox  FAILED imap.password: environment variable IMAP_PASSWORD is not set" \
        in lines
    # As the service starts it: the same is a config error, exit 2, not restarted.
    run = subprocess.run([*responder, "run", "--config", str(CONFIG)], capture_output=True,
                         text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 2, run.stderr
    assert "halo.client_secret: environment variable HALO_CLIENT_SECRET is not set" \
        in run.stderr


def test_install_script_help_prints_usage_and_changes_nothing() -> None:
    done = subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), "--help"],
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("usage: sudo deploy/install.sh [SOURCE]\n")
    assert "-h, --help" in done.stdout and "exit codes:" in done.stdout
    assert "\n==> " not in done.stdout  # no install step ran
    bad = subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), "--force"],
                         capture_output=True, text=True, timeout=30)
    assert (bad.returncode, bad.stderr) == (2, "install.sh: unknown option: --force "
                                               "(see --help)\n")


# Where a distribution's import name differs from its name.
IMPORT_NAMES = {"dkimpy": "dkim", "prometheus-client": "prometheus_client",
                "mail-parser": "mailparser", "google-auth": "google.auth",
                "argon2-cffi": "argon2"}


def test_every_declared_dependency_is_imported() -> None:
    """A dependency earns its place: each one in [project] dependencies is used."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    source = "\n".join(p.read_text() for p in (REPO / "responder").rglob("*.py"))
    for requirement in declared:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        module = IMPORT_NAMES.get(name, name.replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {re.escape(module)}\b", source, re.M), (
            f"{name} is declared in pyproject.toml but never imported")


def test_every_package_folder_ships_in_the_wheel() -> None:
    """A subpackage missing from [tool.setuptools] packages works from a checkout only."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts)
             for p in (REPO / "responder").rglob("__init__.py")}
    assert found <= listed, f"not in pyproject.toml [tool.setuptools] packages: {found - listed}"
