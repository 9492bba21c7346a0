"""The [graph] mailbox and Graph sendMail, end to end against the stand-in Graph over HTTPS
(MSAL for the token, httpx for Graph) and the stand-in Halo.

Mocked: Exchange Online itself (tests/standin_graph.py), as nothing else can run here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from responder.config import ConfigError, parse_settings
from responder.connections.graph import GraphClient
from responder.halo.standin import StandinHalo
from responder.mailboxes.graph import GraphMailbox, headers_of, listed, property_key
from responder.reading.message import analyse
from responder.service import check, responder
from responder.trust.authenticity import DkimResult, verify_dkim
from tests import shapes
from tests.dkim_keys import new_dkim_key
from tests.graph_harness import TENANT, GraphHarness
from tests.harness import gmail_reply, outlook_reply, reply, text_of
from tests.standin_graph import CANONICAL_SIZE_PROPERTY, SIZE_PROPERTY, StandinGraph

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def graph() -> Iterator[StandinGraph]:
    """One stand-in Graph per module; every process here trusts its CA (MSAL and httpx)."""
    with StandinGraph.trusted() as server:
        yield server


# How the stand-in spells the size property's id in its answers: Graph's canonical form,
# and the form the responder asks with. Every test here runs under both.
ID_FORMS = {"canonical-id": CANONICAL_SIZE_PROPERTY, "asked-id": SIZE_PROPERTY}


@pytest.fixture(params=ID_FORMS.values(), ids=ID_FORMS.keys())
def gh(graph: StandinGraph, halo: StandinHalo, request: pytest.FixtureRequest
       ) -> Iterator[GraphHarness]:
    graph.latency = 0.0
    graph.drop_headers = False
    graph.size_property_id = request.param
    graph.folder_exists_status = 409
    graph.sendmail_checks_body_first = False
    with tempfile.TemporaryDirectory(prefix="responder-graph-") as state:
        yield GraphHarness(graph, halo, Path(state))


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def cli(command: str, config: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "responder", command, "--config",
                           str(config)], cwd=REPO, capture_output=True, timeout=90)


# -- config ---------------------------------------------------------------------------------


def test_exactly_one_mailbox_and_one_credential(gh: GraphHarness) -> None:
    data = gh.config()
    assert gh.settings.smtp is None and gh.settings.answer_from == gh.mailbox
    with pytest.raises(ConfigError, match=r"exactly one mailbox: an \[imap\], a \[maildir\] "
                                          r"or a \[graph\]"):
        parse_settings({**data, "maildir": {"path": "/tmp/x"}})
    both = {**data["graph"], "certificate_path": "/k.pem", "certificate_thumbprint": "AB"}
    with pytest.raises(ConfigError, match="not both"):
        parse_settings({**data, "graph": both})
    neither = {k: v for k, v in data["graph"].items() if k != "client_secret"}
    with pytest.raises(ConfigError, match="client_secret, or certificate_path"):
        parse_settings({**data, "graph": neither})
    no_graph = {k: v for k, v in data.items() if k != "graph"}
    with pytest.raises(ConfigError, match="smtp: required"):
        parse_settings({**no_graph, "maildir": {"path": "/tmp/x"}})
    defaults = parse_settings({**data, "graph": {k: v for k, v in data["graph"].items()
                                                 if k not in ("authority", "graph_url",
                                                              "poll_seconds")}}).graph
    assert defaults is not None
    assert (defaults.folder, defaults.poll_seconds, defaults.authority, defaults.graph_url) == (
        "Inbox", 10.0, "https://login.microsoftonline.com", "https://graph.microsoft.com/v1.0")
    assert gh.secret in parse_settings(data).secrets()


# -- end to end -----------------------------------------------------------------------------


async def test_a_reply_is_decided_answered_through_sendmail_and_filed(gh: GraphHarness) -> None:
    raw = outlook_reply("Alice Approver <alice@example.com>", 1234, "Approved, thanks")
    gh.deliver(raw)

    result = await gh.once()

    assert [r.outcome for r in result.reports] == ["approved"]
    assert gh.halo.approver(1234, 1)["result"] == 1
    [answer] = gh.answers()
    assert answer["To"] == "alice@example.com"
    assert answer["From"] == gh.mailbox
    assert answer["In-Reply-To"] == email_id(raw)
    assert "approval of ticket 1234" in text_of(answer)
    assert {p.get_content_type() for p in answer.walk()} >= {"text/plain", "text/html"}
    assert gh.folder("Approvals/Done") == [raw]  # byte for byte: $value, moves keep it
    assert gh.graph.tree(gh.mailbox) == {"Approvals/Done": 1}  # nothing left in processing
    [row] = gh.ledger_rows()
    assert (row["state"], row["outcome"]) == ("filed", "approved")
    # Text only, and what it cost: the move (claim), $value, the move (file), sendMail.
    sent = gh.requests("POST", "/sendMail")
    assert [r.status for r in sent] == [202]
    assert len(gh.requests("GET", "/$value")) == 1


async def test_a_folder_deleted_by_hand_is_made_again(gh: GraphHarness) -> None:
    async with responder(gh.settings) as worker:
        gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
        await worker.run_once()
        gh.graph.delete_folder(gh.mailbox, "Approvals/Done")
        gh.deliver(gmail_reply("bob@example.com", 1234, "Approve"))
        second = await worker.run_once()
    assert [r.outcome for r in second.reports] == ["approved"]
    assert gh.graph.tree(gh.mailbox) == {"Approvals/Done": 1}


async def test_smtp_keeps_working_beside_graph(gh: GraphHarness) -> None:
    from tests.servers import SmtpSink

    with SmtpSink() as sink:
        gh.overrides = {"smtp": {"host": sink.host, "port": sink.port, "tls": "none",
                                 "from": "service@contoso.com"}}
        gh.deliver(gmail_reply("bob@example.com", 1234, "Reject - not now"))
        result = await gh.once()
        assert [r.outcome for r in result.reports] == ["rejected"]
        assert gh.answers() == []  # not through Graph
        [received] = sink.received()
        assert b"rejection of ticket 1234" in received.content.replace(b"\r\n", b" ")
    assert len(gh.folder("Approvals/Done")) == 1


async def test_two_instances_on_one_mailbox_never_both_act(gh: GraphHarness) -> None:
    tickets = range(2001, 2021)
    for ticket in tickets:
        approver = f"approver{ticket}@example.com"  # answers are limited per sender
        gh.halo.add_ticket(ticket, f"Ticket {ticket}", [
            {"emailaddress": approver, "seq": 1, "actionnumber": 1}])
        gh.deliver(gmail_reply(approver, ticket, "Approve"))
    gh.graph.latency = 0.01  # so the two passes interleave
    first = GraphHarness(gh.graph, gh.halo, gh.state_dir / "a")
    second = GraphHarness(gh.graph, gh.halo, gh.state_dir / "b")
    for other in (first, second):
        other.mailbox, other.client_id, other.secret = gh.mailbox, gh.client_id, gh.secret

    one, two = await asyncio.gather(first.once(owner="one"), second.once(owner="two"))

    # One process: both instances wait at the mailbox's one gate of four, so Outlook's
    # limit is never crossed and nothing is refused (each with its own gate: 429s).
    assert not [r for r in gh.requests() if r.status == 429]
    decided = [r for r in one.reports + two.reports if r.outcome == "approved"]
    assert len(decided) == 20
    assert sorted(r.ticket_id for r in decided) == list(tickets)  # each exactly once
    assert gh.halo.duplicate_decisions == 0
    assert sorted(str(a["Subject"]) for a in gh.answers()) == sorted(
        f"Re: Approval required [ID:{t}]" for t in tickets)
    assert gh.graph.tree(gh.mailbox) == {"Approvals/Done": 20}


async def test_of_two_claims_on_one_message_only_one_wins(gh: GraphHarness) -> None:
    """Both instances saw the same new mail; each message's move succeeds for one only."""
    for n in range(10):
        gh.deliver(gmail_reply(f"approver{n}@example.com", 1234, "Approve"))
    settings = gh.settings.graph
    assert settings is not None
    boxes = [GraphMailbox(settings, GraphClient(settings)) for _ in range(2)]
    for box in boxes:
        await box.open()
    try:
        for box in boxes:
            await box.wait_for_mail(0)  # both now hold the same ten candidates
        one, two = await asyncio.gather(boxes[0].claim_new("one", 600),
                                        boxes[1].claim_new("two", 600))
    finally:
        for box in boxes:
            await box.close()
    assert len(one) + len(two) == 10
    assert {m.raw for m in one}.isdisjoint({m.raw for m in two})
    moves = gh.requests("POST", "/move")
    assert sum(r.status == 201 for r in moves) == 10  # one winner per message
    assert all(r.status in (201, 404) for r in moves)  # the others were told it was gone
    assert gh.graph.tree(gh.mailbox) == {
        **({"Approvals/Processing/one": len(one)} if one else {}),
        **({"Approvals/Processing/two": len(two)} if two else {})}


