"""The comparison harness replays the same streams through every book and checks
each book's end state, so a wrong book cannot report a rate."""

import pytest

from bench import competitors
from bench.core import FlowgateAdapter

STREAMS = competitors.operation_streams(n_ops=2_001, depth=100, seed=7)
# cancels and takers in rounds of 700, 700 and 601 resting orders, on one book
ROUNDS = competitors.operation_streams(n_ops=2_001, depth=100, seed=7, book_orders=700)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FlowgateAdapter(capacity=2_200),
        competitors.NanobookAdapter,
        # counting fills makes the harness check liquibook's trade count too
        lambda: competitors.LiquibookAdapter(count_fills=True),
    ],
    ids=["flowgate", "nanobook", "liquibook"],
)
def test_every_book_replays_every_stream_correctly(make):
    # run_streams raises if a book's end state differs from the stream's outcome
    for streams in (STREAMS, ROUNDS):
        rates = competitors.run_streams(make(), streams, warmup=False)
        assert all(rates[f"{name}_ops_per_s"] > 0 for name in streams)


def test_rounds_rest_at_most_book_orders_and_add_up_to_n_ops():
    for name in ("cancel", "aggressive"):
        blocks = competitors._round_blocks(ROUNDS[name])
        assert [len(setup) for setup, _ in blocks] == [700, 700, 601]
        assert [len(timed) for _, timed in blocks] == [700, 700, 601]
        placed = [op[2] for setup, _ in blocks for op in setup]
        assert len(set(placed)) == 2_001  # each round places orders of its own


def test_a_book_that_loses_an_order_is_caught():
    class Lossy(FlowgateAdapter):
        def execute(self, action, args):
            super().execute(action, args[:-1])

    with pytest.raises(RuntimeError, match="expected"):
        competitors.run_stream(Lossy(capacity=2_200), STREAMS["insert"], warmup=False)
    with pytest.raises(RuntimeError, match="expected"):
        competitors.run_stream(Lossy(capacity=2_200), ROUNDS["cancel"], warmup=False)
