"""Alpaca's order state machine, guarded (DESIGN.md §5).

An order moves ``new -> accepted -> partially_filled -> filled | canceled | rejected |
expired | replaced``. Every status change anywhere in TradeNova — the simulated broker's
own orders, the ledger's record of what a real broker reported — goes through
``advance``, which raises ``IllegalTransition`` for a move Alpaca never makes: a final
order never changes again (a rejected order stays rejected: it is never "retried" by
flipping it back), a partly filled order cannot be rejected, and the filled quantity
never goes down nor above the order's quantity.

``held`` (a bracket leg waiting for its entry), ``pending_new`` and ``pending_cancel``
are the in-between states Alpaca reports; they obey the same rules.
"""

from __future__ import annotations

from tradenova_dagster.domain import OrderStatus

S = OrderStatus

FINAL = frozenset({S.FILLED, S.CANCELED, S.EXPIRED, S.REJECTED, S.REPLACED})
_WAITING = frozenset({S.NEW, S.PENDING_NEW, S.ACCEPTED, S.HELD})

# From each open state, the states it may move to (staying put is always allowed).
_ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    **{state: frozenset(OrderStatus) - {S.PENDING_NEW} for state in _WAITING},
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED, S.REPLACED,
                                   S.PENDING_CANCEL}),
    # A cancel request can still lose the race against a fill.
    S.PENDING_CANCEL: frozenset({S.CANCELED, S.PARTIALLY_FILLED, S.FILLED, S.EXPIRED}),
}


class IllegalTransition(ValueError):
    """An order change that Alpaca's state machine does not allow."""


def advance(order_id: str, current: OrderStatus | str, new: OrderStatus | str, *,
            qty: float | None = None, filled_before: float = 0.0, filled_after: float = 0.0) -> OrderStatus:
    """Check the move ``current -> new`` (and the filled quantities) and return ``new``.

    ``filled_before``/``filled_after``: the order's filled quantity before and after the
    change; ``qty``: its quantity, when known.
    """
    current, new = OrderStatus(current), OrderStatus(new)
    if filled_after < filled_before - 1e-9:
        raise IllegalTransition(f"order {order_id}: filled_qty went down from {filled_before:g} to {filled_after:g}")
    if qty is not None and filled_after > qty + 1e-9:
        raise IllegalTransition(f"order {order_id}: filled_qty {filled_after:g} is above its qty {qty:g}")
    if new == current:
        if current in FINAL and filled_after != filled_before:
            raise IllegalTransition(f"order {order_id} is {current.value} (final) but its fills changed")
        return new
    if current in FINAL:
        raise IllegalTransition(f"order {order_id} is {current.value}, which is final; it cannot become {new.value}")
    if new not in _ALLOWED[current]:
        raise IllegalTransition(f"order {order_id}: {current.value} -> {new.value} is not a move Alpaca makes")
    if new is S.REJECTED and filled_before > 0:
        raise IllegalTransition(f"order {order_id} has fills ({filled_before:g}); it cannot be rejected")
    if new is S.FILLED and qty is not None and filled_after < qty - 1e-9:
        raise IllegalTransition(f"order {order_id}: filled with only {filled_after:g} of {qty:g}")
    return new