async def test_a_large_message_is_read_as_headers_and_text_never_its_attachment(
    gh: GraphHarness,
) -> None:
    blob = "A" * 76 + "\n"
    body = ("--b1\nContent-Type: text/plain; charset=utf-8\n\nApprove\n\n"
            "On Sat, 28 Nov 2026 at 08:55, Service Desk wrote:\n> Please approve.\n"
            "--b1\nContent-Type: application/pdf; name=quote.pdf\n"
            "Content-Disposition: attachment; filename=quote.pdf\n"
            "Content-Transfer-Encoding: base64\n\n" + blob * (20 * 1024 * 1024 // 77)
            + "--b1--\n")
    raw = reply("alice@example.com", "Re: Approval required [ID:1234]", body,
                content_type='multipart/mixed; boundary="b1"')
    assert len(raw) > 20 * 1024 * 1024
    gh.deliver(raw)

    result = await gh.once()

    assert [r.outcome for r in result.reports] == ["approved"]
    assert gh.requests("GET", "/$value") == []
    assert gh.requests("GET", "/attachments") == []
    [read] = [r for r in gh.requests("GET", "/messages/")
              if "internetMessageHeaders" in r.query.get("$select", "")]
    assert "body" in read.query["$select"]
    assert gh.folder("Approvals/Done") == [raw]  # filed whole: the server kept it


def test_property_ids_are_compared_by_type_and_tag() -> None:
    """Graph answers "Integer 0xe08" when asked for "Integer 0x0E08": the same property."""
    for spelled in ("Integer 0x0E08", "Integer 0xe08", "integer 0x00000e08", "INTEGER 0XE08"):
        assert property_key(spelled) == ("integer", 0x0E08), spelled
        assert listed({"id": "m", "singleValueExtendedProperties": [
            {"id": spelled, "value": "2048"}]}).size == 2048, spelled
    for other in ("String 0x0E08", "Integer 0x0E09", "Integer 0E08", "Integer 0x", "Integer",
                  "Integer 0x0E08 extra", "Integer 0xZZ", "Integer 0x" + "f" * 60, None, 3):
        assert property_key(other) in (None, ("string", 0x0E08), ("integer", 0x0E09)), other
        assert listed({"id": "m", "singleValueExtendedProperties": [
            {"id": other, "value": "2048"}]}).size is None, other


async def test_a_signed_reply_is_read_whole_and_our_own_dkim_check_runs(
    gh: GraphHarness,
) -> None:
    """Whichever way Graph spells the size property's id, a message under the size limit
    is read whole through $value, byte for byte, so our own DKIM check verifies it."""
    private, record = new_dkim_key()
    raw = shapes.signed(shapes.approval_reply(), "example.com", private)
    gh.deliver(raw)
    checked: list[bytes] = []

    def verifier(message: bytes) -> list[DkimResult]:
        checked.append(message)
        return verify_dkim(message, dnsfunc=lambda name, timeout=5: record
                           if name == b"sel._domainkey.example.com." else None)

    result = await gh.once(dkim_verifier=verifier)

    assert [r.outcome for r in result.reports] == ["approved"]
    assert len(gh.requests("GET", "/$value")) == 1
    assert not [r for r in gh.requests("GET", "/messages/")
                if "internetMessageHeaders" in r.query.get("$select", "")]
    assert checked == [raw]  # the bytes that arrived, not a reassembly
    [row] = gh.ledger_rows()
    assert row["auth_verdict"] == "own DKIM check passed for example.com, aligned with example.com"


class _CreatedMeanwhile(httpx.AsyncBaseTransport):
    """Another instance creates each folder between our look-up and our create."""

    def __init__(self, graph: StandinGraph, mailbox: str) -> None:
        self.graph, self.mailbox = graph, mailbox
        self.inner = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(
            cafile=str(graph.ca_file)))
        self.made: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path.endswith(("/mailFolders", "/childFolders")):
            name = json.loads(request.content)["displayName"]
            self.made.append(name)
            parents = {"Approvals": "", "Processing": "Approvals/", "one": "Approvals/Processing/"}
            self.graph.add_folder(self.mailbox, parents.get(name, "") + name)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("status", [409, 400])
