"""Signing requests as the venue checks them (docs/signing.md).

REST requests and the WebSocket logon sign `{ts}\\n{nonce}\\n{method}\\n{target}\\n{body}`;
a FIX Logon signs `A␁{SenderCompID}␁{TargetCompID}␁{MsgSeqNum}␁{SendingTime}`.
The signature is base64: Ed25519 over those bytes, or their HMAC-SHA256.
"""

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from nacl.signing import SigningKey


@dataclass(frozen=True)
class Credentials:
    """An API key: its id, its type (`ed25519` or `hmac-sha256`) and its secret
    (the Ed25519 seed or the HMAC secret, raw bytes)."""

    key: str
    type: str
    secret: bytes

    @classmethod
    def from_entry(cls, entry: dict) -> "Credentials":
        """From one object of `demo-credentials.json` or `flowgate keys create`."""
        return cls(entry.get("key") or entry["key_id"], entry["type"],
                   base64.b64decode(entry["secret"]))  # fmt: skip

    def sign(self, payload: bytes) -> str:
        if self.type == "ed25519":
            raw = SigningKey(self.secret).sign(payload).signature
        elif self.type == "hmac-sha256":
            raw = hmac.new(self.secret, payload, hashlib.sha256).digest()
        else:
            raise ValueError(f"unknown key type {self.type!r}")
        return base64.b64encode(raw).decode()


def canonical(ts: int, nonce: str, method: str, target: str, body: bytes) -> bytes:
    return f"{ts}\n{nonce}\n{method}\n{target}\n".encode() + body


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def rest_headers(credentials: Credentials, method: str, target: str, body: bytes = b"",
                 ts: int | None = None, nonce: str | None = None,
                 window_ms: int | None = None) -> dict[str, str]:  # fmt: skip
    """The FG-* headers of a signed REST request. `target` is the path with its
    query string exactly as it will be sent."""
    ts = _now_ms() if ts is None else ts
    nonce = secrets.token_hex(8) if nonce is None else nonce
    headers = {
        "FG-KEY": credentials.key, "FG-TS": str(ts), "FG-NONCE": nonce,
        "FG-SIGN": credentials.sign(canonical(ts, nonce, method.upper(), target, body)),
    }  # fmt: skip
    if window_ms is not None:
        headers["FG-WINDOW"] = str(window_ms)
    return headers


def ws_logon_params(credentials: Credentials, ts: int | None = None,
                    nonce: str | None = None) -> dict:  # fmt: skip
    """The `params` of a WebSocket `session.logon`."""
    ts = _now_ms() if ts is None else ts
    nonce = secrets.token_hex(8) if nonce is None else nonce
    signature = credentials.sign(canonical(ts, nonce, "WS", "/v1/ws", b""))
    return {"key": credentials.key, "ts": ts, "nonce": nonce, "sig": signature}


def fix_logon_raw_data(credentials: Credentials, sender_comp_id: str, target_comp_id: str,
                       msg_seq_num: int, sending_time: str) -> str:  # fmt: skip
    """RawData(96) of a FIX Logon (Ed25519 keys only); Username(553) is the key id."""
    if credentials.type != "ed25519":
        raise ValueError("FIX logons are signed with Ed25519 keys")
    payload = "\x01".join(["A", sender_comp_id, target_comp_id, str(msg_seq_num), sending_time])
    return credentials.sign(payload.encode())
