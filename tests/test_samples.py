"""``responder check --sample``: the admin's saved replies against the trust config.

The samples are composed with the real header shapes (``tests/shapes.py``): an internal
reply as Exchange Online delivers it, an external one, and a Gmail one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from responder.config import SecuritySettings
from responder.trust.samples import INTERNAL, fit, read_sample
from tests import shapes
from tests.dkim_keys import new_dkim_key

REPO = Path(__file__).parent.parent
PINNED = SecuritySettings(trusted_authserv_id=("mx.example.com",))
EXO_INTERNAL = SecuritySettings(trusted_authserv_id=("exchange-online",), exchange_internal=True,
                                internal_domains=("example.com",))


@pytest.fixture(scope="module")
def tenant_samples() -> dict[str, bytes]:
    """One internal and one external reply from a Microsoft 365 tenant, and a Gmail one."""
    private, _ = new_dkim_key()
    signed = shapes.signed(shapes.approval_reply(), "example.com", private)
    return {
        "internal.eml": shapes.exo_internal(shapes.approval_reply()),
        "external.eml": shapes.exo_external(signed, shapes.EXO_PASS_STRAY),
        "gmail.eml": shapes.gmail_delivered(signed, shapes.gmail_results()),
    }


def test_microsoft_365_samples_contradict_a_pinned_config_and_say_what_fits(
    tenant_samples: dict[str, bytes],
) -> None:
    samples = [read_sample(n, tenant_samples[n], PINNED) for n in ("internal.eml", "external.eml")]

    assert [s.fits for s in samples] == [INTERNAL, "exchange-online"]
    assert [s.verdict.trusted for s in samples] == [False, False]
    found = fit(samples, PINNED)
    assert found.toml() == ['[security]', 'trusted_authserv_id = ["exchange-online"]',
                            "exchange_internal = true", 'internal_domains = ["example.com"]']
    assert found.contradictions == [
        "internal.eml: stamped by exchange-online, which trusted_authserv_id does not name",
        "internal.eml: Exchange marked it internal, and exchange_internal is off",
        "external.eml: stamped by exchange-online, which trusted_authserv_id does not name",
    ]


def test_microsoft_365_samples_fit_the_exchange_online_profile(
    tenant_samples: dict[str, bytes],
) -> None:
    samples = [read_sample(n, tenant_samples[n], EXO_INTERNAL)
               for n in ("internal.eml", "external.eml")]

    assert [(s.verdict.trusted, s.verdict.method) for s in samples] == [
        (True, "exchange-internal"), (True, "dmarc")]
    assert fit(samples, EXO_INTERNAL).contradictions == []
    internal, external = samples
    assert internal.authas == ("Internal",)
    assert internal.topmost == "no authserv-id (Exchange Online)"
    assert internal.topmost_results == ("dkim=none header.d=none",
                                        "dmarc=none action=none header.from=example.com")
    assert external.authas == ("Anonymous",)
    assert "compauth=pass reason=100" in external.topmost_results


def test_a_gmail_sample_under_the_exchange_online_profile_is_named(
    tenant_samples: dict[str, bytes],
) -> None:
    sample = read_sample("gmail.eml", tenant_samples["gmail.eml"], EXO_INTERNAL)

    assert (sample.fits, sample.arc, sample.verdict.trusted) == ("mx.google.com", True, False)
    found = fit([sample], EXO_INTERNAL)
    assert found.trusted_authserv_id == ["mx.google.com"]
    assert found.contradictions == [
        "gmail.eml: stamped by mx.google.com, which trusted_authserv_id does not name"]


def test_a_sample_with_a_repeated_subject_is_shown_as_quarantined(
    tenant_samples: dict[str, bytes],
) -> None:
    raw = shapes.on_top(tenant_samples["external.eml"], "Subject: Re: [ID:9999]")
    sample = read_sample("replay.eml", raw, EXO_INTERNAL)
    assert sample.repeated == ("Subject",)
    assert not sample.verdict.trusted


CONFIG = """\
[halo]
base_url = "https://halo.example.com"
client_id = "id"
client_secret = "secret"

[maildir]
path = "{maildir}"

[smtp]
host = "localhost"
from = "approvals@service.example"

[security]
{security}
"""


def check(tmp_path: Path, security: str, samples: dict[str, bytes], *extra: str
          ) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(maildir=tmp_path / "mail", security=security))
    config.chmod(0o600)
    paths = []
    for name, raw in samples.items():
        (tmp_path / name).write_bytes(raw)
        paths.append(str(tmp_path / name))
    return subprocess.run(
        [sys.executable, "-m", "responder", "check", "--config", str(config), "--sample",
         *paths, *extra], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_check_sample_as_a_user_runs_it(tmp_path: Path, tenant_samples: dict[str, bytes]) -> None:
    two = {n: tenant_samples[n] for n in ("internal.eml", "external.eml")}

    wrong = check(tmp_path, 'trusted_authserv_id = ["mx.example.com"]', two)

    assert wrong.returncode == 1, wrong.stderr
    assert "fits profile    exchange-internal" in wrong.stdout
    assert "AuthAs          Internal" in wrong.stdout
    assert "config: the samples contradict the current [security] settings:" in wrong.stdout
    assert wrong.stdout.rstrip().endswith(
        'they fit:\n  [security]\n  trusted_authserv_id = ["exchange-online"]\n'
        '  exchange_internal = true\n  internal_domains = ["example.com"]')

    right = check(tmp_path, 'trusted_authserv_id = ["exchange-online"]\n'
                  'exchange_internal = true\ninternal_domains = ["example.com"]', two, "--json")

    assert right.returncode == 0, right.stdout + right.stderr
    data = json.loads(right.stdout)
    assert [s["verdict"]["method"] for s in data["samples"]] == ["exchange-internal", "dmarc"]
    assert data["fits"]["contradictions"] == []


def explain(tmp_path: Path, security: str, raw: bytes) -> str:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(maildir=tmp_path / "mail", security=security))
    config.chmod(0o600)
    (tmp_path / "reply.eml").write_bytes(raw)
    done = subprocess.run(
        [sys.executable, "-m", "responder", "explain", str(tmp_path / "reply.eml"),
         "--config", str(config)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_explain_shows_the_evidence_and_quarantines_a_replay(
    tmp_path: Path, tenant_samples: dict[str, bytes],
) -> None:
    exo = 'trusted_authserv_id = ["exchange-online"]'
    shown = explain(tmp_path, exo, tenant_samples["external.eml"])
    assert "authenticity    trusted (dmarc): dmarc=pass for example.com (exchange-online)" in shown
    assert "  evidence      exchange-online: compauth=pass reason=100" in shown
    assert "  evidence      X-MS-Exchange-Organization-AuthAs: Anonymous" in shown

    replay = shapes.on_top(tenant_samples["external.eml"], "Subject: Re: [ID:9999]",
                           "Message-ID: <fresh@example.com>")
    assert explain(tmp_path, exo, replay).startswith(
        "would quarantine: suspicious headers: more than one Subject, Message-ID header")
