"""The Halo client: unit tests on a mock transport (fake time), then over real HTTP."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from responder.config import HaloSettings
from responder.connections.budget import RequestBudget, retry_after
from responder.halo.client import (
    MAX_ANSWER_BYTES,
    HaloAuthError,
    HaloClient,
    HaloRejected,
    HaloUnavailable,
    HaloUnusable,
)
from responder.halo.standin import StandinHalo
from responder.halo.tickets import Result, Submission
from tests.fixtures_halo import CLIENT_SECRET, standin_halo  # noqa: F401

SECRET = "s3cret-unit-value"
TICKET = {
    "id": 501,
    "summary": "New laptop",
    "approvers": [{"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 7}],
}
APPROVE = Submission(ticket_id=501, seq=1, actionnumber=7, result=Result.APPROVE)


class FakeTime:
    """A clock that only moves when the client sleeps: nothing really waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class MockHalo:
    """A scripted Halo behind httpx.MockTransport: tokens are real-ish, API replies queued."""

    def __init__(self, time: FakeTime, *replies: Reply, expires_in: float = 3600) -> None:
        self.time = time
        self.replies = list(replies)
        self.expires_in = expires_in
        self.valid: set[str] = set()
        self.tokens = 0
        self.seen: list[httpx.Request] = []
        self.api_times: list[float] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path == "/auth/token":
            self.tokens += 1
            token = f"tok-{self.tokens}-abcdef"
            self.valid.add(token)
            return httpx.Response(200, json={"access_token": token, "expires_in": self.expires_in})
        self.api_times.append(self.time.now)
        await asyncio.sleep(0)  # let concurrent tasks interleave, as a network would
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.valid:
            return httpx.Response(401)
        reply = self.replies.pop(0) if self.replies else httpx.Response(200, json=TICKET)
        if isinstance(reply, Exception):
            raise reply
        return reply(request) if callable(reply) else reply


def settings(**overrides: Any) -> HaloSettings:
    values = {"base_url": "https://halo.test", "client_id": "cid", "client_secret": SECRET}
    return HaloSettings.model_validate(values | overrides)


def client(mock: MockHalo, jitter: float = 1.0, **overrides: Any) -> HaloClient:
    return HaloClient(
        settings(**overrides),
        transport=httpx.MockTransport(mock),
        sleep=mock.time.sleep,
        clock=mock.time.clock,
        jitter=lambda: jitter,
    )


def api_requests(mock: MockHalo) -> list[httpx.Request]:
    return [r for r in mock.seen if r.url.path.startswith("/api/")]


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


# -- tokens ------------------------------------------------------------------------------


async def test_token_request_is_form_encoded_and_cached(fake: FakeTime) -> None:
    mock = MockHalo(fake)
    async with client(mock, tenant="acme", scope="edit:tickets") as halo:
        ticket = await halo.get_ticket(501)
        await halo.get_ticket(501)
    assert ticket is not None and ticket.approvers[0].emailaddress == "alice@example.com"
    token_request = mock.seen[0]
    assert token_request.url.params["tenant"] == "acme"
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(token_request.content.decode())) == {
        "grant_type": "client_credentials",
        "client_id": "cid",
        "client_secret": SECRET,
        "scope": "edit:tickets",
    }
    assert mock.seen[1].url.path == "/api/tickets/501"
    assert mock.seen[1].headers["Authorization"] == "Bearer tok-1-abcdef"
    assert halo.calls == {"token": 1, "GET ticket": 2}


async def test_token_is_renewed_shortly_before_it_expires(fake: FakeTime) -> None:
    mock = MockHalo(fake)
    async with client(mock) as halo:
        await halo.get_ticket(501)
        fake.now += 3600 - 61
        await halo.get_ticket(501)
        assert mock.tokens == 1
        fake.now += 2  # now inside the 60 s margin
        await halo.get_ticket(501)
    assert mock.tokens == 2
    assert all(r.url.path == "/auth/token" or r.headers["Authorization"] for r in mock.seen)
    assert halo.calls["GET ticket"] == 3  # no 401 was needed


async def test_401_renews_the_token_once_and_retries(fake: FakeTime) -> None:
    mock = MockHalo(fake)
    async with client(mock) as halo:
        await halo.get_ticket(501)
        mock.valid.clear()  # Halo revoked the token early
        assert await halo.get_ticket(501) is not None
    assert mock.tokens == 2
    assert halo.calls["GET ticket"] == 3


