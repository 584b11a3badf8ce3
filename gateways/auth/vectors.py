"""The signing test vectors of docs/signing-vectors.json (explained in
docs/signing.md), made from fixed keys so that anyone can regenerate and check
them:

    python -m gateways.auth.vectors > docs/signing-vectors.json
"""

import base64
import hashlib
import json
import sys

from nacl.signing import SigningKey

from gateways.auth.verify import canonical, fix_logon_payload, sign

# fixed, public test keys: never use them for anything else
ED25519_SEED = hashlib.sha256(b"flowgate test vector ed25519 key").digest()
HMAC_SECRET = hashlib.sha256(b"flowgate test vector hmac key").digest()

REQUESTS = [
    ("rest", "POST", "/v1/orders",
     '{"symbol":"BTC-USDT","side":"buy","type":"limit","price":"50000.5","qty":"0.001",'
     '"client_order_id":"vector-1"}'),
    ("rest", "GET", "/v1/orders?symbol=BTC-USDT&status=open", ""),
    ("rest", "DELETE", "/v1/orders?symbol=ETH-USDT&side=sell", ""),
    ("rest", "POST", "/v1/orders",
     '{"symbol":"BTC-USDT","side":"sell","type":"limit","price":"50001","qty":"0.002",'
     '"client_order_id":"note-€-ü-日本"}'),
    ("ws", "WS", "/v1/ws", ""),
]  # fmt: skip


def vectors() -> list[dict]:
    out = []
    public = base64.b64encode(bytes(SigningKey(ED25519_SEED).verify_key)).decode()
    for key_type, secret in (("ed25519", ED25519_SEED), ("hmac-sha256", HMAC_SECRET)):
        common = {"key_type": key_type, "secret": base64.b64encode(secret).decode()}
        if key_type == "ed25519":
            common["public_key"] = public
        for i, (protocol, method, target, body) in enumerate(REQUESTS):
            ts, nonce = 1_795_000_000_000 + i, f"nonce-{key_type}-{i}"
            payload = canonical(ts, nonce, method, target, body.encode())
            out.append({
                "protocol": protocol, **common, "ts": ts, "nonce": nonce, "method": method,
                "target": target, "body": body, "canonical": payload.decode(),
                "signature": sign(key_type, secret, payload),
            })  # fmt: skip
    fix = ("MM1", "FLOWGATE", 1, "20261124-12:00:00.000")
    payload = fix_logon_payload(*fix)
    out.append({
        "protocol": "fix", "key_type": "ed25519",
        "secret": base64.b64encode(ED25519_SEED).decode(), "public_key": public,
        "sender_comp_id": fix[0], "target_comp_id": fix[1], "msg_seq_num": fix[2],
        "sending_time": fix[3], "canonical": payload.decode(),
        "signature": sign("ed25519", ED25519_SEED, payload),
    })  # fmt: skip
    return out


if __name__ == "__main__":
    json.dump(vectors(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
