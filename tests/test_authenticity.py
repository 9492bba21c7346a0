"""Authenticity: only proof from our own mail server, or our own DKIM check, is trusted.

The messages below are what an approver's reply looks like by the time it reaches the
mailbox: our receiving server (``mx.example.org``) has prepended its
Authentication-Results above its Received: line, and whatever the sender wrote
(including forged results) sits further down.
"""

from __future__ import annotations

import email
import email.message
import re
from collections.abc import Callable

import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.config import SecuritySettings
from responder.trust.authenticity import (
    Verdict,
    aligned,
    judge,
    organisational_domain,
    verify_dkim,
)
from tests.dkim_keys import new_dkim_key

OURS = "mx.example.org"
REQUIRE = SecuritySettings(policy="require", trusted_authserv_id=(OURS,))
DKIM_ONLY = SecuritySettings(policy="dkim-only", trusted_authserv_id=(OURS,))

RECEIVED = "from mail.approver.com (mail.approver.com [192.0.2.1]) by mx.example.org"
BODY = "APPROVE\r\n\r\nOn Monday, Halo wrote:\r\n> Please approve [ID:1234]\r\n"


def signature_for(domain: str) -> str:
    """A DKIM-Signature as Outlook writes one (the server verified it; we read only h=)."""
    return (
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=selector1;\r\n"
        " h=From:Date:Subject:Message-ID:Content-Type:MIME-Version;\r\n"
        " bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
        " b=Qm9ndXMgc2lnbmF0dXJlIGZvciB0ZXN0cw=="
    )


def message(*fields: tuple[str, str], body: str = BODY) -> email.message.Message:
    """A reply with ``fields`` on top (in order, as they would arrive) and the sender's own,
    DKIM-signed by every domain the results say passed DKIM."""
    lines = [f"{name}: {value}" for name, value in fields]
    passed = re.findall(r"dkim=pass[^;]*?header\.[di]=@?([\w.-]+)", " ".join(v for _, v in fields))
    lines += [signature_for(domain) for domain in dict.fromkeys(passed)]
    lines += [
        "From: Alice <alice@approver.com>",
        "To: approvals@example.org",
        "Subject: Re: Approval needed [ID:1234]",
        "Message-ID: <reply-1@approver.com>",
    ]
    return email.message_from_string("\r\n".join(lines) + "\r\n\r\n" + body)


def ar(value: str) -> tuple[str, str]:
    return ("Authentication-Results", value)


def received(value: str = RECEIVED) -> tuple[str, str]:
    return ("Received", value)


def verdict_for(*fields: tuple[str, str], policy: SecuritySettings = REQUIRE) -> Verdict:
    return judge(message(*fields), "approver.com", policy)


# -- Authentication-Results from our own server ----------------------------------------


def test_dmarc_pass_from_our_server_is_trusted() -> None:
    verdict = verdict_for(
        ar(f"{OURS}; spf=pass smtp.mailfrom=approver.com; dmarc=pass header.from=approver.com"),
        received(),
    )
    assert verdict.trusted
    assert verdict.method == "dmarc"
    assert verdict.reason == "dmarc=pass for approver.com (mx.example.org)"
    assert "mx.example.org: dmarc=pass header.from=approver.com" in verdict.details


def test_a_forged_from_without_any_results_is_not_trusted() -> None:
    verdict = verdict_for(received())
    assert not verdict.trusted
    assert verdict.method == "none"
    assert verdict.reason == "no Authentication-Results from a trusted server (mx.example.org)"


def test_a_fake_pass_below_the_real_fail_is_not_trusted() -> None:
    """The sender wrote the "pass" header; our server's Received: line sits between."""
    verdict = verdict_for(
        ar(f"{OURS}; dkim=none; dmarc=fail header.from=approver.com"),
        received(),
        ar(f"{OURS}; dkim=pass header.d=approver.com; dmarc=pass header.from=approver.com"),
    )
    assert not verdict.trusted
    assert "dmarc=fail approver.com" in verdict.reason
    assert any("below our server's own" in d for d in verdict.details)


def test_a_fake_pass_directly_below_the_real_fail_does_not_override_it() -> None:
    """Where our server's results touch the sender's forgery, the topmost report decides."""
    verdict = verdict_for(
        ar(f"{OURS}; dkim=fail header.d=approver.com; dmarc=fail header.from=approver.com"),
        ar(f"{OURS}; dkim=pass header.d=approver.com; dmarc=pass header.from=approver.com"),
        received(),
    )
    assert not verdict.trusted


def test_a_forged_dkim_pass_is_vetoed_by_our_servers_dmarc_fail() -> None:
    """Our server checked DMARC but not DKIM; a DKIM pass contradicting it is forged."""
    verdict = verdict_for(
        ar(f"{OURS}; dmarc=fail header.from=approver.com"),
        ar(f"{OURS}; dkim=pass header.d=approver.com"),
        received(),
    )
    assert not verdict.trusted


