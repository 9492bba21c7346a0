"""The config file: validated once, errors name the key, secrets stay secret."""

import subprocess
import sys
from pathlib import Path

import pytest

from responder.config import (
    ConfigError,
    default_state_path,
    exposed_secrets,
    load_instances,
    load_settings,
    parse_instances,
    parse_settings,
    secret_files,
)

MINIMAL = {
    "halo": {"base_url": "https://halo.example.com/", "client_id": "id",
             "client_secret": "s3cr3t-value"},
    "imap": {"host": "imap.example.com", "username": "u", "password": "imap-pass"},
    "smtp": {"host": "smtp.example.com", "from": "approvals@example.com"},
}


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HALO_CLIENT_SECRET", "IMAP_PASSWORD", "SMTP_PASSWORD"):
        monkeypatch.setenv(name, f"value-of-{name}")
    settings = load_settings(Path(__file__).parent.parent / "config.example.toml")
    assert settings.halo.client_secret.get_secret_value() == "value-of-HALO_CLIENT_SECRET"
    assert settings.security.trusted_authserv_id == ("mx.example.com",)


def test_defaults_follow_halo() -> None:
    s = parse_settings(MINIMAL)
    assert s.halo.api_url == "https://halo.example.com/api"
    assert s.halo.token_url == "https://halo.example.com/auth/token"
    assert s.imap is not None and s.imap.effective_port == 993 and s.imap.folder == "INBOX"
    assert s.smtp.effective_port == 587
    assert (s.parsing.start_tag, s.parsing.end_tag) == ("[ID:", "]")
    assert s.folders.done == "Approvals/Done"


def test_errors_name_the_key() -> None:
    bad = {**MINIMAL, "imap": {**MINIMAL["imap"], "port": "nine", "tls": "sometimes"}}
    with pytest.raises(ConfigError) as err:
        parse_settings(bad)
    text = str(err.value)
    assert "imap.port: expected an integer" in text
    assert "imap.tls:" in text


def test_unknown_and_missing_keys_are_reported() -> None:
    bad = {**MINIMAL, "smtp": {"host": "x", "form": "typo@example.com"}}
    with pytest.raises(ConfigError) as err:
        parse_settings(bad)
    assert "smtp.from: required key is missing" in str(err.value)
    assert "smtp.form: unknown key" in str(err.value)


def test_exactly_one_mailbox() -> None:
    both = {**MINIMAL, "maildir": {"path": "/tmp/x"}}
    with pytest.raises(ConfigError, match="exactly one mailbox"):
        parse_settings(both)


def test_secrets_from_env_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secret").write_text("from-a-file\n")
    monkeypatch.setenv("IMAP_PW", "from-the-env")
    data = {
        **MINIMAL,
        "halo": {**MINIMAL["halo"], "client_secret": f"file:{tmp_path / 'secret'}"},
        "imap": {**MINIMAL["imap"], "password": "env:IMAP_PW"},
    }
    s = parse_settings(data)
    assert s.halo.client_secret.get_secret_value() == "from-a-file"
    assert sorted(s.secrets()) == ["from-a-file", "from-the-env"]
    assert "from-a-file" not in repr(s) and "from-the-env" not in repr(s)


def test_a_missing_secret_is_named_without_revealing_anything() -> None:
    data = {**MINIMAL, "imap": {**MINIMAL["imap"], "password": "env:NOT_SET_ANYWHERE"}}
    settings = parse_settings(data)  # read only when a command needs it
    assert settings.secret_problems("halo", "smtp") == []
    assert settings.secret_problems() == [
        "imap.password: environment variable NOT_SET_ANYWHERE is not set"]
    with pytest.raises(ConfigError, match=r"imap\.password: environment variable NOT_SET_ANYWHERE"):
        settings.require_secrets("mailbox")
    with pytest.raises(ConfigError, match=r"imap\.password: environment variable NOT_SET_ANYWHERE"):
        settings.imap.password.get_secret_value()  # type: ignore[union-attr]
    assert "NOT_SET" not in repr(settings)


