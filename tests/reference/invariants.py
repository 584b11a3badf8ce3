"""Invariants of a venue's state, checked after every command in the random tests."""

from engine import messages as m

BUY, SELL = m.SIDE_CODE[m.Side.BUY], m.SIDE_CODE[m.Side.SELL]


def check_invariants(engine, config):
    core = engine.core
    accounts = [a.id for a in config.accounts]
    n_assets = len(config.assets)
    for spec in engine.instruments:
        bids, asks = core.book(spec.index, BUY), core.book(spec.index, SELL)
        if bids and asks:
            assert bids[0][0] < asks[0][0], f"crossed book {spec.symbol}"
        assert [p for p, _, _ in bids] == sorted((p for p, _, _ in bids), reverse=True)
        assert [p for p, _, _ in asks] == sorted(p for p, _, _ in asks)
        for price, total, ids in bids + asks:
            orders = [core.order(i) for i in ids]
            assert ids and total == sum(o["leaves"] for o in orders) > 0
            assert all(o["price"] == price for o in orders)
    # every asset: balances plus fees collected equal what was deposited
    for asset in range(n_assets):
        held = sum(core.balance(a, asset)[0] for a in accounts)
        assert held + core.fees_collected_in(asset) == core.net_deposits_in(asset)
    # locked equals what the open orders hold; available never negative
    for account in accounts:
        expected = [0] * n_assets
        for order_id in core.open_orders(account):
            o = core.order(order_id)
            spec = engine.instruments[o["instrument"]]
            asset = spec.quote_asset if o["side"] == BUY else spec.base_asset
            expected[asset] += o["locked"]
            assert o["locked"] >= 0
        for asset in range(n_assets):
            total, locked = core.balance(account, asset)
            assert locked == expected[asset], f"account {account} asset {asset}"
            assert total - locked >= 0
