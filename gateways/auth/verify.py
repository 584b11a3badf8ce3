"""Signature verification, as API.md specifies it.

REST requests and the WebSocket logon sign `{ts}\\n{nonce}\\n{method}\\n{target}\\n{body}`
(UTF-8); a FIX Logon signs `A␁{SenderCompID}␁{TargetCompID}␁{MsgSeqNum}␁{SendingTime}`.
The signature is base64: Ed25519 over those bytes, or their HMAC-SHA256.
"""

import base64
import binascii
import hashlib
import heapq
import hmac
import time

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from engine.config import LimitsConfig
from gateways.auth.errors import AuthError
from gateways.auth.keys import ApiKey, KeyStore
from gateways.auth.limits import Decision, Guard, RateLimiter, refuse

REPLAY_SLICE_BITS = 26  # signatures are forgotten a slice (67 ms) at a time


def canonical(ts: int | str, nonce: str, method: str, target: str, body: bytes) -> bytes:
    """What REST requests and the WebSocket logon sign."""
    return f"{ts}\n{nonce}\n{method}\n{target}\n".encode() + body


def fix_logon_payload(sender_comp_id: str, target_comp_id: str, msg_seq_num: int | str,
                      sending_time: str) -> bytes:  # fmt: skip
    """What a FIX Logon signs (fields as sent, joined by SOH)."""
    return "\x01".join(
        ["A", sender_comp_id, target_comp_id, str(msg_seq_num), sending_time]
    ).encode()


def sign(key_type: str, secret: bytes, payload: bytes) -> str:
    """A client's signature (tools, tests and the test vectors)."""
    from nacl.signing import SigningKey

    if key_type == "ed25519":
        raw = SigningKey(secret).sign(payload).signature
    else:
        raw = hmac.new(secret, payload, hashlib.sha256).digest()
    return base64.b64encode(raw).decode()


class Principal(msgspec.Struct, frozen=True):
    """Who a verified request speaks for."""

    key_id: str
    account: int
    permissions: tuple[str, ...]
    deadline_ns: int  # wall clock: the engine must take the command by then
    rate: Decision | None = None  # the key's request budget after this request


class _Verifier:
    __slots__ = ("key", "ed25519", "keyed")

    def __init__(self, key: ApiKey):
        self.key = key
        self.ed25519 = VerifyKey(key.material) if key.type == "ed25519" else None
        # HMAC with the key already absorbed: each request copies this state
        # rather than setting the key up again
        self.keyed = None if self.ed25519 else hmac.new(key.material, digestmod=hashlib.sha256)

    def verify(self, payload: bytes, signature: bytes) -> bool:
        if self.ed25519 is not None:
            try:
                self.ed25519.verify(payload, signature)
                return True
            except (BadSignatureError, ValueError):  # (ValueError: not 64 bytes)
                return False
        mac = self.keyed.copy()
        mac.update(payload)
        return hmac.compare_digest(mac.digest(), signature)


