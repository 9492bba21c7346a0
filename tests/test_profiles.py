"""Trust as Microsoft 365 and Gmail really stamp mail (fixtures in ``tests/shapes.py``).

Three profiles: ``exchange-online`` and ``mx.google.com`` read only the literal topmost
Authentication-Results; Exchange Online's internal submissions are trusted only under
``exchange_internal`` and all of its conditions; and whatever the trust rests on, a
DKIM signature must cover the headers the responder reads.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
from collections.abc import Callable

import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.config import SecuritySettings
from responder.reading.message import analyse
from responder.trust.authenticity import DkimResult, Verdict, judge, verify_dkim
from responder.trust.authresults import NO_ID, Unreadable, read
from tests import shapes
from tests.dkim_keys import new_dkim_key

EXO = SecuritySettings(trusted_authserv_id=("exchange-online",))
EXO_INTERNAL = SecuritySettings(trusted_authserv_id=("exchange-online",), exchange_internal=True,
                                internal_domains=("example.com",))
GOOGLE = SecuritySettings(trusted_authserv_id=("mx.google.com",))


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes]:
    return new_dkim_key()


def offline(record: bytes, domain: str = "example.com") -> Callable[..., bytes | None]:
    return lambda name, timeout=5: record if name == f"sel._domainkey.{domain}.".encode() else None


def verdict(raw: bytes, settings: SecuritySettings, dkim_results: tuple[DkimResult, ...] = ()
            ) -> Verdict:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return judge(msg, "example.com", settings, dkim_results=dkim_results)


def alice_signed(private: bytes, **kwargs: object) -> bytes:
    return shapes.signed(shapes.approval_reply(), "example.com", private, **kwargs)  # type: ignore[arg-type]


# -- the reader ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "methods"),
    [
        (shapes.EXO_PASS, ["spf=pass", "dkim=pass", "dmarc=pass", "compauth=pass"]),
        (shapes.EXO_PASS_STRAY, ["spf=pass", "dkim=pass", "dmarc=pass", "compauth=pass"]),
        (shapes.EXO_PASS_TWO_DKIM,
         ["spf=pass", "dkim=pass", "dkim=pass", "dmarc=pass", "compauth=pass"]),
        (shapes.EXO_FAIL, ["spf=fail", "dkim=none", "dmarc=fail", "compauth=fail"]),
        (shapes.EXO_BESTGUESS, ["spf=pass", "dkim=none", "dmarc=bestguesspass", "compauth=pass"]),
        (shapes.EXO_INTERNAL_STAMP, ["dkim=none", "dmarc=none"]),
    ],
    ids=["pass", "stray-tokens", "two-dkim", "fail", "bestguesspass", "internal-stamp"],
)
def test_exchange_onlines_shapes_are_read(value: str, methods: list[str]) -> None:
    header = read(value)
    assert header.authserv_id == NO_ID
    assert [f"{r.method}={r.result}" for r in header.results] == methods


def test_exchange_onlines_stray_tokens_are_set_aside_and_properties_kept() -> None:
    header = read(shapes.EXO_PASS_STRAY)
    assert header.stray == ("servicetenant.onmicrosoft.com", "servicetenant.onmicrosoft.com")
    dmarc = next(r for r in header.results if r.method == "dmarc")
    assert (dmarc.prop("action"), dmarc.prop("header.from")) == ("none", "example.com")
    compauth = next(r for r in header.results if r.method == "compauth")
    assert compauth.prop("reason") == "100"


def test_gmails_header_is_read_with_its_id() -> None:
    header = read(shapes.gmail_results(b="AbC+/12x"))
    assert header.authserv_id == "mx.google.com"
    dkim_ = header.results[0]
    assert (dkim_.prop("header.i"), dkim_.prop("header.b")) == ("@example.com", "AbC+/12x")


@pytest.mark.parametrize(
    "value",
    [
        shapes.EXO_UNREADABLE,
        "mx.example.org; dkim=pass header.d=example.com; example.com",  # stray token after an id
        "dkim=pass header.d=example.com ===",
        "spf=pass) smtp.mailfrom=example.com",
        "",
        "dkim=pass " + "x" * 9000,
    ],
    ids=["unclosed-comment", "stray-with-id", "garbage", "stray-paren", "empty", "huge"],
)
def test_anything_else_is_unreadable(value: str) -> None:
    with pytest.raises(Unreadable):
        read(value)


@given(st.one_of(st.text(max_size=300), st.text(alphabet='dkim=pas; ().h"\\@1', max_size=120)))
@settings(max_examples=400, deadline=None)
def test_the_reader_raises_nothing_but_unreadable(value: str) -> None:
    with contextlib.suppress(Unreadable):
        read(value)


# -- Exchange Online, mail from outside -------------------------------------------------------


@pytest.mark.parametrize(
    "results", [shapes.EXO_PASS, shapes.EXO_PASS_STRAY, shapes.EXO_PASS_TWO_DKIM],
    ids=["pass", "stray-tokens", "two-dkim"],
)
def test_exchange_onlines_pass_is_trusted(key: tuple[bytes, bytes], results: str) -> None:
    seen = verdict(shapes.exo_external(alice_signed(key[0]), results), EXO)
    assert (seen.trusted, seen.method) == (True, "dmarc")
    assert seen.reason == "dmarc=pass for example.com (exchange-online)"
    assert "exchange-online: compauth=pass reason=100" in seen.details


def test_stray_tokens_are_shown_as_evidence(key: tuple[bytes, bytes]) -> None:
    seen = verdict(shapes.exo_external(alice_signed(key[0]), shapes.EXO_PASS_STRAY), EXO)
    assert "stray token in exchange-online's header: servicetenant.onmicrosoft.com" in seen.details
    assert len([d for d in seen.details if d.startswith("stray token")]) == 1


@pytest.mark.parametrize(
    ("results", "why"),
    [
        (shapes.EXO_FAIL, "dmarc=fail example.com"),
        (shapes.EXO_BESTGUESS, "bestguesspass means no DMARC record, not a DMARC pass"),
        (shapes.EXO_ARC_OVERRIDE, "compauth=pass (recorded, not decisive)"),
    ],
    ids=["fail", "bestguesspass", "compauth-arc-override"],
)
def test_exchange_onlines_fail_and_reputation_passes_are_not_trusted(
    key: tuple[bytes, bytes], results: str, why: str
) -> None:
    seen = verdict(shapes.exo_external(alice_signed(key[0]), results), EXO)
    assert not seen.trusted
    assert why in seen.reason


def test_a_forged_pass_below_exchange_onlines_own_is_ignored(key: tuple[bytes, bytes]) -> None:
    forged = shapes.on_top(alice_signed(key[0]), f"Authentication-Results: {shapes.EXO_PASS}")
    assert not verdict(shapes.exo_external(forged, shapes.EXO_FAIL), EXO).trusted


def test_an_unreadable_topmost_header_fails_closed(key: tuple[bytes, bytes]) -> None:
    """The sender's own "pass" below must not be read in its place."""
    forged = shapes.on_top(alice_signed(key[0]), f"Authentication-Results: {shapes.EXO_PASS}")
    seen = verdict(shapes.exo_external(forged, shapes.EXO_UNREADABLE), EXO)
    assert not seen.trusted
    assert "the topmost Authentication-Results is unreadable" in seen.reason


