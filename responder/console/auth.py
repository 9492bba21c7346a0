"""Who may use the console: the password, sessions, CSRF tokens, sign-in throttling.

One admin password, kept as an argon2id hash in ``[web] password_hash``. Signing in
also asks for a name, so that the ledger records who released or retried a message.
Sessions live in memory (a restart signs everyone out) and end ``session_minutes``
after sign-in; each carries its own CSRF token, which every form posts back.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict, deque
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

    def end_all(self) -> int:
        """Sign everyone out (the password changed); how many sessions there were."""
        count = len(self._by_token)
        self._by_token.clear()
        return count


def network(client: str) -> str:
    """The network a sign-in is counted against: the /24 of IPv4, the /64 of IPv6.

    One machine may have many addresses of its network (an IPv6 /64 is one home or one
    server), so counting by address would let it spread its guesses out.
    """
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client  # not an address (a test client, a Unix socket): itself
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    bits = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


@dataclass
class Throttle:
    """Sign-in attempts by network: one at a time, slowed down as failures pile up.

    An attempt counts as a failure from the moment it starts (before its password is
    checked), so guesses sent at once cannot slip past; while one attempt of a network
    is waiting or being checked, the network's others are refused. After ``free``
    failures in ``window`` seconds each attempt of that network first waits, 1 s, then
    2, 4... up to ``longest``: guessing is slow, and the right password still gets in,
    from any network, however many failures other networks have piled up (no one can
    lock the admins out). Success clears the network's failures.
    """

    free: int = 5
    longest: float = 30.0
    window: float = 900.0
    networks_kept: int = 10_000  # memory is bounded: the least recently seen go first
    clock: Clock = time.monotonic
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _busy: set[str] = field(default_factory=set)

    def delay(self, client: str) -> float:
        """Seconds the next attempt from ``client``'s network waits before its check."""
        over = len(self._recent(network(client))) - self.free
        return 0.0 if over < 0 else min(2.0**over, self.longest)

    def begin(self, client: str) -> float | None:
        """Start an attempt: its delay, counted as a failure until ``end``; None when
        another attempt of the network is under way (refuse this one)."""
        net = network(client)
        if net in self._busy:
            return None
        wait = self.delay(client)
        self._busy.add(net)
        self._recent(net).append(self.clock())
        self._failures.move_to_end(net)
        while len(self._failures) > self.networks_kept:
            self._failures.popitem(last=False)
        return wait

    def end(self, client: str, succeeded: bool) -> None:
        """The attempt is over: a success forgets the network's failures."""
        net = network(client)
        self._busy.discard(net)
        if succeeded:
            self._failures.pop(net, None)

    def _recent(self, net: str) -> deque[float]:
        failures = self._failures.setdefault(net, deque())
        horizon = self.clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        return failures
