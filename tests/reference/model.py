"""A pure-Python reference of the venue's rules: plain dicts and lists, no
tricks. The Cython core must produce exactly the same events and state.

Rules, in the order they are applied to a placement:
1. the account and instrument exist; a client order id fits 36 bytes;
2. a client order id already used by this account: identical parameters give
   the order's current state (a safe retry); otherwise, if that order is still
   open, DUPLICATE_CLIENT_ORDER_ID (a closed order's id may be reused);
3. field validation (side, type, tif, stp, price, qty, expiry);
4. risk: kill switch, quantity limits, price band, notional limits, open-order
   limit, post-only, balance hold; then pool capacity;
5. accepted: the hold is locked, ACCEPTED is emitted, the order matches at
   price-time priority, then rests (GTC/GTD limit) or its rest is canceled.
"""

import heapq
from collections import defaultdict, deque

from engine import messages as m
from engine.config import VenueConfig, instrument_specs, opening_balances

BUY, SELL = m.Side.BUY, m.Side.SELL
MAX_SUPPLY = 1 << 62  # of one asset, across the venue
ALIVE = (m.OrderStatus.NEW, m.OrderStatus.PARTIALLY_FILLED)


class Order:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def fee(notional, bps):
    return notional * bps // 10000


class ReferenceEngine:
    def __init__(self, config: VenueConfig):
        self.specs = instrument_specs(config)
        self.n_assets = len(config.assets)
        tiers = {t.name: t for t in config.fee_tiers}
        self.fee_bps = {}  # account -> (maker, taker)
        self.balances = {}  # (account, asset) -> [total, locked]
        self.positions = {}  # (account, instrument) -> [net_qty, cost, realized_pnl]
        self.account_orders = {}  # account -> open orders, oldest first
        self.killed = set()
        self.deadlines = defaultdict(int)  # account -> dead man's switch deadline
        self.net_deposits = [0] * self.n_assets
        self.fees = [0] * self.n_assets
        for account in config.accounts:
            tier = tiers[account.fee_tier]
            self.fee_bps[account.id] = (tier.maker_bps, tier.taker_bps)
            self.account_orders[account.id] = []
            for asset in range(self.n_assets):
                self.balances[account.id, asset] = [0, 0]
            for spec in self.specs:
                self.positions[account.id, spec.index] = [0, 0, 0]
        for account, asset, amount in opening_balances(config):
            self.balances[account, asset][0] += amount
            self.net_deposits[asset] += amount
        self.reference_price = [s.reference_price for s in self.specs]
        self.books = [{BUY: {}, SELL: {}} for _ in self.specs]  # price -> FIFO list
        self.by_id = {}  # open and remembered closed orders
        self.by_coid = {}  # (account, client order id) -> order
        self.retired = deque()
        self.expiries = []  # heap of (expire_ns, order_id)
        self.order_capacity = config.capacity.orders
        self.retired_capacity = config.capacity.retired_orders
        self.max_open_orders = config.risk.max_open_orders_per_account
        self.next_order_id = 1
        self.next_trade_id = 1
        self.seq = 0

    # -- the command loop --

    def apply(self, command: m.Command, ts_ns: int) -> list[m.Event]:
        self.seq += 1
        self.ts = ts_ns
        self.command = command
        self.events = []
        self.touched_balances = []
        self.touched_positions = []
        self.expire_due()
        self.fire_cancel_all_after()
        match command:
            case m.PlaceOrder():
                self.place(command)
            case m.CancelOrder():
                self.cancel(command)
            case m.AmendOrder():
                self.amend(command)
            case m.MassCancel():
                self.mass_cancel(command)
            case m.Deposit() | m.Withdraw():
                self.transfer(command)
            case m.SetKillSwitch():
                self.kill_switch(command)
            case m.CancelAllAfter():
                self.cancel_all_after(command)
        for account, asset in self.touched_balances:
            total, locked = self.balances[account, asset]
            self.emit(m.BalanceChanged, account, asset, total, locked)
        for account, instrument in self.touched_positions:
            self.emit(m.PositionChanged, account, instrument, *self.positions[account, instrument])
        return self.events

    def emit(self, event_type, *fields):
        self.events.append(event_type(self.seq, self.ts, *fields))

    def reject(self, code):
        c = self.command
        name = {
            m.PlaceOrder: "place", m.CancelOrder: "cancel", m.AmendOrder: "amend",
            m.MassCancel: "mass_cancel", m.Deposit: "deposit", m.Withdraw: "withdraw",
            m.SetKillSwitch: "kill_switch", m.CancelAllAfter: "cancel_all_after",
        }[type(c)]  # fmt: skip
        instrument = getattr(c, "instrument", getattr(c, "asset", 0))
        coid = getattr(c, "client_order_id", "").encode()[:36].decode(errors="replace")
        self.emit(
            m.OrderRejected, name, code, c.account, instrument, getattr(c, "order_id", 0), coid
        )

    def touch_balance(self, account, asset):
        if (account, asset) not in self.touched_balances:
            self.touched_balances.append((account, asset))

    def touch_position(self, account, instrument):
        if (account, instrument) not in self.touched_positions:
            self.touched_positions.append((account, instrument))

    # -- commands --

    def place(self, c: m.PlaceOrder):
        if c.account not in self.fee_bps:
            return self.reject("UNKNOWN_ACCOUNT")
        if not 0 <= c.instrument < len(self.specs):
            return self.reject("UNKNOWN_INSTRUMENT")
        coid = c.client_order_id
        if len(coid.encode()) > 36:
            return self.reject("INVALID_CLIENT_ORDER_ID")
        previous = self.by_coid.get((c.account, coid)) if coid else None
        if previous is not None:
            same = (previous.instrument, previous.side, previous.type, previous.tif,
                    previous.post_only, previous.stp, previous.orig_price, previous.orig_qty,
                    previous.expire_ns) == (c.instrument, c.side, c.type, c.tif, c.post_only,
                                            c.stp, c.price, c.qty, c.expire_ns)  # fmt: skip
            if same:
                o = previous
                return self.emit(
                    m.OrderState, o.order_id, o.account, o.instrument, o.side, o.type, o.tif,
                    o.status, o.price, o.qty, o.leaves, o.filled, o.filled_quote, o.coid,
                    o.reason,
                )  # fmt: skip
            if previous.status in ALIVE:
                return self.reject("DUPLICATE_CLIENT_ORDER_ID")
        market = c.type == m.OrderType.MARKET
        if market:
            if c.post_only:
                return self.reject("INVALID_ORDER_TYPE")
            if c.tif not in (m.TimeInForce.IOC, m.TimeInForce.FOK):
                return self.reject("INVALID_TIF")
            if c.price != 0:
                return self.reject("INVALID_PRICE")
        else:
            if c.price <= 0:
                return self.reject("INVALID_PRICE")
            if c.post_only and c.tif not in (m.TimeInForce.GTC, m.TimeInForce.GTD):
                return self.reject("INVALID_TIF")
        if c.qty <= 0:
            return self.reject("INVALID_QUANTITY")
        if c.tif == m.TimeInForce.GTD:
            if c.expire_ns <= self.ts:
                return self.reject("INVALID_EXPIRE_TIME")
        elif c.expire_ns != 0:
            return self.reject("INVALID_EXPIRE_TIME")

        spec = self.specs[c.instrument]
        if c.account in self.killed:
            return self.reject("KILL_SWITCH_ACTIVE")
        if c.qty < spec.min_qty:
            return self.reject("QUANTITY_BELOW_MIN")
        if c.qty > spec.max_qty:
            return self.reject("QUANTITY_ABOVE_MAX")
        low, high = self.band(c.instrument)
        if not market:
            if not low <= c.price <= high:
                return self.reject("PRICE_OUT_OF_BAND")
            limit = c.price
            notional = c.price * c.qty * spec.quote_per_tick_lot
        else:
            limit = high if c.side == BUY else low
            notional = self.reference_price[c.instrument] * c.qty * spec.quote_per_tick_lot
        if notional < spec.min_notional:
            return self.reject("NOTIONAL_BELOW_MIN")
        if notional > spec.max_notional:
            return self.reject("NOTIONAL_ABOVE_MAX")
        can_rest = not market and c.tif in (m.TimeInForce.GTC, m.TimeInForce.GTD)
        if can_rest and len(self.account_orders[c.account]) >= self.max_open_orders:
            return self.reject("TOO_MANY_OPEN_ORDERS")
        if c.post_only and self.would_take(c.instrument, c.side, c.price):
            return self.reject("POST_ONLY_WOULD_TAKE")
        o = Order(
            order_id=0, account=c.account, instrument=c.instrument, side=c.side, type=c.type,
            tif=c.tif, post_only=c.post_only, stp=c.stp, price=c.price, limit=limit,
            qty=c.qty, leaves=c.qty, filled=0, filled_quote=0, locked=0,
            expire_ns=c.expire_ns, orig_price=c.price, orig_qty=c.qty, coid=coid,
            status=m.OrderStatus.NEW, reason=None, resting=False, open=False,
        )  # fmt: skip
        hold = self.hold(o, o.leaves)
        if hold > self.available(c.account, self.hold_asset(o)):
            return self.reject("INSUFFICIENT_BALANCE")
        in_pool = sum(len(v) for v in self.account_orders.values()) + len(self.retired)
        if in_pool == self.order_capacity:
            if not self.retired:
                return self.reject("CAPACITY_EXCEEDED")
            self.forget(self.retired.popleft())

        o.order_id = self.next_order_id
        self.next_order_id += 1
        self.by_id[o.order_id] = o
        if coid:
            self.by_coid[c.account, coid] = o
        o.locked = hold
        self.balances[o.account, self.hold_asset(o)][1] += hold
        self.touch_balance(o.account, self.hold_asset(o))
        self.emit(
            m.OrderAccepted, o.order_id, o.account, o.instrument, o.side, o.type, o.tif, o.stp,
            o.price, o.qty, o.post_only, o.expire_ns, o.coid,
        )  # fmt: skip
        if c.tif == m.TimeInForce.FOK and not self.fok_fillable(o):
            self.finish(o, m.OrderStatus.CANCELED, m.CancelReason.FOK_UNFILLABLE)
        elif self.match(o):
            pass
        elif o.leaves == 0:
            self.finish(o, m.OrderStatus.FILLED)
        elif can_rest:
            self.rest(o)
        else:
            self.finish(o, m.OrderStatus.CANCELED, m.CancelReason.UNFILLED)

    def target(self, c):
        if c.order_id:
            o = self.by_id.get(c.order_id)
        elif 0 < len(c.client_order_id.encode()) <= 36:
            o = self.by_coid.get((c.account, c.client_order_id))
        else:
            o = None
        if o is None or o.account != c.account or not o.open:
            return None
        return o

    def cancel(self, c: m.CancelOrder):
        if c.account not in self.fee_bps:
            return self.reject("UNKNOWN_ACCOUNT")
        o = self.target(c)
        if o is None:
            return self.reject("UNKNOWN_ORDER")
        self.finish(o, m.OrderStatus.CANCELED, m.CancelReason.USER)

    def amend(self, c: m.AmendOrder):
        if c.account not in self.fee_bps:
            return self.reject("UNKNOWN_ACCOUNT")
        o = self.target(c)
        if o is None:
            return self.reject("UNKNOWN_ORDER")
        spec = self.specs[o.instrument]
        if c.account in self.killed:
            return self.reject("KILL_SWITCH_ACTIVE")
        if c.price < 0:
            return self.reject("INVALID_PRICE")
        if c.qty < 0:
            return self.reject("INVALID_QUANTITY")
        price = c.price or o.price
        qty = c.qty or o.qty
        if qty <= o.filled:
            return self.reject("INVALID_QUANTITY")
        if qty < spec.min_qty:
            return self.reject("QUANTITY_BELOW_MIN")
        if qty > spec.max_qty:
            return self.reject("QUANTITY_ABOVE_MAX")
        if price != o.price:
            low, high = self.band(o.instrument)
            if not low <= price <= high:
                return self.reject("PRICE_OUT_OF_BAND")
        notional = price * qty * spec.quote_per_tick_lot
        if notional < spec.min_notional:
            return self.reject("NOTIONAL_BELOW_MIN")
        if notional > spec.max_notional:
            return self.reject("NOTIONAL_ABOVE_MAX")
        leaves = qty - o.filled
        keep = price == o.price and leaves <= o.leaves
        if not keep and o.post_only and self.would_take(o.instrument, o.side, price):
            return self.reject("POST_ONLY_WOULD_TAKE")
        old_limit, o.limit = o.limit, price
        new_hold = self.hold(o, leaves)
        o.limit = old_limit
        asset = self.hold_asset(o)
        if new_hold - o.locked > self.available(o.account, asset):
            return self.reject("INSUFFICIENT_BALANCE")

        if not keep:
            self.unlink(o)
            o.price = o.limit = price
        o.qty, o.leaves = qty, leaves
        self.balances[o.account, asset][1] += new_hold - o.locked
        o.locked = new_hold
        self.touch_balance(o.account, asset)
        self.emit(
            m.OrderAmended, o.order_id, o.account, o.instrument, o.side, o.price, o.qty,
            o.leaves, o.filled, keep, o.coid,
        )  # fmt: skip
        if keep or self.match(o):
            return
        if o.leaves == 0:
            self.finish(o, m.OrderStatus.FILLED)
        else:
            self.rest(o)

    def mass_cancel(self, c: m.MassCancel):
        if c.account not in self.fee_bps:
            return self.reject("UNKNOWN_ACCOUNT")
        if not -1 <= c.instrument < len(self.specs):
            return self.reject("UNKNOWN_INSTRUMENT")
        count = 0
        for o in list(self.account_orders[c.account]):
            if c.instrument in (-1, o.instrument) and c.side in (None, o.side):
                self.finish(o, m.OrderStatus.CANCELED, m.CancelReason.MASS)
                count += 1
        self.emit(m.MassCanceled, c.account, c.instrument, c.side, count)

    def transfer(self, c):
        if c.account not in self.fee_bps:
            return self.reject("UNKNOWN_ACCOUNT")
        if not 0 <= c.asset < self.n_assets:
            return self.reject("UNKNOWN_ASSET")
        balance = self.balances[c.account, c.asset]
        if c.amount <= 0:
            return self.reject("INVALID_AMOUNT")
        if isinstance(c, m.Deposit):
            if self.net_deposits[c.asset] + c.amount > MAX_SUPPLY:
                return self.reject("INVALID_AMOUNT")
            balance[0] += c.amount
            self.net_deposits[c.asset] += c.amount
        else:
            if c.amount > balance[0] - balance[1]:
                return self.reject("INSUFFICIENT_BALANCE")
            balance[0] -= c.amount
            self.net_deposits[c.asset] -= c.amount
        self.touch_balance(c.account, c.asset)

    def kill_switch(self, c: m.SetKillSwitch):
        if c.account not in self.fee_bps:
            return self.reject("UNKNOWN_ACCOUNT")
        self.emit(m.KillSwitchChanged, c.account, c.on)
        if c.on:
            self.killed.add(c.account)
            for o in list(self.account_orders[c.account]):
                self.finish(o, m.OrderStatus.CANCELED, m.CancelReason.KILL_SWITCH)
        else:
            self.killed.discard(c.account)

    def cancel_all_after(self, c: m.CancelAllAfter):
        if c.account not in self.fee_bps:
            return self.reject("UNKNOWN_ACCOUNT")
        if not 0 <= c.timeout_ns <= 86_400 * 10**9:
            return self.reject("INVALID_TIMEOUT")
        self.deadlines[c.account] = self.ts + c.timeout_ns if c.timeout_ns else 0
        self.emit(m.CancelAllAfterSet, c.account, self.deadlines[c.account], False, 0)

    def fire_cancel_all_after(self):
        for account in sorted(self.fee_bps):
            if 0 < self.deadlines[account] <= self.ts:
                self.deadlines[account] = 0
                orders = list(self.account_orders[account])
                for o in orders:
                    self.finish(o, m.OrderStatus.CANCELED, m.CancelReason.CANCEL_ALL_AFTER)
                self.emit(m.CancelAllAfterSet, account, 0, True, len(orders))

    def expire_due(self):
        while self.expiries and self.expiries[0][0] <= self.ts:
            expire_ns, order_id = heapq.heappop(self.expiries)
            o = self.by_id.get(order_id)
            if o is not None and o.open and o.expire_ns == expire_ns:
                self.finish(o, m.OrderStatus.EXPIRED)

    # -- matching --

    def best_prices(self, instrument, side):
        """Prices of one side, best first."""
        return sorted(self.books[instrument][side], reverse=side == BUY)

    def crosses(self, side, limit, price):
        return price <= limit if side == BUY else price >= limit

    def would_take(self, instrument, side, limit):
        opposite = self.best_prices(instrument, SELL if side == BUY else BUY)
        return bool(opposite) and self.crosses(side, limit, opposite[0])

    def match(self, o) -> bool:
        """Trade o against the book; True if self-trade prevention canceled o."""
        opposite_side = SELL if o.side == BUY else BUY
        while o.leaves > 0:
            prices = self.best_prices(o.instrument, opposite_side)
            if not prices or not self.crosses(o.side, o.limit, prices[0]):
                return False
            for maker in list(self.books[o.instrument][opposite_side][prices[0]]):
                if o.leaves == 0:
                    break
                if maker.account == o.account:
                    if o.stp != m.SelfTradePrevention.CANCEL_NEWEST:
                        self.finish(maker, m.OrderStatus.CANCELED, m.CancelReason.SELF_TRADE)
                    if o.stp != m.SelfTradePrevention.CANCEL_OLDEST:
                        self.finish(o, m.OrderStatus.CANCELED, m.CancelReason.SELF_TRADE)
                        return True
                else:
                    self.fill(o, maker, prices[0], min(o.leaves, maker.leaves))
                    if maker.leaves == 0:
                        self.finish(maker, m.OrderStatus.FILLED)
        return False

    def fok_fillable(self, o) -> bool:
        opposite_side = SELL if o.side == BUY else BUY
        available = 0
        for price in self.best_prices(o.instrument, opposite_side):
            if not self.crosses(o.side, o.limit, price):
                return False
            for maker in self.books[o.instrument][opposite_side][price]:
                if maker.account == o.account:
                    if o.stp != m.SelfTradePrevention.CANCEL_OLDEST:
                        return False
                else:
                    available += maker.leaves
                    if available >= o.leaves:
                        return True
        return False

    def fill(self, taker, maker, price, qty):
        spec = self.specs[taker.instrument]
        notional = price * qty * spec.quote_per_tick_lot
        taker_fee = fee(notional, self.fee_bps[taker.account][1])
        maker_fee = fee(notional, self.fee_bps[maker.account][0])
        for o in (taker, maker):
            o.leaves -= qty
            o.filled += qty
            o.filled_quote += price * qty
            o.status = m.OrderStatus.FILLED if o.leaves == 0 else m.OrderStatus.PARTIALLY_FILLED
        self.settle(maker, qty, notional, maker_fee, price)
        self.settle(taker, qty, notional, taker_fee, price)
        self.fees[spec.quote_asset] += taker_fee + maker_fee
        self.reference_price[taker.instrument] = price
        self.emit(
            m.Trade, self.next_trade_id, taker.instrument, price, qty, taker.side,
            taker.order_id, taker.account, taker.leaves, taker.filled, maker.order_id,
            maker.account, maker.leaves, taker_fee, maker_fee,
        )  # fmt: skip
        self.next_trade_id += 1

    def settle(self, o, qty, notional, fee_paid, price):
        spec = self.specs[o.instrument]
        base = self.balances[o.account, spec.base_asset]
        quote = self.balances[o.account, spec.quote_asset]
        self.touch_balance(o.account, spec.base_asset)
        self.touch_balance(o.account, spec.quote_asset)
        if o.side == BUY:
            new_lock = self.hold(o, o.leaves)
            quote[1] -= o.locked - new_lock
            o.locked = new_lock
            quote[0] -= notional + fee_paid
            base[0] += qty * spec.base_per_lot
            self.update_position(o.account, o.instrument, qty, price)
        else:
            o.locked -= qty * spec.base_per_lot
            base[1] -= qty * spec.base_per_lot
            base[0] -= qty * spec.base_per_lot
            quote[0] += notional - fee_paid
            self.update_position(o.account, o.instrument, -qty, price)

    def update_position(self, account, instrument, delta, price):
        p = self.positions[account, instrument]
        self.touch_position(account, instrument)
        net, cost, _ = p
        if net == 0 or (net > 0) == (delta > 0):
            p[0] += delta
            p[1] += price * abs(delta)
            return
        closing = min(abs(delta), abs(net))
        removed = cost * closing // abs(net)
        pnl = price * closing - removed if net > 0 else removed - price * closing
        p[2] += pnl * self.specs[instrument].quote_per_tick_lot
        p[1] -= removed
        p[0] += closing if net < 0 else -closing
        rest = abs(delta) - closing
        if rest:
            p[0] = rest if delta > 0 else -rest
            p[1] = price * rest

    # -- orders and the book --

    def rest(self, o):
        self.books[o.instrument][o.side].setdefault(o.price, []).append(o)
        o.resting = True
        if not o.open:
            o.open = True
            self.account_orders[o.account].append(o)
            if o.tif == m.TimeInForce.GTD:
                heapq.heappush(self.expiries, (o.expire_ns, o.order_id))

    def unlink(self, o):
        level = self.books[o.instrument][o.side][o.price]
        level.remove(o)
        if not level:
            del self.books[o.instrument][o.side][o.price]
        o.resting = False

    def finish(self, o, status, reason=None):
        o.status = status
        o.reason = reason
        if o.resting:
            self.unlink(o)
        if o.open:
            self.account_orders[o.account].remove(o)
            o.open = False
        asset = self.hold_asset(o)
        self.balances[o.account, asset][1] -= o.locked
        o.locked = 0
        self.touch_balance(o.account, asset)
        if status == m.OrderStatus.CANCELED:
            self.emit(
                m.OrderCanceled, o.order_id, o.account, o.instrument, o.side, reason, o.leaves,
                o.filled, o.coid,
            )  # fmt: skip
        elif status == m.OrderStatus.EXPIRED:
            self.emit(
                m.OrderExpired, o.order_id, o.account, o.instrument, o.side, o.leaves, o.filled,
                o.coid,
            )  # fmt: skip
        if self.retired_capacity == 0:
            self.forget(o)
            return
        if len(self.retired) == self.retired_capacity:
            self.forget(self.retired.popleft())
        self.retired.append(o)

    def forget(self, o):
        del self.by_id[o.order_id]
        if o.coid and self.by_coid.get((o.account, o.coid)) is o:
            del self.by_coid[o.account, o.coid]

    # -- risk --

    def band(self, instrument):
        spec = self.specs[instrument]
        ref = self.reference_price[instrument]
        if spec.band_bps <= 0:
            return 1, spec.max_price
        width = ref * spec.band_bps // 10000
        return max(ref - width, 1), min(ref + width, spec.max_price)

    def hold(self, o, leaves):
        spec = self.specs[o.instrument]
        if o.side == BUY:
            notional = o.limit * leaves * spec.quote_per_tick_lot
            return notional + fee(notional, self.fee_bps[o.account][1])
        return leaves * spec.base_per_lot

    def hold_asset(self, o):
        spec = self.specs[o.instrument]
        return spec.quote_asset if o.side == BUY else spec.base_asset

    def available(self, account, asset):
        total, locked = self.balances[account, asset]
        return total - locked

    # -- queries --

    def book(self, instrument, side):
        return [
            (price, sum(o.leaves for o in queue), [o.order_id for o in queue])
            for price in self.best_prices(instrument, side)
            for queue in [self.books[instrument][side][price]]
        ]

    def state_ints(self):
        out = [self.next_order_id, self.next_trade_id]
        for asset in range(self.n_assets):
            out += [self.fees[asset], self.net_deposits[asset]]
        for account in sorted(self.fee_bps):
            out += [account, int(account in self.killed), self.deadlines[account]]
            for asset in range(self.n_assets):
                out += self.balances[account, asset]
            for spec in self.specs:
                out += self.positions[account, spec.index]
        for spec in self.specs:
            out.append(self.reference_price[spec.index])
            for side in (BUY, SELL):
                levels = self.book(spec.index, side)
                out.append(len(levels))
                for price, total, ids in levels:
                    out += [price, total, len(ids)]
                    for order_id in ids:
                        o = self.by_id[order_id]
                        out += [o.order_id, o.account, o.leaves, o.filled, o.filled_quote,
                                o.locked, o.expire_ns]  # fmt: skip
        out.append(len(self.retired))
        out += [o.order_id for o in self.retired]
        return out
