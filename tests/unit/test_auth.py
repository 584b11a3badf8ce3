"""The security layer: every refusal has its exact code."""

import random

import pytest

from engine.config import LimitsConfig
from gateways.auth import AuthError, limits
from gateways.auth.keys import KeyStore
from gateways.auth.limits import Guard, RateLimiter
from gateways.auth.verify import Authenticator, canonical, fix_logon_payload, sign

NOW_MS = 1_795_000_000_000
IP = "127.0.0.1"


class Clock:
    def __init__(self):
        self.ns = NOW_MS * 1_000_000

    def __call__(self):
        return self.ns

    def advance_ms(self, ms):
        self.ns += ms * 1_000_000


@pytest.fixture
def venue(tmp_path):
    store = KeyStore(tmp_path)
    clock = Clock()
    auth = Authenticator(store, LimitsConfig(ban_failures=100), wall_clock=clock,
                         monotonic=clock)  # fmt: skip
    yield store, auth, clock
    store.close()


def keys(store, auth, **options):
    ed, ed_seed = store.create(1, "ed25519", **options)
    mac, mac_secret = store.create(1, "hmac-sha256", **options)
    auth.refresh()
    return [(ed, ed_seed), (mac, mac_secret)]


def request(auth, key, secret, ts=NOW_MS, nonce="n1", method="POST", target="/v1/orders",
            body=b'{"symbol":"BTC-USDT"}', permission="trade", ip=IP, window_ms=None,
            sent_body=None, sent_target=None):  # fmt: skip
    signature = sign(key.type, secret, canonical(ts, nonce, method, target, body))
    received = canonical(ts, nonce, method, sent_target or target,
                         body if sent_body is None else sent_body)  # fmt: skip
    return auth.verify(key.key_id, ts, nonce, signature, received, ip, permission, window_ms)


def code_of(call) -> str:
    with pytest.raises(AuthError) as caught:
        call()
    return caught.value.code


def test_good_signatures_of_both_key_types_on_every_protocol(venue):
    store, auth, _ = venue
    for key, secret in keys(store, auth):
        principal = request(auth, key, secret, nonce=f"rest-{key.type}")
        assert principal.account == 1 and principal.deadline_ns == (NOW_MS + 5000) * 1_000_000
        request(auth, key, secret, nonce=f"ws-{key.type}", method="WS", target="/v1/ws", body=b"")
    fix_key, seed = store.create(1, "ed25519")
    auth.refresh()
    payload = fix_logon_payload("MM1", "FLOWGATE", 1, "20261124-12:00:00.000")
    assert auth.verify(fix_key.key_id, NOW_MS, "1", sign("ed25519", seed, payload), payload, IP,
                       "trade").account == 1  # fmt: skip


def test_every_refusal_has_its_code(venue):
    store, auth, clock = venue
    (key, secret), (mac, mac_secret) = keys(store, auth)
    other, other_secret = store.create(2, "ed25519")
    auth.refresh()
    assert code_of(lambda: auth.verify("fgnope", NOW_MS, "x", "AAAA", b"", IP, "trade")) == (
        "UNAUTHENTICATED")  # fmt: skip
    # signed with another key's secret
    assert code_of(lambda: request(auth, key, other_secret)) == "UNAUTHENTICATED"
    assert code_of(lambda: request(auth, mac, b"x" * 32)) == "UNAUTHENTICATED"
    assert code_of(lambda: request(auth, key, secret, sent_body=b'{"symbol":"ETH-USDT"}')) == (
        "UNAUTHENTICATED")  # fmt: skip
    reordered = "/v1/orders?symbol=BTC-USDT&side=buy"
    assert code_of(lambda: request(auth, key, secret, target=reordered,
                                   sent_target="/v1/orders?side=buy&symbol=BTC-USDT")) == (
        "UNAUTHENTICATED")  # fmt: skip
    request(auth, key, secret, nonce="once")
    assert code_of(lambda: request(auth, key, secret, nonce="once")) == "REPLAYED"
    assert code_of(lambda: request(auth, key, secret, ts=NOW_MS - 5001)) == (
        "TIMESTAMP_OUT_OF_WINDOW")  # fmt: skip
    assert code_of(lambda: request(auth, key, secret, ts=NOW_MS + 5001)) == (
        "TIMESTAMP_OUT_OF_WINDOW")  # fmt: skip
    request(auth, key, secret, ts=NOW_MS - 30_000, window_ms=60_000, nonce="wide")
    assert code_of(lambda: request(auth, key, secret, window_ms=60_001)) == "INVALID_WINDOW"
    assert code_of(lambda: request(auth, key, secret, window_ms=0)) == "INVALID_WINDOW"
    reader, reader_secret = store.create(1, "hmac-sha256", permissions=("read",))
    auth.refresh()
    assert code_of(lambda: request(auth, reader, reader_secret)) == "FORBIDDEN"
    request(auth, reader, reader_secret, permission="read", nonce="read")


