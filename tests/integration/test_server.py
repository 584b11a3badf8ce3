"""`flowgate serve` as a real process: the record port, clean shutdown,
restart, back-pressure, bad input, and refusing a damaged or foreign data dir."""

import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from nacl.signing import SigningKey

from engine import messages as m
from engine.records import COMMAND_DTYPE, command_record, decode_events
from ext.core import COMMAND_SIZE, FRAME_SIZE, EventType, Result
from gateways.auth.keys import KeyStore
from gateways.auth.verify import Authenticator, canonical, sign
from gateways.records import RecordClient
from tests.server import ServerProcess


def place(i: int, **fields) -> bytes:
    side = m.Side.BUY if i % 2 else m.Side.SELL
    return command_record(m.PlaceOrder(account=1 + i % 2, instrument=0, side=side,
                                       type=m.OrderType.LIMIT, price=5_000_000, qty=1,
                                       client_order_id=f"o{i}", **fields))  # fmt: skip


def replay_verify(data_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", "replay", "--data-dir",
                           str(data_dir), "--verify"], capture_output=True, text=True)  # fmt: skip


PLACEMENTS = pytest.mark.parametrize("placement", [(), ("--engine-process",)],
                                     ids=["one-thread", "engine-process"])  # fmt: skip


@PLACEMENTS
def test_orders_round_trip_and_a_restart_continues_the_sequence(tmp_path, placement):
    data = tmp_path / "venue"
    server = ServerProcess(data, *placement)
    client = RecordClient(server.record_port)
    events = client.request(b"".join(place(i) for i in range(4)))
    kinds = [type(e).__name__ for e in decode_events(events.tobytes())]
    assert kinds.count("OrderAccepted") == 4 and kinds.count("Trade") == 2
    assert events["seq"].max() == 4
    client.close()
    assert server.stop() == 0
    assert server.wait_for("stopped")["seq"] == 4
    assert (data / f"snapshot-{4:020d}.fgs").exists()

    result = replay_verify(data)
    assert result.returncode == 0, result.stderr
    assert "verified: 1 recorded state hashes match" in result.stderr

    again = ServerProcess(data, *placement)
    assert again.ready["seq"] == 4
    client = RecordClient(again.record_port)
    assert client.request(place(5))["seq"].tolist()[0] == 5
    # a retry of a known client order id answers with the order, not a new one
    (retry,) = [e for e in decode_events(client.request(place(1)).tobytes())]
    assert isinstance(retry, m.OrderState) and retry.client_order_id == "o1" and retry.seq == 6
    client.close()
    assert again.stop() == 0


@PLACEMENTS
def test_a_full_command_ring_answers_overloaded(tmp_path, placement):
    server = ServerProcess(tmp_path / "venue", "--command-ring-slots", "4", *placement)
    client = RecordClient(server.record_port)
    events = client.request(b"".join(place(i, post_only=True) for i in range(10)))
    rejected = events[events["type"] == EventType.EV_REJECTED]
    overloaded = rejected[rejected["result"] == Result.OVERLOADED]
    accepted = events[events["type"] == EventType.EV_ACCEPTED]
    assert len(accepted) + len(rejected) == 10 and len(overloaded) >= 6
    assert (overloaded["seq"] == 0).all()  # never sequenced, never journaled
    client.close()
    assert server.stop() == 0


