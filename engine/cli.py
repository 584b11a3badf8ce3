"""The `flowgate` command."""

import argparse
import logging
import sys
from pathlib import Path

import msgspec

from engine import config as venue_config
from engine import messages as m
from engine.engine import Engine


def tour(args) -> int:
    """Drive the core through a short scripted session on the demo venue and show the result."""
    engine = Engine(venue_config.demo())
    btc = engine.instrument("BTC-USDT")
    usdt = engine.assets["USDT"]
    ts = 0

    def send(command):
        nonlocal ts
        ts += 1_000_000
        events = engine.apply(command, ts)
        for e in events:
            if not isinstance(e, m.BalanceChanged | m.PositionChanged):
                print(f"  {describe(e, btc)}")
        return events

    def order(account, side, price, qty, **fields):
        fields.setdefault("type", m.OrderType.LIMIT)
        command = m.PlaceOrder(
            account=account, instrument=btc.index, side=side,
            price=btc.price_to_ticks(price) if price else 0, qty=btc.qty_to_lots(qty), **fields,
        )  # fmt: skip
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if k != "type")
        print(f"account {account} {side} {qty} BTC-USDT @ {price or 'market'} {extra}")
        return send(command)

    print("Flowgate core demo: BTC-USDT, tick 0.01, lot 0.0001, 10% price band\n")
    for i, (bid, ask) in enumerate([("49999.50", "50000.50"), ("49999", "50001")]):
        order(1, m.Side.BUY, bid, "0.5", client_order_id=f"mm-bid-{i}")
        order(1, m.Side.SELL, ask, "0.5", client_order_id=f"mm-ask-{i}")
    order(2, m.Side.BUY, "", "0.7", type=m.OrderType.MARKET, tif=m.TimeInForce.IOC)
    order(3, m.Side.SELL, "49999.50", "0.2", post_only=True)
    order(3, m.Side.SELL, "60000", "0.2")
    print("account 1 amends mm-bid-1 to 0.3 (keeps its place)")
    send(m.AmendOrder(account=1, client_order_id="mm-bid-1", qty=btc.qty_to_lots("0.3")))
    print("\nbook:")
    for side in (m.Side.SELL, m.Side.BUY):
        levels = engine.core.book(btc.index, m.SIDE_CODE[side])
        for price, total, ids in reversed(levels) if side == m.Side.SELL else levels:
            print(f"  {side:4} {btc.ticks_to_price(price):>10} {btc.lots_to_qty(total):>8} "
                  f"({len(ids)} orders)")  # fmt: skip
    print("\nbalances (USDT total / locked):")
    for account in (1, 2, 3):
        total, locked = engine.core.balance(account, usdt)
        print(f"  account {account}: {btc.quote_to_text(total)} / {btc.quote_to_text(locked)}")
    print(f"\nstate hash {engine.state_hash()}")
    return 0


def describe(e: m.Event, spec) -> str:
    name = type(e).__struct_config__.tag
    if isinstance(e, m.Trade):
        return (
            f"trade #{e.trade_id}: {spec.lots_to_qty(e.qty)} @ {spec.ticks_to_price(e.price)}"
            f" taker order {e.taker_order_id} maker order {e.maker_order_id},"
            f" fees {spec.quote_to_text(e.taker_fee)} / {spec.quote_to_text(e.maker_fee)}"
        )
    if isinstance(e, m.OrderRejected):
        return f"rejected: {e.code}"
    if isinstance(e, m.OrderCanceled):
        return f"order {e.order_id} canceled ({e.reason}), {spec.lots_to_qty(e.leaves)} unfilled"
    if isinstance(e, m.OrderAmended):
        kept = "kept" if e.priority_kept else "lost"
        return f"order {e.order_id} amended to {spec.lots_to_qty(e.qty)}, priority {kept}"
    if isinstance(e, m.OrderAccepted):
        return f"order {e.order_id} accepted"
    return name  # fmt: skip


def check_config(args) -> int:
    try:
        config = venue_config.load(args.file)
        specs = venue_config.instrument_specs(config)
    except (OSError, venue_config.ConfigError) as e:
        print(f"{args.file}: {e}", file=sys.stderr)
        return 1
    for s in specs:
        print(f"{s.symbol}: tick {s.ticks_to_price(1)}, lot {s.lots_to_qty(1)}, "
              f"qty {s.lots_to_qty(s.min_qty)}..{s.lots_to_qty(s.max_qty)}, "
              f"reference {s.ticks_to_price(s.reference_price)} +/- {s.band_bps} bps")  # fmt: skip
    print(f"{len(config.accounts)} accounts, {len(config.assets)} assets: OK")
    return 0