def test_a_signature_is_a_replay_to_the_end_of_the_widest_window_then_forgotten(venue):
    store, auth, clock = venue
    (key, secret), _ = keys(store, auth)
    request(auth, key, secret, nonce="edge")
    clock.ns = (NOW_MS + 5000) * 1_000_000 + 999_999  # the timestamp's last moment in the window
    assert code_of(lambda: request(auth, key, secret, nonce="edge")) == "REPLAYED"
    clock.advance_ms(1)
    assert code_of(lambda: request(auth, key, secret, nonce="edge")) == "TIMESTAMP_OUT_OF_WINDOW"
    # the window is not signed: the same request asking for a wider one is still a replay
    clock.ns = (NOW_MS + 60_000) * 1_000_000 + 999_999
    assert code_of(lambda: request(auth, key, secret, nonce="edge", window_ms=60_000)) == (
        "REPLAYED")  # fmt: skip
    clock.advance_ms(100)
    later = clock.ns // 1_000_000
    request(auth, key, secret, ts=later, nonce="later")
    assert auth.seen == {(key.key_id, later, "later")}  # what no window admits is let go


def test_the_timestamp_error_carries_both_clocks(venue):
    store, auth, _ = venue
    (key, secret), _ = keys(store, auth)
    with pytest.raises(AuthError) as caught:
        request(auth, key, secret, ts=NOW_MS - 9000)
    assert caught.value.details == {"server_time_ms": NOW_MS, "client_ts_ms": NOW_MS - 9000,
                                    "window_ms": 5000}  # fmt: skip


def test_expired_revoked_and_ip_restricted_keys(venue):
    store, auth, clock = venue
    expiring, seed = store.create(1, expires_ms=NOW_MS + 1000)
    local, local_seed = store.create(1, ip_allow=("10.0.0.0/8",))
    revoked, revoked_seed = store.create(1)
    closed = []
    auth.on_revoked.append(closed.append)
    auth.refresh()
    request(auth, expiring, seed, nonce="a")
    request(auth, local, local_seed, ip="10.1.2.3")
    assert code_of(lambda: request(auth, local, local_seed, nonce="b")) == "FORBIDDEN"
    store.revoke(revoked.key_id)
    assert auth.refresh() == [revoked.key_id] and closed == [revoked.key_id]
    assert code_of(lambda: request(auth, revoked, revoked_seed)) == "UNAUTHENTICATED"
    clock.advance_ms(1000)
    assert auth.refresh() == [expiring.key_id]
    assert code_of(lambda: request(auth, expiring, seed, ts=NOW_MS + 1000)) == "UNAUTHENTICATED"


def test_concurrent_clients_with_unordered_nonces_are_all_accepted(venue):
    store, auth, _ = venue
    clients = [store.create(1 + i % 3, random.Random(i).choice(["ed25519", "hmac-sha256"]))
               for i in range(10)]  # fmt: skip
    auth.refresh()
    rng = random.Random(7)
    requests = [(key, secret, NOW_MS - rng.randrange(4000), f"{rng.getrandbits(64):x}")
                for key, secret in clients for _ in range(20)]  # fmt: skip
    rng.shuffle(requests)  # arrivals interleave, timestamps and nonces in no order
    for key, secret, ts, nonce in requests:
        request(auth, key, secret, ts=ts, nonce=nonce)


