"""One instance for the racing-processes test: a pass per config line read from stdin.

The test starts three of these, waits until each has imported everything, then writes
one line (a config as JSON) to all three at once, so their passes claim from the same
Maildir within milliseconds. Each answers with one line: the outcome of every message.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from responder.config import parse_settings
from responder.service import responder


async def one_pass(config: dict[str, Any]) -> list[dict[str, Any]]:
    async with responder(parse_settings(config)) as worker:
        result = await worker.run_once()
    return [r.as_json() for r in result.reports]


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(asyncio.run(one_pass(json.loads(line)))), flush=True)


if __name__ == "__main__":
    main()
