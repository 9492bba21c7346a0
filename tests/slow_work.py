"""Stand-ins for the analysis, run in the worker process (sent there by name).

``crawl`` reads a message marked ``X-Test-Crawl`` the way a catastrophic regular
expression would: in C, holding the GIL, for far longer than any limit.
"""

from __future__ import annotations

import os
import re

from responder.config import ParsingSettings
from responder.reading.decision import Grammar
from responder.reading.message import Facts, analyse

MARK = b"X-Test-Crawl: yes"


def crawl(raw: bytes, parsing: ParsingSettings, grammar: Grammar) -> Facts:
    if MARK in raw:
        re.match(r"(?:x+)+y", "x" * 64)  # 2**64 ways to fail: never ends by itself
    return analyse(raw, parsing, grammar)


def die(raw: bytes, parsing: ParsingSettings, grammar: Grammar) -> Facts:
    if MARK in raw:
        os._exit(3)  # as if the reader crashed (or the kernel killed it)
    return analyse(raw, parsing, grammar)