def test_a_topmost_header_with_an_authserv_id_is_not_exchange_onlines(
    key: tuple[bytes, bytes],
) -> None:
    raw = shapes.on_top(shapes.exo_external(alice_signed(key[0]), shapes.EXO_PASS),
                        "Authentication-Results: filter.example; dkim=pass header.d=example.com")
    seen = verdict(raw, EXO)
    assert not seen.trusted
    assert "topmost Authentication-Results is from filter.example" in seen.reason


@pytest.mark.parametrize("named", ["exchange-online", "EXCHANGE-ONLINE"])
def test_a_topmost_header_naming_the_profile_is_not_exchange_onlines(named: str) -> None:
    """The profile's name is ours: Exchange writes no authserv-id, so a header that names
    one, even "exchange-online", was written by somebody else."""
    raw = shapes.on_top(shapes.approval_reply(),
                        f"Authentication-Results: {named}; dmarc=pass header.from=example.com")
    seen = verdict(raw, EXO)
    assert not seen.trusted
    assert 'a header naming "exchange-online" (Exchange Online names none)' in seen.reason


def test_arc_authentication_results_never_count(key: tuple[bytes, bytes]) -> None:
    """mx.microsoft.com's ARC copy is written by every tenant on the way out."""
    arc = ("ARC-Authentication-Results: i=1; mx.microsoft.com 1; spf=pass"
           " smtp.mailfrom=example.com; dmarc=pass action=none header.from=example.com;"
           " dkim=pass header.d=example.com;")
    unsigned = shapes.on_top(shapes.approval_reply(), arc)
    assert not verdict(shapes.exo_external(unsigned, shapes.EXO_FAIL), EXO).trusted
    assert not verdict(shapes.on_top(unsigned, shapes.EOP_MAILBOX), EXO).trusted


# -- Exchange Online, mail inside the tenant ---------------------------------------------------


