"""Property tests (hypothesis) of the arithmetic rules of the ladder and the risk manager."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tradenova_dagster.risk import AdvancedRiskManager, KillSwitch, ProfitManager, RiskLevel

CALL = "SPY260116C00600000"

prices = st.floats(min_value=0.01, max_value=10.0, allow_nan=False, allow_infinity=False)
paths = st.lists(prices, min_size=1, max_size=60)
quantities = st.integers(min_value=1, max_value=5000)
sides = st.sampled_from(["buy", "sell"])


@settings(max_examples=300, deadline=None)
@given(qty=quantities, entry=st.floats(min_value=0.05, max_value=5.0), path=paths, side=sides)
def test_a_position_never_sells_more_than_it_holds(qty, entry, path, side):
    pm = ProfitManager()
    pm.add_position(CALL, qty, entry, side)
    held = qty
    for price in path:
        out = pm.check_exits(CALL, price)
        if out is None:
            continue
        assert isinstance(out["qty"], int) and 1 <= out["qty"] <= held
        held -= out["qty"]
        assert out["remaining"] == held and out["closes_position"] == (held == 0)
        if held == 0:
            assert pm.positions() == {}
            break
        assert pm.position(CALL).remaining_qty == held


@settings(max_examples=300, deadline=None)
@given(qty=quantities, path=paths, trail=st.floats(min_value=0.01, max_value=0.9))
def test_the_ladder_never_lowers_a_locked_profit(qty, path, trail):
    pm = ProfitManager(trail_pct=trail)
    pm.add_position(CALL, qty, 1.0)
    locked = pm.locked_gain(CALL)
    for price in path:
        out = pm.check_exits(CALL, price)
        if out is not None and out["closes_position"]:
            break
        now = pm.locked_gain(CALL)
        assert now >= locked
        if pm.position(CALL).trail_armed:
            assert now >= 1.0, "an armed trail never locks less than +100%"
        locked = now


@settings(max_examples=200, deadline=None)
@given(qty=quantities, path=paths)
def test_stop_or_top_level_always_empties_the_position(qty, path):
    """Whatever happened before, a price at -15% (or below the armed trail) or at +200% sells the rest."""
    pm = ProfitManager()
    pm.add_position(CALL, qty, 1.0)
    for price in path:
        out = pm.check_exits(CALL, price)
        if out is not None and out["closes_position"]:
            return
    final = pm.check_exits(CALL, 0.85) or pm.check_exits(CALL, 3.0)
    assert final is not None and final["closes_position"]


loss_steps = st.lists(st.floats(min_value=-3000, max_value=3000, allow_nan=False), max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    pnls=loss_steps,
    equity=st.floats(min_value=50_000, max_value=150_000),
    kill=st.booleans(),
    halt=st.booleans(),
    iv=st.floats(min_value=0, max_value=100),
    vix=st.floats(min_value=0, max_value=90),
    spread=st.floats(min_value=0, max_value=2),
    qty=st.floats(min_value=0.01, max_value=1e6),
    price=st.floats(min_value=0.01, max_value=1e4),
    held=st.integers(min_value=-1000, max_value=1000).filter(lambda q: q != 0),
)
def test_a_lockout_never_blocks_an_exit(pnls, equity, kill, halt, iv, vix, spread, qty, price, held):
    rm = AdvancedRiskManager(initial_balance=100_000, max_open_positions=1)
    for pnl in pnls:
        rm.record_trade("SPY", 1, 100, 100, pnl, "buy")
    rm.update_equity(equity=equity)
    if kill:
        rm.kill_switch.turn_on("property test")
    if halt:
        rm.halt("property test")
    rm.set_positions({"SPY": held, "QQQ": 5})
    exit_side = "sell" if held > 0 else "buy"
    for symbol, side, is_exit in [("SPY", exit_side, None), (CALL, "sell", None), ("IWM", "sell", True)]:
        allowed, reason, level = rm.check_trade_allowed(symbol, qty, price, side, iv_rank=iv, vix=vix,
                                                        spread_pct=spread, is_exit=is_exit)
        assert allowed, reason
        assert isinstance(level, RiskLevel)
    assert [e for e in rm.events if e.kind == "refusal"] == []


@settings(max_examples=300, deadline=None)
@given(loss=st.floats(min_value=0, max_value=10_000), sod=st.floats(min_value=10_000, max_value=1e7))
def test_daily_loss_halts_exactly_when_the_limit_is_reached(loss, sod):
    rm = AdvancedRiskManager(initial_balance=sod, max_drawdown_pct=1.0)
    rm.record_trade("SPY", 1, 100, 100, -loss, "buy")
    assert rm.is_halted == (loss / sod >= 0.02 - 1e-9)


@settings(max_examples=300, deadline=None)
@given(vix=st.floats(min_value=0, max_value=80), iv=st.floats(min_value=0, max_value=100),
       spread=st.floats(min_value=0, max_value=0.2))
def test_market_lockouts_refuse_exactly_above_their_limits(vix, iv, spread):
    rm = AdvancedRiskManager(kill_switch=KillSwitch())
    allowed, reason, _ = rm.check_trade_allowed("SPY", 1, 100.0, "buy", iv_rank=iv, vix=vix, spread_pct=spread)
    expected = iv <= 95 + 1e-9 and vix <= 32 + 1e-9 and spread <= 0.05 + 1e-9
    assert allowed == expected, reason


@settings(max_examples=300, deadline=None)
@given(
    kill=st.booleans(),
    halt=st.booleans(),
    iv=st.floats(min_value=0, max_value=100),
    vix=st.floats(min_value=0, max_value=60),
    spread=st.floats(min_value=0, max_value=0.2),
    price=st.floats(min_value=0.01, max_value=200.0),
    others=st.integers(min_value=0, max_value=4),
)
def test_the_entry_gate_refuses_exactly_what_the_full_check_refuses_without_a_price(kill, halt, iv, vix, spread,
                                                                                     price, others):
    """The session asks ``entry_gate`` before it prices a contract: whenever the gate
    refuses, the full check refuses for the same reason, and whenever the full check
    refuses for a rule that needs no price, the gate refuses too — so skipping the price
    never lets through an entry the full check would refuse, nor refuses one it allows."""
    gate_rm, full_rm = (AdvancedRiskManager(initial_balance=100_000, max_open_positions=3, kill_switch=KillSwitch())
                        for _ in range(2))
    for rm in (gate_rm, full_rm):
        if kill:
            rm.kill_switch.turn_on("property test")
        if halt:
            rm.halt("property test")
        rm.set_positions({f"SPY2601{16 + i}C00600000": 1 for i in range(others)})
    gate = gate_rm.entry_gate(CALL, 1, iv_rank=iv, vix=vix)
    full = full_rm.check_trade_allowed(CALL, 1, price, "buy", iv_rank=iv, vix=vix, spread_pct=spread)
    priced_rules = {"spread", "max_position_size"}
    refused_by = [e.rule for e in full_rm.events if e.kind == "refusal"]
    if not gate[0]:
        assert not full[0] and full[1] == gate[1]
    elif not full[0]:
        assert refused_by and refused_by[0] in priced_rules, full[1]
    assert [e.rule for e in gate_rm.events if e.kind == "refusal"] == ([] if gate[0] else refused_by)