def test_an_unreadable_header_of_our_server_keeps_its_place_above_a_forgery() -> None:
    verdict = verdict_for(
        ar(f"{OURS}; dmarc=fail header.from=approver.com; ==="),
        ar(f"{OURS}; dmarc=pass header.from=approver.com"),
    )
    assert not verdict.trusted
    assert any(d.startswith("unreadable Authentication-Results") for d in verdict.details)


def test_separate_headers_from_our_server_are_read_together() -> None:
    """Milters often add one header each (SPF, DKIM, DMARC): the block holds them all."""
    verdict = verdict_for(
        ar(f"{OURS}; dmarc=none header.from=approver.com"),
        ar(f"{OURS}; dkim=pass header.d=approver.com header.s=sel"),
        ar(f"{OURS}; spf=pass smtp.mailfrom=approver.com"),
        received(),
    )
    assert verdict.trusted
    assert verdict.method == "dkim"


def test_later_hops_above_our_server_are_skipped() -> None:
    verdict = verdict_for(
        received("by mailstore.example.org with LMTP"),
        ar("spamfilter.example.org; dkim=fail header.d=approver.com"),
        ar(f"{OURS}; dmarc=pass header.from=approver.com"),
        received(),
    )
    assert verdict.trusted
    assert "ignored: Authentication-Results from untrusted spamfilter.example.org" in (
        verdict.details
    )


def test_a_pass_claimed_by_another_server_is_not_trusted() -> None:
    verdict = verdict_for(
        ar("mx.attacker.net; dkim=pass header.d=approver.com; dmarc=pass header.from=approver.com"),
        received(),
    )
    assert not verdict.trusted
    assert verdict.reason.startswith("no Authentication-Results from a trusted server")


def test_dkim_pass_for_an_unaligned_domain_is_not_trusted() -> None:
    verdict = verdict_for(
        ar(f"{OURS}; dkim=pass header.d=bulkmailer.net; dmarc=none header.from=approver.com"),
    )
    assert not verdict.trusted
    assert "dkim=pass bulkmailer.net" in verdict.reason


def test_dkim_pass_for_a_lookalike_domain_is_not_trusted() -> None:
    verdict = verdict_for(ar(f"{OURS}; dkim=pass header.d=approver.com.evil.org"))
    assert not verdict.trusted


def test_dkim_pass_from_a_subdomain_is_aligned() -> None:
    verdict = verdict_for(ar(f"{OURS}; dkim=pass header.d=mail.approver.com header.s=s1"))
    assert verdict.trusted
    assert verdict.method == "dkim"
    assert verdict.reason == (
        "dkim=pass for mail.approver.com, aligned with approver.com (mx.example.org)"
    )


def test_dkim_identity_is_used_when_there_is_no_signing_domain() -> None:
    verdict = verdict_for(ar(f"{OURS}; dkim=pass header.i=@approver.com"))
    assert verdict.trusted


def test_spf_pass_alone_is_not_enough() -> None:
    verdict = verdict_for(ar(f"{OURS}; spf=pass smtp.mailfrom=approver.com"))
    assert not verdict.trusted
    assert verdict.reason == (
        "no DMARC or aligned DKIM pass for approver.com (no dmarc or dkim results)"
    )


def test_dmarc_pass_for_another_domain_is_not_enough() -> None:
    verdict = verdict_for(ar(f"{OURS}; dmarc=pass header.from=attacker.net"))
    assert not verdict.trusted


def test_dkim_only_policy_does_not_accept_dmarc_alone() -> None:
    verdict = verdict_for(ar(f"{OURS}; dmarc=pass header.from=approver.com"), policy=DKIM_ONLY)
    assert not verdict.trusted
    assert "dmarc=pass alone is not enough under policy dkim-only" in verdict.reason


def test_dkim_only_policy_accepts_aligned_dkim() -> None:
    verdict = verdict_for(
        ar(f"{OURS}; dkim=pass header.d=approver.com; dmarc=pass header.from=approver.com"),
        policy=DKIM_ONLY,
    )
    assert (verdict.trusted, verdict.method) == (True, "dkim")


def test_policy_off_trusts_everything() -> None:
    verdict = verdict_for(policy=SecuritySettings(policy="off"))
    assert (verdict.trusted, verdict.method) == (True, "policy-off")


def test_without_a_trusted_id_the_reason_says_what_to_configure() -> None:
    verdict = verdict_for(
        ar(f"{OURS}; dmarc=pass header.from=approver.com"), policy=SecuritySettings()
    )
    assert not verdict.trusted
    assert "set [security] trusted_authserv_id" in verdict.reason


