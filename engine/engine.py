"""The engine facade: one `MatchingCore` configured from a `VenueConfig`."""

import hashlib

import numpy as np

from engine import messages as m
from engine.config import VenueConfig, instrument_specs, opening_balances
from engine.records import COMMAND_DTYPE, EVENT_DTYPE, decode_events, encode_command
from ext.core import MatchingCore


def state_hash(state_ints) -> str:
    """SHA-256 of the canonical state integers (little-endian int64)."""
    return hashlib.sha256(np.asarray(state_ints, dtype="<i8").tobytes()).hexdigest()


class Engine:
    """Applies commands, stamped with a sequence number and the sequencer's time,
    and returns the events they produce. Deterministic: the same commands with the
    same stamps give the same events and the same `state_hash()`."""

    def __init__(self, config: VenueConfig):
        self.config = config
        self.instruments = instrument_specs(config)
        self.assets = {a.name: i for i, a in enumerate(config.assets)}
        self.core = MatchingCore(
            n_accounts=max((a.id for a in config.accounts), default=1),
            n_assets=len(config.assets),
            n_instruments=len(config.instruments),
            order_capacity=config.capacity.orders,
            retired_capacity=config.capacity.retired_orders,
            max_open_orders=config.risk.max_open_orders_per_account,
        )
        for spec in self.instruments:
            self.core.configure_instrument(
                spec.index, spec.base_asset, spec.quote_asset, spec.quote_per_tick_lot,
                spec.base_per_lot, spec.min_qty, spec.max_qty, spec.min_notional,
                spec.max_notional, spec.max_price, spec.reference_price, spec.band_bps,
            )  # fmt: skip
        tiers = {t.name: t for t in config.fee_tiers}
        for account in config.accounts:
            tier = tiers[account.fee_tier]
            self.core.configure_account(account.id, tier.maker_bps, tier.taker_bps)
        for account, asset, amount in opening_balances(config):
            self.core.credit(account, asset, amount)
        self.seq = 0
        self._record = np.zeros(1, dtype=COMMAND_DTYPE)

    def apply(self, command: m.Command, ts_ns: int, recv_ns: int = 0) -> list[m.Event]:
        """Stamp the next sequence number on one command, apply it, return its events."""
        self.seq += 1
        encode_command(command, self._record, self.seq, ts_ns, recv_ns)
        self.core.clear_events()
        self.core.apply_batch(self._record.view(np.uint8))
        return decode_events(self.core.take_events())

    def apply_batch(self, records: np.ndarray) -> np.ndarray:
        """Apply a block of COMMAND_DTYPE records, already stamped, in one call.

        Returns the EVENT_DTYPE records they produced, in order.
        """
        if records.dtype != COMMAND_DTYPE:
            raise TypeError("records must be COMMAND_DTYPE")
        self.core.clear_events()
        self.core.apply_batch(np.ascontiguousarray(records).view(np.uint8))
        if len(records):
            self.seq = int(records["seq"][-1])
        return np.frombuffer(self.core.take_events(), dtype=EVENT_DTYPE)

    def state_hash(self) -> str:
        return state_hash(self.core.state_array())

    def instrument(self, symbol: str):
        return next(s for s in self.instruments if s.symbol == symbol)
