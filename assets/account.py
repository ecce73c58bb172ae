"""live_account: an observation of the broker's account, checked against the ledger.

Each materialisation asks the broker (SimBroker or Alpaca, from the ``broker`` resource)
for the configured account's equity, cash, buying power, positions and open orders and
records them as metadata (typed tables with their column schemas), so the Dagster UI shows what the broker
holds and plots equity across observations. Nothing is written anywhere else.

The check ``live_account_matches_ledger`` compares the broker's positions (symbol →
quantity) and open orders with the ledger's view (``ledger.view.current_view``): the
view the session publishes every bar while it holds the account, or the ledger file
itself when no run holds it. A difference fails the check (severity ERROR) with a table
of the differences; a ledger view that cannot be had (a holder that has not published
one yet) makes it warn, naming why.

In ``sim`` mode the simulated broker's account lives in the account's ledger file, so
observing it means opening that file: the asset takes the account's lease for the
moment of the observation (waiting up to ``LEASE_WAIT_S`` for a warmup, flatten or
monitor, never for a session). While a session holds the account the broker cannot be
observed: the materialisation says so and the check warns. With Alpaca the broker is
observed over HTTP whoever holds the account.
"""

from datetime import datetime, timezone

import dagster as dg

from assets.market import table_metadata
from resources.broker import BrokerResource
from resources.store import StoreResource
from tradenova_dagster.ledger.accounts import require_account
from tradenova_dagster.ledger.lease import SESSION, AccountBusy, AccountLease, lease_holder
from tradenova_dagster.ledger.view import current_view, differences, ledger_view

DEFAULT_ACCOUNT = "sim:default"
CHECK = "live_account_matches_ledger"
LEASE_WAIT_S = 30.0  # sim mode: how long to wait for a warmup, flatten or monitor holding the account


class LiveAccountConfig(dg.Config):
    account: str = DEFAULT_ACCOUNT  # the ledger's account: sim:<name>, alpaca_paper:<name>, ...


POSITION_COLUMNS = {"symbol": "string", "qty": "float", "avg_entry_price": "float", "current_price": "float",
                    "market_value": "float"}
ORDER_COLUMNS = {"client_order_id": "string", "symbol": "string", "side": "string", "qty": "float",
                 "filled_qty": "float", "type": "string", "limit_price": "float", "status": "string",
                 "leg_of": "string", "created_at": "string"}
DIFFERENCE_COLUMNS = {"what": "string", "symbol": "string", "client_order_id": "string", "broker": "string",
                      "ledger": "string"}


def _observe(client) -> dict:
    """One look at the broker: account, positions, open orders."""
    acct = client.get_account()
    positions = sorted(client.get_positions(), key=lambda p: p.symbol)
    orders = sorted(client.list_orders(status="open"),
                    key=lambda o: (o.created_at is None, o.created_at, o.client_order_id))
    return {"account": acct, "positions": positions, "open_orders": orders,
            "observed_at": datetime.now(timezone.utc)}


def _position_rows(positions) -> list[dict]:
    return [{"symbol": p.symbol, "qty": p.qty, "avg_entry_price": round(p.avg_entry_price, 4),
             "current_price": None if p.current_price is None else round(p.current_price, 4),
             "market_value": None if p.current_price is None else round(p.qty * p.current_price * p.multiplier, 2)}
            for p in positions]


def _order_rows(orders) -> list[dict]:
    by_id = {o.id: o.client_order_id for o in orders}
    return [{"client_order_id": o.client_order_id, "symbol": o.symbol, "side": o.side.value, "qty": o.qty,
             "filled_qty": o.filled_qty, "type": o.order_type.value, "limit_price": o.limit_price,
             "status": o.status.value, "leg_of": by_id.get(o.parent_id, o.parent_id) or "",
             "created_at": o.created_at.isoformat() if o.created_at else ""}
            for o in orders]


def _observe_sim(context, account: str, broker: BrokerResource, store: StoreResource):
    """(observation, view, why-not) for a simulated account: under the account's lease,
    the broker and the ledger read from the one file, in one connection."""
    from tradenova_dagster.broker import SimBroker
    from tradenova_dagster.broker.sim import SimConfig

    holder = lease_holder(account)
    if holder is not None and holder.job == SESSION:
        why = (f"the simulated broker of {account} lives in its ledger file, which {holder.describe()} holds: "
               "it cannot be observed until the session ends")
        return None, None, why
    try:
        with AccountLease(account, context.run_id, "live_account", wait_s=LEASE_WAIT_S):
            ledger = store.ledger(account)
            with ledger.hold():
                config = SimConfig(initial_cash=broker.initial_cash,
                                   option_commission_per_contract=broker.option_commission_per_contract)
                sim = SimBroker(account, ledger, config)
                return _observe(sim), ledger_view(account, ledger), None
    except AccountBusy as exc:
        return None, None, f"the simulated broker of {account} could not be observed: {exc}"