def test_any_of_several_trusted_ids_counts() -> None:
    both = SecuritySettings(trusted_authserv_id=("mx1.example.org", "mx2.example.org"))
    verdict = verdict_for(ar("mx2.example.org; dmarc=pass header.from=approver.com"), policy=both)
    assert verdict.trusted


def test_ids_and_domains_compare_case_insensitively() -> None:
    shouting = SecuritySettings(trusted_authserv_id=("MX.Example.ORG",))
    verdict = judge(
        message(ar("mx.EXAMPLE.org; DMARC=PASS header.from=Approver.COM")),
        "APPROVER.com",
        shouting,
    )
    assert verdict.trusted


# -- organisational domains ----------------------------------------------------------


@pytest.mark.parametrize(
    ("signer", "sender", "expected"),
    [
        ("approver.com", "approver.com", True),
        ("mail.approver.com", "approver.com", True),
        ("approver.com", "eu.approver.com", True),
        ("approver.com.evil.org", "approver.com", False),
        ("evil-approver.com", "approver.com", False),
        ("a.example.co.uk", "b.example.co.uk", True),
        ("other.co.uk", "example.co.uk", False),
        ("co.uk", "example.co.uk", False),
        ("alice.github.io", "bob.github.io", False),  # a private public suffix
        ("mail.corp.internal", "corp.internal", True),  # an unlisted top-level domain
        ("evil.internal", "corp.internal", False),
        ("approver.com.", "APPROVER.COM", True),
        ("x..approver.com", "approver.com", False),
    ],
)
def test_relaxed_alignment_means_the_same_organisational_domain(
    signer: str, sender: str, expected: bool
) -> None:
    assert aligned(signer, sender) is expected


def test_organisational_domain() -> None:
    assert organisational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organisational_domain("") is None


# -- our own DKIM verification ------------------------------------------------------


Signer = Callable[[bytes], bytes]


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    """A fresh RSA key: the private key in PEM, and its DNS TXT record."""
    return new_dkim_key()


def dns(records: dict[bytes, bytes]) -> Callable[..., bytes | None]:
    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return records.get(name)

    return lookup


def sign(domain: bytes, private_key: bytes) -> bytes:
    """The reply as the approver's server sends it: signed by ``domain`` with selector sel."""
    unsigned = message().as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return bytes(dkim.sign(unsigned, b"sel", domain, private_key)) + unsigned


@pytest.fixture
def signed(keys: tuple[bytes, bytes]) -> bytes:
    return sign(b"mail.approver.com", keys[0])


@pytest.fixture
def dnsfunc(keys: tuple[bytes, bytes]) -> Callable[..., bytes | None]:
    return dns({b"sel._domainkey.mail.approver.com.": keys[1]})


def test_own_verification_of_a_signed_message_is_trusted(
    signed: bytes, dnsfunc: Callable[..., bytes | None]
) -> None:
    results = verify_dkim(signed, dnsfunc=dnsfunc)
    [result] = results
    assert (result.domain, result.selector, result.passed) == ("mail.approver.com", "sel", True)
    assert {"from", "subject", "message-id"} <= set(result.signed)
    verdict = judge(email.message_from_bytes(signed), "approver.com", REQUIRE, dkim_results=results)
    assert (verdict.trusted, verdict.method) == (True, "dkim-verified")
    assert (
        verdict.reason == "own DKIM check passed for mail.approver.com, aligned with approver.com"
    )


def test_own_verification_counts_under_dkim_only_and_without_a_trusted_id(
    signed: bytes, dnsfunc: Callable[..., bytes | None]
) -> None:
    results = verify_dkim(signed, dnsfunc=dnsfunc)
    msg = email.message_from_bytes(signed)
    for policy in (DKIM_ONLY, SecuritySettings()):
        assert judge(msg, "approver.com", policy, dkim_results=results).method == "dkim-verified"


def test_own_verification_of_a_tampered_message_is_not_trusted(
    signed: bytes, dnsfunc: Callable[..., bytes | None]
) -> None:
    tampered = signed.replace(b"APPROVE", b"REJECT")
    results = verify_dkim(tampered, dnsfunc=dnsfunc)
    assert [(r.domain, r.passed) for r in results] == [("mail.approver.com", False)]
    assert "body hash mismatch" in results[0].reason
    verdict = judge(
        email.message_from_bytes(tampered), "approver.com", REQUIRE, dkim_results=results
    )
    assert not verdict.trusted
    assert any(
        d.startswith("own DKIM check: d=mail.approver.com s=sel fail") for d in verdict.details
    )