async def test_a_folder_another_instance_just_created_is_used(
    gh: GraphHarness, status: int
) -> None:
    """ErrorFolderExists is recognised by its code, whatever HTTP status carries it."""
    gh.graph.folder_exists_status = status
    gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    settings = gh.settings.graph
    assert settings is not None
    racing = _CreatedMeanwhile(gh.graph, gh.mailbox)
    box = GraphMailbox(settings, GraphClient(settings, transport=racing))
    await box.open()
    try:
        claimed = await box.claim_new("one", 600)
    finally:
        await box.close()
    assert len(claimed) == 1
    assert racing.made == ["Approvals", "Processing", "one"]
    refused = [r.status for r in gh.requests("POST") if r.path.endswith(
        ("/mailFolders", "/childFolders"))]
    assert refused == [status] * 3
    assert gh.graph.tree(gh.mailbox) == {"Approvals/Processing/one": 1}  # one of each folder


def _large(raw: bytes) -> bytes:
    """``raw`` made larger than what is read whole, by text after the quoted original."""
    return raw + b"\r\n" + b"-- \r\n" + (b"x" * 70 + b"\r\n") * 16_000


@pytest.mark.parametrize("regenerated", [False, True], ids=["original-mime", "regenerated"])
@pytest.mark.parametrize("large", [False, True], ids=["value", "headers-and-body"])
async def test_exchange_onlines_stamps_are_read_through_graph(
    gh: GraphHarness, regenerated: bool, large: bool
) -> None:
    """Exchange Online's own Authentication-Results, whichever way Graph gives the message."""
    gh.graph.regenerate_mime = regenerated
    gh.overrides = {"security": {"trusted_authserv_id": ["exchange-online"]}}
    message = shapes.approval_reply()
    signed = shapes.signed(_large(message) if large else message, "example.com",
                           new_dkim_key()[0])  # what it signs is read, not its verdict
    gh.deliver(shapes.exo_external(signed, shapes.EXO_PASS))
    try:
        result = await gh.once()
    finally:
        gh.graph.regenerate_mime = False
    assert [r.outcome for r in result.reports] == ["approved"]
    assert bool(gh.requests("GET", "/$value")) is not large
    [row] = gh.ledger_rows()
    assert row["auth_verdict"] == "dmarc=pass for example.com (exchange-online)"


