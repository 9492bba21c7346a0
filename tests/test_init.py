"""``responder init`` and ``check --discover`` against a real Dovecot, SMTP server and Halo.

The folder holds replies stamped as Exchange Online, Gmail and a self-hosted server stamp
them (``tests/shapes.py``), so discovery proposes each profile; the config init writes
then passes ``check`` and a ``once`` decides a real reply. Discovery must leave the
mailbox exactly as it was: flags, keywords and folders.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import stat
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from responder.commands.cli import main
from responder.halo.standin import StandinHalo
from tests import shapes
from tests.dkim_keys import new_dkim_key
from tests.graph_harness import GraphHarness
from tests.harness import AUTHSERV, RESPONDER_ADDRESS, Harness, gmail_reply, write_toml
from tests.standin_graph import StandinGraph

SECRET_ENV = "INIT_TEST_HALO_SECRET"


@pytest.fixture(scope="module")
def key() -> bytes:
    return new_dkim_key()[0]


def exchange_online(key: bytes, ticket: int = 1234, first: str = "Approve") -> bytes:
    signed = shapes.signed(shapes.approval_reply(ticket=ticket, first=first), "example.com", key)
    return shapes.exo_external(signed, shapes.EXO_PASS)


def gmail(key: bytes, ticket: int = 1234, first: str = "Approve") -> bytes:
    signed = shapes.signed(shapes.approval_reply(ticket=ticket, first=first), "example.com", key)
    return shapes.gmail_delivered(signed, shapes.gmail_results())


def self_hosted(key: bytes, ticket: int = 1234, first: str = "Approve") -> bytes:
    return gmail_reply("alice@example.com", ticket, first)  # stamped by mx.test.example


PROFILES: dict[str, tuple[Callable[[bytes, int, str], bytes], list[str]]] = {
    "exchange-online": (exchange_online, ["exchange-online"]),
    "gmail": (gmail, ["mx.google.com"]),
    "self-hosted": (self_hosted, [AUTHSERV]),
}


def flags(harness: Harness, tmp_path: Path, **extra: str) -> list[str]:
    """Every answer as a flag, for an unattended run."""
    password = tmp_path / "imap_password"
    password.write_text(harness.dovecot.users[harness.user] + "\n")
    given = {
        "--config-out": str(tmp_path / "config.toml"),
        "--state-path": str(tmp_path / "ledger.sqlite3"),
        "--halo-url": harness.halo.base_url, "--client-id": harness.halo.client_id,
        "--client-secret-env": SECRET_ENV,
        "--mailbox": "imap", "--imap-host": harness.dovecot.host,
        "--imap-port": str(harness.dovecot.port), "--imap-tls": "none",
        "--imap-user": harness.user, "--imap-password-file": str(password),
        "--smtp-host": harness.sink.host, "--smtp-port": str(harness.sink.port),
        "--smtp-tls": "none", "--smtp-auth": "none", "--from": RESPONDER_ADDRESS,
        **{f"--{k.replace('_', '-')}": v for k, v in extra.items()},
    }
    return ["init", "--yes", *[part for item in given.items() for part in item]]


def mailbox_state(harness: Harness) -> tuple[list[str], dict[int, tuple[bytes, ...]]]:
    """The folders, and every INBOX message's flags and keywords, by UID."""
    client = harness.dovecot.connect(harness.user)
    try:
        client.select_folder("INBOX", readonly=True)
        uids = client.search("ALL")
        found = client.fetch(uids, ["FLAGS"]) if uids else {}
        flags = {uid: tuple(sorted(v[b"FLAGS"])) for uid, v in found.items()}
        return sorted(str(f[2]) for f in client.list_folders()), flags
    finally:
        client.logout()


