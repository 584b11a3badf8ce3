"""The comparison harness replays the same streams through every book and checks
each book's end state, so a wrong book cannot report a rate."""

import pytest

from bench import competitors
from bench.core import FlowgateAdapter

STREAMS = competitors.operation_streams(n_ops=2_001, depth=100, seed=7)


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
    rates = competitors.run_streams(make(), STREAMS, warmup=False)
    assert all(rates[f"{name}_ops_per_s"] > 0 for name in STREAMS)


def test_a_book_that_loses_an_order_is_caught():
    class Lossy(FlowgateAdapter):
        def execute(self, action, args):
            super().execute(action, args[:-1])

    with pytest.raises(RuntimeError, match="expected"):
        competitors.run_stream(Lossy(capacity=2_200), STREAMS["insert"], warmup=False)
