"""FIX codec benchmark: reading a NewOrderSingle and writing an
ExecutionReport with `ext.fix`, beside simplefix doing the same, per message
(median of several passes)."""

import argparse
import statistics
import time

import simplefix

from bench.report import emit, machine, output_arguments
from ext.fix import FixReader, encode

HEADER = ("CLIENT1", "FLOWGATE", 1234, "20261124-16:00:00.123")
NEW_ORDER = [(11, "bid-000123"), (1, "2"), (55, "BTC-USDT"), (54, 1),
             (60, "20261124-16:00:00.123"), (38, "0.0100"), (40, 2), (44, "50000.50"), (59, 1),
             (18, "6")]  # fmt: skip
EXECUTION = [(37, "98765"), (11, "bid-000123"), (17, "E-98765-1"), (150, "F"), (39, "1"),
             (1, "2"), (55, "BTC-USDT"), (54, 1), (38, "0.01"), (44, "50000.5"),
             (32, "0.004"), (31, "50000.5"), (14, "0.004"), (151, "0.006"), (6, "50000.5"),
             (60, "20261124-16:00:00.123456"), (7901, 1795538030553385093),
             (7902, 1795538030553896134), (7903, 1795538030553949024),
             (7904, 1795538030553960461)]  # fmt: skip


def reference(msg_type: str, fields) -> simplefix.FixMessage:
    message = simplefix.FixMessage()
    for tag, value in ((8, "FIX.4.4"), (35, msg_type), (49, HEADER[0]), (56, HEADER[1]),
                       (34, HEADER[2]), (52, HEADER[3])):  # fmt: skip
        message.append_pair(tag, value, header=True)
    for tag, value in fields:
        message.append_pair(tag, value)
    return message


def per_message_us(fn, n: int, passes: int) -> float:
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - started) / n * 1e6)
    return round(statistics.median(times), 3)


def run(args) -> dict:
    order = encode("D", *HEADER, NEW_ORDER)
    reader, parser = FixReader(), simplefix.FixParser()

    def simplefix_parse():
        parser.append_buffer(order)
        return parser.get_message()

    report = reference("8", EXECUTION)
    n, slow, passes = args.messages, max(1, args.messages // 20), args.passes
    return {
        "conditions": {**machine(), "messages": n, "passes": passes},
        "parse_new_order_us": per_message_us(lambda: reader.feed(order), n, passes),
        "encode_execution_report_us": per_message_us(
            lambda: encode("8", *HEADER, EXECUTION), n, passes
        ),  # fmt: skip
        "simplefix_parse_us": per_message_us(simplefix_parse, slow, passes),
        "simplefix_encode_us": per_message_us(report.encode, slow, passes),
    }


def format_report(result: dict) -> str:
    c = result["conditions"]
    return "\n".join([
        f"FIX codec benchmark, {c['date']}: {c['cpu']}, Python {c['python']}; median of "
        f"{c['passes']} passes.",
        "",
        "| per message | ext.fix | simplefix | speed-up |",
        "|---|---:|---:|---:|",
        f"| read a NewOrderSingle | {result['parse_new_order_us']} µs | "
        f"{result['simplefix_parse_us']} µs | "
        f"{result['simplefix_parse_us'] / result['parse_new_order_us']:.0f}x |",
        f"| write an ExecutionReport | {result['encode_execution_report_us']} µs | "
        f"{result['simplefix_encode_us']} µs | "
        f"{result['simplefix_encode_us'] / result['encode_execution_report_us']:.0f}x |",
    ])  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.fix_codec",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--messages", type=int, default=200_000, help="per pass")
    parser.add_argument("--passes", type=int, default=5)
    output_arguments(parser, "fix_codec")
    args = parser.parse_args(argv)
    emit(run(args), args, format_report)


if __name__ == "__main__":
    main()