async def test_401_after_a_fresh_token_is_an_auth_error(fake: FakeTime) -> None:
    mock = MockHalo(fake, *[httpx.Response(401)] * 5)
    async with client(mock) as halo:
        with pytest.raises(HaloAuthError) as caught:
            await halo.get_ticket(501)
    assert caught.value.status == 401
    assert "GET /api/tickets/501" in str(caught.value)
    assert mock.tokens == 2
    assert halo.calls["GET ticket"] == 2


async def test_many_tasks_hitting_401_share_one_refresh(fake: FakeTime) -> None:
    mock = MockHalo(fake)
    async with client(mock) as halo:
        await halo.get_ticket(501)
        mock.valid.clear()
        tickets = await asyncio.gather(*(halo.get_ticket(501) for _ in range(20)))
    assert all(t is not None for t in tickets)
    assert mock.tokens == 2
    assert halo.calls["GET ticket"] == 1 + 20 + 20  # each task: one 401, one retry


async def test_refused_credentials(fake: FakeTime) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client"})

    async def handler(request: httpx.Request) -> httpx.Response:
        return refuse(request)

    transport = httpx.MockTransport(handler)
    async with HaloClient(settings(), transport=transport, sleep=fake.sleep) as halo:
        with pytest.raises(HaloAuthError, match="invalid_client") as caught:
            await halo.check()
    assert halo.calls == {"token": 1}  # refused credentials are not retried
    assert caught.value.path == "/auth/token"


async def test_check_describes_the_token(fake: FakeTime) -> None:
    async with client(MockHalo(fake)) as halo:
        assert await halo.check() == "token ok (scope all, expires in 3600 s)"


# -- retries -----------------------------------------------------------------------------


async def test_5xx_is_retried_with_exponential_backoff(fake: FakeTime) -> None:
    mock = MockHalo(fake, *[httpx.Response(503)] * 3)
    async with client(mock) as halo:
        assert await halo.get_ticket(501) is not None
    assert fake.sleeps == [0.5, 1.0, 2.0]
    assert halo.calls["GET ticket"] == 4


async def test_backoff_has_jitter(fake: FakeTime) -> None:
    mock = MockHalo(fake, *[httpx.Response(503)] * 2)
    async with client(mock, jitter=0.0) as halo:
        await halo.get_ticket(501)
    assert fake.sleeps == [0.25, 0.5]  # half the ceiling at the lowest draw


async def test_gives_up_after_max_retries(fake: FakeTime) -> None:
    mock = MockHalo(fake, *[httpx.Response(500)] * 10)
    async with client(mock, max_retries=2) as halo:
        with pytest.raises(HaloUnavailable) as caught:
            await halo.get_ticket(501)
    assert caught.value.status == 500
    assert halo.calls["GET ticket"] == 3
    assert len(fake.sleeps) == 2


async def test_timeouts_and_connection_errors_are_retried_for_reads(fake: FakeTime) -> None:
    mock = MockHalo(fake, httpx.ReadTimeout("slow"), httpx.ConnectError("refused"))
    async with client(mock) as halo:
        assert await halo.get_ticket(501) is not None
    assert halo.calls["GET ticket"] == 3


async def test_429_waits_forretry_after(fake: FakeTime) -> None:
    mock = MockHalo(fake, httpx.Response(429, headers={"Retry-After": "7"}, text="Rate Limit"))
    async with client(mock) as halo:
        assert await halo.get_ticket(501) is not None
    assert fake.sleeps == [7.0]


async def test_429_without_retry_after_backs_off(fake: FakeTime) -> None:
    mock = MockHalo(fake, *[httpx.Response(429, text="Rate Limit Reached")] * 2)
    async with client(mock) as halo:
        assert await halo.get_ticket(501) is not None
    assert fake.sleeps == [0.5, 1.0]


async def test_persistent_429_is_unavailable_not_applied(fake: FakeTime) -> None:
    mock = MockHalo(fake, *[httpx.Response(429, text="Rate Limit Reached")] * 10)
    async with client(mock, max_retries=1) as halo:
        with pytest.raises(HaloUnavailable, match="rate limit") as caught:
            await halo.submit([APPROVE])
    assert caught.value.status == 429
    assert not caught.value.maybe_applied
    assert halo.calls["POST ticketapproval"] == 2  # a 429 was not processed: safe to resend