class Authenticator:
    """Checks signed requests against the key store, with the timestamp window,
    replay protection, IP allowlists, permissions, rate limits and bans.

    `refresh` reloads the keys when the store changed (a running server calls
    it twice a second) and reports revoked or expired keys to the `on_revoked`
    hooks, so gateways close their sessions."""

    def __init__(self, store: KeyStore, limits: LimitsConfig | None = None,
                 wall_clock=time.time_ns, monotonic=time.monotonic_ns):  # fmt: skip
        self.store = store
        self.limits = limits = limits or LimitsConfig()
        self.wall_clock = wall_clock
        self.guard = Guard(limits, monotonic)
        self.limiter = RateLimiter(limits, monotonic)
        self.on_revoked: list = []
        self.verifiers: dict[str, _Verifier] = {}
        self.revision = -1
        # (key, ts, nonce) seen, filed by the slice of time from which no window
        # admits them; a heap of those slices, oldest first
        self.seen: set[tuple] = set()
        self.seen_until: dict[int, list[tuple]] = {}
        self.seen_slices: list[int] = []
        self.refresh()

    def refresh(self) -> list[str]:
        """Reload keys if the store changed; return keys no longer usable."""
        now_ms = self.wall_clock() // 1_000_000
        gone = [k for k, v in self.verifiers.items() if not v.key.usable_at(now_ms)]
        revision = self.store.revision()
        if revision != self.revision:
            self.revision = revision
            fresh = {k.key_id: _Verifier(k) for k in self.store.all() if k.usable_at(now_ms)}
            gone += [k for k in self.verifiers if k not in fresh and k not in gone]
            self.verifiers = fresh
        else:
            for key_id in gone:
                del self.verifiers[key_id]
        for key_id in gone:
            for hook in self.on_revoked:
                hook(key_id)
        return gone

    def verify(self, key_id: str, ts_ms: int, nonce: str, signature: str, payload: bytes,
               ip: str, permission: str | None, window_ms: int | None = None,
               throttle: bool = True, ed25519_only: bool = False) -> Principal:  # fmt: skip
        """Check one signed request (or logon); raise AuthError with a stable code.

        `payload` is what was signed (`canonical` or `fix_logon_payload`), and
        (key, ts, nonce) is its replay key. `permission` None: a session logon,
        whose requests are checked one by one afterwards. `throttle` False (a
        cancel): spends the key's budget if there is any, never refuses.
        `ed25519_only`: an HMAC key is refused (FIX logs on with Ed25519 keys).
        """
        self.guard.check_ip(ip)
        received_ns = self.wall_clock()
        window = self.limits.window_default_ms if window_ms is None else window_ms
        if not 1 <= window <= self.limits.window_max_ms:
            raise AuthError("INVALID_WINDOW", f"the window is 1..{self.limits.window_max_ms} ms",
                            window_ms=window)  # fmt: skip
        verifier = self.verifiers.get(key_id)
        if verifier is None:
            self.guard.failed(ip)
            raise AuthError("UNAUTHENTICATED", "unknown, revoked or expired key")
        key = verifier.key
        if not key.usable_at(received_ns // 1_000_000):
            self.guard.failed(ip)
            raise AuthError("UNAUTHENTICATED", "unknown, revoked or expired key")
        if not key.allows_ip(ip):
            raise AuthError("FORBIDDEN", "this key may not be used from this address", ip=ip)
        if abs(received_ns // 1_000_000 - ts_ms) > window:
            raise AuthError("TIMESTAMP_OUT_OF_WINDOW", "the signed timestamp is outside the "
                            "window: check the client's clock", server_time_ms=received_ns //
                            1_000_000, client_ts_ms=ts_ms, window_ms=window)  # fmt: skip
        try:
            raw = binascii.a2b_base64(signature, strict_mode=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not verifier.verify(payload, raw):
            self.guard.failed(ip)
            raise AuthError("UNAUTHENTICATED", "the signature does not match")
        if ed25519_only and verifier.ed25519 is None:  # (told only to whoever holds the key)
            raise AuthError("UNAUTHENTICATED", "this protocol takes Ed25519 keys only")
        replay_key = (key_id, ts_ms, nonce)
        if self.seen_slices and self.seen_slices[0] < received_ns >> REPLAY_SLICE_BITS:
            self._forget_expired(received_ns)
        if replay_key in self.seen:
            self.guard.failed(ip)
            raise AuthError("REPLAYED", "this signed request was seen before")
        rate = self.limiter.request(key_id, ip)  # a replay spends no budget
        if throttle:  # cancels pass even over the budget: nobody is kept from reducing risk
            refuse(rate, "this key")
        # FG-WINDOW is not signed: the signature is remembered as long as any
        # window could admit its timestamp, so a wider window replays nothing
        self._remember(replay_key, (ts_ms + self.limits.window_max_ms + 1) * 1_000_000)
        if permission is not None and permission not in key.permissions:
            raise AuthError("FORBIDDEN", f"this key lacks the {permission} permission",
                            limit=rate.limit, remaining=rate.remaining,
                            reset_ms=rate.reset_ms)  # fmt: skip
        return Principal(key_id, key.account, key.permissions, (ts_ms + window) * 1_000_000, rate)

    def _remember(self, replay_key: tuple, until_ns: int):
        """A signature is good once: it is remembered until its timestamp fails
        every window check (from `until_ns` on), and up to one slice of time
        longer, so memory is bounded by the widest window x the keys' rate
        limits."""
        self.seen.add(replay_key)
        slice_ = until_ns >> REPLAY_SLICE_BITS
        keys = self.seen_until.get(slice_)
        if keys is None:
            self.seen_until[slice_] = keys = []
            heapq.heappush(self.seen_slices, slice_)
        keys.append(replay_key)

    def _forget_expired(self, now_ns: int):
        """Forget the signatures of every slice of time wholly past."""
        now_slice = now_ns >> REPLAY_SLICE_BITS
        while self.seen_slices and self.seen_slices[0] < now_slice:
            self.seen.difference_update(self.seen_until.pop(heapq.heappop(self.seen_slices)))