def test_a_secret_is_read_when_first_used_and_named_per_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {**MINIMAL, "halo": {**MINIMAL["halo"], "client_secret": "env:LATE_SECRET"},
            "instances": {"acme": {}}}
    acme = parse_instances(data)["acme"]
    assert acme.secret_problems("halo") == [
        "instances.acme.halo.client_secret: environment variable LATE_SECRET is not set"]
    monkeypatch.setenv("LATE_SECRET", "now-it-is-here")
    acme.require_secrets()
    assert acme.halo.client_secret.get_secret_value() == "now-it-is-here"
    assert bool(acme.halo.client_secret) and acme.secrets() == [
        "now-it-is-here", "imap-pass"]


def test_broken_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[halo\nbase_url = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


def test_instances_share_the_top_level_and_override_it() -> None:
    data = {
        **MINIMAL,
        "instances": {
            "acme": {"imap": {"username": "acme"}},
            "globex": {"halo": {"base_url": "https://globex.halopsa.com"},
                       "imap": {"username": "globex"}, "state": {"path": "/tmp/globex.db"}},
        },
    }
    instances = parse_instances(data)
    assert list(instances) == ["acme", "globex"]
    acme, globex = instances["acme"], instances["globex"]
    assert acme.imap is not None and acme.imap.username == "acme"
    assert acme.imap.host == "imap.example.com"  # shared
    assert acme.halo.base_url == "https://halo.example.com/"
    assert globex.halo.base_url == "https://globex.halopsa.com"
    assert acme.state.path == default_state_path().with_name("ledger-acme.sqlite3")  # beside
    assert globex.state.path == Path("/tmp/globex.db")  # the shared default, or its own


def test_without_state_the_ledger_is_in_the_state_folder_never_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert parse_settings(MINIMAL).state.path == (
        tmp_path / "xdg" / "halo-approval-responder" / "ledger.sqlite3")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")  # as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert parse_settings(MINIMAL).state.path == (
        tmp_path / "home" / ".local" / "state" / "halo-approval-responder" / "ledger.sqlite3")
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'lib'}:{tmp_path / 'other'}")  # systemd
    assert parse_settings(MINIMAL).state.path == tmp_path / "lib" / "ledger.sqlite3"


def test_a_single_config_is_the_default_instance() -> None:
    assert list(parse_instances(MINIMAL)) == ["default"]


def test_instance_errors_name_the_instance_and_ledgers_stay_apart() -> None:
    bad = {**MINIMAL, "instances": {"acme": {"imap": {"port": "x"}}}}
    with pytest.raises(ConfigError, match=r"instances\.acme\.imap\.port: expected an integer"):
        parse_instances(bad)
    same = {**MINIMAL, "state": {"path": "one.db"},
            "instances": {"a": {"state": {"path": "one.db"}}, "b": {"state": {"path": "one.db"}}}}
    with pytest.raises(ConfigError, match=r"its own state\.path"):
        parse_instances(same)


# -- plain http: the client secret and the tokens must not cross a network in clear ------

CONFIG = """\
[halo]
base_url = "{base_url}"
{auth_url}client_id = "responder"
client_secret = "s3cret-never-shown"
[maildir]
path = "{mail}"
[smtp]
host = "127.0.0.1"
from = "approvals@service.example"
"""