def test_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after("30", now) == 30.0
    assert retry_after(format_datetime(now + timedelta(seconds=45), usegmt=True), now) == 45.0
    assert retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now) == 0.0
    assert retry_after("86400", now) == 120.0  # capped
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500), httpx.Response(502), httpx.ReadTimeout("slow"), httpx.ReadError("cut")],
    ids=["500", "502", "read-timeout", "read-error"],
)
async def test_post_is_not_resent_when_it_may_have_landed(fake: FakeTime, failure: Reply) -> None:
    mock = MockHalo(fake, failure)
    async with client(mock) as halo:
        with pytest.raises(HaloUnavailable) as caught:
            await halo.submit([APPROVE])
    assert caught.value.maybe_applied
    assert halo.calls["POST ticketapproval"] == 1
    assert fake.sleeps == []


async def test_post_is_resent_when_it_never_left(fake: FakeTime) -> None:
    mock = MockHalo(fake, httpx.ConnectError("refused"), httpx.Response(200))
    async with client(mock) as halo:
        assert await halo.submit([APPROVE]) is None
    assert halo.calls["POST ticketapproval"] == 2


async def test_400_on_post_is_rejected_with_an_excerpt(fake: FakeTime) -> None:
    mock = MockHalo(fake, httpx.Response(400, text="item 0: actionnumber 8 does not match seq 1"))
    async with client(mock) as halo:
        with pytest.raises(HaloRejected) as caught:
            await halo.submit([APPROVE])
    assert caught.value.status == 400
    assert "actionnumber 8 does not match" in caught.value.excerpt
    assert "POST /api/ticketapproval" in str(caught.value)
    assert halo.calls["POST ticketapproval"] == 1


# -- replies -----------------------------------------------------------------------------


async def test_get_ticket_404_is_none(fake: FakeTime) -> None:
    async with client(MockHalo(fake, httpx.Response(404))) as halo:
        assert await halo.get_ticket(999) is None


async def test_a_login_page_instead_of_json_is_unavailable_not_a_refusal(
    fake: FakeTime,
) -> None:
    mock = MockHalo(fake, httpx.Response(200, text="<html>Sign in</html>"))
    async with client(mock) as halo:
        with pytest.raises(HaloUnavailable, match=r"not a ticket .*base_url"):
            await halo.get_ticket(501)


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)


def raw_reply(status: int, body: bytes, **headers: str) -> Reply:
    """An answer as it comes off the wire (its body not yet read, nor decoded)."""
    fields = {k.replace("_", "-"): v for k, v in headers.items()}
    return lambda _: httpx.Response(status, headers=fields, stream=httpx.ByteStream(body))


GZIP = {"Content_Encoding": "gzip", "Content_Type": "application/json"}


@pytest.mark.parametrize(("reply", "why", "tries"), [
    (raw_reply(302, b"", Location="https://halo.test/maintenance"), "HTTP 302", 3),
    (raw_reply(200, gzipped(b"{}")[:10] + b"\xff" * 20, **GZIP), "cannot be decoded", 3),
    (raw_reply(200, gzipped(b" " * (MAX_ANSWER_BYTES + 1)), **GZIP), "over 8 MB", 3),
    (raw_reply(200, b"<html>Sign in</html>", Content_Type="text/html"), "not a ticket", 1),
    (raw_reply(200, b"[" * 100_000 + b"]" * 100_000, Content_Type="application/json"),
     "not a ticket", 1),
])
async def test_answers_that_are_not_halos_are_unavailable(
    fake: FakeTime, reply: Callable[[httpx.Request], httpx.Response], why: str, tries: int
) -> None:
    mock = MockHalo(fake, *[reply] * 3)
    async with client(mock, max_retries=2) as halo:
        with pytest.raises(HaloUnavailable, match=why):
            await halo.get_ticket(501)
    assert halo.calls["GET ticket"] == tries  # a body that is not JSON: the next pass


async def test_a_redirect_on_the_post_is_unavailable_and_may_have_landed(fake: FakeTime) -> None:
    mock = MockHalo(fake, httpx.Response(307, headers={"Location": "https://elsewhere.test/"}))
    async with client(mock) as halo:
        with pytest.raises(HaloUnavailable) as caught:
            await halo.submit([APPROVE])
    assert caught.value.maybe_applied and caught.value.status == 307
    assert halo.calls["POST ticketapproval"] == 1  # never sent twice


