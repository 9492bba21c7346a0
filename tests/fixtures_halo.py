"""The ``standin_halo`` fixture: a running stand-in Halo with two tickets awaiting approval.

A plain module so conftest.py (or a test module) can import the fixture by name.

Ticket 501: alice (seq 1, actionnumber 7) and bob (seq 2, actionnumber 7), both pending.
Ticket 502: carol (seq 3, actionnumber 9), pending.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from responder.halo.standin import StandinHalo

CLIENT_SECRET = "s3cret-standin-value"


@pytest.fixture
def standin_halo() -> Iterator[StandinHalo]:
    with StandinHalo(client_id="test-client", client_secret=CLIENT_SECRET) as halo:
        halo.add_ticket(
            501,
            "New laptop for Dana",
            [
                {"emailaddress": "alice@example.com", "name": "Alice", "seq": 1, "actionnumber": 7},
                {"emailaddress": "bob@example.com", "name": "Bob", "seq": 2, "actionnumber": 7},
            ],
        )
        halo.add_ticket(
            502,
            "Firewall change",
            [{"emailaddress": "carol@example.com", "name": "Carol", "seq": 3, "actionnumber": 9}],
        )
        yield halo