def _check(tmp_path: Path, base_url: str, auth_url: str = "") -> subprocess.CompletedProcess[str]:
    """``responder check --config`` as an admin runs it, on a config with these addresses."""
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(base_url=base_url, mail=tmp_path / "mail",
                                  auth_url=f'auth_url = "{auth_url}"\n' if auth_url else ""))
    path.chmod(0o600)
    return subprocess.run([sys.executable, "-m", "responder", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parent.parent)


@pytest.mark.parametrize(("base_url", "auth_url", "key"), [
    ("http://halo.example.com", "", "halo.base_url"),
    ("HTTP://10.0.0.5:8080/", "", "halo.base_url"),
    ("http://128.0.0.1", "", "halo.base_url"),
    ("http://localhost.example.com", "", "halo.base_url"),
    ("https://halo.example.com", "http://auth.example.com", "halo.auth_url"),
])
def test_a_plain_http_halo_address_is_refused_naming_the_key(
    tmp_path: Path, base_url: str, auth_url: str, key: str
) -> None:
    done = _check(tmp_path, base_url, auth_url)

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{key}: plain http:// would send secrets and tokens in clear text" in done.stderr
    assert "s3cret-never-shown" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://127.8.9.10:9/", "http://[::1]:9",
                                 "http://localhost:9", "https://halo.example.com"])
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    settings = parse_settings({**MINIMAL, "halo": {**MINIMAL["halo"], "base_url": url,
                                                   "auth_url": url}})
    assert settings.halo.base_url == url


def test_the_other_addresses_in_the_config_follow_the_same_rule() -> None:
    graph = {"tenant_id": "t", "client_id": "c", "client_secret": "graph-s3cret",
             "mailbox": "approvals@example.com", "authority": "http://login.example.com",
             "graph_url": "http://graph.example.com/v1.0"}
    oauth = {"auth": "oauth2", "token_url": "http://idp.example.com/token", "client_id": "c",
             "client_secret": "oauth-s3cret"}
    with pytest.raises(ConfigError) as err:
        parse_settings({**MINIMAL, "imap": None, "graph": graph})
    with pytest.raises(ConfigError) as err2:
        parse_settings({**MINIMAL, "imap": {**MINIMAL["imap"], "password": None, **oauth}})
    lines = str(err.value).splitlines() + str(err2.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "graph.authority", "graph.graph_url", "imap.token_url"]
    assert all("plain http://" in line for line in lines)
    assert "s3cret" not in str(err.value) + str(err2.value)
    loopback = {**graph, "authority": "http://127.0.0.1:1", "graph_url": "http://[::1]:1/v1"}
    assert parse_settings({**MINIMAL, "imap": None, "graph": loopback}).graph is not None


def _secret_file(path: Path, mode: int, text: str = "a-secret-value") -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_every_file_holding_a_secret_is_checked_for_other_readers(tmp_path: Path) -> None:
    """The config, its ``file:`` secrets, the Google service-account key and the Graph
    certificate: each one other users can read is named (the warning says chmod 600)."""
    halo = _secret_file(tmp_path / "halo-secret", 0o644)
    account = _secret_file(tmp_path / "service-account.json", 0o640, "{}")
    cert = _secret_file(tmp_path / "graph.pem", 0o604, "-----BEGIN PRIVATE KEY-----")
    config = tmp_path / "config.toml"
    config.write_text(
        '[halo]\nbase_url = "https://halo.example.com"\nclient_id = "id"\n'
        f'client_secret = "file:{halo}"\n'
        '[smtp]\nhost = "smtp.example.com"\nfrom = "approvals@example.com"\n'
        f'username = "approvals@example.com"\nauth = "oauth2-google"\n'
        f'service_account_file = "{account}"\n'
        '[instances.mail]\nimap = { host = "imap.example.com", username = "u", '
        'password = "inline-imap-password" }\n'
        '[instances.graph]\ngraph = { tenant_id = "t", client_id = "c", mailbox = "a@x.example", '
        f'certificate_path = "{cert}", certificate_thumbprint = "AB12" }}\n'
    )
    config.chmod(0o600)
    instances = load_instances(config)

    assert secret_files(config, instances) == [halo, account, cert]
    assert exposed_secrets(config, instances) == [halo, account, cert]
    for path in (halo, account, cert):
        path.chmod(0o600)
    config.chmod(0o644)
    assert exposed_secrets(config, instances) == [config]
    config.chmod(0o600)
    assert exposed_secrets(config, instances) == []