@pytest.mark.parametrize(("change", "why"), [
    ({"id": 502}, "answered with ticket 502 when asked for ticket 501"),
    ({"id": None}, "has no id"),
    ({"approvers": [{"emailaddress": "a@x.example", "actionnumber": 7}]},
     "approvers entry 1 has no seq"),
    ({"approvers": [{"seq": 1, "actionnumber": 7, "result": "approved"}]},
     "seq 1: result is 'approved', not a number"),
    ({"approvers": [{"seq": "1e400", "actionnumber": 7}]}, "seq is '1e400', not a number"),
    ({"approvers": {"seq": 1}}, "approvers is a JSON dict, not a list"),
])
async def test_a_ticket_that_cannot_be_trusted_is_unusable_with_the_reason(
    fake: FakeTime, change: dict[str, Any], why: str
) -> None:
    mock = MockHalo(fake, httpx.Response(200, json={**TICKET, **change}))
    async with client(mock) as halo:
        with pytest.raises(HaloUnusable, match=why):
            await halo.get_ticket(501)


async def test_post_records_that_cannot_be_trusted_mean_re_read(fake: FakeTime) -> None:
    records = [{"ticket_id": 501, "seq": 1, "actionnumber": 7, "result": "yes"}]
    async with client(MockHalo(fake, httpx.Response(200, json=records))) as halo:
        assert await halo.submit([APPROVE]) is None


async def test_submit_sends_one_array_and_reads_records_back(fake: FakeTime) -> None:
    records = [
        {"ticket_id": 501, "seq": 1, "actionnumber": 7, "result": 1, "emailaddress": "a@x.example"},
        {"ticket_id": 501, "seq": 2, "actionnumber": 7, "result": 2, "emailaddress": "b@x.example"},
    ]
    mock = MockHalo(fake, httpx.Response(200, json=records))
    reject = Submission(501, 2, 7, Result.REJECT, note="too dear")
    async with client(mock, note_field="approver_note") as halo:
        approvers = await halo.submit([APPROVE, reject])
    assert approvers is not None
    assert [(a.seq, a.result) for a in approvers] == [(1, 1), (2, 2)]
    (post,) = api_requests(mock)
    assert json.loads(post.content) == [
        {"ticket_id": 501, "seq": 1, "actionnumber": 7, "result": 1},
        {"ticket_id": 501, "seq": 2, "actionnumber": 7, "result": 2, "approver_note": "too dear"},
    ]


@pytest.mark.parametrize(
    "reply",
    [httpx.Response(200), httpx.Response(200, json={"ok": True}), httpx.Response(200, json=[{}])],
    ids=["empty", "object", "records-without-result"],
)
async def test_submit_without_usable_records_returns_none(fake: FakeTime, reply: Reply) -> None:
    async with client(MockHalo(fake, reply)) as halo:
        assert await halo.submit([APPROVE]) is None


async def test_submit_nothing_makes_no_call(fake: FakeTime) -> None:
    mock = MockHalo(fake)
    async with client(mock) as halo:
        assert await halo.submit([]) == []
    assert mock.seen == []


# -- the request budget ------------------------------------------------------------------


async def test_budget_waits_rather_than_exceed_the_window(fake: FakeTime) -> None:
    mock = MockHalo(fake)
    async with client(mock, requests_per_window=3, window_seconds=10) as halo:
        for _ in range(7):
            await halo.get_ticket(501)
    assert len(mock.seen) == 8  # token requests count against the budget too
    assert mock.api_times == [1000.0, 1000.0, 1010.0, 1010.0, 1010.0, 1020.0, 1020.0]
    times = [1000.0, *mock.api_times]
    assert all(later - first >= 10 for first, later in zip(times, times[3:], strict=False))


async def test_budget_serves_concurrent_waiters_in_order(fake: FakeTime) -> None:
    budget = RequestBudget(2, 5.0, sleep=fake.sleep, clock=fake.clock)
    order: list[tuple[int, float]] = []

    async def take(n: int) -> None:
        await budget.acquire()
        order.append((n, fake.now))

    await asyncio.gather(*(take(n) for n in range(5)))
    assert order == [(0, 1000.0), (1, 1000.0), (2, 1005.0), (3, 1005.0), (4, 1010.0)]


# -- secrets -----------------------------------------------------------------------------


