"""No model may trade, so the session trades FLAT and says why (issue 14, item 5).

A session needs a model that passed the gate. When none is promoted, when the promoted one
failed the gate on an evaluation after its promotion, or when its checkpoint does not load,
the session still runs (it adopts positions, manages exits and flattens) but enters nothing,
and a ``no_model`` alert names the reason. A forced promotion, a person's explicit choice,
stands until something is evaluated after it.
"""

from datetime import date
from pathlib import Path

import dagster as dg

from session_helpers import crafted_model
from tradenova_dagster.definitions import defs
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.rl import registry

DAY = "2026-11-20"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
ACCOUNT = "sim:default"


def _fail_the_gate(model_id: str, store) -> None:
    registry.record_evaluation(model_id, eval_days=[date(2026, 11, 2), date(2026, 11, 6)], promotable=False,
                               reason="IQM -3.10 does not beat orb's +1.20", metrics={}, store=store)


def test_the_tradable_model_is_the_promoted_one_until_an_evaluation_after_its_promotion_fails(store):
    assert registry.tradable_model("SPY", ACCOUNT, store) == (
        None, f"no model is promoted for SPY (account {ACCOUNT})")

    model = crafted_model(store, bias=0.8)  # promoted by force, never evaluated
    assert registry.tradable_model("SPY", ACCOUNT, store) == (model, "")

    _fail_the_gate(model.model_id, store)
    record, why = registry.tradable_model("SPY", ACCOUNT, store)
    assert record is None
    assert f"the promoted model {model.model_id} failed the gate" in why and "2026-11-02 .. 2026-11-06" in why
    assert "does not beat orb" in why

    registry.promote(model.model_id, reason="operator: trade it anyway", force=True, store=store)
    assert registry.tradable_model("SPY", ACCOUNT, store) == (model, "")  # the later, forced choice stands

    registry.record_evaluation(model.model_id, eval_days=[date(2026, 11, 9)], promotable=True, reason="passes",
                               metrics={}, store=store)
    assert registry.tradable_model("SPY", ACCOUNT, store) == (model, "")


def _session_day(instance) -> None:
    bars = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        partition_key=DAY, asset_selection=[dg.AssetKey("market_bars")], instance=instance, run_config=QUIET)
    assert bars.success
    for job, op, config in (("warmup_job", "warmup", {"date": DAY}),
                            ("trading_session_job", "trading_session", {"date": DAY, "mode": "replay"}),
                            ("flatten_job", "flatten", {"reason": "end of test day"})):
        result = defs.resolve_job_def(job).execute_in_process(
            run_config={**QUIET, "ops": {op: {"config": config}}}, instance=instance)
        assert result.success, job


def _what_the_day_did(ledger) -> tuple[int, list[str], list[str]]:
    orders = ledger.query("SELECT count(*) FROM sim_orders WHERE account = ?", [ACCOUNT])[0][0]
    alerts = [d for (d,) in ledger.query(
        "SELECT detail FROM session_events WHERE job = 'alert' AND kind = 'no_model' AND account = ?", [ACCOUNT])]
    agents = [m for (m,) in ledger.query("SELECT DISTINCT model FROM rl_predictions WHERE account = ?", [ACCOUNT])]
    return orders, alerts, agents


def test_a_session_whose_model_failed_the_gate_since_its_promotion_trades_flat_and_says_why(store):
    model = crafted_model(store, bias=0.8)  # would buy a call on every bar
    _fail_the_gate(model.model_id, store)
    with dg.DagsterInstance.ephemeral() as instance:
        _session_day(instance)
    orders, alerts, agents = _what_the_day_did(ledger_store(ACCOUNT))
    assert orders == 0
    assert len(alerts) == 1 and f"the promoted model {model.model_id} failed the gate" in alerts[0]
    assert "trades FLAT" in alerts[0]
    assert agents == ["flat:no-tradable-model"]


def test_a_session_with_no_promoted_model_or_an_unloadable_one_trades_flat(store):
    with dg.DagsterInstance.ephemeral() as instance:
        _session_day(instance)  # nothing promoted at all: before, the session failed with a ValueError
        orders, alerts, _ = _what_the_day_did(ledger_store(ACCOUNT))
        assert orders == 0 and len(alerts) == 1 and "no model is promoted for SPY" in alerts[0]

        model = crafted_model(store, bias=0.8)
        (Path(model.path) / registry.MODEL_FILE).write_bytes(b"not a zip")  # corrupt after promotion
        _session_day(instance)
    orders, alerts, _ = _what_the_day_did(ledger_store(ACCOUNT))
    assert orders == 0 and len(alerts) == 2
    assert f"the promoted model {model.model_id} does not load" in alerts[1]