def test_own_verification_of_a_changed_subject_is_not_trusted(
    signed: bytes, dnsfunc: Callable[..., bytes | None]
) -> None:
    tampered = signed.replace(b"Subject: Re: Approval needed [ID:1234]", b"Subject: [ID:9999]")
    assert [r.passed for r in verify_dkim(tampered, dnsfunc=dnsfunc)] == [False]


def test_a_valid_signature_of_another_domain_is_not_trusted(
    keys: tuple[bytes, bytes],
) -> None:
    raw = sign(b"attacker.net", keys[0])
    results = verify_dkim(raw, dnsfunc=dns({b"sel._domainkey.attacker.net.": keys[1]}))
    assert [r.passed for r in results] == [True]
    verdict = judge(email.message_from_bytes(raw), "approver.com", REQUIRE, dkim_results=results)
    assert not verdict.trusted


def test_a_missing_key_is_a_failure_with_its_reason(signed: bytes) -> None:
    [result] = verify_dkim(signed, dnsfunc=dns({}))
    assert not result.passed
    assert "missing public key" in result.reason


def test_a_broken_signature_is_a_failure_not_an_error() -> None:
    raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=approver.com\r\nFrom: a@approver.com\r\n\r\nhi\r\n"
    [result] = verify_dkim(raw, dnsfunc=dns({}))
    assert (result.domain, result.passed) == ("approver.com", False)
    assert "missing" in result.reason


def test_an_unsigned_message_has_no_results() -> None:
    assert verify_dkim(message().as_bytes(), dnsfunc=dns({})) == []


# -- hostile input never raises ---------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=4), st.text(max_size=40))
def test_arbitrary_header_text_never_raises(values: list[str], from_domain: str) -> None:
    msg = email.message.Message()
    for value in values:
        msg["Authentication-Results"] = value
    for prefix in (f"{OURS}; ", ""):
        msg["Authentication-Results"] = prefix + (values[0] if values else "")
    verdict = judge(msg, from_domain, REQUIRE)
    assert isinstance(verdict, Verdict)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_in_verification(tail: bytes) -> None:
    raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=x.com; s=s; " + tail
    assert all(not r.passed for r in verify_dkim(raw, dnsfunc=dns({})))


# -- Microsoft 365: Exchange Online writes no authserv-id --------------------------------

M365 = SecuritySettings(policy="require", trusted_authserv_id=("exchange-online",))
EOP = "from mail.approver.com (192.0.2.1) by AM4PEPF0000.mail.protection.outlook.com"


def m365(dkim_: str = "pass", dmarc: str = "pass", domain: str = "approver.com") -> str:
    return (
        f"spf=pass (sender IP is 192.0.2.1) smtp.mailfrom={domain}; dkim={dkim_} "
        f"(signature was verified) header.d={domain};dmarc={dmarc} action=none "
        f"header.from={domain};compauth=pass reason=100"
    )


def test_exchange_online_results_are_read_when_exchange_online_is_trusted() -> None:
    verdict = verdict_for(ar(m365()), received(EOP), policy=M365)
    assert (verdict.trusted, verdict.method) == (True, "dmarc")
    assert verdict.reason == "dmarc=pass for approver.com (exchange-online)"


def test_exchange_online_results_with_a_trailing_semicolon_are_read() -> None:
    value = (
        "dkim=none (message not signed) header.d=none;dmarc=pass action=none "
        "header.from=approver.com;"
    )
    assert verdict_for(ar(value), received(EOP), policy=M365).trusted


def test_results_without_an_authserv_id_count_for_no_other_server() -> None:
    verdict = verdict_for(ar(m365()), received(), policy=REQUIRE)
    assert not verdict.trusted


def test_exchange_onlines_fail_on_top_outweighs_a_forged_pass_below() -> None:
    for between in ((received(EOP),), ()):
        verdict = verdict_for(ar(m365("fail", "fail")), *between, ar(m365()), policy=M365)
        assert not verdict.trusted


def test_exchange_online_results_for_another_domain_do_not_count() -> None:
    assert not verdict_for(ar(m365(domain="evil.example")), received(EOP), policy=M365).trusted


def test_a_best_guess_pass_is_not_a_dmarc_pass() -> None:
    """Exchange Online's "bestguesspass": the domain publishes no DMARC record."""
    value = (
        "spf=pass smtp.mailfrom=approver.com; dkim=none (message not signed) "
        "header.d=none;dmarc=bestguesspass action=none header.from=approver.com;"
    )
    assert not verdict_for(ar(value), received(EOP), policy=M365).trusted


def test_an_unreadable_exchange_online_header_ends_the_block() -> None:
    verdict = verdict_for(
        ar("dmarc=fail header.from=approver.com; ==="), ar(m365()), received(EOP), policy=M365
    )
    assert not verdict.trusted