@pytest.mark.parametrize("stamp", [True, False], ids=["with-stamp", "without-stamp"])
def test_internal_mail_is_trusted_with_exchange_internal(stamp: bool) -> None:
    raw = shapes.exo_internal(shapes.approval_reply(), stamp=stamp)
    seen = verdict(raw, EXO_INTERNAL)
    assert (seen.trusted, seen.method) == (True, "exchange-internal")
    assert "X-MS-Exchange-Organization-AuthAs: Internal" in seen.details


def test_internal_mail_is_quarantined_without_exchange_internal() -> None:
    seen = verdict(shapes.exo_internal(shapes.approval_reply()), EXO)
    assert not seen.trusted
    assert "dkim=none" in seen.reason and "dmarc=none" in seen.reason


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (shapes.exo_internal(shapes.approval_reply(), auth_as=("Anonymous", "Internal")),
         "2 X-MS-Exchange-Organization-AuthAs headers"),
        (shapes.exo_internal(shapes.approval_reply(), auth_as=("Internal", "Internal")),
         "2 X-MS-Exchange-Organization-AuthAs headers"),
        (shapes.exo_external(shapes.approval_reply(), shapes.EXO_DIRECT_SEND),
         "is 'Anonymous', not Internal"),
        (shapes.exo_internal(shapes.approval_reply(), auth_as=("Internal74",)),
         "is 'Internal74', not Internal"),
        (shapes.exo_internal(shapes.approval_reply(sender="alice@partner.example")),
         "partner.example is not one of [security] internal_domains"),
        (shapes.exo_internal(shapes.approval_reply(), stamp=False), None),
    ],
    ids=["smuggled-second", "doubled", "direct-send", "lookalike-value", "foreign-domain",
         "control-trusted"],
)
def test_internal_claims_that_do_not_hold_are_refused(raw: bytes, why: str | None) -> None:
    msg = email.message_from_bytes(raw)
    domain = str(msg["From"]).rpartition("@")[2]
    seen = judge(msg, domain, EXO_INTERNAL)
    if why is None:
        assert seen.trusted
        return
    assert not seen.trusted
    assert f"not trusted as internal: X-MS-Exchange-Organization-AuthAs {why}" in seen.reason \
        or why in seen.reason


def test_an_internal_claim_under_a_full_inbound_verdict_is_refused() -> None:
    """AuthAs Internal, but the topmost header is EOP's inbound verdict (with compauth)."""
    raw = shapes.exo_external(shapes.approval_reply(), shapes.EXO_BESTGUESS, auth_as="Internal")
    seen = verdict(raw, EXO_INTERNAL)
    assert not seen.trusted
    assert "not Exchange Online's internal stamp" in seen.reason


def test_exchange_internal_needs_its_domains_and_the_exchange_online_profile() -> None:
    with pytest.raises(ValueError, match="needs internal_domains"):
        SecuritySettings(trusted_authserv_id=("exchange-online",), exchange_internal=True)
    with pytest.raises(ValueError, match="needs trusted_authserv_id"):
        SecuritySettings(trusted_authserv_id=("mx.google.com",), exchange_internal=True,
                         internal_domains=("example.com",))


# -- Gmail / Google Workspace ------------------------------------------------------------------


def header_b(raw: bytes) -> str:
    """The first characters of the b= tag, as Gmail writes them in header.b."""
    sig = str(email.message_from_bytes(raw)["DKIM-Signature"])
    return "".join(sig.split("b=")[-1].split())[:8]


def test_gmails_pass_is_trusted(key: tuple[bytes, bytes]) -> None:
    message = alice_signed(key[0])
    raw = shapes.gmail_delivered(message, shapes.gmail_results(b=header_b(message)))
    seen = verdict(raw, GOOGLE)
    assert (seen.trusted, seen.method) == (True, "dmarc")


def test_a_forged_google_pass_below_gmails_own_fail_is_ignored() -> None:
    forged = shapes.on_top(shapes.approval_reply(),
                           f"Authentication-Results: {shapes.gmail_results()}")
    raw = shapes.gmail_delivered(forged, shapes.gmail_results("none", "fail", "softfail"))
    seen = verdict(raw, GOOGLE)
    assert not seen.trusted
    assert "dmarc=fail example.com" in seen.reason


def test_a_google_pass_under_another_servers_header_is_not_read() -> None:
    """mx.google.com also stamps mail on the sending side: only the topmost counts."""
    forged = f"Authentication-Results: {shapes.gmail_results()}"
    below = shapes.on_top(shapes.approval_reply(), forged)
    raw = shapes.on_top(below, "Authentication-Results: mx.other.example; dmarc=none",
                        "Received: by mx.other.example")
    assert not verdict(raw, GOOGLE).trusted


