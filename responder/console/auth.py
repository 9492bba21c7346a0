"""Who may use the console: the password, sessions, CSRF tokens, sign-in throttling.

One admin password, kept as an argon2id hash in ``[web] password_hash``. Signing in
also asks for a name, so that the ledger records who released or retried a message.
Sessions live in memory (a restart signs everyone out) and end ``session_minutes``
after sign-in; each carries its own CSRF token, which every form posts back.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended costs

Clock = Callable[[], float]


def hash_password(password: str) -> str:
    """The argon2id hash for ``[web] password_hash``."""
    return _hasher.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    """Whether ``password`` is the one hashed; never raises for a wrong or odd input."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass
class Session:
    who: str  # the name given at sign-in, with the client address
    csrf: str
    expires: float


@dataclass
class Sessions:
    """Signed-in sessions by their cookie token; absolute expiry, a bounded number."""

    minutes: int
    clock: Clock = time.monotonic
    limit: int = 1000
    _by_token: dict[str, Session] = field(default_factory=dict)

    def start(self, who: str) -> str:
        while len(self._by_token) >= self.limit:  # the oldest go first
            del self._by_token[next(iter(self._by_token))]
        token = secrets.token_urlsafe(32)
        expires = self.clock() + self.minutes * 60
        self._by_token[token] = Session(who, secrets.token_urlsafe(32), expires)
        return token

    def get(self, token: str | None) -> Session | None:
        session = self._by_token.get(token or "")
        if session is not None and session.expires <= self.clock():
            del self._by_token[token or ""]
            return None
        return session

    def end(self, token: str | None) -> None:
        self._by_token.pop(token or "", None)


@dataclass
class Throttle:
    """Failed sign-ins: at most ``per_client`` per client and ``overall`` in ``window`` s.

    A guessing attacker is held to a handful of tries per quarter hour; argon2's cost
    bounds each try as well. Success clears the client's failures.
    """

    per_client: int = 5
    overall: int = 50
    window: float = 900.0
    clock: Clock = time.monotonic
    _failures: deque[tuple[float, str]] = field(default_factory=deque)

    def _prune(self) -> None:
        horizon = self.clock() - self.window
        while self._failures and self._failures[0][0] <= horizon:
            self._failures.popleft()

    def wait(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        self._prune()
        mine = [at for at, who in self._failures if who == client]
        if len(mine) >= self.per_client:
            return mine[-self.per_client] + self.window - self.clock()
        if len(self._failures) >= self.overall:
            return self._failures[-self.overall][0] + self.window - self.clock()
        return 0.0

    def failed(self, client: str) -> None:
        self._failures.append((self.clock(), client))

    def succeeded(self, client: str) -> None:
        self._failures = deque(f for f in self._failures if f[1] != client)
