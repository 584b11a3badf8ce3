"""The authentication benchmark runs end to end (numbers belong to `make bench-auth`)."""

import json

from bench import auth


def test_auth_benchmark_writes_its_report(tmp_path, capsys):
    out = tmp_path / "auth.json"
    auth.main(["--requests", "200", "--output", str(out)])
    result = json.loads(out.read_text())
    assert result["ed25519_verify_us"] > 0 and result["hmac_verify_us"] > 0
    assert result["limiter_check_ns"] > 0
    assert "HMAC-SHA256" in capsys.readouterr().out