@pytest.mark.parametrize("profile", list(PROFILES))
def test_init_unattended_discovers_the_profile_and_the_config_decides_a_reply(
    harness: Harness, tmp_path: Path, key: bytes, profile: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    make, trusted = PROFILES[profile]
    monkeypatch.setenv(SECRET_ENV, harness.halo.client_secret)
    for n in range(3):  # the mail already there: what discovery reads
        harness.deliver(make(key, 1300, f"Approve {n}"))
    before = mailbox_state(harness)

    assert main(flags(harness, tmp_path)) == 0
    out = capsys.readouterr().out
    assert mailbox_state(harness) == before  # no \\Seen, no claim keyword, nothing moved
    assert all(b"\\Seen" not in f for f in before[1].values())
    config = tmp_path / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    written = tomllib.loads(config.read_text())
    assert written["security"]["trusted_authserv_id"] == trusted
    assert written["halo"]["client_secret"] == f"env:{SECRET_ENV}"
    assert written["imap"]["password"] == f"file:{tmp_path / 'imap_password'}"
    assert harness.halo.client_secret not in config.read_text()
    assert "3 of 3 would be trusted" in out
    assert f"Reply-To: {RESPONDER_ADDRESS}" in out and "[ID:$FAULTID]" in out
    assert f"responder run --config {config}" in out

    assert main(["check", "--config", str(config)]) == 0
    assert "trust" in capsys.readouterr().out
    harness.deliver(make(key, 1234, "Approve - fine by me"))
    assert main(["once", "--config", str(config), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    decided = [m for m in result["messages"] if m["ticket_id"] == 1234]
    assert [m["outcome"] for m in decided] == ["approved"]
    assert harness.halo.approver(1234, 1)["result"] is not None


def test_an_exchange_mailbox_with_internal_mail_proposes_exchange_internal(
    harness: Harness, tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(SECRET_ENV, harness.halo.client_secret)
    harness.deliver(exchange_online(key, 1300))
    harness.deliver(shapes.exo_internal(shapes.approval_reply(ticket=1300)))
    assert main(flags(harness, tmp_path)) == 0
    security = tomllib.loads((tmp_path / "config.toml").read_text())["security"]
    assert security == {"trusted_authserv_id": ["exchange-online"], "exchange_internal": True,
                        "internal_domains": ["example.com"]}
    assert "AuthAs Internal" in capsys.readouterr().out


def test_mixed_stamps_are_never_chosen_unattended(
    harness: Harness, tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(SECRET_ENV, harness.halo.client_secret)
    harness.deliver(gmail(key, 1300))
    harness.deliver(self_hosted(key, 1300))
    assert main(flags(harness, tmp_path)) == 2
    captured = capsys.readouterr()
    assert "MIXED" in captured.out
    assert "more than one server" in captured.err and "--trust" in captured.err
    assert not (tmp_path / "config.toml").exists()
    assert main(flags(harness, tmp_path, trust=f"authserv-id:{AUTHSERV}")) == 0


def test_an_empty_folder_needs_trust_named(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(SECRET_ENV, harness.halo.client_secret)
    assert main(flags(harness, tmp_path)) == 2
    assert "--trust" in capsys.readouterr().err
    assert main(flags(harness, tmp_path, trust="gmail")) == 0
    security = tomllib.loads((tmp_path / "config.toml").read_text())["security"]
    assert security == {"trusted_authserv_id": ["mx.google.com"]}


@pytest.mark.parametrize(("change", "reason"), [
    ("secret", "Halo: the client id or secret is wrong"),
    ("tenant", "Halo: the token request was refused: check the tenant (--halo-tenant"),
    ("scope", "cannot record decisions: give the application edit:tickets"),
    ("url", "Halo: cannot reach http://127.0.0.1:9/auth/token: check the address"),
])
def test_a_wrong_halo_answer_is_reported_at_once(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], change: str, reason: str,
) -> None:
    secret = harness.halo.client_secret
    extra: dict[str, str] = {}
    if change == "secret":
        secret = "wrong-" + secret
    elif change == "tenant":
        harness.halo.behaviour.tenant = "acme"
        extra["halo_tenant"] = "globex"
    elif change == "scope":
        extra["scope"] = "read:tickets"
    else:
        extra["halo_url"] = "http://127.0.0.1:9"  # nothing listens there
    monkeypatch.setenv(SECRET_ENV, secret)
    started = time.monotonic()
    assert main(flags(harness, tmp_path, **extra)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Halo") and reason in err, err
    assert secret not in err and harness.halo.client_secret not in err
    assert time.monotonic() - started < 15  # at once: before any mailbox question
    assert not (tmp_path / "config.toml").exists()


def test_a_missing_answer_without_a_terminal_names_its_flag(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(SECRET_ENV, harness.halo.client_secret)
    args = flags(harness, tmp_path)
    cut = args.index("--imap-host")
    assert main(args[:cut] + args[cut + 2:]) == 2
    assert "missing --imap-host (no terminal to ask on)" in capsys.readouterr().err
    args = flags(harness, tmp_path)
    cut = args.index("--client-secret-env")
    assert main(args[:cut] + args[cut + 2:]) == 2
    assert "missing --client-secret-file or --client-secret-env" in capsys.readouterr().err
    without = args[:cut] + args[cut + 2:]
    assert main([*without, "--client-secret-file", str(tmp_path / "nope")]) == 2
    assert f"--client-secret-file: no such file {tmp_path / 'nope'}" in capsys.readouterr().err


def test_a_wrong_mailbox_password_or_folder_is_reported(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(SECRET_ENV, harness.halo.client_secret)
    args = flags(harness, tmp_path)
    assert main([*args, "--folder", "Approvals/Nope"]) == 1
    err = capsys.readouterr().err
    assert "error: mailbox: imap" in err and "folder Approvals/Nope" in err
    (tmp_path / "imap_password").write_text("wrong-password\n")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "error: mailbox: imap" in err and "login refused" in err
    assert "wrong-password" not in err
    assert not (tmp_path / "config.toml").exists()


# -- through a terminal ------------------------------------------------------------------


class Terminal:
    """``responder init`` on a pseudo-terminal: wait for a prompt, type an answer."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the terminal is its controlling tty (getpass needs it)
            os.execve(sys.executable, [sys.executable, "-m", "responder", *argv], env)
        self.seen = ""

    def expect(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                raise AssertionError(f"no {text!r} within {timeout}s; saw:\n{self.seen}")
            try:
                chunk = os.read(self.fd, 4096).decode(errors="replace")
            except OSError:  # the child has gone
                chunk = ""
            if not chunk:
                raise AssertionError(f"ended before {text!r}; saw:\n{self.seen}")
            self.seen += chunk
        found, _, self.seen = self.seen.partition(text)
        return found + text

    def answer(self, prompt: str, text: str) -> str:
        said = self.expect(prompt)
        os.write(self.fd, text.encode() + b"\r")
        return said

    def wait(self) -> tuple[int, str]:
        rest = ""
        while True:
            try:
                chunk = os.read(self.fd, 4096).decode(errors="replace")
            except OSError:
                break
            if not chunk:
                break
            rest += chunk
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status), self.seen + rest


def test_init_through_a_terminal_asks_tries_and_asks_again(
    harness: Harness, tmp_path: Path, key: bytes,
) -> None:
    for n in range(2):
        harness.deliver(self_hosted(key, 1300, f"Approve {n}"))
    before = mailbox_state(harness)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    config = tmp_path / "etc" / "config.toml"
    term = Terminal(["init", "--config-out", str(config),
                     "--state-path", str(tmp_path / "ledger.sqlite3")], env)
    typed = "wrong-secret-typed-1"
    term.answer("Halo address", harness.halo.base_url)
    said = term.answer("Halo authorisation server", "")  # what Halo said is the default
    assert f"Halo authorisation server (blank: the address + /auth) [{harness.halo.base_url}" \
           "/auth]" in said + term.seen
    term.answer("Halo tenant", "")
    term.answer("client id", harness.halo.client_id)
    term.answer("client secret (not shown)", typed)
    term.answer("Keep secrets in files or in environment variables?", "file")
    term.answer("Scope [all]", "")
    refused = term.expect("Halo address")  # asked again, the earlier answers as defaults
    assert "FAILED: Halo" in refused and "the client id or secret is wrong" in refused
    assert typed not in refused
    os.write(term.fd, b"\r")
    term.answer("Halo authorisation server", "")
    term.answer("Halo tenant", "")
    term.answer("client id", "")
    term.answer("client secret (not shown)", harness.halo.client_secret)
    said = term.answer("Scope [all]", "")
    said = term.answer("Mailbox kind", "imap")
    assert "ok: token ok" in said
    term.answer("IMAP server", harness.dovecot.host)
    term.answer("IMAP TLS", "none")
    term.answer("IMAP port", str(harness.dovecot.port))
    term.answer("Mailbox user", harness.user)
    term.answer("Mailbox password (not shown)", "wrong-imap-password-typed")
    term.answer("Watched folder [INBOX]", "")
    refused = term.expect("Mailbox kind")  # refused before any SMTP question
    assert "FAILED: mailbox: imap" in refused and "login refused" in refused
    assert "SMTP" not in refused and "Answers leave by" not in refused
    assert "wrong-imap-password-typed" not in refused
    os.write(term.fd, b"\r")  # the kind: asked again, the earlier answers as defaults
    for prompt in ("IMAP server", "IMAP TLS", "IMAP port", "Mailbox user"):
        term.answer(prompt, "")
    term.answer("Mailbox password (not shown)", harness.dovecot.users[harness.user])
    term.answer("Watched folder [INBOX]", "")
    said = term.answer("Answers leave by", "")
    assert "ok: imap" in said and "folder INBOX" in said
    term.answer("SMTP server", harness.sink.host)
    term.answer("SMTP TLS", "none")
    term.answer("SMTP port", str(harness.sink.port))
    term.answer("Answers come from", RESPONDER_ADDRESS)
    said = term.answer("SMTP sign-in", "none")
    said = term.answer("Trust this?", "y")
    assert "ok: smtp" in said and f"they fit the server {AUTHSERV}" in said
    assert "2 of 2 would be trusted" in said and "NOT TRUSTED" not in said
    code, rest = term.wait()
    assert code == 0, rest
    assert f"wrote {config}" in rest and "Next:" in rest
    assert harness.halo.client_secret not in said + rest

    assert mailbox_state(harness) == before
    text = config.read_text()
    written = tomllib.loads(text)
    secret_file = config.parent / "halo_client_secret"
    assert written["halo"]["client_secret"] == f"file:{secret_file}"
    assert secret_file.read_text().strip() == harness.halo.client_secret
    for path in (config, secret_file, config.parent / "imap_password"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert written["security"] == {"trusted_authserv_id": [AUTHSERV]}
    assert main(["check", "--config", str(config)]) == 0


# -- check --discover, and check without trust -------------------------------------------


def test_check_discover_prints_the_block_and_changes_nothing(
    harness: Harness, tmp_path: Path, key: bytes, capsys: pytest.CaptureFixture[str],
) -> None:
    harness.overrides = {"security": {"trusted_authserv_id": "mx.other.example"}}
    config = harness.write_config(tmp_path / "config.toml")
    for n in range(4):
        harness.deliver(exchange_online(key, 1300, f"Approve {n}"))
    before = mailbox_state(harness)
    assert main(["check", "--config", str(config), "--discover", "--newest", "3"]) == 1
    out = capsys.readouterr().out
    assert "the newest 3 messages in INBOX of" in out
    assert '  trusted_authserv_id = ["exchange-online"]' in out
    assert "the current config does not trust this yet" in out
    assert mailbox_state(harness) == before

    harness.overrides = {"security": {"trusted_authserv_id": "exchange-online"}}
    config = harness.write_config(tmp_path / "config.toml")
    assert main(["check", "--config", str(config), "--discover", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["profile"], found["counts"], found["fits_config"]) == (
        "exchange-online", {"exchange-online": 4}, True)
    assert found["messages"][0]["topmost"] == "no authserv-id (Exchange Online)"
    assert mailbox_state(harness) == before


def test_check_fails_without_any_trust_unless_policy_is_off(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = harness.config()
    config.pop("security")
    path = write_toml(config, tmp_path / "config.toml")
    assert main(["check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("trust"))
    assert "FAILED" in line and "trusted_authserv_id" in line
    assert f"responder check --config {path} --discover" in line
    assert out.rstrip().endswith("1 of 6 parts FAILED: trust")

    config["security"] = {"policy": "off"}
    path = write_toml(config, tmp_path / "config.toml")
    assert main(["check", "--config", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trust"]["ok"] is True


def test_discovery_never_proposes_or_prints_what_a_hostile_header_smuggles() -> None:
    from responder.config import SecuritySettings
    from responder.trust.discovery import discover, report_lines

    hostile = shapes.on_top(
        shapes.approval_reply(sender="\x1b]0;owned\x07eve@example.com"),
        'Authentication-Results: mx.evil\\u0022]\x1b[2J; dkim=pass header.d=example.com')
    found = discover([hostile, hostile], SecuritySettings())
    assert found.profile == "none" and found.proposal.trusted_authserv_id == []
    text = "\n".join(report_lines(found, "INBOX"))
    assert "\x1b" not in text and "\x07" not in text
    assert "no profile fits" in text


@pytest.fixture(scope="module")
def graph() -> Iterator[StandinGraph]:
    """The stand-in Graph (HTTPS); this process trusts its CA while the module runs."""
    with StandinGraph.trusted() as server:
        yield server


def test_check_discover_reads_a_graph_mailbox_with_gets_only(
    graph: StandinGraph, halo: StandinHalo, tmp_path: Path, key: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gh = GraphHarness(graph, halo, tmp_path)
    gh.overrides = {"security": {"trusted_authserv_id": "exchange-online"}}
    config = gh.write_config(tmp_path / "config.toml")
    for _ in range(2):
        gh.deliver(gmail(key, 1300))
    time.sleep(1.1)  # Graph's receivedDateTime has whole seconds
    for _ in range(3):
        gh.deliver(exchange_online(key, 1300))
    tree = graph.tree(gh.mailbox)

    assert main(["check", "--config", str(config), "--discover", "--newest", "3", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["counts"] == {"exchange-online": 3}
    assert {r.method for r in graph.graph_requests(gh.mailbox)} == {"GET"}
    assert graph.tree(gh.mailbox) == tree
    assert not (tmp_path / f"{gh.mailbox}.sqlite3").exists()  # no delta state written


def test_init_for_microsoft_365_through_graph(
    graph: StandinGraph, halo: StandinHalo, tmp_path: Path, key: bytes,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    gh = GraphHarness(graph, halo, tmp_path)
    for n in range(2):
        gh.deliver(exchange_online(key, 1300, f"Approve {n}"))
    tree = graph.tree(gh.mailbox)
    monkeypatch.setenv(SECRET_ENV, halo.client_secret)
    monkeypatch.setenv("INIT_TEST_GRAPH_SECRET", gh.secret)
    config = tmp_path / "config.toml"
    assert main(["init", "--yes", "--config-out", str(config),
                 "--state-path", str(tmp_path / "ledger.sqlite3"),
                 "--halo-url", halo.base_url, "--client-id", halo.client_id,
                 "--client-secret-env", SECRET_ENV, "--mailbox", "graph",
                 "--tenant-id", "contoso.onmicrosoft.com", "--graph-client-id", gh.client_id,
                 "--graph-client-secret-env", "INIT_TEST_GRAPH_SECRET",
                 "--graph-mailbox", gh.mailbox, "--graph-authority", graph.url,
                 "--graph-url", graph.graph_url]) == 0
    out = capsys.readouterr().out
    assert f"Reply-To: {gh.mailbox}" in out
    written = tomllib.loads(config.read_text())
    assert "smtp" not in written  # answers leave through Graph
    assert written["security"] == {"trusted_authserv_id": ["exchange-online"]}
    assert graph.tree(gh.mailbox) == tree  # nothing moved, no folder made
    changes = [r for r in graph.graph_requests(gh.mailbox) if r.method != "GET"]
    assert [r.path.rsplit("/", 1)[-1] for r in changes] == ["sendMail"]  # the empty probe
    assert graph.sent(gh.mailbox) == []

    assert main(["check", "--config", str(config)]) == 0
    assert "all 6 parts ok" in capsys.readouterr().out
    gh.deliver(exchange_online(key, 1234, "Approve"))
    assert main(["once", "--config", str(config), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [m["outcome"] for m in result["messages"] if m["ticket_id"] == 1234] == ["approved"]


def test_init_with_a_maildir_renames_no_file(
    harness: Harness, tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from responder.mailboxes.maildir import deliver

    maildir = tmp_path / "Maildir"
    for n in range(3):
        deliver(maildir, gmail(key, 1300, f"Approve {n}"))
    files = sorted(p.relative_to(maildir) for p in maildir.rglob("*") if p.is_file())
    monkeypatch.setenv(SECRET_ENV, harness.halo.client_secret)
    config = tmp_path / "config.toml"
    assert main(["init", "--yes", "--config-out", str(config), "--halo-url",
                 harness.halo.base_url, "--client-id", harness.halo.client_id,
                 "--client-secret-env", SECRET_ENV, "--mailbox", "maildir",
                 "--maildir", str(maildir), "--smtp-host", harness.sink.host, "--smtp-port",
                 str(harness.sink.port), "--smtp-tls", "none", "--from", RESPONDER_ADDRESS,
                 "--state-path", str(tmp_path / "ledger.sqlite3")]) == 0
    assert "smtp-auth" not in capsys.readouterr().err
    assert sorted(p.relative_to(maildir) for p in maildir.rglob("*") if p.is_file()) == files
    written = tomllib.loads(config.read_text())
    assert written["maildir"] == {"path": str(maildir)}
    assert written["smtp"]["tls"] == "none" and "auth" not in written["smtp"]
    assert written["security"] == {"trusted_authserv_id": ["mx.google.com"]}
    assert main(["check", "--config", str(config)]) == 0


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_init_for_google_signs_in_with_the_service_account(
    halo: StandinHalo, tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Google Workspace: XOAUTH2 with a service account's token, to IMAP and SMTP alike;
    a Dovecot that asks the stand-in identity provider about each token plays Gmail."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.fixtures_mail import new_mail_user
    from tests.idp import BearerSmtpSink, StandinIdp
    from tests.servers import Dovecot

    with StandinIdp() as idp, Dovecot(oauth2_introspection_url=idp.introspection_url) as imap, \
            BearerSmtpSink(idp=idp) as smtp:
        account = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        robot = "responder@project.iam.gserviceaccount.com"
        idp.add_service_account(robot, account.public_key())
        keyfile = tmp_path / "service-account.json"
        keyfile.write_text(json.dumps({
            "type": "service_account", "project_id": "p", "private_key_id": "k1",
            "client_email": robot, "client_id": "1", "token_uri": idp.token_url,
            "private_key": account.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode()}))
        user, _ = new_mail_user(imap)
        for _ in range(2):
            imap.append(user, "INBOX", gmail(key, 1300))
        monkeypatch.setenv(SECRET_ENV, halo.client_secret)
        config = tmp_path / "config.toml"
        assert main(["init", "--yes", "--config-out", str(config),
                     "--state-path", str(tmp_path / "ledger.sqlite3"),
                     "--halo-url", halo.base_url, "--client-id", halo.client_id,
                     "--client-secret-env", SECRET_ENV, "--mailbox", "google",
                     "--imap-host", imap.host, "--imap-port", str(imap.port),
                     "--imap-tls", "none", "--imap-user", user,
                     "--google-service-account-file", str(keyfile),
                     "--smtp-host", smtp.host, "--smtp-port", str(smtp.port),
                     "--smtp-tls", "none", "--from", "approvals@service.example"]) == 0
        out = capsys.readouterr().out
        assert f"signed in as {user} with oauth2-google (XOAUTH2)" in out
        written = tomllib.loads(config.read_text())
        assert written["imap"]["auth"] == "oauth2-google"
        assert written["smtp"]["auth"] == "same-as-imap"
        assert written["security"] == {"trusted_authserv_id": ["mx.google.com"]}
        assert main(["check", "--config", str(config)]) == 0


def test_typed_env_secrets_go_to_an_environment_file_both_systemd_and_sh_read(
    tmp_path: Path,
) -> None:
    import subprocess

    from responder.commands.init import Secret, write_config

    tricky = "it's $HOME `x` \\ \"q\" #1"
    data = {"halo": {"base_url": "https://h.example", "client_id": "c",
                     "client_secret": Secret(tricky, "env:HALO_CLIENT_SECRET")}}
    env_file = write_config(tmp_path / "config.toml", data, [data["halo"]["client_secret"]])
    assert env_file == tmp_path / "responder.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert tricky not in (tmp_path / "config.toml").read_text()
    assert 'client_secret = "env:HALO_CLIENT_SECRET"' in (tmp_path / "config.toml").read_text()
    shown = subprocess.run(["sh", "-c", f'set -a; . "{env_file}"; printf %s "$HALO_CLIENT_SECRET"'],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert shown.stdout == tricky


def test_the_tenant_comes_from_halos_authinfo(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    harness.halo.behaviour.tenant = "standin"  # hosted Halo: the token request names it
    monkeypatch.setenv(SECRET_ENV, harness.halo.client_secret)
    assert main(flags(harness, tmp_path, trust="gmail")) == 0
    assert "Halo says (GET /api/authinfo): authorisation server" in capsys.readouterr().out
    halo = tomllib.loads((tmp_path / "config.toml").read_text())["halo"]
    assert halo["tenant"] == "standin" and "auth_url" not in halo  # the default one


def test_on_a_terminal_flags_answer_and_only_the_rest_is_asked(
    harness: Harness, tmp_path: Path,
) -> None:
    """An empty folder: nothing to discover from, so the profile is asked for by name."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           SECRET_ENV: harness.halo.client_secret}
    args = flags(harness, tmp_path, halo_auth_url="", halo_tenant="", scope="all",
                 folder="INBOX", send="smtp")
    args.remove("--yes")
    term = Terminal(args, env)
    said = term.answer("Trust profile", "auto")
    assert "no messages in INBOX of" in said and "Halo address" not in said
    assert "ok: token ok" in said and "IDLE supported, 0 messages" in said
    said = term.answer("Trust profile", "gmail")
    assert "name one" in said
    code, rest = term.wait()
    assert code == 0, rest
    written = tomllib.loads((tmp_path / "config.toml").read_text())
    assert written["security"] == {"trusted_authserv_id": ["mx.google.com"]}


def test_discovery_reads_at_most_64_kb_of_each_header_block(
    harness: Harness, tmp_path: Path, key: bytes, capsys: pytest.CaptureFixture[str],
) -> None:
    bulky = shapes.at_end_of_header(
        gmail(key, 1300), *(f"X-Filler-{n}: {'x' * 990}" for n in range(300)))
    assert len(bulky) > 300_000
    harness.deliver(bulky)
    harness.overrides = {"security": {"trusted_authserv_id": "mx.google.com"}}
    config = harness.write_config(tmp_path / "config.toml")
    assert main(["check", "--config", str(config), "--discover", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"mx.google.com": 1}
    from responder.mailboxes import PEEK_BYTES
    from responder.service import peek_headers

    headers = asyncio.run(peek_headers(harness.settings, 1))
    assert len(headers[0]) == PEEK_BYTES


@pytest.mark.parametrize(("answer", "expected"), [
    (b'{"auth_url": "https://auth.example.com", "tenant_id": "acme"}',
     ("https://auth.example.com", "acme")),
    (b'{"auth_url": "javascript:alert(1)", "tenant_id": "acme\\"]\\npolicy = \\"off"}', ("", "")),
    (b'{"auth_url": "https://a.example/x y", "tenant_id": "' + b"t" * 200 + b'"}', ("", "")),
    (b"[1, 2]", ("", "")),
    (b"not json", ("", "")),
    (b'{"tenant_id": "' + b"x" * 70_000 + b'"}', ("", "")),
])
def test_what_halo_says_about_itself_is_taken_only_when_plausible(
    answer: bytes, expected: tuple[str, str],
) -> None:
    import http.server
    import threading

    from responder.commands.init import authinfo

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert asyncio.run(authinfo(url)) == expected
    finally:
        server.shutdown()
        server.server_close()


def test_a_plain_http_halo_elsewhere_is_refused_before_any_secret_is_sent(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(SECRET_ENV, harness.halo.client_secret)
    assert main(flags(harness, tmp_path, halo_url="http://halo.example.com")) == 2
    assert "--halo-url: plain http:// would send secrets" in capsys.readouterr().err


# -- every reply would be quarantined: said, never "all is well" ---------------------------


def unsigned_pass(ticket: int = 1300, first: str = "Approve") -> bytes:
    """Our server says dkim=pass, yet the message carries no DKIM-Signature to show what
    the pass covers: ``once`` quarantines it, so discovery must say so."""
    from tests.harness import reply

    raw = reply("alice@example.com", f"Re: Approval required [ID:{ticket}]", first, auth=None)
    return shapes.on_top(raw, f"Authentication-Results: {AUTHSERV}; dkim=pass "
                              "header.d=example.com; dmarc=pass header.from=example.com")


NO_SIGNATURE = ("dkim=pass for example.com, but the message has no DKIM-Signature of it "
                "to show which headers it covers")


def test_check_discover_fails_when_no_message_would_be_trusted(
    harness: Harness, tmp_path: Path, key: bytes, capsys: pytest.CaptureFixture[str],
) -> None:
    harness.overrides = {"security": {"trusted_authserv_id": AUTHSERV}}
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(unsigned_pass())
    harness.deliver(unsigned_pass())
    assert main(["check", "--config", str(config), "--discover"]) == 1
    out = capsys.readouterr().out
    assert "0 of 2 would be trusted" in out
    marked = [ln for ln in out.splitlines() if ln.startswith("   #")]
    assert len(marked) == 2 and all(f"NOT TRUSTED: {NO_SIGNATURE}" in ln for ln in marked)
    assert "NOT ONE of the 2 messages would be trusted" in out
    assert "already trusts" not in out

    harness.deliver(self_hosted(key, 1300))  # signed: some, not all, would be trusted
    assert main(["check", "--config", str(config), "--discover"]) == 0
    out = capsys.readouterr().out
    assert "1 of 3 would be trusted" in out and "2 of 3 would not be trusted" in out
    assert out.count("NOT TRUSTED: ") == 2 and "already trusts this" in out
    assert main(["check", "--config", str(config), "--discover", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["not_trusted"] == {"#2": NO_SIGNATURE, "#3": NO_SIGNATURE}


def test_init_refuses_unattended_and_warns_on_a_terminal_when_none_would_be_trusted(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(SECRET_ENV, harness.halo.client_secret)
    harness.deliver(unsigned_pass())
    assert main(flags(harness, tmp_path)) == 2
    captured = capsys.readouterr()
    assert f"NOT TRUSTED: {NO_SIGNATURE}" in captured.out
    assert "--trust auto: not one of the 1 newest message would be trusted" in captured.err
    assert NO_SIGNATURE in captured.err and "--trust" in captured.err
    assert not (tmp_path / "config.toml").exists()

    given = {"halo_auth_url": "", "halo_tenant": "", "scope": "all", "folder": "INBOX",
             "send": "smtp"}  # every answer given: only the trust is asked
    argv = [f for f in flags(harness, tmp_path, **given) if f != "--yes"]
    term = Terminal(argv, {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    said = term.answer("Trust this anyway? [y/N]", "")  # blank is no
    assert "WARNING: with this block every reply would be quarantined" in said
    assert "NOT ONE of the 1 message would be trusted" in said
    term.answer("Trust profile (exchange-online, gmail, authserv-id:NAME, off): ", "off")
    code, rest = term.wait()
    assert code == 0, rest
    assert tomllib.loads((tmp_path / "config.toml").read_text())["security"] == {
        "policy": "off"}


def test_a_dmarc_pass_by_aligned_spf_needs_no_signature() -> None:
    from responder.config import SecuritySettings
    from responder.trust.discovery import discover
    from tests.harness import reply

    raw = shapes.on_top(
        reply("alice@example.com", "Re: Approval required [ID:1300]", "Approve", auth=None),
        f"Authentication-Results: {AUTHSERV}; dkim=none; spf=pass "
        "smtp.mailfrom=example.com; dmarc=pass header.from=example.com")
    found = discover([raw, unsigned_pass()], SecuritySettings())
    assert found.trusted_under_proposal == 1 and found.refusals == (None, NO_SIGNATURE)
