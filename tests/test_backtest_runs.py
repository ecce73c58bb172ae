"""`tradenova backtest` as Dagster runs: baselines without a model, one account per
strategy, the account carried from day to day, and everything checked before any run."""

import dagster as dg
import pytest

from ops.backtest_runs import plan_backtest
from tradenova_dagster.cli import main
from tradenova_dagster.ledger.accounts import ledger_store

DAYS = ("2026-11-18", "2026-11-20")


def _equity_by_day(account):
    return ledger_store(account).query(
        "SELECT day, arg_min(equity, ts), arg_max(equity, ts) FROM equity_curve WHERE account = ? "
        "GROUP BY day ORDER BY day", [account])


def test_several_baselines_without_a_model_are_one_account_each_side_by_side(tradenova_home, capsys):
    assert main(["backtest", "--start", DAYS[0], "--end", DAYS[1], "--strategy", "always-call", "flat",
                 "--id", "cmp", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "backtest:cmp-always-call" in out and "backtest:cmp-flat" in out
    flat = ledger_store("backtest:cmp-flat").query("SELECT count(*) FROM orders WHERE account = 'backtest:cmp-flat'")
    calls = ledger_store("backtest:cmp-always-call").query(
        "SELECT count(*), count(*) FILTER (WHERE contract LIKE 'SPY%C%') FROM trades "
        "WHERE account = 'backtest:cmp-always-call'")[0]
    assert flat == [(0,)] and calls[0] > 0 and calls[0] == calls[1]  # calls only, and the flat one never traded
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name="backtest_job"))
        assert sorted(r.tags["tradenova/strategy"] for r in runs) == ["always-call", "flat"]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert all(r.tags["tradenova/job"] == "backtest" and r.tags["tradenova/source"] == "synthetic" for r in runs)


def test_a_backtest_account_carries_its_equity_from_day_to_day(tradenova_home):
    assert main(["backtest", "--start", DAYS[0], "--end", DAYS[1], "--strategy", "always-put",
                 "--id", "carry", "--no-progress"]) == 0
    days = _equity_by_day("backtest:carry")
    assert len(days) == 3 and days[0][1] == 100_000.0
    for (_, _, closed), (_, opened, _) in zip(days, days[1:]):
        assert opened == pytest.approx(closed, abs=0.01)  # the next day opens where the last one closed
    assert days[-1][2] != 100_000.0  # it traded: the carried equity is not the initial cash again


def test_running_a_backtest_again_under_its_id_replaces_it(tradenova_home):
    argv = ["backtest", "--start", DAYS[0], "--end", DAYS[1], "--strategy", "random", "--seed", "5",
            "--id", "again", "--no-progress"]
    assert main(argv) == 0
    first = ledger_store("backtest:again").query("SELECT count(*), sum(pnl) FROM trades")
    assert main(argv) == 0
    assert ledger_store("backtest:again").query("SELECT count(*), sum(pnl) FROM trades") == first
    assert _equity_by_day("backtest:again")[0][1] == 100_000.0