def serve(args) -> int:
    from engine import logs, server
    from engine.engine_process import EngineStartError
    from engine.journal import JournalError
    from engine.runtime import DataDirError

    logs.configure(args.log_level)
    if args.engine_process and args.metrics_port is not None:
        print("--metrics-port needs the engine on the loop's thread (without "
              "--engine-process)", file=sys.stderr)  # fmt: skip
        return 2
    try:
        config = venue_config.demo() if args.demo else venue_config.load(args.config)
        venue_config.instrument_specs(config)
    except (OSError, venue_config.ConfigError) as e:
        print(f"{args.config}: {e}", file=sys.stderr)
        return 2
    test_session = None
    if args.fix_test_session:
        sender, _, target = args.fix_test_session.partition(":")
        if not sender or not target:
            print("--fix-test-session is SENDER:TARGET", file=sys.stderr)
            return 2
        if args.host not in ("127.0.0.1", "::1", "localhost"):
            print("--fix-test-session needs --host on loopback", file=sys.stderr)
            return 2
        test_session = (sender, target)
    options = server.ServeOptions(
        data_dir=Path(args.data_dir), durability=args.durability, record_port=args.record_port,
        cpu=args.cpu, snapshot_every=args.snapshot_every, snapshot_seconds=args.snapshot_seconds,
        command_slots=args.command_ring_slots, metrics_port=args.metrics_port,
        market_maker=args.market_maker, engine_process=args.engine_process, demo=args.demo,
        host=args.host, rest_port=args.rest_port, ws_port=args.ws_port, fix_port=args.fix_port,
        fix_test_session=test_session, fix_test_dictionary=args.fix_test_dictionary,
    )  # fmt: skip
    try:
        return server.run(config, options)
    except (DataDirError, JournalError, EngineStartError) as e:
        logging.getLogger("flowgate.server").error("cannot start", extra={"error": str(e)})
        return 1