async def test_no_secret_or_token_in_errors_or_logs(
    fake: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"denied for Bearer tok-1-abcdef with client_secret={SECRET}"
    mock = MockHalo(
        fake,
        httpx.Response(503, text=echo),
        httpx.ConnectError(f"failed {SECRET}"),
        httpx.Response(403, text=echo),
    )
    async with client(mock) as halo:
        with pytest.raises(HaloRejected) as caught:
            await halo.get_ticket(501)
    texts = [str(caught.value), repr(caught.value), caught.value.excerpt, caplog.text]
    assert "denied for" in caught.value.excerpt  # the excerpt is there, only redacted
    for text in texts:
        assert SECRET not in text
        assert "tok-1-abcdef" not in text


# -- over real HTTP, against the stand-in ----------------------------------------------


def real(
    halo: StandinHalo, sleep: Callable[[float], Awaitable[None]] | None = None, **kw: Any
) -> HaloClient:
    return HaloClient(halo.settings(**kw), sleep=sleep or asyncio.sleep, jitter=lambda: 1.0)


class Recorder:
    """Really sleeps (so the stand-in's clock moves on) and notes how long."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(seconds)


async def no_wait(seconds: float) -> None:
    return None


async def test_decision_round_trip(standin_halo: StandinHalo) -> None:  # noqa: F811
    async with real(standin_halo) as halo:
        ticket = await halo.get_ticket(501)
        assert ticket is not None
        alice = ticket.approver(1)
        assert alice is not None and alice.pending
        records = await halo.submit([Submission(502, 3, 9, Result.REJECT, note="no"), APPROVE])
        after = await halo.get_ticket(501)
    assert records is not None
    assert sorted((a.seq, a.result) for a in records) == [(1, 1), (3, 2)]
    assert after is not None
    assert after.approvers[0].result == 1
    assert standin_halo.approver(502, 3)["note"] == "no"
    assert standin_halo.count("POST", "/api/ticketapproval") == 1
    assert standin_halo.duplicate_decisions == 0
    assert halo.calls == {"token": 1, "GET ticket": 2, "POST ticketapproval": 1}


async def test_post_without_records_means_reread() -> None:
    with StandinHalo(post_returns_records=False) as standin:
        standin.add_ticket(7, "x", [{"emailaddress": "a@example.com", "seq": 1, "actionnumber": 2}])
        async with real(standin) as halo:
            assert await halo.submit([Submission(7, 1, 2, Result.APPROVE)]) is None
            ticket = await halo.get_ticket(7)
    assert ticket is not None and ticket.approvers[0].result == 1


async def test_unknown_ticket_over_http(standin_halo: StandinHalo) -> None:  # noqa: F811
    async with real(standin_halo) as halo:
        assert await halo.get_ticket(999) is None


async def test_expired_tokens_are_renewed_transparently(standin_halo: StandinHalo) -> None:  # noqa: F811
    async with real(standin_halo) as halo:
        await halo.get_ticket(501)
        standin_halo.faults.expire_tokens()
        assert await halo.get_ticket(501) is not None
    assert standin_halo.count("POST", "/auth/token") == 2
    assert [r.status for r in standin_halo.requests if r.path.startswith("/api/")] == [
        200,
        401,
        200,
    ]


async def test_tenant_goes_on_the_token_request(standin_halo: StandinHalo) -> None:  # noqa: F811
    async with real(standin_halo, tenant="acme") as halo:
        assert (await halo.check()).startswith("token ok")
    assert standin_halo.requests[0].query == {"tenant": "acme"}


async def test_wrong_secret_over_http(standin_halo: StandinHalo) -> None:  # noqa: F811
    async with real(standin_halo, client_secret="wrong-one") as halo:
        with pytest.raises(HaloAuthError, match="invalid_client") as caught:
            await halo.get_ticket(501)
    assert "wrong-one" not in str(caught.value)


async def test_real_timeout(standin_halo: StandinHalo) -> None:  # noqa: F811
    async with real(standin_halo, sleep=no_wait, timeout=0.1, max_retries=1) as halo:
        await halo.get_ticket(501)
        standin_halo.faults.latency = 0.4
        with pytest.raises(HaloUnavailable, match=r"no answer within 0\.1 s"):
            await halo.get_ticket(501)
    assert halo.calls["GET ticket"] == 3


async def test_refused_connection(standin_halo: StandinHalo) -> None:  # noqa: F811
    async with real(standin_halo, sleep=no_wait, max_retries=2) as halo:
        await halo.get_ticket(501)
        standin_halo.stop()
        with pytest.raises(HaloUnavailable) as caught:
            await halo.submit([APPROVE])
    assert not caught.value.maybe_applied  # never reached Halo
    assert halo.calls["POST ticketapproval"] == 3


async def test_dropped_post_is_not_resent(standin_halo: StandinHalo) -> None:  # noqa: F811
    async with real(standin_halo, sleep=no_wait) as halo:
        await halo.get_ticket(501)
        standin_halo.faults.drop_next(path_prefix="/api/ticketapproval")
        with pytest.raises(HaloUnavailable) as caught:
            await halo.submit([APPROVE])
    assert caught.value.maybe_applied
    assert standin_halo.count("POST", "/api/ticketapproval") == 1


async def test_real_400_applies_nothing(standin_halo: StandinHalo) -> None:  # noqa: F811
    wrong = Submission(501, 2, 8, Result.APPROVE)
    async with real(standin_halo) as halo:
        with pytest.raises(HaloRejected, match="actionnumber 8 does not match") as caught:
            await halo.submit([APPROVE, wrong])
    assert caught.value.status == 400
    assert standin_halo.approver(501, 1)["result"] is None


async def test_real_429_withretry_after(standin_halo: StandinHalo) -> None:  # noqa: F811
    sleep = Recorder()
    async with real(standin_halo, sleep=sleep) as halo:
        standin_halo.faults.rate_limit(2, 0.8, retry_after=0.9)
        await halo.get_ticket(501)  # the token and this read fill the window
        assert await halo.get_ticket(501) is not None
    assert sleep.sleeps == [0.9]
    assert [r.status for r in standin_halo.requests][-2:] == [429, 200]


async def test_real_429_withoutretry_after(standin_halo: StandinHalo) -> None:  # noqa: F811
    sleep = Recorder()
    async with real(standin_halo, sleep=sleep) as halo:
        halo._backoff_base = 0.2
        standin_halo.faults.rate_limit(2, 0.6)
        await halo.get_ticket(501)
        assert await halo.get_ticket(501) is not None
    assert sleep.sleeps[:1] == [0.2]
    assert standin_halo.requests[2].status == 429


async def test_own_budget_never_trips_halos_limit(standin_halo: StandinHalo) -> None:  # noqa: F811
    standin_halo.faults.rate_limit(5, 0.5)
    async with real(standin_halo, requests_per_window=5, window_seconds=0.8) as halo:
        for _ in range(8):
            await halo.get_ticket(501)
    assert {r.status for r in standin_halo.requests} == {200}
    assert len(standin_halo.requests) == 9


async def test_no_secret_or_token_leaks_over_http(
    standin_halo: StandinHalo,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    async with real(standin_halo, sleep=no_wait) as halo:
        standin_halo.faults.fail_next(503, path_prefix="/api/tickets")
        await halo.get_ticket(501)
        standin_halo.faults.expire_tokens()
        await halo.get_ticket(501)
        with pytest.raises(HaloRejected) as rejected:
            await halo.submit([Submission(501, 1, 99, Result.APPROVE)])
        standin_halo.faults.drop_next()
        with pytest.raises(HaloUnavailable) as dropped:
            await halo.submit([APPROVE])
        errors += [f"{e.value} {e.value!r}" for e in (rejected, dropped)]
    async with real(standin_halo, client_secret=CLIENT_SECRET + "x") as wrong:
        with pytest.raises(HaloAuthError) as caught:
            await wrong.check()
        errors.append(str(caught.value))
    assert len(errors) == 3
    assert standin_halo.issued_tokens
    for text in [*errors, caplog.text]:
        assert CLIENT_SECRET not in text
        for token in standin_halo.issued_tokens:
            assert token not in text


async def test_reads_leave_the_reserve_of_a_window_to_decisions(fake: FakeTime) -> None:
    budget = RequestBudget(4, 10.0, sleep=fake.sleep, clock=fake.clock, reserve=1)
    for _ in range(3):
        await budget.acquire()
    assert fake.now == 1000.0
    assert await budget.acquire(urgent=True) == 1000.0  # the decision goes at once
    await budget.acquire()  # a read waits for the window to move
    assert fake.now == 1010.0
