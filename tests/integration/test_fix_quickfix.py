"""Interop with a real FIX engine: a QuickFIX C++ initiator (Debian's
libquickfix-dev, built here with -std=c++14) logs on to the real server with
an Ed25519 signature computed in its toAdmin callback, then places, amends
and cancels an order, validating everything the venue sends against the
venue's published data dictionary (docs/FIX44-flowgate.xml)."""

import base64
import json
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "interop" / "fix_initiator.cpp"
DICTIONARY = Path(__file__).resolve().parents[2] / "docs" / "FIX44-flowgate.xml"


@pytest.fixture(scope="module")
def initiator(tmp_path_factory) -> Path:
    binary = tmp_path_factory.mktemp("quickfix") / "fix_initiator"
    subprocess.run(["g++", "-std=c++14", "-O1", "-w", "-o", str(binary), str(SOURCE),
                    "-lquickfix", "-lsodium", "-lpthread"], check=True)  # fmt: skip
    return binary


def test_a_quickfix_initiator_logs_on_places_amends_and_cancels(server, initiator, tmp_path):
    entries = json.loads((server.data_dir / "demo-credentials.json").read_text())
    key = next(e for e in entries if e["account"] == 2 and e["type"] == "ed25519")
    assert len(base64.b64decode(key["secret"])) == 32
    run = subprocess.run([str(initiator), "127.0.0.1", str(server.fix_port), "ACCOUNT2",
                          key["key"], key["secret"], str(tmp_path / "store"), str(DICTIONARY)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and lines[-1] == "done", run.stdout + run.stderr
    assert "logon" in lines and lines.index("logon") < 3
    reports = [dict(field.split("=", 1) for field in line.split()) for line in lines
               if line.startswith("35=8")]  # fmt: skip
    assert [(r["150"], r["39"], r["151"]) for r in reports] == [
        ("0", "0", "0.01"), ("5", "0", "0.005"), ("4", "4", "0")]  # fmt: skip
    # a replace keeps the order's ClOrdID; a cancel's report names the cancel request
    assert [r["11"] for r in reports] == ["qf-1", "qf-1", "qf-3"]
    assert all(r["37"] == reports[0]["37"] for r in reports)