@PLACEMENTS
def test_bad_records_and_abrupt_disconnects_leave_the_venue_serving(tmp_path, placement):
    server = ServerProcess(tmp_path / "venue", *placement)
    garbage = np.frombuffer((bytes(range(256)) * 2)[:COMMAND_SIZE], COMMAND_DTYPE).copy()
    garbage["type"] = 99
    client = RecordClient(server.record_port)
    (event,) = client.request(garbage.tobytes())
    assert event["type"] == EventType.EV_REJECTED and event["result"] == Result.INVALID_COMMAND
    # half a record, then the connection drops
    raw = socket.create_connection(("127.0.0.1", server.record_port))
    raw.sendall(place(0)[: COMMAND_SIZE // 2])
    raw.close()
    # a client that disconnects with commands in flight
    raw = socket.create_connection(("127.0.0.1", server.record_port))
    raw.sendall(b"".join(place(i) for i in range(50)))
    raw.close()
    assert len(client.request(place(2))) >= 1
    client.close()
    # connections reset as they open, on every port: closed quietly, nothing logged as failed
    for port in (server.rest_port, server.ws_port, server.fix_port):
        for _ in range(100):
            reset = socket.create_connection(("127.0.0.1", port))
            reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            reset.close()
    status, _ = http(server.rest_port, b"GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status == 200
    assert server.stop() == 0
    assert "Traceback" not in server.log_path.read_text()


@PLACEMENTS
def test_sigterm_under_load_answers_every_request_and_logs_no_failure(tmp_path, placement):
    """Requests keep coming while the venue shuts down: each is answered (done,
    or OVERLOADED once the engine has stopped: nothing was done), or its
    connection closes; nothing fails inside the venue."""
    from flowgate_client import FlowgateError, RestClient
    from tests.server import configured_venue, credentials

    unlimited = {"limits": {"order_rate": 10**6, "order_burst": 10**6, "key_rate": 10**6,
                            "key_burst": 10**6}}  # fmt: skip
    data = tmp_path / "venue"
    server = ServerProcess(data, *configured_venue(data, unlimited), *placement)
    rest = RestClient(f"http://127.0.0.1:{server.rest_port}", credentials(server, 2, "hmac-sha256"))
    outcomes, stop_at = [], time.monotonic() + 1.0
    signaled = False
    while time.monotonic() < stop_at + 5:
        if not signaled and time.monotonic() > stop_at:
            server.process.send_signal(signal.SIGTERM)
            signaled = True
        try:
            rest.place(
                symbol="BTC-USDT", side="buy", type="limit", price="49000", qty="0.001", tif="ioc"
            )  # (nothing to take: none stays open)
            outcomes.append("ok")
        except FlowgateError as e:
            outcomes.append(e.code)
        except OSError:
            break  # the venue closed the connection
    assert server.process.wait(30) == 0
    server.log.close()
    assert set(outcomes) <= {"ok", "OVERLOADED"} and "ok" in outcomes
    log = server.log_path.read_text()
    assert "Traceback" not in log and "request failed" not in log


def test_a_foreign_or_damaged_data_dir_refuses_to_start(tmp_path):
    data = tmp_path / "venue"
    server = ServerProcess(data)
    client = RecordClient(server.record_port)
    client.request(b"".join(place(i) for i in range(6)))
    client.close()
    server.kill()

    config = tmp_path / "other.toml"
    from engine import config as venue_config

    config.write_text('accounts = [{id = 1, balances = {USDT = "5"}}]\n' + venue_config.DEMO_TOML)
    foreign = subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--config", str(config),
                              "--data-dir", str(data)], capture_output=True, text=True)  # fmt: skip
    assert foreign.returncode == 1 and "another configuration" in foreign.stderr

    (segment,) = data.glob("journal-*.fgj")
    damaged = bytearray(segment.read_bytes())
    damaged[2 * FRAME_SIZE + 50] ^= 0xFF
    segment.write_bytes(bytes(damaged))
    refused = subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--demo",
                              "--data-dir", str(data)], capture_output=True, text=True)  # fmt: skip
    offset = 2 * FRAME_SIZE
    assert refused.returncode == 1 and f"FRAME_BAD_CRC at offset {offset} (seq 3)" in refused.stderr
    assert replay_verify(data).returncode == 1


