"""The Python SDK signs exactly the published test vectors."""

import base64
import json
from pathlib import Path

from flowgate_client import Credentials, fix_logon_raw_data, rest_headers, ws_logon_params

VECTORS = json.loads((Path(__file__).parents[2] / "docs" / "signing-vectors.json").read_text())


def test_the_sdk_reproduces_every_vector():
    for v in VECTORS:
        creds = Credentials("fgtest", v["key_type"], base64.b64decode(v["secret"]))
        if v["protocol"] == "rest":
            headers = rest_headers(creds, v["method"], v["target"], v["body"].encode(),
                                   ts=v["ts"], nonce=v["nonce"])  # fmt: skip
            assert headers == {"FG-KEY": "fgtest", "FG-TS": str(v["ts"]),
                               "FG-NONCE": v["nonce"], "FG-SIGN": v["signature"]}  # fmt: skip
        elif v["protocol"] == "ws":
            params = ws_logon_params(creds, ts=v["ts"], nonce=v["nonce"])
            assert params == {"key": "fgtest", "ts": v["ts"], "nonce": v["nonce"],
                              "sig": v["signature"]}  # fmt: skip
        else:
            fields = (v["sender_comp_id"], v["target_comp_id"], v["msg_seq_num"], v["sending_time"])
            assert fix_logon_raw_data(creds, *fields) == v["signature"]


def test_fresh_nonces_and_the_window_header():
    creds = Credentials("k", "hmac-sha256", b"s" * 32)
    first, second = (
        rest_headers(creds, "get", "/v1/balances"),
        rest_headers(creds, "GET", "/v1/balances"),
    )
    assert first["FG-NONCE"] != second["FG-NONCE"]
    assert rest_headers(creds, "GET", "/v1/time", window_ms=60_000)["FG-WINDOW"] == "60000"
    entry = {
        "account": 1,
        "key": "fgabc",
        "type": "ed25519",
        "secret": base64.b64encode(b"x" * 32).decode(),
    }
    assert Credentials.from_entry(entry) == Credentials("fgabc", "ed25519", b"x" * 32)
