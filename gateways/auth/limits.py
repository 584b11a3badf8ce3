"""Rate limits and abuse protection.

Token buckets with integer arithmetic (a token is 10^9 units, so a bucket
refills exactly at `rate` per second): per key, per IP for unauthenticated
traffic, and per account for new orders on every protocol alike. Cancels are
never throttled: an account over its order budget is cancel-only. Each check
returns what the gateways send back: limit, remaining, reset and retry-after.
"""

import collections
import time

import msgspec

from engine.config import LimitsConfig
from gateways.auth.errors import AuthError

UNIT = 1_000_000_000  # one token, in bucket units
MAX_BUCKETS = 100_000  # idle (full) buckets are dropped beyond this many


class Decision(msgspec.Struct, frozen=True):
    allowed: bool
    limit: int  # the burst
    remaining: int  # whole tokens left
    reset_ms: int  # until the bucket is full again
    retry_after_ms: int  # until one token is there (0 when allowed)


class TokenBucket:
    __slots__ = ("rate", "burst", "capacity", "level", "at_ns")

    def __init__(self, rate: int, burst: int, now_ns: int):
        self.rate, self.burst = rate, burst
        self.capacity = self.level = burst * UNIT
        self.at_ns = now_ns

    def spend(self, now_ns: int, cost: int = 1) -> bool:
        """Take cost tokens if they are there."""
        level = self.level
        if now_ns > self.at_ns:
            level = min(self.capacity, level + (now_ns - self.at_ns) * self.rate)
            self.at_ns = now_ns
        if level >= cost * UNIT:
            self.level = level - cost * UNIT
            return True
        self.level = level
        return False

    def take(self, now_ns: int, cost: int = 1) -> Decision:
        allowed = self.spend(now_ns, cost)
        per_ms = self.rate * 1_000_000
        return Decision(  # positional: allowed, limit, remaining, reset_ms, retry_after_ms
            allowed, self.burst, self.level // UNIT, -(-(self.capacity - self.level) // per_ms),
            0 if allowed else -(-(cost * UNIT - self.level) // per_ms),
        )  # fmt: skip

    def full(self, now_ns: int) -> bool:
        return self.level + max(0, now_ns - self.at_ns) * self.rate >= self.capacity


class RateLimiter:
    def __init__(self, config: LimitsConfig, clock=time.monotonic_ns):
        self.config = config
        self.clock = clock
        self.buckets: dict[tuple, TokenBucket] = {}  # ("key", key id) or ("ip", address)
        self.order_buckets: dict[int, TokenBucket] = {}  # per account (every order spends)

    def _bucket(self, key, rate: int, burst: int, now: int, buckets: dict | None = None
                ) -> TokenBucket:  # fmt: skip
        """The bucket under key in `buckets` (default: the keys' and addresses'),
        made full if there is none."""
        if buckets is None:
            buckets = self.buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= MAX_BUCKETS:
                for idle in [k for k, b in buckets.items() if b.full(now)]:
                    del buckets[idle]
            bucket = buckets[key] = TokenBucket(rate, burst, now)
        return bucket

    def _take(self, key: tuple, rate: int, burst: int) -> Decision:
        now = self.clock()
        return self._bucket(key, rate, burst, now).take(now)

    def _order_bucket(self, account: int, now: int) -> TokenBucket:
        c = self.config
        return self._bucket(account, c.order_rate, c.order_burst, now, self.order_buckets)

    def spend_order(self, account: int, orders: int = 1) -> Decision | None:
        """The hot path of `order` for answers without rate-limit headers:
        None when allowed (all the orders), else the refusal (of all)."""
        now = self.clock()
        bucket = self.order_buckets.get(account) or self._order_bucket(account, now)
        return None if bucket.spend(now, orders) else bucket.take(now, orders)

    def spend_ip(self, ip: str) -> Decision | None:
        """The hot path of an unsigned `request`: None when allowed, else the refusal."""
        c, now = self.config, self.clock()
        bucket = self._bucket(("ip", ip), c.ip_rate, c.ip_burst, now)
        return None if bucket.spend(now) else bucket.take(now)

    def request(self, key_id: str | None, ip: str) -> Decision:
        """One request: on the key's budget when signed, else on the IP's."""
        c = self.config
        if key_id is None:
            return self._take(("ip", ip), c.ip_rate, c.ip_burst)
        return self._take(("key", key_id), c.key_rate, c.key_burst)

    def order(self, account: int, cancel: bool) -> Decision:
        """A new order or amend spends the account's order budget; a cancel
        never does, and is never refused."""
        if cancel:
            return Decision(True, self.config.order_burst, -1, 0, 0)
        now = self.clock()
        return self._order_bucket(account, now).take(now)


def refuse(decision: Decision, what: str):
    """Raise RATE_LIMITED with the delays the gateways report."""
    if not decision.allowed:
        raise AuthError("RATE_LIMITED", f"{what} over its rate limit",
                        retry_after_ms=decision.retry_after_ms, limit=decision.limit,
                        remaining=decision.remaining, reset_ms=decision.reset_ms)  # fmt: skip


class Guard:
    """Per-IP connection caps, message size limits and temporary bans after
    repeated authentication failures."""

    def __init__(self, config: LimitsConfig, clock=time.monotonic_ns):
        self.config = config
        self.clock = clock
        self.failures: dict[str, collections.deque] = {}
        self.banned_until: dict[str, int] = {}
        self.connections: collections.Counter = collections.Counter()

    def check_ip(self, ip: str):
        until = self.banned_until.get(ip)
        if until is not None:
            now = self.clock()
            if now < until:
                raise AuthError("BANNED", "too many failed authentications from this address",
                                retry_after_ms=-(-(until - now) // 1_000_000))  # fmt: skip
            del self.banned_until[ip]

    def failed(self, ip: str):
        now = self.clock()
        window = self.config.ban_window_s * 1_000_000_000
        recent = self.failures.setdefault(ip, collections.deque())
        recent.append(now)
        while recent and recent[0] <= now - window:
            recent.popleft()
        if len(recent) >= self.config.ban_failures:
            self.banned_until[ip] = now + self.config.ban_s * 1_000_000_000
            del self.failures[ip]

    def connect(self, ip: str):
        self.check_ip(ip)
        if self.connections[ip] >= self.config.max_connections_per_ip:
            raise AuthError("TOO_MANY_CONNECTIONS", "connection limit for this address reached",
                            limit=self.config.max_connections_per_ip)  # fmt: skip
        self.connections[ip] += 1

    def disconnect(self, ip: str):
        self.connections[ip] -= 1
        if self.connections[ip] <= 0:
            del self.connections[ip]

    def check_size(self, size: int):
        if size > self.config.max_message_bytes:
            raise AuthError("MESSAGE_TOO_LARGE", f"messages are at most "
                            f"{self.config.max_message_bytes} bytes", size=size)  # fmt: skip
