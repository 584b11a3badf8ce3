"""Venue configuration: TOML decoded into msgspec Structs, then checked and
turned into the integer parameters the core runs on."""

from fractions import Fraction

import msgspec

from ext import decimal

# Every product the core forms (price x qty x quote_per_tick_lot plus fee, qty x
# base_per_lot, price x band) must stay below this, leaving headroom in int64.
PRODUCT_LIMIT = 1 << 62
# An asset's total supply on the venue is capped at 2**62 minor units (the core's
# MAX_SUPPLY); 12 decimals still leave 4.6 million whole units.
MAX_DECIMALS = 12


class ConfigError(ValueError):
    """A configuration the venue cannot run on, with the reason."""


class AssetConfig(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    decimals: int


class InstrumentConfig(msgspec.Struct, forbid_unknown_fields=True):
    symbol: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_qty: str
    max_qty: str
    min_notional: str
    max_notional: str
    max_price: str
    reference_price: str
    price_band_bps: int = 1000  # 0 disables the band


class FeeTier(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    maker_bps: int
    taker_bps: int


class AccountConfig(msgspec.Struct, forbid_unknown_fields=True):
    id: int
    fee_tier: str = "default"
    balances: dict[str, str] = {}


class RiskConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_open_orders_per_account: int = 1000


class CapacityConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    orders: int = 1 << 20  # open orders plus the closed ones remembered
    retired_orders: int = 1 << 16  # closed orders remembered for exactly-once retries


class LimitsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the gateways enforce; read from the venue configuration."""

    key_rate: int = 50  # requests per second per API key
    key_burst: int = 100
    ip_rate: int = 20  # requests per second per IP, unauthenticated
    ip_burst: int = 40
    order_rate: int = 100  # new orders and amends per second per account
    order_burst: int = 200
    ban_failures: int = 10  # authentication failures from one IP within ban_window_s...
    ban_window_s: int = 60
    ban_s: int = 300  # ...ban it this long
    max_connections_per_ip: int = 50
    max_message_bytes: int = 64 * 1024
    window_default_ms: int = 5_000  # signed timestamp window, FG-WINDOW when absent
    window_max_ms: int = 60_000
    http_request_timeout_ms: int = 10_000  # a REST request must arrive whole within this


class VenueConfig(msgspec.Struct, forbid_unknown_fields=True):
    assets: list[AssetConfig]
    instruments: list[InstrumentConfig]
    fee_tiers: list[FeeTier]
    accounts: list[AccountConfig]
    risk: RiskConfig = RiskConfig()
    capacity: CapacityConfig = CapacityConfig()
    limits: LimitsConfig = LimitsConfig()


class InstrumentSpec(msgspec.Struct, frozen=True):
    """An instrument in integers, and the conversions its edges use."""

    index: int
    symbol: str
    base_asset: int
    quote_asset: int
    price_scale: int  # decimals of a price
    tick_units: int  # one tick in 10**-price_scale
    qty_scale: int
    lot_units: int
    quote_scale: int  # decimals of the quote asset
    quote_per_tick_lot: int
    base_per_lot: int
    min_qty: int  # lots
    max_qty: int
    min_notional: int  # quote minor units
    max_notional: int
    max_price: int  # ticks
    reference_price: int
    band_bps: int

    def price_to_ticks(self, text) -> int:
        return decimal.parse_steps(text, self.price_scale, self.tick_units)

    def qty_to_lots(self, text) -> int:
        return decimal.parse_steps(text, self.qty_scale, self.lot_units)

    def ticks_to_price(self, ticks: int) -> str:
        return decimal.format(ticks * self.tick_units, self.price_scale)

    def lots_to_qty(self, lots: int) -> str:
        return decimal.format(lots * self.lot_units, self.qty_scale)

    def quote_to_text(self, amount: int) -> str:
        return decimal.format(amount, self.quote_scale)

    def notional_to_text(self, ticks_lots: int) -> str:
        """A price x quantity product (ticks x lots) in the quote asset."""
        return decimal.format(ticks_lots * self.quote_per_tick_lot, self.quote_scale)


def load(path) -> VenueConfig:
    with open(path, "rb") as f:
        return decode(f.read())


def decode(text: bytes | str) -> VenueConfig:
    try:
        config = msgspec.toml.decode(text, type=VenueConfig)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:  # wrong values; not TOML
        raise ConfigError(str(e)) from None
    instrument_specs(config)  # refuse what the core could not run on
    return config


def _scale_of(text: str) -> int:
    return len(text.partition(".")[2])


def _decimal(text: str, scale: int, what: str) -> int:
    try:
        return decimal.parse(text, scale)
    except decimal.DecimalError as e:
        raise ConfigError(f"{what}: {e}") from None


def _steps(text: str, scale: int, step: int, what: str) -> int:
    try:
        return decimal.parse_steps(text, scale, step)
    except decimal.DecimalError as e:
        raise ConfigError(f"{what}: {e}") from None


def instrument_specs(config: VenueConfig) -> list[InstrumentSpec]:
    assets = {a.name: i for i, a in enumerate(config.assets)}
    if len(assets) != len(config.assets):
        raise ConfigError("asset names must be unique")
    for asset in config.assets:
        if not 0 <= asset.decimals <= MAX_DECIMALS:
            raise ConfigError(f"asset {asset.name}: decimals must be within 0..{MAX_DECIMALS}")
    if not config.fee_tiers:
        raise ConfigError("at least one fee tier is needed")
    for tier in config.fee_tiers:
        if not 0 <= tier.maker_bps <= tier.taker_bps <= 1000:
            raise ConfigError(f"fee tier {tier.name}: need 0 <= maker_bps <= taker_bps <= 1000")
    max_taker = max(t.taker_bps for t in config.fee_tiers)
    specs = []
    for index, ins in enumerate(config.instruments):
        where = f"instrument {ins.symbol}"
        if ins.base not in assets or ins.quote not in assets or ins.base == ins.quote:
            raise ConfigError(f"{where}: base and quote must be two configured assets")
        base, quote = config.assets[assets[ins.base]], config.assets[assets[ins.quote]]
        price_scale, qty_scale = _scale_of(ins.tick_size), _scale_of(ins.lot_size)
        tick = _decimal(ins.tick_size, price_scale, f"{where} tick_size")
        lot = _decimal(ins.lot_size, qty_scale, f"{where} lot_size")
        if tick <= 0 or lot <= 0:
            raise ConfigError(f"{where}: tick and lot sizes must be positive")
        quote_per_tick_lot = Fraction(
            tick * lot * 10**quote.decimals, 10 ** (price_scale + qty_scale)
        )
        base_per_lot = Fraction(lot * 10**base.decimals, 10**qty_scale)
        if quote_per_tick_lot.denominator != 1 or base_per_lot.denominator != 1:
            raise ConfigError(
                f"{where}: one tick x one lot and one lot must be whole minor units of "
                f"{ins.quote} and {ins.base}; use finer asset decimals or coarser steps"
            )
        spec = InstrumentSpec(
            index=index,
            symbol=ins.symbol,
            base_asset=assets[ins.base],
            quote_asset=assets[ins.quote],
            price_scale=price_scale,
            tick_units=tick,
            qty_scale=qty_scale,
            lot_units=lot,
            quote_scale=quote.decimals,
            quote_per_tick_lot=int(quote_per_tick_lot),
            base_per_lot=int(base_per_lot),
            min_qty=_steps(ins.min_qty, qty_scale, lot, f"{where} min_qty"),
            max_qty=_steps(ins.max_qty, qty_scale, lot, f"{where} max_qty"),
            min_notional=_decimal(ins.min_notional, quote.decimals, f"{where} min_notional"),
            max_notional=_decimal(ins.max_notional, quote.decimals, f"{where} max_notional"),
            max_price=_steps(ins.max_price, price_scale, tick, f"{where} max_price"),
            reference_price=_steps(ins.reference_price, price_scale, tick, f"{where} reference"),
            band_bps=ins.price_band_bps,
        )
        if not 1 <= spec.min_qty <= spec.max_qty:
            raise ConfigError(f"{where}: need 0 < min_qty <= max_qty")
        if not 1 <= spec.reference_price <= spec.max_price:
            raise ConfigError(f"{where}: need 0 < reference_price <= max_price")
        if not 0 <= spec.band_bps < 10000:
            raise ConfigError(f"{where}: price_band_bps must be within 0..9999")
        worst = spec.max_price * spec.max_qty * spec.quote_per_tick_lot * (10000 + max_taker)
        if (
            worst // 10000 >= PRODUCT_LIMIT
            or spec.max_qty * spec.base_per_lot >= PRODUCT_LIMIT
            or spec.max_price * 10000 >= PRODUCT_LIMIT
        ):
            raise ConfigError(f"{where}: max_price or max_qty is too large for 64-bit amounts")
        specs.append(spec)
    if len({s.symbol for s in specs}) != len(specs):
        raise ConfigError("instrument symbols must be unique")
    tiers = {t.name for t in config.fee_tiers}
    ids = [a.id for a in config.accounts]
    if len(set(ids)) != len(ids) or any(i < 1 for i in ids):
        raise ConfigError("account ids must be unique and start at 1")
    for account in config.accounts:
        if account.fee_tier not in tiers:
            raise ConfigError(f"account {account.id}: unknown fee tier {account.fee_tier}")
        for name, amount in account.balances.items():
            if name not in assets:
                raise ConfigError(f"account {account.id}: unknown asset {name}")
            _decimal(amount, config.assets[assets[name]].decimals, f"account {account.id} {name}")
    return specs


def opening_balances(config: VenueConfig) -> list[tuple[int, int, int]]:
    """(account id, asset index, minor units) of every configured opening balance."""
    assets = {a.name: i for i, a in enumerate(config.assets)}
    return [
        (account.id, assets[name], decimal.parse(amount, config.assets[assets[name]].decimals))
        for account in config.accounts
        for name, amount in account.balances.items()
    ]


DEMO_TOML = """
[[assets]]
name = "BTC"
decimals = 8

[[assets]]
name = "ETH"
decimals = 8

[[assets]]
name = "USDT"
decimals = 6

[[instruments]]
symbol = "BTC-USDT"
base = "BTC"
quote = "USDT"
tick_size = "0.01"
lot_size = "0.0001"
min_qty = "0.0001"
max_qty = "100"
min_notional = "1"
max_notional = "5000000"
max_price = "1000000"
reference_price = "50000"
price_band_bps = 1000

[[instruments]]
symbol = "ETH-USDT"
base = "ETH"
quote = "USDT"
tick_size = "0.01"
lot_size = "0.001"
min_qty = "0.001"
max_qty = "1000"
min_notional = "1"
max_notional = "5000000"
max_price = "100000"
reference_price = "3000"
price_band_bps = 1000

[[fee_tiers]]
name = "default"
maker_bps = 2
taker_bps = 5

[[fee_tiers]]
name = "market_maker"
maker_bps = 0
taker_bps = 3
"""


def demo_toml(accounts: int = 4, sections: dict[str, dict[str, int]] | None = None) -> str:
    """The demo venue as a configuration file (for `serve --config`): two
    instruments and a few funded accounts, account 1 a market maker; with
    other values for tables such as [limits], [risk] or [capacity]."""
    text = DEMO_TOML
    for i in range(1, accounts + 1):
        tier = "market_maker" if i == 1 else "default"
        text += (f'\n[[accounts]]\nid = {i}\nfee_tier = "{tier}"\n'
                 'balances = { BTC = "100", ETH = "1000", USDT = "10000000" }\n')  # fmt: skip
    for table, values in (sections or {}).items():
        text += f"\n[{table}]\n" + "".join(f"{name} = {value}\n" for name, value in values.items())
    return text


def demo(accounts: int = 4) -> VenueConfig:
    return decode(demo_toml(accounts))