def test_a_venue_whose_engine_process_dies_stops_and_says_why(tmp_path):
    data = tmp_path / "venue"
    server = ServerProcess(data, "--engine-process")
    client = RecordClient(server.record_port)
    assert len(client.request(place(0))) > 0
    os.kill(server.child_pid(), signal.SIGKILL)
    # nothing would answer its clients any more: it stops rather than keep them waiting
    assert server.process.wait(timeout=30) == 1
    assert any(line.get("msg") == "the engine process has stopped: the venue stops"
               for line in server.lines())  # fmt: skip
    with pytest.raises((ConnectionError, OSError)):
        client.request(place(1))
    client.close()
    server.log.close()
    again = ServerProcess(data, "--engine-process")  # and starts again from its journal
    assert again.ready["seq"] == 1
    assert again.stop() == 0


@PLACEMENTS
def test_a_dead_mans_switch_fires_on_time_as_a_journaled_tick(tmp_path, placement):
    data = tmp_path / "venue"
    server = ServerProcess(data, *placement)
    client = RecordClient(server.record_port)
    (accepted, *_) = client.request(place(1, post_only=True))
    client.request(command_record(m.CancelAllAfter(account=2, timeout_ns=200_000_000)))
    time.sleep(0.6)  # no heartbeat: the switch fires by itself
    cancel = command_record(m.CancelOrder(account=2, order_id=int(accepted["order_id"])))
    (late,) = client.request(cancel)
    assert late["result"] == Result.UNKNOWN_ORDER  # already canceled by the switch
    client.close()
    assert server.stop() == 0
    result = replay_verify(data)
    assert result.returncode == 0, result.stderr