@pytest.mark.parametrize("large", [False, True], ids=["value", "headers-and-body"])
@pytest.mark.parametrize("hidden", [False, True], ids=["authas-shown", "authas-hidden"])
async def test_an_internal_reply_through_graph(
    gh: GraphHarness, hidden: bool, large: bool
) -> None:
    """Whether Graph shows X-MS-Exchange-Organization-AuthAs is unconfirmed: shown, an
    internal reply is approved under exchange_internal; hidden, it is quarantined. Read
    whole or from internetMessageHeaders (too large for $value), the same."""
    gh.graph.hide_organization_headers = hidden
    gh.overrides = {"security": {"trusted_authserv_id": ["exchange-online"],
                                 "exchange_internal": True,
                                 "internal_domains": ["example.com"]}}
    message = shapes.approval_reply()
    gh.deliver(shapes.exo_internal(_large(message) if large else message))
    try:
        result = await gh.once()
    finally:
        gh.graph.hide_organization_headers = False
    assert [r.outcome for r in result.reports] == ["quarantined" if hidden else "approved"]
    assert (gh.halo.approver(1234, 1)["result"] == 1) is not hidden
    assert bool(gh.requests("GET", "/$value")) is not large


async def test_headers_left_out_by_graph_leave_the_message_untrusted(
    gh: GraphHarness,
) -> None:
    """Graph gives empty internetMessageHeaders for some items: no authentication evidence."""
    gh.graph.drop_headers = True
    big = "x" * (1100 * 1024)
    gh.deliver(reply("alice@example.com", "Re: Approval required [ID:1234]",
                     f"Approve\n\n{big}\n"))

    result = await gh.once()

    assert gh.posts() == []
    assert [r.outcome for r in result.reports] != ["approved"]