def test_an_authas_header_means_nothing_under_the_gmail_profile() -> None:
    raw = shapes.at_end_of_header(shapes.gmail_delivered(
        shapes.approval_reply(), shapes.gmail_results("none", "fail")),
        "X-MS-Exchange-Organization-AuthAs: Internal")
    assert not verdict(raw, GOOGLE).trusted


# -- the replay: a genuinely signed "Approve" under new headers ------------------------------


def test_new_headers_above_a_signed_message_keep_the_signature_valid_but_are_refused(
    key: tuple[bytes, bytes],
) -> None:
    """The attack: DKIM checks the lowest Subject/Date/Message-ID, a reader takes the top."""
    private, record = key
    genuine = alice_signed(private)
    replayed = shapes.on_top(genuine, "Subject: Re: Approval required [ID:9999]",
                             "Date: Mon, 30 Nov 2026 10:00:00 +0000",
                             "Message-ID: <fresh-9999@example.com>")
    own = tuple(verify_dkim(replayed, dnsfunc=offline(record)))
    assert [r.passed for r in own] == [True]  # our own DKIM check still passes: the premise
    facts = analyse(replayed)
    assert facts.sender is None and facts.ticket_id is None and facts.decision is None
    assert facts.suspicious == (
        "more than one Subject, Date, Message-ID header (RFC 5322 allows one): a header may "
        "have been added above a signed one",
    )


def test_a_genuine_signed_message_is_trusted_by_our_own_check(key: tuple[bytes, bytes]) -> None:
    private, record = key
    genuine = alice_signed(private)
    own = tuple(verify_dkim(genuine, dnsfunc=offline(record)))
    assert verdict(genuine, EXO, own).method == "dkim-verified"


def test_a_header_the_signature_does_not_cover_is_not_read(key: tuple[bytes, bytes]) -> None:
    """Signed without Subject: a new Subject (new ticket) keeps the signature valid."""
    private, record = key
    genuine = alice_signed(private, headers=[b"from", b"date", b"message-id", b"to"])
    replayed = genuine.replace(b"[ID:1234]\r\nDate", b"[ID:9999]\r\nDate")
    own = tuple(verify_dkim(replayed, dnsfunc=offline(record)))
    assert [r.passed for r in own] == [True]
    seen = verdict(replayed, EXO, own)
    assert not seen.trusted
    assert seen.reason == ("the DKIM signature of example.com does not cover Subject: they "
                           "could have been changed after signing")


def test_servers_dkim_pass_must_cover_what_is_read_too(key: tuple[bytes, bytes]) -> None:
    message = alice_signed(key[0], headers=[b"from", b"to"])
    seen = verdict(shapes.exo_external(message, shapes.EXO_PASS), EXO)
    assert not seen.trusted
    assert "does not cover Subject, Date, Message-ID" in seen.reason


def test_a_signature_of_part_of_the_body_is_not_enough(key: tuple[bytes, bytes]) -> None:
    private, record = key
    message = shapes.approval_reply()
    sig = dkim.sign(message, b"sel", b"example.com", private, include_headers=shapes.GMAIL_SIGNED,
                    length=True)
    raw = bytes(sig) + message
    own = tuple(verify_dkim(raw, dnsfunc=offline(record)))
    seen = verdict(raw, EXO, own)
    assert not seen.trusted
    assert "covers only part of the body (l=)" in seen.reason


# -- several profiles at once ----------------------------------------------------------------


def test_a_pinned_server_next_to_exchange_online_keeps_its_own_rules(
    key: tuple[bytes, bytes],
) -> None:
    """A hybrid site: its own relay (pinned) and Exchange Online. Exchange's topmost header
    decides when it is on top; otherwise the pinned block rule applies, never a lower
    Exchange-shaped header."""
    both = SecuritySettings(trusted_authserv_id=("exchange-online", "relay.example.net"))
    signed = alice_signed(key[0])
    assert verdict(shapes.exo_external(signed, shapes.EXO_PASS), both).trusted
    relay = shapes.on_top(signed, "Authentication-Results: relay.example.net; dkim=pass"
                          " header.d=example.com; dmarc=pass header.from=example.com",
                          "Received: by relay.example.net")
    assert verdict(relay, both).reason == "dmarc=pass for example.com (relay.example.net)"
    forged_below = shapes.on_top(
        shapes.on_top(signed, f"Authentication-Results: {shapes.EXO_PASS}"),
        "Authentication-Results: relay.example.net; dmarc=fail header.from=example.com")
    assert not verdict(forged_below, both).trusted


def test_internal_domains_may_be_one_string() -> None:
    settings = SecuritySettings.model_validate(
        {"trusted_authserv_id": "exchange-online", "exchange_internal": True,
         "internal_domains": "Example.com"})
    assert settings.internal_domains == ("Example.com",)
    assert verdict(shapes.exo_internal(shapes.approval_reply()), settings).trusted