def _view_or_why(account: str) -> tuple[dict | None, str | None]:
    try:
        view = current_view(account)
    except Exception as exc:  # noqa: BLE001 - any reason the view cannot be had is reported, not raised
        return None, f"the ledger view of {account} could not be read: {exc}"
    if view is None:
        holder = lease_holder(account)
        who = holder.describe() if holder else "a run that has since released it"
        return None, f"{account} is held by {who}, which has not published a ledger view yet"
    return view, None


@dg.asset(
    group_name="trading",
    kinds={"alpaca", "duckdb"},
    owners=["team:trading"],
    check_specs=[dg.AssetCheckSpec(
        CHECK, asset="live_account",
        description="The broker's positions (symbol → quantity) and open orders are the ledger's: the view the "
                    "lease holder publishes, or the ledger file when no run holds the account. Fails (ERROR) with "
                    "a table of the differences; warns when the ledger view or the broker cannot be had.")],
    description="An observation of the broker's account (equity, cash, buying power, positions, open orders) "
    "for the configured account, as metadata; checked against the ledger. Writes nothing.",
)
def live_account(context: dg.AssetExecutionContext, config: LiveAccountConfig, broker: BrokerResource,
                 store: StoreResource):
    account = require_account(config.account, "account")
    if broker.mode == "sim":
        seen, view, why = _observe_sim(context, account, broker, store)
    else:
        seen = _observe(broker.get_broker())
        view, why = _view_or_why(account)

    if seen is None:
        context.log.warning(why)
        yield dg.MaterializeResult(metadata={"account": account, "mode": broker.mode, "observed": False,
                                             "reason": why})
        yield dg.AssetCheckResult(check_name=CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                  description=f"not compared: {why}", metadata={"reason": why})
        return

    acct = seen["account"]
    positions, orders = seen["positions"], seen["open_orders"]
    context.log.info(f"{account} ({broker.mode}): equity {acct.equity:,.2f}, cash {acct.cash:,.2f}, "
                     f"{len(positions)} position(s), {len(orders)} open order(s)")
    yield dg.MaterializeResult(metadata={
        "account": account,
        "mode": broker.mode,
        "observed": True,
        "observed_at": dg.MetadataValue.timestamp(seen["observed_at"]),
        "equity": float(acct.equity),
        "cash": float(acct.cash),
        "buying_power": float(acct.buying_power),
        "last_equity": dg.MetadataValue.null() if acct.last_equity is None else float(acct.last_equity),
        "can_trade": acct.can_trade,
        "status": acct.status,
        "num_positions": len(positions),
        "num_open_orders": len(orders),
        "positions": table_metadata(_position_rows(positions), POSITION_COLUMNS),
        "open_orders": table_metadata(_order_rows(orders), ORDER_COLUMNS),
    })

    if view is None:
        context.log.warning(why)
        yield dg.AssetCheckResult(check_name=CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                  description=f"not compared: {why}", metadata={"reason": why})
        return
    diffs = differences(positions, orders, view)
    source = (f"the view published by {view['holder']}" if view.get("holder")
              else "the view published by the lease holder" if view["source"] == "published" else "the ledger file")
    meta = {"ledger_source": source, "ledger_as_of": view.get("ts") or "", "differences": len(diffs),
            "ledger_positions": len(view["positions"]), "ledger_open_orders": len(view["open_orders"])}
    if not diffs:
        yield dg.AssetCheckResult(check_name=CHECK, passed=True, description=f"the broker agrees with {source}",
                                  metadata=meta)
        return
    symbols = sorted({d["symbol"] for d in diffs})
    description = (f"{len(diffs)} difference(s) between the broker and {source}, on "
                   + ", ".join(symbols))
    context.log.error(description)
    yield dg.AssetCheckResult(check_name=CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR,
                              description=description,
                              metadata={**meta, "symbols": ", ".join(symbols),
                                        "difference_table": table_metadata(diffs, DIFFERENCE_COLUMNS)})