@pytest.mark.parametrize("kwargs, message", [
    ({"strategies": ["orb", "hodl"]}, "--strategy: unknown strategy 'hodl'"),
    ({"strategies": ["flat"], "backtest_id": "no spaces"}, "backtest_id must be letters, digits, '-', '_' or '.', got 'no spaces'"),
    ({"strategies": ["flat"], "source": "file", "data_dir": "."}, "no bar file"),
])
def test_mistakes_are_refused_before_any_run(tradenova_home, kwargs, message):
    kwargs = {"source": "synthetic", **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_backtest(*DAYS, kwargs.pop("strategies"), **kwargs)
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []


def _model_trained_on(store, *days):
    from datetime import date

    from rl_helpers import categorical_ppo, pinned_logits
    from tradenova_dagster.rl import registry

    model, venv = categorical_ppo(pinned_logits(0.8))
    return registry.save_model(model, venv, agent="ppo", symbol="SPY", timesteps=0, seed=0,
                               train_days=[date.fromisoformat(d) for d in days], meta={}, store=store)


def test_a_model_trained_on_the_range_is_look_ahead_and_refused_before_any_run(tradenova_home, store):
    record = _model_trained_on(store, "2026-11-02", "2026-11-19")
    with pytest.raises(ValueError, match=rf"model {record.model_id} was trained on 2026-11-02 \.\. 2026-11-19, "
                                         r"which includes 2026-11-18 \.\. 2026-11-20: that is look-ahead"):
        plan_backtest(*DAYS, ["model"], source="synthetic", model=str(record.path))
    plan_backtest("2026-11-20", "2026-11-20", ["model"], source="synthetic", model=str(record.path))  # after: fine


def test_the_session_refuses_to_trade_a_day_its_model_was_trained_on(tradenova_home, store):
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.rl import SignalModel
    from tradenova_dagster.session.day import backtest_day

    signal = SignalModel.load(_model_trained_on(store, "2026-11-16", "2026-11-20").path)
    with pytest.raises(ValueError, match="which includes 2026-11-18: that is look-ahead"):
        backtest_day(store, get_source("synthetic"), "2026-11-18", signal, "peek")
    assert ledger_store("backtest:peek").query("SELECT count(*) FROM orders") == [(0,)]


def test_a_range_is_one_planned_event_and_progress_lines_count_their_days(tradenova_home, monkeypatch):
    """Each event is a commit to Dagster's storage (20-50 ms here): a year's backtest must not
    write a planned event and a log line per day. Progress lines, at most one a second (here
    none between the first and the last), say how many days are done, and the command's
    follower counts every day from them."""
    import assets.backtest
    from assets.backtest import DAY_DONE
    from ops.launch import _Follower

    monkeypatch.setattr(assets.backtest, "PROGRESS_EVERY_S", 3600.0)
    assert main(["backtest", "--start", DAYS[0], "--end", DAYS[1], "--strategy", "flat", "--id", "events",
                 "--no-progress"]) == 0
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs(dg.RunsFilter(job_name="backtest_job"))
        events = instance.all_logs(run.run_id)
        kinds = [e.dagster_event.event_type for e in events if e.dagster_event]
        assert kinds.count(dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED) == 1
        assert kinds.count(dg.DagsterEventType.ASSET_MATERIALIZATION) == 3  # one per day, for the UI
        lines = [e.user_message for e in events if e.user_message.startswith(DAY_DONE)]
        assert [line.split()[3:5] for line in lines] == [["1/3", DAYS[0]], ["3/3", DAYS[1]]]
        told = []
        _Follower(instance, run.run_id, DAY_DONE, lambda steps, text: told.append(steps)).poll()
        assert told == [1, 3]


@pytest.mark.slow
def test_a_backtest_longer_than_a_month_shows_months_not_every_day(tradenova_home):
    """A long backtest's summary is a table by month, whose trades agree with the ledger's;
    it sits on the last day's partition only, and every partition carries its own day's
    numbers (Dagster would copy a run's metadata onto each partition: seconds for a year)."""
    from assets.backtest import DAYS_TABLE_MAX

    assert main(["backtest", "--start", "2026-09-28", "--end", DAYS[1], "--strategy", "always-call",
                 "--id", "long", "--no-progress"]) == 0
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs(dg.RunsFilter(job_name="backtest_job"))
        materializations = [e.dagster_event.step_materialization_data.materialization
                            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)]
    partitions, metadata = [m.partition for m in materializations], [m.metadata for m in materializations]
    assert len(metadata) > DAYS_TABLE_MAX and "days_table" not in metadata[-1]
    assert not any("months_table" in day or "pnl" in day for day in metadata[:-1])  # the summary once
    months = [record.data for record in metadata[-1]["months_table"].value.records]
    assert [m["month"] for m in months] == ["2026-09", "2026-10", "2026-11"]
    assert sum(m["days"] for m in months) == len(metadata)
    ledger = dict(ledger_store("backtest:long").query(
        "SELECT strftime(day, '%Y-%m'), count(*) FROM trades WHERE account = 'backtest:long' GROUP BY 1"))
    assert {m["month"]: m["trades"] for m in months} == ledger and sum(ledger.values()) > 0
    by_day = dict(ledger_store("backtest:long").query(
        "SELECT strftime(day, '%Y-%m-%d'), count(*) FROM trades WHERE account = 'backtest:long' GROUP BY 1"))
    assert {p: day["day_trades"].value for p, day in zip(partitions, metadata) if day["day_trades"].value} == by_day
