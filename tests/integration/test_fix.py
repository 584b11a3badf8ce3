"""The FIX gateway against a real server, with scripted session scenarios
(send / expect lines) from a small initiator."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from ext.fix import encode
from flowgate_client import RestClient
from gateways.fix.store import RECORD, MessageStore
from tests.fix_client import FixClient, now_timestamp
from tests.server import ServerProcess, credentials


@pytest.fixture
def clients(server):
    opened = []

    def client(account: int = 2, sender: str | None = None) -> FixClient:
        opened.append(FixClient(server.fix_port, sender or f"ACCOUNT{account}",
                                credentials(server, account)))  # fmt: skip
        return opened[-1]

    yield client
    for c in opened:
        c.close()


def lose_from_store(data_dir, lost, next_in: int | None = None):
    """As if a crash came between the engine's journal and ACCOUNT2's store:
    the messages `lost(raw)` picks were never stored, and with `next_in` the
    incoming numbers from it never counted."""
    store = MessageStore(data_dir, "FLOWGATE", "ACCOUNT2")
    kept = [(seq, raw) for seq, raw in store.messages(1, 0) if not lost(raw)]
    if next_in is not None:
        store.next_out = kept[-1][0] + 1
        store.set_next_in(next_in)
    store.close()
    (store.directory / "messages").write_bytes(
        b"".join(RECORD.pack(seq, len(raw)) + raw for seq, raw in kept))  # fmt: skip


def test_logon_heartbeat_test_request_and_logout(clients):
    c = clients()
    c.run("""
        send A 98=0 108=30 141=Y
        expect A 108=30 141=Y
        send 1 112=hello
        expect 0 112=hello
        send 5
        expect 5
    """)
    assert c.closed()


def test_logons_refused(server, clients):
    bad = clients(2)
    bad.credentials = credentials(server, 3)  # another account's key signs for ACCOUNT2...
    bad.credentials = type(bad.credentials)(bad.credentials.key, "ed25519", b"\x01" * 32)
    bad.send("A", [(98, 0), (108, 30)])
    logout = bad.expect("5")
    assert logout[58].startswith(b"UNAUTHENTICATED") and bad.closed()

    keyed = credentials(server, 2, "hmac-sha256")  # a good HMAC signature: Ed25519 keys only
    hmac_desk, moment = clients(2, sender="HMAC-DESK"), now_timestamp()
    hmac_desk.credentials = None
    signature = keyed.sign(f"A\x01HMAC-DESK\x01FLOWGATE\x011\x01{moment}".encode())
    hmac_desk.send("A", [(553, keyed.key), (95, len(signature)), (96, signature), (98, 0),
                         (108, 30)], sending_time=moment)  # fmt: skip
    logout = hmac_desk.expect("5")
    assert logout[58].startswith(b"UNAUTHENTICATED") and b"Ed25519" in logout[58]

    stale = clients(2)
    stale.send("A", [(98, 0), (108, 30)], sending_time=now_timestamp(-60_000))
    assert stale.expect("5")[58].startswith(b"TIMESTAMP_OUT_OF_WINDOW") and stale.closed()

    owner = clients(3)  # ACCOUNT3 is account 3's once its key logged on with it...
    owner.run("send A 98=0 108=30 141=Y\nexpect A\nsend 5\nexpect 5")
    impostor = clients(2, sender="ACCOUNT3")  # ...so account 2's key cannot have its messages
    impostor.send("A", [(98, 0), (108, 30), (141, "Y")])
    assert impostor.expect("5")[58].startswith(b"FORBIDDEN") and impostor.closed()

    moment = now_timestamp()  # one key, two identities, the same MsgSeqNum and SendingTime:
    for desk in ("DESK-A", "DESK-B"):  # two Logons, each good once
        logon = clients(2, sender=desk)
        logon.send("A", [(98, 0), (108, 30), (141, "Y")], sending_time=moment)
        logon.expect("A")

    live = clients(2)
    live.run("send A 98=0 108=30 141=Y\nexpect A")
    twin = clients(2)
    twin.send("A", [(98, 0), (108, 30), (141, "Y")])
    assert twin.closed()  # a second logon for a live identity is refused
    live.run("send 1 112=still\nexpect 0 112=still")  # the first one is untouched


def test_orders_between_two_sessions(clients):
    maker, taker = clients(2), clients(3)
    for c in (maker, taker):
        c.run("send A 98=0 108=30 141=Y\nexpect A")
    maker.run("""
        send D 11=m1 55=BTC-USDT 54=2 38=0.01 40=2 44=50000 59=1 18=6
        expect 8 150=0 39=0 11=m1 151=0.01
    """)
    taker.run("""
        send D 11=t1 55=BTC-USDT 54=1 38=0.004 40=2 44=50001 59=3
        expect 8 150=0 39=0 11=t1
        expect 8 150=F 39=2 32=0.004 31=50000 14=0.004 151=0
    """)
    fill = maker.expect("8", t150="F", t39="1", t32="0.004", t14="0.004", t151="0.006")
    assert all(tag in fill for tag in (37, 17, 6, 60))
    maker.run("""
        send G 41=m1 11=m1b 38=0.008
        expect 8 150=5 151=0.004
        send H 41=m1 11=s1
        expect 8 150=I 39=1
        send F 41=m1 11=m1c
        expect 8 150=4 39=4
        send F 41=m1 11=m1d
        expect 9 434=1 102=0 39=4
        send D 11=m2 55=BTC-USDT 54=2 38=0.01 40=2 44=50100 59=1
        expect 8 150=0
        send q 11=mc 530=7
        expect 8 150=4 39=4 11=m2
        expect r 531=7 533=1
        send D 11=bad 55=BTC-USDT 54=2 38=0.01 40=2 44=50100.001 59=1
        expect 8 150=8 39=8
        send Z 1=2
        expect j 380=3
    """)


def test_reports_name_the_request_and_the_order_as_fix_44_has_them(clients):
    maker, taker = clients(2), clients(3)
    for c in (maker, taker):
        c.run("send A 98=0 108=30 141=Y\nexpect A")
    maker.run("""
        send D 11=ask 55=BTC-USDT 54=2 38=0.01 40=2 44=50000 59=1
        expect 8 150=0 11=ask
        send D 11=bid 55=BTC-USDT 54=1 38=0.01 40=2 44=49000 59=1
        expect 8 150=0 11=bid
        # a refused replace or cancel tells the status of the order, which lives on
        send G 41=bid 11=bid2 44=49000.001
        expect 9 39=0 434=2 102=99
        # a status request for no order: an order status report, Rejected
        send H 41=nope 11=s1
        expect 8 150=I 39=8
        # coded values outside the published dictionary are out of range, as it has them
        send q 11=mc 530=7 54=5
        expect 3 371=54 372=q 373=5
        send D 11=x 55=BTC-USDT 54=2 38=0.01 40=2 44=50000 59=0
        expect 3 371=59 372=D 373=5
    """)
    # refusals carry the venue's clocks too (the engine's 0 when it never saw the message)
    maker.send("D", [(11, "x"), (55, "BTC-USDT"), (54, 1), (38, "0.01"), (40, 2),
                     (44, "49000.001")])  # fmt: skip
    refusal = maker.expect("8", t150="8")
    assert int(refusal[7901]) > 0 and refusal[7902] == b"0" and int(refusal[7904]) > 0
    maker.send("F", [(41, "nope"), (11, "x2")])
    assert int(maker.expect("9", t102="1")[7903]) > 0  # the engine found no such order
    # a replace sent with its order, in one write: before the New came back
    maker.send_together([("D", [(11, "quick"), (55, "BTC-USDT"), (54, 1), (38, "0.02"),
                                (40, 2), (44, "48000")]),
                         ("G", [(41, "quick"), (11, "quick2"), (38, "0.01")])])  # fmt: skip
    maker.expect("8", t150="0", t11="quick", t151="0.02")
    maker.expect("8", t150="5", t11="quick", t151="0.01")
    # a replace that crosses reports its fills after the Replaced
    taker.run("""
        send D 11=t1 55=BTC-USDT 54=1 38=0.004 40=2 44=49999 59=1
        expect 8 150=0 11=t1
        send G 41=t1 11=t1b 44=50000
        expect 8 150=5 39=0 151=0.004
        expect 8 150=F 39=2 32=0.004 31=50000 14=0.004 151=0
        # a market order without TimeInForce is immediate-or-cancel, as on every protocol
        send D 11=t2 55=BTC-USDT 54=1 38=0.002 40=1
        expect 8 150=0 11=t2 59=3
        expect 8 150=F 32=0.002
    """)
    # a cancel: ClOrdID is the request's, OrigClOrdID the order's; ExecIDs never repeat
    maker.expect("8", t150="F", t11="ask", t32="0.004")
    maker.expect("8", t150="F", t11="ask", t32="0.002")
    maker.send("F", [(41, "bid"), (11, "bid-cancel")])
    canceled = maker.expect("8", t150="4")
    assert (canceled[11], canceled[41]) == (b"bid-cancel", b"bid")
    exec_ids = {canceled[17]}
    for i in range(2):
        maker.send("H", [(41, "ask"), (11, f"s{i}")])
        exec_ids.add(maker.expect("8", t150="I")[17])
    assert len(exec_ids) == 3


def test_orders_that_end_without_their_sessions_asking_are_reported(server, clients):
    c = clients(2)
    c.run(f"""
        send A 98=0 108=30 141=Y
        expect A
        send D 11=gtd 55=BTC-USDT 54=1 38=0.01 40=2 44=49000 59=6 126={now_timestamp(1500)}
        expect 8 150=0 11=gtd
        send D 11=other 55=BTC-USDT 54=1 38=0.01 40=2 44=49000 59=1
        expect 8 150=0 11=other
        send D 11=mine 55=BTC-USDT 54=1 38=0.01 40=2 44=49000 59=1
        expect 8 150=0 11=mine
        send F 41=mine 11=mine-x
        expect 8 150=4 11=mine-x 41=mine
    """)
    # another protocol cancels one, the engine's clock expires the other
    rest = RestClient(f"http://127.0.0.1:{server.rest_port}", credentials(server, 2))
    rest.cancel(client_order_id="other")
    rest.close()
    c.expect("8", t150="4", t39="4", t11="other")
    c.expect("8", t150="C", t39="C", t11="gtd")
    # a replace that self-trade prevention ends (cancel_newest) is answered, once
    c.run("""
        send D 11=bid 55=BTC-USDT 54=1 38=0.01 40=2 44=49000 59=1
        expect 8 150=0 11=bid
        send D 11=ask 55=BTC-USDT 54=2 38=0.01 40=2 44=50000 59=1
        expect 8 150=0 11=ask
        send G 41=ask 11=ask2 44=49000
        expect 8 150=5 11=ask
        expect 8 150=4 39=4 11=ask
    """)
    c.run("send 1 112=nothing-else\nexpect 0 112=nothing-else")  # and "mine" once only


def test_an_expiry_due_as_its_cancel_arrives_is_reported_and_the_cancel_refused(start):
    server = start("--engine-process")
    engine = server.child_pid()
    c = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
    c.run(f"""
        send A 98=0 108=30 141=Y
        expect A
        send D 11=soon 55=BTC-USDT 54=1 38=0.01 40=2 44=49000 59=6 126={now_timestamp(300)}
        expect 8 150=0 11=soon
    """)
    # the engine sleeps through the expiry; woken, it takes the waiting cancel before
    # it looks at its timers
    os.kill(engine, signal.SIGSTOP)
    try:
        time.sleep(0.5)
        c.send("F", [(41, "soon"), (11, "soon-x")])
        time.sleep(0.1)
    finally:
        os.kill(engine, signal.SIGCONT)
    c.expect("8", t150="C", t39="C", t11="soon")
    c.expect("9", t11="soon-x", t41="soon", t39="C", t102="0")
    c.close()


def logged_on_with_a_bid(c: FixClient, coid: str):
    """Log on (numbers reset), then rest a buy of 0.01 BTC at 49000."""
    c.run(f"""
        send A 98=0 108=30 141=Y
        expect A
        send D 11={coid} 55=BTC-USDT 54=1 38=0.01 40=2 44=49000 59=1
        expect 8 150=0 11={coid}
    """)


def test_a_replace_changes_price_and_quantity_only_and_beside_a_cancel_each_is_reported_once(
    clients,
):
    c = clients(2)
    logged_on_with_a_bid(c, "both")
    for tag, value in ((54, 2), (55, "ETH-USDT"), (40, 1), (59, 3)):
        c.send("G", [(41, "both"), (11, f"both-{tag}"), (44, "48000"), (tag, value)])
        refused = c.expect("9", t11=f"both-{tag}", t434="2", t102="99", t39="0")
        assert refused[58].startswith(b"INVALID_PARAMS")
    # also right behind its placement, before the New
    c.send("D", [(11, "fly"), (55, "BTC-USDT"), (54, 1), (38, "0.01"), (40, 2), (44, 49000)])
    c.send("G", [(41, "fly"), (11, "fly-g"), (44, "48000"), (54, 2)])
    c.expect("8", t150="0", t11="fly")
    assert c.expect("9", t11="fly-g", t102="99")[58].startswith(b"INVALID_PARAMS")
    # a replace and a cancel in one write: the Replaced, then the cancel's own report
    c.send_together([("G", [(41, "both"), (11, "both-g"), (44, 48000), (54, 1),
                            (55, "BTC-USDT")]),
                     ("F", [(41, "both"), (11, "both-f")])])  # fmt: skip
    c.expect("8", t150="5", t11="both", t44="48000", t7932="N")
    c.expect("8", t150="4", t11="both-f", t41="both")
    c.run("send 1 112=nothing-else\nexpect 0 112=nothing-else")


def test_a_status_request_is_answered_after_the_commands_sent_before_it(clients):
    c = clients(2)
    c.run("send A 98=0 108=30 141=Y\nexpect A")
    c.send_together([("D", [(11, "st"), (55, "BTC-USDT"), (54, 1), (38, "0.01"), (40, 2),
                            (44, 49000)]),
                     ("H", [(41, "st"), (11, "st-h1")]),
                     ("F", [(41, "st"), (11, "st-f")]),
                     ("H", [(41, "st"), (11, "st-h2")])])  # fmt: skip
    c.expect("8", t150="0", t11="st")
    c.expect("8", t150="I", t39="0", t11="st")
    c.expect("8", t150="4", t11="st-f")
    c.expect("8", t150="I", t39="4", t11="st")


def test_a_replace_from_elsewhere_and_its_fills_reach_the_fix_order_owner(server, clients):
    c = clients(2)
    logged_on_with_a_bid(c, "mine")
    url = f"http://127.0.0.1:{server.rest_port}"
    seller, owner = RestClient(url, credentials(server, 3)), RestClient(url, credentials(server, 2))
    seller.place(symbol="BTC-USDT", side="sell", type="limit", price="49500", qty="0.004")
    order_id = owner.open_orders()[0].order_id
    owner.amend(order_id, qty="0.008")  # the same account, over REST: priority kept
    c.expect("8", t150="5", t11="mine", t38="0.008", t44="49000", t151="0.008", t39="0",
             t7932="Y")  # fmt: skip
    owner.amend(order_id, price="49500")  # it takes the seller's order at once
    seller.close()
    owner.close()
    c.expect("8", t150="5", t11="mine", t38="0.008", t44="49500", t14="0", t39="0", t7932="N")
    c.expect("8", t150="F", t11="mine", t32="0.004", t31="49500", t14="0.004", t39="1")
    # and from another FIX identity of the account
    other = clients(2, sender="ACCOUNT2-B")
    other.run("send A 98=0 108=30 141=Y\nexpect A")
    other.send("G", [(41, "mine"), (11, "mine-b"), (38, "0.006")])
    other.expect("8", t150="5", t11="mine", t38="0.006", t151="0.002", t39="1", t7932="Y")
    c.expect("8", t150="5", t11="mine", t38="0.006", t151="0.002", t39="1", t7932="Y")
    c.run("send 1 112=nothing-else\nexpect 0 112=nothing-else")


def test_self_trade_prevention_reports_the_new_order_before_the_resting_one_it_cancels(
    clients,
):
    c = clients(2)
    logged_on_with_a_bid(c, "old")
    c.send("D", [(11, "new"), (55, "BTC-USDT"), (54, 2), (38, "0.01"), (40, 2), (44, 49000),
                 (7928, "cancel_oldest")])  # fmt: skip
    c.expect("8", t150="0", t11="new")
    c.expect("8", t150="4", t11="old", t39="4")
    c.run("send 1 112=nothing-else\nexpect 0 112=nothing-else")


def test_the_dead_mans_switch_over_fix(clients):
    c = clients(2)
    c.run("""
        send A 98=0 108=30 141=Y
        expect A
        send D 11=resting 55=BTC-USDT 54=1 38=0.01 40=2 44=49000 59=1
        expect 8 150=0 11=resting
        send U1 11=dms-0 7930=abc
    """)
    refused = c.expect("j", t372="U1", t380="99")
    assert refused[58].startswith(b"INVALID_TIMEOUT") and int(refused[7901]) > 0
    c.send("U1", [(11, "dms-1"), (7930, 600_000)])
    armed = c.expect("U2", t11="dms-1", t7930="600000")
    assert int(armed[7931]) > time.time_ns() and int(armed[7903]) > 0
    c.run("""
        send U1 11=dms-2 7930=0
        expect U2 11=dms-2 7930=0 7931=0
        send U1 11=dms-3 7930=300
    """)
    assert int(c.expect("U2", t11="dms-3")[7931]) > 0
    # nothing heard from the account in 300 ms: its orders are canceled, and reported
    c.expect("8", t150="4", t39="4", t11="resting")


def test_sequence_numbers_gaps_and_resends(clients):
    c = clients()
    c.run("""
        send A 98=0 108=30 141=Y
        expect A
        send D 11=r1 55=BTC-USDT 54=1 38=0.01 40=2 44=49000 59=1
        expect 8 150=0
    """)
    # the client asks for everything again: the Logon is gap-filled, the report replayed
    c.send("2", [(7, 1), (16, 0)])
    fill = c.expect("4", t123="Y", t36="2", t43="Y")
    assert fill[34] == b"1"
    replayed = c.expect("8", t150="0", t43="Y")
    assert replayed[34] == b"2" and 122 in replayed
    # too high: the server asks for the gap; too low: it logs out
    c.seq += 3
    c.send("0")
    c.expect("2", t7=str(c.seq - 4), t16="0")
    resume = c.seq
    c.send("4", [(123, "Y"), (36, resume)], seq=resume - 4)  # fills the gap it asked about
    c.seq = resume
    c.send("1", [(112, "after")])
    c.expect("0", t112="after")
    c.send("0", seq=2)
    assert c.expect("5")[58].startswith(b"MsgSeqNum too low") and c.closed()


def test_garbled_input_is_ignored(clients):
    c = clients()
    c.run("send A 98=0 108=30 141=Y\nexpect A")
    c.sock.sendall(b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01garbage\x01")
    c.run("send 1 112=alive\nexpect 0 112=alive")
    # but a message that never ends is not held without limit: a Logout
    c.sock.sendall(b"8=FIX.4.4\x019=5\x0135=0\x01" + b"A" * 100_000)
    assert c.expect("5")[58].startswith(b"garbled: 65536 bytes") and c.closed()
    # before a Logon, it just closes the connection
    flood = clients()
    flood.sock.sendall(b"8=FIX.4.4\x019=5\x0135=A\x01" + b"A" * 100_000)
    assert flood.closed()


def test_reports_sent_while_away_come_back_with_a_resend(server, clients):
    maker = clients(2)
    maker.run("""
        send A 98=0 108=30 141=Y
        expect A
        send D 11=away 55=BTC-USDT 54=2 38=0.01 40=2 44=50000 59=1
        expect 8 150=0
    """)
    next_seq = maker.seq
    maker.run("send 5\nexpect 5")
    maker.close()
    taker = clients(3)
    taker.run("""
        send A 98=0 108=30 141=Y
        expect A
        send D 11=take 55=BTC-USDT 54=1 38=0.01 40=2 44=50000 59=3
        expect 8 150=0
        expect 8 150=F
    """)
    time.sleep(0.2)
    back = clients(2)
    back.seq = next_seq + 1  # after the Logout
    back.send("A", [(98, 0), (108, 30)])
    logon = back.expect("A")
    assert int(logon[34]) > 4  # the server's numbers went on while it was away
    back.send("2", [(7, 1), (16, 0)])
    replayed = [back.receive() for _ in range(5)]  # seqs 1 to 5
    assert [m[35] for m in replayed] == [b"4", b"8", b"4", b"8", b"4"]  # session ones gap-filled
    fill = replayed[3]
    assert (fill[150], fill[11], fill[43], fill[34]) == (b"F", b"away", b"Y", b"4")


def test_sequence_numbers_and_orders_survive_a_server_restart(start):
    server = start()
    c = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
    c.run("""
        send A 98=0 108=30 141=Y
        expect A
        send D 11=keep 55=BTC-USDT 54=1 38=0.01 40=2 44=49000 59=1
        expect 8 150=0
    """)
    c.close()
    assert server.stop() == 0
    again = ServerProcess(server.data_dir)
    try:
        back = FixClient(again.fix_port, "ACCOUNT2", credentials(again, 2))
        back.seq = 3
        back.send("A", [(98, 0), (108, 30)])
        assert back.expect("A")[34] == b"3"  # the venue's numbers went on: 1 A, 2 report
        back.run("""
            send H 41=keep 11=s
            expect 8 150=I 39=0 11=keep
        """)
        # the order's later fills reach the identity that placed it before the restart
        taker = FixClient(again.fix_port, "ACCOUNT3", credentials(again, 3))
        taker.run("""
            send A 98=0 108=30 141=Y
            expect A
            send D 11=take 55=BTC-USDT 54=2 38=0.004 40=2 44=49000 59=3
            expect 8 150=0
            expect 8 150=F 32=0.004
        """)
        taker.close()
        back.expect("8", t150="F", t11="keep", t32="0.004", t151="0.006")
        back.close()
    finally:
        assert again.stop() == 0


def test_an_order_whose_answer_a_crash_lost_is_asked_for_again_and_reported(start):
    server = start()
    rest = RestClient(f"http://127.0.0.1:{server.rest_port}", credentials(server, 3))
    rest.place(symbol="BTC-USDT", side="sell", type="limit", price="50000", qty="0.004")
    rest.close()
    taker = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
    taker.run("send A 98=0 108=30 141=Y\nexpect A")
    seq, sent_at = taker.seq, now_timestamp()
    order = [(11, "lost"), (55, "BTC-USDT"), (54, 1), (38, "0.01"), (40, 2), (44, "50000"),
             (59, 1)]  # fmt: skip
    taker.sock.sendall(encode("D", "ACCOUNT2", "FLOWGATE", seq, sent_at, order))
    taker.expect("8", t150="0")
    fill = taker.expect("8", t150="F")
    taker.close()
    server.kill()
    # as if the crash came after the engine's journal but before the store's writes:
    # neither its answer stored nor its number counted
    lose_from_store(server.data_dir, lambda raw: b"\x0111=lost\x01" in raw, next_in=seq)
    again = ServerProcess(server.data_dir)
    history = again.child_pid()
    try:
        back = FixClient(again.fix_port, "ACCOUNT2", credentials(again, 2))
        back.seq = seq + 1
        back.send("A", [(98, 0), (108, 30)])
        back.expect("A")
        back.expect("2", t7=str(seq))  # the venue asks for the order again...
        os.kill(history, signal.SIGSTOP)  # (the history lags behind the fill that follows)
        rest = RestClient(f"http://127.0.0.1:{again.rest_port}", credentials(again, 3))
        rest.place(symbol="BTC-USDT", side="sell", type="limit", price="50000", qty="0.002")
        rest.close()
        back.sock.sendall(encode("D", "ACCOUNT2", "FLOWGATE", seq, now_timestamp(), order,
                                 ((43, "Y"), (122, sent_at))))  # fmt: skip
        new = back.expect("8", t150="0", t11="lost")  # ...and reports it, not twice
        rebuilt = back.expect("8", t150="F", t11="lost")
        assert new[37] == fill[37] and (rebuilt[17], rebuilt[32]) == (fill[17], b"0.004")
        assert rebuilt[6] == fill[6] == b"50000"  # the average price, from the history
        since = back.expect("8", t150="F", t11="lost", t32="0.002", t14="0.006", t151="0.004")
        assert since[17] == f"{fill[37].decode()}-2".encode()  # trade 2, after the restart
        os.kill(history, signal.SIGCONT)
        back.run("""
            send H 41=lost 11=status
            expect 8 150=I 39=1 6=50000
        """)
        back.run("send 1 112=nothing-else\nexpect 0 112=nothing-else")
        back.close()
    finally:
        os.kill(history, signal.SIGCONT)
        assert again.stop() == 0


def test_answers_to_orders_in_flight_when_the_client_drops_wait_in_the_store(start):
    server = start("--engine-process")
    engine = server.child_pid()
    c = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
    c.run("send A 98=0 108=30 141=Y\nexpect A")
    now, first = now_timestamp(), c.seq
    burst = b"".join(encode("D", "ACCOUNT2", "FLOWGATE", first + i, now, [
        (11, f"drop-{i}"), (55, "BTC-USDT"), (54, 1), (38, "0.001"), (40, 2), (44, "45000"),
        (59, 1)]) for i in range(50))  # fmt: skip
    os.kill(engine, signal.SIGSTOP)  # the answers wait...
    try:
        c.sock.sendall(burst)
        time.sleep(0.2)
        c.close()  # ...until the client is gone
        time.sleep(0.2)
    finally:
        os.kill(engine, signal.SIGCONT)
    rest = RestClient(f"http://127.0.0.1:{server.rest_port}", credentials(server, 2))
    deadline = time.monotonic() + 10
    while len(rest.open_orders()) < 50:  # placed, and answered in the same walk
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rest.close()
    back = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
    try:
        back.seq = first + 50
        back.send("A", [(98, 0), (108, 30)])
        logon = back.expect("A")
        back.send("2", [(7, 2), (16, 0)])
        replayed = [back.receive() for _ in range(int(logon[34]) - 1)]  # 2 to the Logon's
        news = [m[11] for m in replayed if m[35] == b"8" and m[150] == b"0"]
        assert news == [f"drop-{i}".encode() for i in range(50)]
    finally:
        back.close()


def test_after_a_crash_commands_in_flight_are_asked_for_and_refused_ones_stay_refused(start):
    server = start("--engine-process", "--command-ring-slots", "8")
    c = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
    c.run("send A 98=0 108=30 141=Y\nexpect A")
    first, sent_at = c.seq, now_timestamp()
    orders = [encode("D", "ACCOUNT2", "FLOWGATE", first + i, sent_at, [
        (11, f"ring-{i}"), (55, "BTC-USDT"), (54, 1), (38, "0.001"), (40, 2), (44, "45000"),
        (59, 1)]) for i in range(12)]  # fmt: skip
    engine = server.child_pid()
    os.kill(engine, signal.SIGSTOP)  # 8 wait in the ring; 4 are refused, OVERLOADED
    c.sock.sendall(b"".join(orders))
    refused = [c.expect("8", t150="8")[11] for _ in range(4)]
    assert refused == [f"ring-{i}".encode() for i in range(8, 12)]
    server.kill()  # none of the 8 reached the journal
    os.kill(engine, signal.SIGKILL)
    c.close()
    again = ServerProcess(server.data_dir, "--engine-process")
    try:
        back = FixClient(again.fix_port, "ACCOUNT2", credentials(again, 2))
        back.seq = first + 12
        back.send("A", [(98, 0), (108, 30)])
        back.expect("A")
        back.expect("2", t7=str(first))  # the 8 unanswered, asked for again
        back.sock.sendall(b"".join(  # the client resends from there, as FIX does
            encode("D", "ACCOUNT2", "FLOWGATE", first + i, now_timestamp(),
                   [(11, f"ring-{i}"), (55, "BTC-USDT"), (54, 1), (38, "0.001"), (40, 2),
                    (44, "45000"), (59, 1)], ((43, "Y"), (122, sent_at)))
            for i in range(12)))  # fmt: skip
        placed = [back.expect("8", t150="0")[11] for _ in range(8)]
        assert placed == [f"ring-{i}".encode() for i in range(8)]
        back.run("send 1 112=nothing-else\nexpect 0 112=nothing-else")  # refused: still
        back.close()
    finally:
        assert again.stop() == 0


def test_answers_due_to_a_dropped_session_reach_its_identitys_new_one(start):
    server = start("--engine-process")
    c = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
    c.run("send A 98=0 108=30 141=Y\nexpect A")
    engine = server.child_pid()
    os.kill(engine, signal.SIGSTOP)
    try:
        c.run("send D 11=due 55=BTC-USDT 54=1 38=0.001 40=2 44=45000 59=1")
        c.close()
        for _ in range(50):  # a Logon while the old connection still counts is refused
            back = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
            back.seq = c.seq
            back.send("A", [(98, 0), (108, 30)])
            answer = back.receive()
            if answer is not None and answer[35] == b"A":
                break
            back.close()
            time.sleep(0.1)
    finally:
        os.kill(engine, signal.SIGCONT)
    back.expect("8", t150="0", t11="due")  # at once, not at the next heartbeat's gap
    back.close()


def test_reports_a_crash_kept_from_the_store_are_rebuilt_at_the_next_start(start):
    server = start()
    maker = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
    maker.run("""
        send A 98=0 108=30 141=Y
        expect A
        send D 11=rest 55=BTC-USDT 54=2 38=0.01 40=2 44=50000 59=1
        expect 8 150=0
        send D 11=gone 55=BTC-USDT 54=2 38=0.01 40=2 44=50500 59=1
        expect 8 150=0
    """)
    for account, order in ((3, dict(side="buy", price="50000", qty="0.004")),
                           (2, dict(cancel="gone"))):  # fmt: skip
        rest = RestClient(f"http://127.0.0.1:{server.rest_port}", credentials(server, account))
        if "cancel" in order:
            rest.cancel(client_order_id=order["cancel"])
        else:
            rest.place(symbol="BTC-USDT", type="limit", **order)
        rest.close()
    maker.expect("8", t150="F", t11="rest")
    maker.expect("8", t150="4", t11="gone")
    maker.close()
    server.kill()
    # as if the crash came after the engine's journal but before the store's writes
    lose_from_store(server.data_dir, lambda raw: b"\x01150=F\x01" in raw or b"\x01150=4\x01" in raw)
    again = ServerProcess(server.data_dir)
    try:
        back = FixClient(again.fix_port, "ACCOUNT2", credentials(again, 2))
        back.seq = 4
        back.send("A", [(98, 0), (108, 30)])
        logon = back.expect("A")
        back.send("2", [(7, 1), (16, 0)])
        replayed = [back.receive() for _ in range(int(logon[34]) - 1)]
        reports = [(m[150], m[11]) for m in replayed if m[35] == b"8"]
        assert reports == [(b"0", b"rest"), (b"0", b"gone"), (b"F", b"rest"), (b"4", b"gone")]
        fill = next(m for m in replayed if m[35] == b"8" and m[150] == b"F")
        assert (fill[32], fill[14], fill[151], fill[39]) == (b"0.004", b"0.004", b"0.006", b"1")
        back.close()
    finally:
        assert again.stop() == 0


def test_a_fix_order_trades_with_a_websocket_order(server, clients):
    from flowgate_client import WsClient

    async def websocket_sell():
        client = await WsClient.connect(server.ws_url, credentials(server, 3))
        placed = await client.place(symbol="BTC-USDT", side="sell", type="limit",
                                    price="50000", qty="0.01", client_order_id="ws-1")  # fmt: skip
        await client.aclose()
        return placed

    assert asyncio.run(websocket_sell())["order"]["status"] == "new"
    c = clients(2)
    c.run("""
        send A 98=0 108=30 141=Y
        expect A
        send D 11=fx-1 55=BTC-USDT 54=1 38=0.01 40=2 44=50000 59=1
        expect 8 150=0
        expect 8 150=F 39=2 31=50000 32=0.01 6=50000
    """)


def test_the_session_test_profile_echoes_and_resets_on_loopback_only(start, tmp_path):
    server = start("--fix-test-session", "TW:ISLD")
    for _ in range(2):  # every Logon resets the numbers: the second starts at 1 again
        c = FixClient(server.fix_port, "TW", target="ISLD")
        c.run("send A 98=0 108=30\nexpect A 108=30")
        c.send("D", [(60, "20261124-00:00:00"), (11, "echo"), (55, "IBM"), (54, 1), (38, 100),
                     (40, 1)])  # fmt: skip
        echo = c.expect("D", t11="echo", t55="IBM")
        assert list(echo)[5:] == [11, 38, 40, 54, 55, 60]  # QuickFIX's order: by tag
        c.run("""
            # validated with the data dictionary, Rejected as QuickFIX does
            send D 11=bad 55=IBM 54=7 38=100 40=1
            expect 3 45=3 371=54 372=D 373=5
            send H 11=echo
            expect j 45=4 372=H 380=3
            send 5
            expect 5
        """)
        c.close()
    # a Logon and the message after it in one read: that message is validated too
    c = FixClient(server.fix_port, "TW", target="ISLD")
    now = now_timestamp()
    c.sock.sendall(encode("A", "TW", "ISLD", 1, now, [(98, 0), (108, 30)])
                   + encode("D", "TW", "ISLD", 2, now, [(11, "bad"), (55, "IBM"), (54, 7),
                                                        (38, 100), (40, 1)]))  # fmt: skip
    c.seq = 3
    c.run("expect A 108=30\nexpect 3 45=2 371=54 372=D 373=5")
    c.close()
    signed = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
    signed.run("send A 98=0 108=30 141=Y\nexpect A")  # other identities sign as usual
    signed.close()

    refused = subprocess.run(
        [sys.executable, "-m", "engine.cli", "serve", "--demo", "--data-dir",
         str(tmp_path / "open"), "--host", "0.0.0.0", "--fix-test-session", "TW:ISLD"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "loopback" in refused.stderr


def test_heartbeats_test_requests_and_a_silent_peer_disconnected(clients):
    c = clients()
    c.run("send A 98=0 108=1 141=Y\nexpect A 108=1")
    c.expect("0")  # nothing sent for HeartBtInt: a Heartbeat
    request = c.receive()  # nothing received for 1.2 x HeartBtInt: a TestRequest, after
    while request is not None and request[35] == b"0":  # another Heartbeat when the once-a-
        request = c.receive()  # second check came before that was due
    assert request is not None and request[35] == b"1", request
    c.send("0", [(112, request[112].decode())])
    c.expect("0")
    kinds = []  # silent again: Heartbeats, then a TestRequest; unanswered, the connection
    while (message := c.receive(timeout=5)) is not None:  # closes (no Heartbeat meanwhile)
        kinds.append(message[35])
    assert kinds[-1] == b"1" and set(kinds[:-1]) <= {b"0"}


def test_a_revoked_key_ends_its_fix_session(server, clients):
    from gateways.auth.keys import KeyStore

    c = clients()
    c.run("send A 98=0 108=30 141=Y\nexpect A")
    store = KeyStore(server.data_dir)
    store.revoke(c.credentials.key)
    store.close()
    assert c.expect("5")[58] == b"the API key was revoked or expired" and c.closed()


@pytest.mark.parametrize("placement", [(), ("--engine-process",)],
                         ids=["one-thread", "engine-process"])  # fmt: skip
def test_fix_order_entry_in_both_placements(start, placement):
    server = start(*placement)
    c = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
    c.run("""
        send A 98=0 108=30 141=Y
        expect A
        send D 11=p1 55=ETH-USDT 54=1 38=0.5 40=2 44=2990 59=1
        expect 8 150=0 39=0
        send q 11=all 530=7
        expect 8 150=4 11=p1
        expect r 531=7 533=1
    """)
    c.close()
    assert server.stop() == 0


def test_an_order_over_the_budget_is_refused_with_when_to_retry(start):
    server = start(sections={"limits": {"order_rate": 1, "order_burst": 1}})
    c = FixClient(server.fix_port, "ACCOUNT2", credentials(server, 2))
    c.run("""
        send A 98=0 108=30 141=Y
        expect A
        send D 11=b1 55=BTC-USDT 54=1 38=0.001 40=2 44=46000 59=1
        expect 8 150=0 39=0
        send D 11=b2 55=BTC-USDT 54=1 38=0.001 40=2 44=46000 59=1
    """)
    refusal = c.expect("j", t380="99", t372="D")
    assert refusal[58].startswith(b"RATE_LIMITED: ") and b"; retry after " in refusal[58]
    assert int(refusal[7901]) > 0 and refusal[7902] == b"0" and int(refusal[7904]) > 0
    c.close()
    assert server.stop() == 0
