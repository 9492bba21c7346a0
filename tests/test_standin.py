"""The stand-in Halo over real HTTP: it must behave like the Halo facts in shared/halo."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from responder.halo.standin import StandinHalo
from tests.fixtures_halo import CLIENT_SECRET, standin_halo  # noqa: F401


@pytest.fixture
def http(standin_halo: StandinHalo) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=standin_halo.base_url, timeout=5) as client:
        yield client


def token(http: httpx.Client, secret: str = CLIENT_SECRET, **params: str) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": "test-client",
        "client_secret": secret,
        "scope": "all",
    }
    return http.post("/auth/token", data=form, params=params)


@pytest.fixture
def auth(http: httpx.Client) -> dict[str, str]:
    return {"Authorization": "Bearer " + token(http).json()["access_token"]}


def decision(ticket_id: int = 501, seq: int = 1, actionnumber: int = 7, result: int = 1) -> Any:
    return {"ticket_id": ticket_id, "seq": seq, "actionnumber": actionnumber, "result": result}


def test_token_for_client_credentials(http: httpx.Client, standin_halo: StandinHalo) -> None:  # noqa: F811
    reply = token(http, tenant="acme")
    assert reply.status_code == 200
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"] in standin_halo.issued_tokens
    assert body["refresh_token"]
    seen = standin_halo.requests[-1]
    assert seen.query == {"tenant": "acme"}
    assert seen.body["client_secret"] == "***"  # the record never keeps the secret


def test_wrong_secret_is_invalid_client(http: httpx.Client) -> None:
    reply = token(http, secret="nope")
    assert reply.status_code == 401
    assert reply.json() == {"error": "invalid_client"}


def test_api_needs_a_live_token(http: httpx.Client, auth: dict[str, str]) -> None:
    assert http.get("/api/tickets/501").status_code == 401
    assert (
        http.get("/api/tickets/501", headers={"Authorization": "Bearer forged"}).status_code == 401
    )
    assert http.get("/api/tickets/501", headers=auth).status_code == 200


def test_token_lifetime_runs_out() -> None:
    with StandinHalo(token_lifetime=0.2) as halo, httpx.Client(base_url=halo.base_url) as http:
        halo.add_ticket(1, "x", [{"emailaddress": "a@example.com", "seq": 1, "actionnumber": 1}])
        form = {"grant_type": "client_credentials", "client_id": "demo-client"}
        reply = http.post("/auth/token", data=form | {"client_secret": "demo-secret"})
        assert reply.json()["expires_in"] == 0  # rounded: clients must not cache it long
        headers = {"Authorization": "Bearer " + reply.json()["access_token"]}
        assert http.get("/api/tickets/1", headers=headers).status_code == 200
        time.sleep(0.3)
        assert http.get("/api/tickets/1", headers=headers).status_code == 401


def test_ticket_json_has_the_approvers(http: httpx.Client, auth: dict[str, str]) -> None:
    reply = http.get("/API/Tickets/501/", headers=auth)  # paths match case-insensitively
    assert reply.status_code == 200
    ticket = reply.json()
    assert ticket["id"] == 501
    assert ticket["summary"] == "New laptop for Dana"
    assert ticket["approval_status"] == 0
    alice = ticket["approvers"][0]
    assert alice["emailaddress"] == "alice@example.com"
    assert (alice["seq"], alice["actionnumber"], alice["result"]) == (1, 7, None)
    assert isinstance(alice["user_id"], int)
    assert {"dateapproved", "note", "approver_note", "token", "step_id"} <= alice.keys()


def test_unknown_ticket_is_404(http: httpx.Client, auth: dict[str, str]) -> None:
    assert http.get("/api/tickets/999", headers=auth).status_code == 404


def test_post_applies_an_array_and_returns_records(
    http: httpx.Client,
    auth: dict[str, str],
    standin_halo: StandinHalo,  # noqa: F811
) -> None:
    body = [decision() | {"note": "fine by me"}, decision(502, 3, 9, 2)]
    reply = http.post("/api/TicketApproval", json=body, headers=auth)
    assert reply.status_code == 200
    assert [(r["ticket_id"], r["seq"], r["result"]) for r in reply.json()] == [
        (501, 1, 1),
        (502, 3, 2),
    ]
    alice = standin_halo.approver(501, 1)
    assert alice["result"] == 1
    assert alice["note"] == "fine by me"
    assert alice["dateapproved"]
    assert standin_halo.approver(501, 2)["result"] is None
    assert standin_halo.ticket(502)["approval_status"] == 2
    assert standin_halo.count("post", "/api/ticketapproval") == 1


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (decision(ticket_id=999), "ticket 999 not found"),
        (decision(seq=5), "no approval with seq 5"),
        (decision(actionnumber=8), "actionnumber 8 does not match"),
        (decision(result=3), "result 3 is not"),
        ({"ticket_id": 501, "seq": 1}, "actionnumber is missing"),
    ],
)
def test_post_is_all_or_nothing(
    http: httpx.Client,
    auth: dict[str, str],
    standin_halo: StandinHalo,  # noqa: F811
    item: Any,
    message: str,
) -> None:
    reply = http.post("/api/ticketapproval", json=[decision(502, 3, 9), item], headers=auth)
    assert reply.status_code == 400
    assert message in reply.text
    assert "item 1" in reply.text
    assert standin_halo.approver(502, 3)["result"] is None  # the valid first item was not applied
    assert standin_halo.decisions == []


def test_post_must_be_an_array(http: httpx.Client, auth: dict[str, str]) -> None:
    reply = http.post("/api/ticketapproval", json=decision(), headers=auth)
    assert reply.status_code == 400
    assert "array" in reply.text


def test_second_decision_is_ignored_and_counted(
    http: httpx.Client,
    auth: dict[str, str],
    standin_halo: StandinHalo,  # noqa: F811
) -> None:
    http.post("/api/ticketapproval", json=[decision(result=1)], headers=auth)
    assert standin_halo.duplicate_decisions == 0
    reply = http.post("/api/ticketapproval", json=[decision(result=2)], headers=auth)
    assert reply.status_code == 200
    assert standin_halo.approver(501, 1)["result"] == 1  # first decision stands
    assert standin_halo.duplicate_decisions == 1


def test_post_without_records_answers_an_empty_200() -> None:
    with (
        StandinHalo(post_returns_records=False) as halo,
        httpx.Client(base_url=halo.base_url) as http,
    ):
        halo.add_ticket(1, "x", [{"emailaddress": "a@example.com", "seq": 1, "actionnumber": 2}])
        form = {"grant_type": "client_credentials", "client_id": "demo-client"}
        access = http.post("/auth/token", data=form | {"client_secret": "demo-secret"}).json()
        headers = {"Authorization": "Bearer " + access["access_token"]}
        reply = http.post("/api/ticketapproval", json=[decision(1, 1, 2)], headers=headers)
        assert reply.status_code == 200
        assert reply.content == b""
        assert halo.approver(1, 1)["result"] == 1


def test_list_approvals_by_ticket(http: httpx.Client, auth: dict[str, str]) -> None:
    reply = http.get("/api/TicketApproval", params={"ticket_id": 501}, headers=auth)
    assert [(e["ticket_id"], e["seq"]) for e in reply.json()] == [(501, 1), (501, 2)]


def test_fail_next_hits_only_the_given_path(
    http: httpx.Client,
    auth: dict[str, str],
    standin_halo: StandinHalo,  # noqa: F811
) -> None:
    standin_halo.faults.fail_next(503, times=2, path_prefix="/api/tickets")
    assert http.get("/api/ticketapproval", headers=auth).status_code == 200
    assert http.get("/api/tickets/501", headers=auth).status_code == 503
    assert http.get("/api/tickets/501", headers=auth).status_code == 503
    assert http.get("/api/tickets/501", headers=auth).status_code == 200


def test_rate_limit_answers_429_with_halos_text(
    http: httpx.Client,
    auth: dict[str, str],
    standin_halo: StandinHalo,  # noqa: F811
) -> None:
    standin_halo.faults.rate_limit(300, 300)
    standin_halo.faults._admitted.extend([time.monotonic()] * 300)  # a window already full
    reply = http.get("/api/tickets/501", headers=auth)
    assert reply.status_code == 429
    assert reply.text == "Rate Limit Reached - 300 Requests per rolling 5 minute window"
    assert "Retry-After" not in reply.headers


def test_rate_limit_window_rolls_and_can_send_retry_after(
    http: httpx.Client,
    auth: dict[str, str],
    standin_halo: StandinHalo,  # noqa: F811
) -> None:
    standin_halo.faults.rate_limit(2, 0.6, retry_after=1)
    statuses = [http.get("/api/tickets/501", headers=auth).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert http.get("/api/tickets/501", headers=auth).headers["Retry-After"] == "1"
    time.sleep(0.65)
    assert http.get("/api/tickets/501", headers=auth).status_code == 200


def test_drop_next_closes_without_an_answer(
    http: httpx.Client,
    auth: dict[str, str],
    standin_halo: StandinHalo,  # noqa: F811
) -> None:
    standin_halo.faults.drop_next()
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/api/ticketapproval", json=[decision()], headers=auth)
    assert standin_halo.requests[-1].status == 0
    assert standin_halo.approver(501, 1)["result"] is None
    assert http.get("/api/tickets/501", headers=auth).status_code == 200


def test_expire_tokens_makes_old_tokens_401(
    http: httpx.Client,
    auth: dict[str, str],
    standin_halo: StandinHalo,  # noqa: F811
) -> None:
    standin_halo.faults.expire_tokens()
    assert http.get("/api/tickets/501", headers=auth).status_code == 401
    fresh = {"Authorization": "Bearer " + token(http).json()["access_token"]}
    assert http.get("/api/tickets/501", headers=fresh).status_code == 200


def test_latency_is_real(
    http: httpx.Client,
    auth: dict[str, str],
    standin_halo: StandinHalo,  # noqa: F811
) -> None:
    standin_halo.faults.latency = 0.5
    with pytest.raises(httpx.ReadTimeout):
        http.get("/api/tickets/501", headers=auth, timeout=0.1)


def test_error_rate_is_seeded_and_replayable() -> None:
    def run() -> list[int]:
        with StandinHalo(seed=7) as halo, httpx.Client(base_url=halo.base_url) as http:
            halo.faults.error_rate = 0.5
            return [http.get("/api/authinfo").status_code for _ in range(20)]

    first = run()
    assert set(first) == {200, 500}
    assert run() == first


def test_stop_refuses_connections_even_on_a_kept_alive_connection() -> None:
    halo = StandinHalo().start()
    with httpx.Client(base_url=halo.base_url, timeout=2) as http:
        assert http.get("/api/authinfo").status_code == 200  # opens a keep-alive connection
        halo.stop()
        with pytest.raises(httpx.TransportError):
            http.get("/api/authinfo")
        with pytest.raises(httpx.ConnectError):
            http.get("/api/authinfo")
    halo.stop()  # idempotent


def test_add_ticket_needs_seq_and_actionnumber(standin_halo: StandinHalo) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="actionnumber"):
        standin_halo.add_ticket(9, "x", [{"emailaddress": "a@example.com", "seq": 1}])


# -- behaviours where Halo is unconfirmed ------------------------------------------------------


def signed_in(halo: StandinHalo, http: httpx.Client, **params: str) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_id": halo.client_id,
            "client_secret": halo.client_secret, "scope": params.pop("scope", "all")}
    reply = http.post("/auth/token", data=form, params=params)
    assert reply.status_code == 200, reply.text
    return {"Authorization": "Bearer " + reply.json()["access_token"]}


@pytest.fixture
def strict() -> Iterator[tuple[StandinHalo, httpx.Client]]:
    with StandinHalo(behaviour="strict") as halo, httpx.Client(base_url=halo.base_url) as http:
        halo.add_ticket(7, "x", [
            {"emailaddress": "a@example.com", "seq": 1, "actionnumber": 2, "step_id": 1},
            {"emailaddress": "b@example.com", "seq": 2, "actionnumber": 2, "step_id": 1},
            {"emailaddress": "c@example.com", "seq": 3, "actionnumber": 2, "step_id": 2},
        ])
        yield halo, http


def test_post_answers_as_the_behaviour_says() -> None:
    for answer, body in (("records", b"["), ("empty", b""), ("object", b"{}")):
        with StandinHalo(behaviour=f"post-{answer}" if answer != "records" else "default") \
                as halo, httpx.Client(base_url=halo.base_url) as http:
            halo.add_ticket(1, "x", [{"emailaddress": "a@x.com", "seq": 1, "actionnumber": 2}])
            reply = http.post("/api/ticketapproval", json=[decision(1, 1, 2)],
                              headers=signed_in(halo, http))
            assert reply.status_code == 200 and reply.content.startswith(body)


def test_strict_halo_applies_part_of_a_batch_then_refuses(
    strict: tuple[StandinHalo, httpx.Client],
) -> None:
    halo, http = strict
    auth = signed_in(halo, http, tenant="standin")
    reply = http.post("/api/ticketapproval", json=[decision(7, 1, 2), decision(7, 2, 2)],
                      headers=auth)
    assert reply.status_code == 400
    assert halo.approver(7, 1)["result"] == 1 and halo.approver(7, 2)["result"] is None


def test_strict_halo_moves_decided_entries_and_refuses_them_again(
    strict: tuple[StandinHalo, httpx.Client],
) -> None:
    halo, http = strict
    auth = signed_in(halo, http)
    assert http.post("/api/ticketapproval", json=[decision(7, 1, 2)], headers=auth).content == b""
    ticket = http.get("/api/tickets/7", headers=auth).json()
    assert [e["seq"] for e in ticket["approvers"]] == [2, 3]
    assert [e["seq"] for e in ticket["approvers_history"]] == [1]
    again = http.post("/api/ticketapproval", json=[decision(7, 1, 2, result=2)], headers=auth)
    assert again.status_code == 400 and "already been decided" in again.text


def test_strict_halo_refuses_a_later_step_until_the_current_one_is_done(
    strict: tuple[StandinHalo, httpx.Client],
) -> None:
    halo, http = strict
    auth = signed_in(halo, http)
    assert http.get("/api/tickets/7", headers=auth).json()["approval_process_step"] == 1
    early = http.post("/api/ticketapproval", json=[decision(7, 3, 2)], headers=auth)
    assert early.status_code == 400 and "not step 1" in early.text
    for seq in (1, 2):
        http.post("/api/ticketapproval", json=[decision(7, seq, 2)], headers=auth)
    assert http.get("/api/tickets/7", headers=auth).json()["approval_process_step"] == 2
    assert http.post("/api/ticketapproval", json=[decision(7, 3, 2)],
                     headers=auth).status_code == 200


def test_scope_tenant_and_forbidden_tickets_are_enforced() -> None:
    with StandinHalo(behaviour="scoped") as halo, httpx.Client(base_url=halo.base_url) as http:
        halo.add_ticket(7, "x", [{"emailaddress": "a@x.com", "seq": 1, "actionnumber": 2}])
        halo.add_ticket(8, "y", [{"emailaddress": "a@x.com", "seq": 1, "actionnumber": 2}])
        form = {"grant_type": "client_credentials", "client_id": halo.client_id,
                "client_secret": halo.client_secret}
        assert http.post("/auth/token", data=form).status_code == 400  # no tenant
        reader = signed_in(halo, http, tenant="standin", scope="read:tickets")
        assert http.get("/api/tickets/7", headers=reader).status_code == 200
        assert http.post("/api/ticketapproval", json=[decision(7, 1, 2)],
                         headers=reader).status_code == 403
        halo.behaviour.forbidden = frozenset({8})
        editor = signed_in(halo, http, tenant="standin", scope="edit:tickets")
        assert http.get("/api/tickets/8", headers=editor).status_code == 403
        assert http.post("/api/ticketapproval", json=[decision(8, 1, 2)],
                         headers=editor).status_code == 400
        assert http.post("/api/ticketapproval", json=[decision(7, 1, 2)],
                         headers=editor).status_code == 200