def keys(args) -> int:
    import base64

    from engine.runtime import CONFIG_FILE, load_data_dir_config
    from gateways.auth import keys as key_store

    data_dir = Path(args.data_dir)
    if args.action in ("list", "revoke") and not (data_dir / key_store.FILE).exists():
        print(f"keys {args.action}: no keys in {data_dir}", file=sys.stderr)
        return 2
    if args.action in ("create", "add") and (data_dir / CONFIG_FILE).exists():
        accounts = [a.id for a in load_data_dir_config(data_dir).accounts]  # a venue's keys
        if args.account not in accounts:
            print(f"keys {args.action}: the venue in {data_dir} has no account {args.account}",
                  file=sys.stderr)  # fmt: skip
            return 2
    store = key_store.KeyStore(data_dir)
    try:
        if args.action == "create":
            key, secret = store.create(args.account, args.type, args.permissions.split(","),
                                       args.ip or (), args.expires_ms)  # fmt: skip
            print(
                msgspec.json.encode(
                    {**key.public(), "secret": base64.b64encode(secret).decode()}
                ).decode()
            )
            print("the secret is shown once: keep it safe", file=sys.stderr)
        elif args.action == "add":
            public_key = base64.b64decode(args.public_key)
            key = store.add(args.account, public_key, args.permissions.split(","),
                            args.ip or (), args.expires_ms)  # fmt: skip
            print(msgspec.json.encode(key.public()).decode())
        elif args.action == "revoke":
            if not store.revoke(args.key_id):
                print(f"no active key {args.key_id}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}")
        else:
            for key in store.all():
                print(msgspec.json.encode(key.public()).decode())
    except ValueError as e:
        print(f"keys {args.action}: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def replay(args) -> int:
    from engine.journal import JournalError
    from engine.runtime import replay as replay_journal

    try:
        report = replay_journal(Path(args.data_dir))
    except (OSError, JournalError) as e:
        print(f"replay failed: {e}", file=sys.stderr)
        return 1
    print(msgspec.json.encode(report).decode())
    if args.verify and (report.mismatches or report.unreached):
        print(f"VERIFY FAILED: mismatches at {report.mismatches}, "
              f"past the journal: {report.unreached}", file=sys.stderr)  # fmt: skip
        return 1
    if args.verify:
        print(f"verified: {report.checked} recorded state hashes match the replay "
              f"of seq 1..{report.last_seq}", file=sys.stderr)  # fmt: skip
    return 0


def main(argv=None) -> int:
    from engine.journal import Durability

    parser = argparse.ArgumentParser(prog="flowgate")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the venue")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="venue configuration (TOML)")
    source.add_argument("--demo", action="store_true", help="demo instruments and accounts")
    run.add_argument("--data-dir", default="flowgate-data", help="journal, snapshots, history")
    run.add_argument("--durability", choices=[d.value for d in Durability], default="write",
                     help="fsync: synced before any ack; write (default): survives a process "
                          "crash; none: no journal (benchmarks only)")  # fmt: skip
    run.add_argument("--host", default="127.0.0.1", help="address of the public gateways")
    run.add_argument("--rest-port", type=int, default=8080, help="REST gateway (/v1)")
    run.add_argument("--ws-port", type=int, default=8081, help="WebSocket gateway (/v1/ws)")
    run.add_argument("--fix-port", type=int, default=9878, help="FIX 4.4 gateway")
    run.add_argument("--fix-test-session", metavar="SENDER:TARGET",
                     help="FIX session-test profile for conformance harnesses: this identity "
                          "logs on without a signature, resets on Logon and has its messages "
                          "echoed (loopback only)")  # fmt: skip
    run.add_argument("--fix-test-dictionary", type=Path, metavar="XML",
                     help="the QuickFIX data dictionary the FIX test session is validated with "
                          "(default: docs/FIX44-flowgate.xml)")  # fmt: skip
    run.add_argument("--record-port", type=int, help="serve the record port on loopback")
    run.add_argument("--metrics-port", type=int, help="serve /metrics (Prometheus) on loopback")
    run.add_argument("--engine-process", action="store_true",
                     help="the engine in a process of its own, pinned to --cpu (default: the "
                          "last); the gateways' loop on another core")  # fmt: skip
    run.add_argument("--market-maker", action="store_true",
                     help="account 1 keeps quotes in every book (for --demo)")  # fmt: skip
    run.add_argument("--cpu", type=int, help="pin the venue to this CPU (default: the last)")
    run.add_argument("--command-ring-slots", type=int, default=1 << 16,
                     help="commands that may wait for the engine (a power of two)")  # fmt: skip
    run.add_argument("--snapshot-every", type=int, default=1_000_000, help="commands")
    run.add_argument("--snapshot-seconds", type=float, default=300.0)
    run.add_argument("--log-level", default="info")
    rebuild = commands.add_parser("replay", help="rebuild the state from the journal alone")
    rebuild.add_argument("--data-dir", required=True)
    rebuild.add_argument("--verify", action="store_true",
                         help="fail unless every recorded state hash matches")  # fmt: skip
    key_commands = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="action", required=True)  # fmt: skip
    key_actions = (
        ("create", "make an Ed25519 pair (or an HMAC secret); prints the secret once"),
        ("add", "register a client-made Ed25519 public key"),
    )
    for action, text in key_actions:
        sub = key_commands.add_parser(action, help=text)
        sub.add_argument("--data-dir", required=True)
        sub.add_argument("--account", type=int, required=True)
        sub.add_argument("--permissions", default="read,trade")
        sub.add_argument("--ip", action="append", help="allowed CIDR (repeatable)")
        sub.add_argument("--expires-ms", type=int, help="expiry, ms since the epoch")
        if action == "create":
            sub.add_argument("--type", choices=["ed25519", "hmac-sha256"], default="ed25519")
        else:
            sub.add_argument("--public-key", required=True, help="base64, 32 bytes")
    revoke = key_commands.add_parser("revoke", help="revoke a key (live sessions are closed)")
    revoke.add_argument("--data-dir", required=True)
    revoke.add_argument("key_id")
    listing = key_commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--data-dir", required=True)
    commands.add_parser("tour", help="a short scripted session through the core")
    check = commands.add_parser("check-config", help="validate a venue configuration file")
    check.add_argument("file")
    args = parser.parse_args(argv)
    handlers = {"serve": serve, "replay": replay, "keys": keys, "tour": tour,
                "check-config": check_config}  # fmt: skip
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