def test_repeated_failures_ban_the_address_for_a_while(tmp_path):
    store, clock = KeyStore(tmp_path), Clock()
    limits = LimitsConfig(ban_failures=3, ban_window_s=60, ban_s=30)
    auth = Authenticator(store, limits, wall_clock=clock, monotonic=clock)
    (key, secret), _ = keys(store, auth)
    for _ in range(3):
        assert code_of(lambda: request(auth, key, b"\x00" * 32)) == "UNAUTHENTICATED"
    assert code_of(lambda: request(auth, key, secret)) == "BANNED"
    request(auth, key, secret, ip="127.0.0.2")  # others are not
    clock.advance_ms(30_000)
    request(auth, key, secret, ts=NOW_MS + 30_000, nonce="after")
    store.close()


def test_an_account_over_its_order_budget_can_still_cancel():
    limiter = RateLimiter(LimitsConfig(order_rate=10, order_burst=3), Clock())
    assert [limiter.order(1, cancel=False).allowed for _ in range(4)] == [True] * 3 + [False]
    refused = limiter.order(1, cancel=False)
    assert refused.retry_after_ms == 100 and refused.remaining == 0 and refused.limit == 3
    assert all(limiter.order(1, cancel=True).allowed for _ in range(100))
    assert limiter.order(2, cancel=False).allowed  # another account
    # the hot path spends from the same bucket
    assert [limiter.spend_order(3) for _ in range(3)] == [None] * 3
    assert limiter.spend_order(3).retry_after_ms == 100
    assert not limiter.order(3, cancel=False).allowed


def test_idle_budgets_are_dropped_beyond_the_cap_and_spent_ones_kept(monkeypatch):
    monkeypatch.setattr(limits, "MAX_BUCKETS", 2)
    clock = Clock()
    limiter = RateLimiter(LimitsConfig(order_rate=1, order_burst=2, ip_rate=1, ip_burst=2), clock)
    assert limiter.spend_order(1, 2) is None  # account 1 spends its whole burst
    assert limiter.spend_order(2) is None
    clock.advance_ms(1_000)  # account 2's bucket is full again, account 1's is not
    assert limiter.spend_order(3) is None  # over the cap: the idle bucket (2) goes
    assert sorted(limiter.order_buckets) == [1, 3]
    assert limiter.spend_order(1, 2) is not None  # account 1 kept its spent budget
    assert limiter.spend_ip("10.0.0.1") is None and limiter.spend_ip("10.0.0.2") is None
    clock.advance_ms(2_000)
    assert limiter.spend_ip("10.0.0.3") is None  # addresses are capped on their own
    assert sorted(limiter.buckets) == [("ip", "10.0.0.3")]
    assert sorted(limiter.order_buckets) == [1, 3]


def test_requests_over_the_key_budget_are_rate_limited(tmp_path):
    store, clock = KeyStore(tmp_path), Clock()
    auth = Authenticator(store, LimitsConfig(key_rate=5, key_burst=2), clock, clock)
    key, seed = store.create(1)
    auth.refresh()
    request(auth, key, seed, nonce="1")
    request(auth, key, seed, nonce="2")
    with pytest.raises(AuthError) as caught:
        request(auth, key, seed, nonce="3")
    assert caught.value.code == "RATE_LIMITED" and caught.value.details["retry_after_ms"] == 200
    clock.advance_ms(200)
    request(auth, key, seed, ts=NOW_MS + 200, nonce="3")
    store.close()


def test_connection_caps_and_message_sizes():
    guard = Guard(LimitsConfig(max_connections_per_ip=2, max_message_bytes=1024), Clock())
    guard.connect(IP)
    guard.connect(IP)
    with pytest.raises(AuthError) as caught:
        guard.connect(IP)
    assert caught.value.code == "TOO_MANY_CONNECTIONS" and caught.value.http_status == 429
    guard.connect("127.0.0.9")  # another address has its own cap
    guard.disconnect(IP)
    guard.connect(IP)
    guard.check_size(1024)
    assert code_of(lambda: guard.check_size(1025)) == "MESSAGE_TOO_LARGE"


def test_unauthenticated_traffic_is_limited_per_address():
    limiter = RateLimiter(LimitsConfig(ip_rate=1, ip_burst=2), Clock())
    assert [limiter.request(None, IP).allowed for _ in range(3)] == [True, True, False]
    assert limiter.request(None, "127.0.0.2").allowed
