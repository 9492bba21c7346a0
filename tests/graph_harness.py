"""End-to-end harness for the [graph] mailbox: the stand-in Graph (HTTPS), the stand-in Halo.

Like ``tests.harness.Harness``, with Exchange Online reached through Microsoft Graph: mail
is delivered into the stand-in's mailbox, a pass of the real responder runs (MSAL for the
token, httpx for Graph), and the folders, sendMail answers and ledger are looked at.
"""

from __future__ import annotations

import email
import itertools
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from responder.config import Settings, parse_settings
from responder.halo.standin import StandinHalo
from responder.service import responder
from responder.worker import PassResult
from tests.harness import AUTHSERV, halo_posts, ledger_rows, with_overrides, write_toml
from tests.standin_graph import Recorded, StandinGraph

TENANT = "contoso.onmicrosoft.com"
_boxes = itertools.count(1)


@dataclass
class GraphHarness:
    graph: StandinGraph
    halo: StandinHalo
    state_dir: Path
    mailbox: str = ""
    client_id: str = ""
    secret: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mailbox = f"approvals{next(_boxes)}@contoso.com"
        self.graph.add_mailbox(self.mailbox)
        self.client_id, self.secret = self.graph.add_app([self.mailbox])

    @property
    def settings(self) -> Settings:
        return parse_settings(self.config())

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "halo": {"base_url": self.halo.base_url, "client_id": self.halo.client_id,
                     "client_secret": self.halo.client_secret},
            "graph": {"tenant_id": TENANT, "client_id": self.client_id,
                      "client_secret": self.secret, "mailbox": self.mailbox,
                      "authority": self.graph.url, "graph_url": self.graph.graph_url,
                      "poll_seconds": 0.2},
            "state": {"path": str(self.state_dir / f"{self.mailbox}.sqlite3")},
            "security": {"trusted_authserv_id": AUTHSERV},
        }
        return with_overrides(data, self.overrides)

    def write_config(self, path: Path) -> Path:
        return write_toml(self.config(), path)

    def deliver(self, raw: bytes) -> str:
        return self.graph.deliver(self.mailbox, raw)

    async def once(self, **options: Any) -> PassResult:
        async with responder(self.settings, **options) as worker:
            return await worker.run_once()

    def folder(self, name: str) -> list[bytes]:
        return self.graph.folder_messages(self.mailbox, name)

    def answers(self) -> list[Message]:
        return [email.message_from_bytes(raw) for raw in self.graph.sent(self.mailbox)]

    def ledger_rows(self) -> list[dict[str, Any]]:
        return ledger_rows(self.settings)

    def requests(self, method: str = "", contains: str = "") -> list[Recorded]:
        return self.graph.graph_requests(self.mailbox, method, contains)

    def posts(self) -> list[Any]:
        return halo_posts(self.halo)
