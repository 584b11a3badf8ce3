"""docs/signing-vectors.json: current, correct by API.md's definition, and
accepted by the venue's verifier."""

import base64
import hashlib
import hmac
import json
from pathlib import Path

from nacl.signing import SigningKey, VerifyKey

from gateways.auth.keys import KeyStore
from gateways.auth.vectors import vectors
from gateways.auth.verify import Authenticator

FILE = Path(__file__).parents[2] / "docs" / "signing-vectors.json"


def expected_canonical(v: dict) -> str:
    """API.md, written out again independently of the code under test."""
    if v["protocol"] == "fix":
        return "\x01".join(["A", v["sender_comp_id"], v["target_comp_id"],
                            str(v["msg_seq_num"]), v["sending_time"]])  # fmt: skip
    return f"{v['ts']}\n{v['nonce']}\n{v['method']}\n{v['target']}\n{v['body']}"


def test_the_published_vectors_are_current():
    assert json.loads(FILE.read_text(encoding="utf-8")) == vectors()


def test_each_vector_signs_its_canonical_string():
    published = json.loads(FILE.read_text(encoding="utf-8"))
    assert {v["protocol"] for v in published} == {"rest", "ws", "fix"}
    assert {v["key_type"] for v in published} == {"ed25519", "hmac-sha256"}
    assert any(not v.get("body", "").isascii() for v in published)
    assert any("?" in v.get("target", "") for v in published)
    for v in published:
        assert v["canonical"] == expected_canonical(v)
        message = v["canonical"].encode("utf-8")
        signature = base64.b64decode(v["signature"])
        secret = base64.b64decode(v["secret"])
        if v["key_type"] == "ed25519":
            public = base64.b64decode(v["public_key"])
            assert bytes(SigningKey(secret).verify_key) == public
            VerifyKey(public).verify(message, signature)
        else:
            assert hmac.compare_digest(hmac.new(secret, message, hashlib.sha256).digest(),
                                       signature)  # fmt: skip


def test_the_venue_accepts_every_vector(tmp_path):
    store = KeyStore(tmp_path)
    for v in json.loads(FILE.read_text(encoding="utf-8")):
        secret = base64.b64decode(v["secret"])
        if v["key_type"] == "ed25519":
            key = store.add(1, base64.b64decode(v["public_key"]))
        else:
            key, _ = store.create(1, "hmac-sha256", secret=secret)
        ts = v.get("ts", 1_795_000_000_000)
        auth = Authenticator(store, wall_clock=lambda ts=ts: ts * 1_000_000)
        nonce = v.get("nonce", str(v.get("msg_seq_num")))
        principal = auth.verify(key.key_id, ts, nonce, v["signature"],
                                v["canonical"].encode(), "127.0.0.1", "trade")  # fmt: skip
        assert principal.account == 1
    store.close()