def test_a_display_name_graph_gives_is_quoted_and_never_read_as_an_address() -> None:
    """Without internetMessageHeaders the From: is rebuilt from Graph's decoded name: a
    name holding quotes and another address stays one quoted (and suspicious) name."""
    name = 'x" <alice@example.com>, "\\'
    head = headers_of({"from": {"emailAddress": {"name": name, "address": "dave@example.com"}}})

    facts = analyse(head + b"\r\n")

    assert facts.sender == "dave@example.com"
    assert facts.suspicious == ("the display name contains another address (alice@example.com)",)


@pytest.mark.parametrize("status", [429, 503])
async def test_throttling_is_obeyed(gh: GraphHarness, status: int) -> None:
    gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    gh.graph.throttle_next(2, retry_after=1.0, status=status)
    started = time.monotonic()

    result = await gh.once()

    assert [r.outcome for r in result.reports] == ["approved"]
    refused = [r for r in gh.requests() if r.status == status]
    assert len(refused) == 2
    after = [r for r in gh.requests() if r.at > refused[-1].at]
    assert after and after[0].at - refused[-1].at >= 0.95  # waited for Retry-After
    assert time.monotonic() - started >= 1.9


async def test_the_request_budget_waits_instead_of_causing_throttling(
    gh: GraphHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over our own budget, the client waits for a slot rather than send (shown with a
    budget of 3 per 60 s on a fake clock)."""
    import responder.connections.graph as graph_api

    monkeypatch.setattr(graph_api, "BUDGET_REQUESTS", 3)
    monkeypatch.setattr(graph_api, "BUDGET_WINDOW", 60.0)
    now = [1000.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    settings = gh.settings.graph
    assert settings is not None
    client = GraphClient(settings, sleep=sleep, clock=lambda: now[0])
    await client.open()
    try:
        for _ in range(5):
            await client.json("folder", "GET", "/mailFolders/inbox")
    finally:
        await client.close()
    assert waits == [60.0]  # the fourth waited for the first three to leave the window
    assert len(gh.requests("GET", "/mailFolders/inbox")) == 5
    assert not [r for r in gh.requests() if r.status == 429]


async def test_at_most_four_requests_at_once(gh: GraphHarness) -> None:
    gh.graph.latency = 0.05
    gh.graph.peak_in_flight = 0
    for n in range(12):
        gh.halo.add_ticket(3000 + n, "t", [{"emailaddress": "alice@example.com", "seq": 1,
                                            "actionnumber": 1}])
        gh.deliver(gmail_reply("alice@example.com", 3000 + n, "Approve"))

    result = await gh.once()

    assert len([r for r in result.reports if r.outcome == "approved"]) == 12
    assert gh.graph.peak_in_flight == 4
    assert not [r for r in gh.requests() if r.status == 429]


async def test_processes_sharing_a_mailbox_split_the_four_with_graph_concurrency(
    gh: GraphHarness,
) -> None:
    gh.graph.latency = 0.05
    gh.graph.peak_in_flight = 0
    gh.overrides = {"graph": {"concurrency": 2}}
    for n in range(8):
        gh.halo.add_ticket(3100 + n, "t", [{"emailaddress": "alice@example.com", "seq": 1,
                                            "actionnumber": 1}])
        gh.deliver(gmail_reply("alice@example.com", 3100 + n, "Approve"))

    result = await gh.once()

    assert [r.outcome for r in result.reports] == ["approved"] * 8
    assert gh.graph.peak_in_flight == 2


async def test_a_restart_resumes_from_the_delta_link_and_an_expired_link_rescans(
    gh: GraphHarness,
) -> None:
    gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    await gh.once()
    rounds = len(gh.requests("GET", "/messages/delta"))
    gh.deliver(gmail_reply("bob@example.com", 1234, "Approve"))

    second = await gh.once()  # a new process: the link comes from the ledger

    assert [r.outcome for r in second.reports] == ["approved"]
    resumed = gh.requests("GET", "/messages/delta")[rounds:]
    assert resumed and all("$deltatoken" in r.query for r in resumed)
    gh.graph.expire_delta_links(gh.mailbox)
    gh.halo.add_ticket(1400, "x", [{"emailaddress": "carol@example.com", "seq": 1,
                                    "actionnumber": 1}])
    gh.deliver(gmail_reply("carol@example.com", 1400, "Approve"))

    third = await gh.once()

    assert [r.outcome for r in third.reports] == ["approved"]
    assert [r.status for r in gh.requests("GET", "/messages/delta")
            if r.status == 410] == [410]


async def test_a_refused_token_is_replaced_once(gh: GraphHarness) -> None:
    gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    async with responder(gh.settings) as worker:
        await worker.run_once()
        gh.graph.revoke_tokens()  # still fresh by our clock, refused by Graph
        gh.deliver(gmail_reply("bob@example.com", 1234, "Approve"))
        second = await worker.run_once()
    assert [r.outcome for r in second.reports] == ["approved"]
    assert [r.status for r in gh.requests() if r.status == 401] == [401]
    assert len(gh.answers()) == 2


async def test_an_answer_graph_refuses_does_not_hold_up_the_others(gh: GraphHarness) -> None:
    gh.graph.refuse_recipients = {"alice@example.com"}
    try:
        gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
        gh.deliver(gmail_reply("bob@example.com", 1234, "Reject - not now"))
        first = await gh.once()
        assert (first.answers_sent, first.answers_failed) == (1, 1)
        assert [str(a["To"]) for a in gh.answers()] == ["bob@example.com"]
        gh.graph.refuse_recipients = set()
        second = await gh.once()  # the refused answer waited in the outbox
    finally:
        gh.graph.refuse_recipients = set()
    assert second.answers_sent == 1
    assert sorted(str(a["To"]) for a in gh.answers()) == ["alice@example.com",
                                                          "bob@example.com"]
    assert gh.graph.tree(gh.mailbox) == {"Approvals/Done": 2}


def test_kill_9_mid_pass_loses_and_doubles_nothing(gh: GraphHarness, tmp_path: Path) -> None:
    config = gh.write_config(tmp_path / "config.toml")
    gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    gh.halo.faults.delay_after_apply = 30.0  # applied in Halo, the answer held back
    proc = subprocess.Popen([sys.executable, "-m", "responder", "once", "--config",
                             str(config)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: gh.halo.approver(1234, 1)["result"] == 1, 30, "the POST applied")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert gh.folder("Inbox") == []  # claimed: in the instance's processing folder
    gh.halo.faults.clear()

    again = cli("once", config)

    assert again.returncode == 0, again.stdout.decode() + again.stderr.decode()
    assert gh.halo.duplicate_decisions == 0
    assert sum(d["ticket_id"] == 1234 for d in gh.halo.decisions) == 1
    assert len(gh.answers()) == 1
    assert gh.graph.tree(gh.mailbox) == {"Approvals/Done": 1}
    [row] = gh.ledger_rows()
    assert (row["state"], row["outcome"]) == ("filed", "approved")


async def test_a_dead_instances_claim_is_taken_over(gh: GraphHarness) -> None:
    gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    settings = gh.settings.graph
    assert settings is not None
    dead = GraphMailbox(settings, GraphClient(settings), state_path=None)
    await dead.open()
    try:
        assert len(await dead.claim_new("dead", 600)) == 1  # claimed, then never filed
    finally:
        await dead.close()
    gh.overrides = {"service": {"claim_timeout_seconds": 0.4}}

    async with responder(gh.settings) as worker:  # one process: it watches the claim age
        first = await worker.run_once()  # sees the claim; not stale yet
        await asyncio.sleep(0.5)
        later = await worker.run_once()

    assert first.reports == []
    assert [r.outcome for r in later.reports] == ["approved"]
    assert gh.graph.tree(gh.mailbox) == {"Approvals/Done": 1}


async def test_a_claim_kept_long_is_renewed_and_not_taken_over(gh: GraphHarness) -> None:
    """A holder waiting on Halo renews its claim (a category toggled, so the message's
    lastModifiedDateTime moves); another instance takes it only once renewals stop."""
    gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    settings = gh.settings.graph
    assert settings is not None
    holder, other = (GraphMailbox(settings, GraphClient(settings)) for _ in range(2))
    await holder.open()
    await other.open()
    try:
        assert len(await holder.claim_new("holder", 0.6)) == 1
        for _ in range(8):  # 1.6 s: the holder's passes renew, the other watches
            await asyncio.sleep(0.2)
            assert len(await holder.claim_new("holder", 0.6)) == 1
            assert await other.claim_new("other", 0.6) == []
        assert gh.requests("PATCH")  # renewed
        await asyncio.sleep(0.8)  # the holder is gone quiet
        taken = [await other.claim_new("other", 0.6) for _ in range(2)]
    finally:
        await holder.close()
        await other.close()
    assert [len(t) for t in taken] in ([1, 1], [0, 1])
    assert gh.graph.tree(gh.mailbox) == {"Approvals/Processing/other": 1}


async def test_replay_puts_a_filed_message_back(gh: GraphHarness) -> None:
    raw = gmail_reply("alice@example.com", 1300, "Looks fine")
    gh.deliver(raw)
    await gh.once()
    settings = gh.settings.graph
    assert settings is not None
    box = GraphMailbox(settings, GraphClient(settings))
    await box.open()
    try:
        assert await box.restore(email_id(raw), "Approvals/Unmatched") or \
            await box.restore(email_id(raw), "Approvals/Ignored")
        assert not await box.restore("<nope@x>", "Approvals/Ignored")
    finally:
        await box.close()
    assert gh.folder("Inbox") == [raw]


def test_replay_through_the_cli_decides_a_message_filed_too_early(
    gh: GraphHarness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from responder.commands.cli import main

    config = gh.write_config(tmp_path / "config.toml")
    msgid = "<late.1400@example.com>"
    gh.deliver(gmail_reply("alice@example.com", 1400, "Approve", msgid=msgid))
    assert main(["once", "--config", str(config), "--json"]) == 0
    [first] = json.loads(capsys.readouterr().out)["messages"]
    assert first["outcome"] == "ticket-not-found"
    gh.halo.add_ticket(1400, "Late", [{"emailaddress": "alice@example.com", "seq": 1,
                                       "actionnumber": 2}])

    code = main(["replay", msgid, "--config", str(config), "--json"])

    out = json.loads(capsys.readouterr().out)
    assert code == 0 and (out["status"], out["outcome"]) == ("replayed", "approved")
    assert gh.halo.approver(1400, 1)["result"] == 1
    assert gh.graph.tree(gh.mailbox) == {"Approvals/Done": 1}
    assert len(gh.answers()) == 2  # "ticket not found", then "approved"


# -- check ----------------------------------------------------------------------------------


async def test_check_signs_in_and_names_missing_permissions(gh: GraphHarness) -> None:
    lines = {line.component: line for line in await check(gh.settings)}
    assert lines["mailbox"].ok and f"graph {gh.mailbox}" in lines["mailbox"].detail
    assert lines["sendmail"].ok and "Mail.Send probably allowed" in lines["sendmail"].detail
    assert "HTTP 400 ErrorMimeContentInvalidBase64String" in lines["sendmail"].detail
    assert "Test-ServicePrincipalAuthorization" in lines["sendmail"].detail
    assert "granted" not in lines["sendmail"].detail  # a 400 proves nothing about the order

    gh.client_id, gh.secret = gh.graph.add_app([gh.mailbox], ("Mail.Send",))
    lines = {line.component: line for line in await check(gh.settings)}
    assert not lines["mailbox"].ok
    assert "missing permission Mail.ReadWrite" in lines["mailbox"].detail
    assert "New-ManagementRoleAssignment" in lines["mailbox"].detail

    gh.client_id, gh.secret = gh.graph.add_app([gh.mailbox], ("Mail.ReadWrite",))
    lines = {line.component: line for line in await check(gh.settings)}
    assert lines["mailbox"].ok
    assert not lines["sendmail"].ok and "missing permission Mail.Send" in lines[
        "sendmail"].detail

    gh.client_id, gh.secret = gh.graph.add_app(["someone.else@contoso.com"])
    lines = {line.component: line for line in await check(gh.settings)}
    assert "missing permission Mail.ReadWrite" in lines["mailbox"].detail  # out of scope

    wrong = gh.secret[:-3] + "xyz"
    gh.secret = wrong
    lines = {line.component: line for line in await check(gh.settings)}
    assert not lines["mailbox"].ok and "invalid_client" in lines["mailbox"].detail
    assert wrong not in lines["mailbox"].detail


async def test_check_says_probably_when_graph_may_check_the_message_first(
    gh: GraphHarness,
) -> None:
    """Were Graph to refuse an empty message before it checks Mail.Send, an app without it
    would get the same 400: check says "probably allowed", never "granted"."""
    gh.graph.sendmail_checks_body_first = True
    gh.client_id, gh.secret = gh.graph.add_app([gh.mailbox], ("Mail.ReadWrite",))
    lines = {line.component: line for line in await check(gh.settings)}
    assert "Mail.Send probably allowed" in lines["sendmail"].detail
    gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    result = await gh.once()  # the first real answer shows it: refused, kept in the outbox
    assert (result.answers_sent, result.answers_failed) == (0, 1)
    assert [r.status for r in gh.requests("POST", "/sendMail")][-1] == 403


def test_check_and_once_as_a_user_runs_them(gh: GraphHarness, tmp_path: Path) -> None:
    config = gh.write_config(tmp_path / "config.toml")
    checked = cli("check", config)
    text = checked.stdout.decode() + checked.stderr.decode()
    assert checked.returncode == 0, text
    assert f"graph {gh.mailbox}" in text and "Mail.Send probably allowed" in text
    gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    ran = cli("once", config)
    assert ran.returncode == 0, ran.stdout.decode() + ran.stderr.decode()
    assert gh.halo.approver(1234, 1)["result"] == 1
    assert len(gh.answers()) == 1


def test_run_as_a_service_decides_as_mail_arrives_and_stops_on_sigterm(
    gh: GraphHarness, tmp_path: Path
) -> None:
    config = gh.write_config(tmp_path / "config.toml")
    proc = subprocess.Popen([sys.executable, "-m", "responder", "run", "--config",
                             str(config)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: bool(gh.requests("GET", "/messages/delta")), 30, "polling")
        gh.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
        wait_for(lambda: len(gh.answers()) == 1, 30, "decided and answered")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, out.decode()
    assert f"(graph {gh.mailbox} Inbox -> Halo" in out.decode()
    assert gh.halo.approver(1234, 1)["result"] == 1
    assert gh.graph.tree(gh.mailbox) == {"Approvals/Done": 1}


async def test_a_certificate_signs_in(gh: GraphHarness, tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "responder")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
    pem = tmp_path / "responder.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
                    + cert.public_bytes(serialization.Encoding.PEM))
    client_id, _ = gh.graph.add_app([gh.mailbox], certificate=(key.public_key(), thumbprint))
    graph = {**gh.config()["graph"], "client_id": client_id, "certificate_path": str(pem),
             "certificate_thumbprint": thumbprint}
    graph.pop("client_secret")
    settings = parse_settings({**gh.config(), "graph": graph})

    lines = {line.component: line for line in await check(settings)}

    assert lines["mailbox"].ok, lines["mailbox"].detail
    assert "(certificate)" in lines["mailbox"].detail


def email_id(raw: bytes) -> str:
    import email as email_module

    return str(email_module.message_from_bytes(raw)["Message-ID"])


def test_tenant_is_the_one_configured(gh: GraphHarness) -> None:
    assert gh.settings.graph is not None and gh.settings.graph.tenant_id == TENANT