def test_each_timer_is_one_journaled_tick_that_acts(tmp_path):
    """The loop's timers may fire a little early: a tick sequenced before its
    time would do nothing but fill the journal (and move the sequence)."""
    server = ServerProcess(tmp_path / "venue")
    client = RecordClient(server.record_port)
    start = time.time_ns()
    expiries = [start + (200 + 40 * i) * 1_000_000 for i in range(10)]
    placed = [client.request(place(i, post_only=True, tif=m.TimeInForce.GTD, expire_ns=at))[0]
              for i, at in enumerate(expiries)]  # fmt: skip
    time.sleep((expiries[-1] - time.time_ns()) / 1e9 + 0.3)
    for accepted in placed:  # every one expired by itself
        cancel = command_record(m.CancelOrder(account=int(accepted["account"]),
                                              order_id=int(accepted["order_id"])))  # fmt: skip
        assert client.request(cancel)[0]["result"] == Result.UNKNOWN_ORDER
    status, body = http(server.metrics_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    ticks = next(int(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                 if line.startswith('flowgate_commands_total{type="tick"}'))  # fmt: skip
    assert 1 <= ticks <= len(expiries)
    client.close()
    assert server.stop() == 0


def http(port: int, request: bytes) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def test_metrics_count_what_the_venue_did(tmp_path):
    server = ServerProcess(tmp_path / "venue")
    client = RecordClient(server.record_port)
    for i in range(20):  # separate steps, so some are timed
        client.request(place(i, post_only=True))
    bad = m.CancelOrder(account=1, order_id=999)
    client.request(command_record(bad))
    status, body = http(server.metrics_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    metrics = dict(line.rsplit(" ", 1) for line in body.splitlines() if not line.startswith("#"))
    assert metrics['flowgate_commands_total{type="place"}'] == "20"
    assert metrics['flowgate_rejects_total{code="UNKNOWN_ORDER"}'] == "1"
    assert metrics["flowgate_sequence"] == "21"
    assert int(metrics["flowgate_journal_bytes_total"]) == 21 * FRAME_SIZE
    assert int(metrics['flowgate_stage_seconds_count{stage="apply"}']) >= 1
    assert http(server.metrics_port, b"GET /nope HTTP/1.1\r\n\r\n")[0] == 404
    assert http(server.metrics_port, b"POST /metrics HTTP/1.1\r\n\r\n")[0] == 405
    assert http(server.metrics_port, b"garbage\r\n\r\n")[0] == 400
    assert http(server.metrics_port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000)[0] == 431
    client.close()
    assert server.stop() == 0


def test_the_demo_market_maker_keeps_quoting(tmp_path):
    data = tmp_path / "venue"
    server = ServerProcess(data, "--market-maker")
    time.sleep(1.3)
    _, body = http(server.metrics_port, b"GET /metrics HTTP/1.1\r\n\r\n")
    metrics = dict(line.rsplit(" ", 1) for line in body.splitlines() if not line.startswith("#"))
    assert int(metrics['flowgate_commands_total{type="place"}']) >= 2 * 2 * 10  # 2 books x 2 rounds
    assert int(metrics['flowgate_commands_total{type="mass_cancel"}']) >= 4
    assert not [k for k in metrics if k.startswith("flowgate_rejects_total")]
    assert server.stop() == 0
    assert replay_verify(data).returncode == 0


def flowgate(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True,
                          text=True)  # fmt: skip


def test_keys_from_the_command_line_and_revocation_reaching_a_running_server(tmp_path):
    data = tmp_path / "venue"
    created = flowgate("keys", "create", "--data-dir", str(data), "--account", "2")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["type"] == "ed25519" and len(base64.b64decode(key["secret"])) == 32
    assert (data / "keys.sqlite").stat().st_mode & 0o777 == 0o600
    public = base64.b64encode(bytes(SigningKey.generate().verify_key)).decode()
    add = ("keys", "add", "--data-dir", str(data), "--account", "3", "--public-key", public,
           "--permissions", "read")  # fmt: skip
    added = json.loads(flowgate(*add).stdout)
    assert added["material"] == public and added["permissions"] == ["read"]
    listed = [json.loads(line) for line in flowgate("keys", "list", "--data-dir",
                                                    str(data)).stdout.splitlines()]  # fmt: skip
    assert [k["key_id"] for k in listed] == [key["key_id"], added["key_id"]]
    assert all("secret" not in k for k in listed)
    bad = flowgate("keys", "create", "--data-dir", str(data), "--account", "2", "--ip", "nope")
    assert bad.returncode == 2
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    refused = flowgate("serve", "--demo", "--data-dir", str(a_file))
    assert refused.returncode == 1 and "is a file, not a data directory" in refused.stderr

    server = ServerProcess(data)
    revoked_at = time.monotonic()
    assert flowgate("keys", "revoke", "--data-dir", str(data), key["key_id"]).returncode == 0
    seen = server.wait_for("key no longer usable")
    assert seen["key"] == key["key_id"] and time.monotonic() - revoked_at < 2.0
    assert flowgate("keys", "revoke", "--data-dir", str(data), key["key_id"]).returncode == 1
    assert server.stop() == 0


def test_demo_credentials_sign_for_their_accounts(tmp_path):
    data = tmp_path / "venue"
    server = ServerProcess(data)  # --demo
    path = data / "demo-credentials.json"
    assert path.stat().st_mode & 0o777 == 0o600
    entries = json.loads(path.read_text())
    assert sorted({(e["account"], e["type"]) for e in entries}) == [
        (a, t) for a in (1, 2, 3, 4) for t in ("ed25519", "hmac-sha256")]  # fmt: skip
    assert all((e["sender_comp_id"] is None) == (e["type"] != "ed25519") for e in entries)
    store = KeyStore(data)
    auth = Authenticator(store)
    now = time.time_ns() // 1_000_000
    for e in entries:
        payload = canonical(now, e["key"], "GET", "/v1/balances", b"")
        signature = sign(e["type"], base64.b64decode(e["secret"]), payload)
        assert auth.verify(e["key"], now, e["key"], signature, payload, "127.0.0.1",
                           "read").account == e["account"]  # fmt: skip
    store.close()
    assert server.stop() == 0
    again = ServerProcess(data)  # keys exist: the file is not rewritten
    assert json.loads(path.read_text()) == entries
    assert again.stop() == 0
