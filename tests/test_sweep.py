"""Research sweeps: partitions run in parallel processes (real `dagster asset materialize`),
each writes its own result file atomically, and the aggregate equals an independent
reading of those files with pandas."""

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.research.summary import sweep_summary
from tradenova_dagster.research.sweep import (RESULT_COLUMNS, load_spec, plan_sweep, result_path, run_partition,
                                             sweep_dir, write_atomic)

RANGE = ("2026-11-02", "2026-11-20")


def _plan_in_dagster(sweep_id: str, **config) -> list[str]:
    """Materialise sweep_plan on the test's instance: the spec and the dynamic partitions."""
    from assets.sweeps import sweep_plan
    from resources.market_data import MarketDataResource
    from tradenova_dagster import config as tn_config

    tn_config.dagster_home()  # TradeNova's dagster.yaml, as the CLI sees it
    run_config = {"ops": {"sweep_plan": {"config": {"sweep_id": sweep_id, "start": RANGE[0], "end": RANGE[1],
                                                    **config}}}}
    with dg.DagsterInstance.get() as instance:
        assert dg.materialize([sweep_plan], instance=instance, resources={"market_data": MarketDataResource()},
                              run_config=run_config).success
        return instance.get_dynamic_partitions("sweep_runs")


def _expected(folder: Path) -> pd.DataFrame:
    """The summary computed independently: pandas over the files, IQM by sorting."""
    runs = pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("result-*.parquet"))])
    rows = {}
    for strategy, group in runs.groupby("strategy"):
        per_run = np.sort(group.groupby(["seed", "fold"])["pnl"].mean().to_numpy())
        cut = len(per_run) // 4
        rows[strategy] = {"runs": len(per_run), "days": len(group), "mean_daily_pnl": group["pnl"].mean(),
                          "iqm_daily_pnl": per_run[cut:len(per_run) - cut].mean(),
                          "win_rate": group["wins"].sum() / group["trades"].sum() if group["trades"].sum() else np.nan,
                          "max_drawdown": group["max_drawdown"].max(),
                          "trades_per_day": group["trades"].sum() / len(group)}
    return pd.DataFrame.from_dict(rows, orient="index")


def _assert_summary_matches(folder: Path) -> pd.DataFrame:
    got = sweep_summary(folder).set_index("strategy")
    want = _expected(folder)
    assert list(got.index) == sorted(want.index)
    pd.testing.assert_frame_equal(got[want.columns], want.loc[got.index], check_dtype=False, check_names=False)
    several = got[got["runs"] >= 2]
    assert (several["ci_low"] <= several["iqm_daily_pnl"] + 1e-9).all()
    assert (several["iqm_daily_pnl"] <= several["ci_high"] + 1e-9).all()
    return got


@pytest.mark.slow
def test_two_partitions_in_two_processes_at_once_both_succeed(tradenova_home):
    keys = _plan_in_dagster("par", strategies=["random", "always-call"], seeds=[3, 4], n_folds=2, train_days=3,
                            eval_days=2)
    assert len(keys) == 8
    chosen = ["par|random|3|0", "par|always-call|4|1"]
    env = {**os.environ, "TRADENOVA_HOME": str(tradenova_home), "DAGSTER_HOME": str(tradenova_home / "dagster")}
    procs = [subprocess.Popen([sys.executable, "-m", "dagster", "asset", "materialize", "-m",
                               "tradenova_dagster.definitions", "--select", "sweep_result", "--partition", key],
                              cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for key in chosen]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    folder = sweep_dir("par")
    assert sorted(p.name for p in folder.glob("result-*.parquet")) == ["result-always-call-s4-f1.parquet",
                                                                       "result-random-s3-f0.parquet"]
    with dg.DagsterInstance.get() as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("sweep_result")) == set(chosen)
        records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
        spans = [(r.start_time, r.end_time) for r in records if r.dagster_run.tags.get("dagster/partition") in chosen]
    assert len(spans) == 2
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # the two runs overlapped: side by side
    calls = pd.read_parquet(result_path("par", "always-call", 4, 1))
    assert list(calls.columns) == list(RESULT_COLUMNS) and len(calls) == 2
    assert calls["trades"].sum() > 0 and calls["model"].iloc[0] == "baseline:always-call"
    summary = _assert_summary_matches(folder)
    _assert_the_summary_asset_shows(summary, "par")


def _assert_the_summary_asset_shows(summary: pd.DataFrame, sweep_id: str) -> None:
    """The sweep_summary asset: its typed table and summary.parquet hold what sweep_summary() gives."""
    from assets.sweeps import sweep_summary as summary_asset

    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([summary_asset], instance=instance,
                                run_config={"ops": {"sweep_summary": {"config": {"sweep_id": sweep_id}}}})
    table = result.asset_materializations_for_node("sweep_summary")[0].metadata["summary"]
    assert [c.name for c in table.schema.columns][:3] == ["strategy", "runs", "days"]
    shown = pd.DataFrame([r.data for r in table.records]).set_index("strategy")
    pd.testing.assert_frame_equal(shown[summary.columns].astype(float), summary.astype(float), check_names=False)
    pd.testing.assert_frame_equal(pd.read_parquet(sweep_dir(sweep_id) / "summary.parquet").set_index("strategy"),
                                  summary, check_names=False)


def _write_run(sweep_id, strategy, seed, fold, pnls, trades, wins, losses, drawdown):
    days = pd.date_range("2026-11-16", periods=len(pnls)).date
    frame = pd.DataFrame({"sweep_id": sweep_id, "strategy": strategy, "seed": seed, "fold": fold, "day": days,
                          "start_equity": 100_000.0, "end_equity": 100_000.0 + np.asarray(pnls), "pnl": pnls,
                          "trades": trades, "wins": wins, "losses": losses, "entries": trades, "refused": 0,
                          "max_drawdown": drawdown, "model": f"baseline:{strategy}", "source": "synthetic"})
    path = result_path(sweep_id, strategy, seed, fold)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: frame[list(RESULT_COLUMNS)].to_parquet(tmp, index=False))


def test_the_aggregate_equals_an_independent_pandas_reading(tradenova_home):
    # Four runs of 'orb' whose mean daily P&L (-30, 5, 10, 100) has an IQM (7.5) far from its mean (21.25).
    for (seed, fold), pnls, dd in [((0, 0), [-40.0, -20.0], 0.01), ((0, 1), [0.0, 10.0], 0.002),
                                   ((1, 0), [10.0, 10.0], 0.003), ((1, 1), [150.0, 50.0], 0.02)]:
        _write_run("agg", "orb", seed, fold, pnls, [2, 1], [1, 0], [1, 1], dd)
    _write_run("agg", "flat", 0, 0, [0.0, 0.0], [0, 0], [0, 0], [0, 0], 0.0)
    _write_run("agg", "flat", 0, 1, [0.0, 0.0], [0, 0], [0, 0], [0, 0], 0.0)
    (sweep_dir("agg") / "result-orb-s9-f9.parquet.tmp-123").write_bytes(b"PAR1 half a file")  # a crash's leftover
    got = _assert_summary_matches(sweep_dir("agg"))
    assert got.loc["orb", "iqm_daily_pnl"] == pytest.approx(7.5)
    assert got.loc["orb", "mean_daily_pnl"] == pytest.approx(21.25)
    assert got.loc["orb", "win_rate"] == pytest.approx(2 / 6)
    assert np.isnan(got.loc["flat", "win_rate"]) and got.loc["flat", ["ci_low", "ci_high"]].tolist() == [0.0, 0.0]


_CRASH_WHILE_WRITING = """
import os, sys
import pandas as pd
from tradenova_dagster.market.data import get_source
from tradenova_dagster.research.sweep import run_partition
from tradenova_dagster.store import Store

def half_then_die(self, path, **kwargs):
    with open(path, "wb") as fh:
        fh.write(b"PAR1" + b"x" * 100)  # part of a file on disk, then the process dies
    os._exit(137)

pd.DataFrame.to_parquet = half_then_die
run_partition(Store(), get_source("synthetic"), sys.argv[1])
"""


def test_a_crash_mid_write_leaves_no_partial_result_and_the_run_is_rerun_alone(tradenova_home, store):
    from tradenova_dagster.market.data import get_source

    plan_sweep("crash", ["momentum"], [0], *RANGE, 1, 2, 1)
    proc = subprocess.run([sys.executable, "-c", _CRASH_WHILE_WRITING, "crash|momentum|0|0"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr[-3000:]
    final = result_path("crash", "momentum", 0, 0)
    assert not final.exists()  # the part written is only ever the temporary file
    leftovers = [p.name for p in final.parent.iterdir() if p.name.startswith("result-")]
    assert len(leftovers) == 1 and leftovers[0].startswith(f"{final.name}.tmp-")  # what the crash left, unread
    with pytest.raises(ValueError, match="no result file"):
        sweep_summary(final.parent)
    path, frame = run_partition(store, get_source("synthetic"), "crash|momentum|0|0")  # the run again, alone
    assert path == final and pd.read_parquet(final).equals(frame)


def test_a_failed_write_removes_its_temporary_file(tradenova_home):
    def fails(tmp):
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    folder = sweep_dir("fails")
    folder.mkdir(parents=True)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(folder / "result-x.parquet", fails)
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"strategies": ["model", "flat"]}, r"strategy 'model' needs a model trained on each fold's training window: "
                                        r"model_paths has none for fold\(s\) \[0, 1\]"),
    ({"strategies": ["model"], "model_paths": ["/nowhere/m.zip", "/nowhere/n.zip"]}, "no model file at"),
    ({"strategies": ["hodl"]}, "strategies: unknown strategy 'hodl'"),
    ({"seeds": [1, 1]}, r"seeds must be distinct whole numbers >= 0 and at least one, got \[1, 1\]"),
    ({"sweep_id": "a|b"}, r"sweep_id must be letters, digits, '-' or '_', got 'a\|b'"),
])
def test_a_bad_sweep_is_refused_before_any_run(tradenova_home, kwargs, message):
    args = {"sweep_id": "bad", "strategies": ["flat"], "seeds": [0], **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_sweep(args.pop("sweep_id"), args.pop("strategies"), args.pop("seeds"), *RANGE, 2, 3, 2, **args)
    assert not (tradenova_home / "sweeps" / "bad" / "sweep.json").exists()


def test_a_partition_not_of_the_sweep_or_on_other_data_is_refused(tradenova_home, store):
    from tradenova_dagster.market.data import get_source

    plan_sweep("keys", ["flat"], [0], *RANGE, 1, 2, 1, source="file")
    with pytest.raises(ValueError, match=r"partition key 'keys\|flat\|7\|0' is not part of sweep 'keys'"):
        run_partition(store, get_source("synthetic"), "keys|flat|7|0")
    with pytest.raises(ValueError, match="market data source 'synthetic': sweep 'keys' was planned on 'file'"):
        run_partition(store, get_source("synthetic"), "keys|flat|0|0")
    with pytest.raises(ValueError, match=re.escape("partition key must be <sweep id>|<strategy>|<seed>|<fold>, got 'keys|flat'")):
        run_partition(store, get_source("synthetic"), "keys|flat")


def test_planning_a_sweep_again_the_same_is_fine_but_differently_is_refused(tradenova_home):
    first = plan_sweep("again", ["flat"], [0], *RANGE, 1, 2, 1)
    assert plan_sweep("again", ["flat"], [0], *RANGE, 1, 2, 1) == first  # idempotent: a retried plan
    with pytest.raises(ValueError, match="sweep_id 'again' is already planned differently"):
        plan_sweep("again", ["flat", "orb"], [0], *RANGE, 1, 2, 1)
    assert load_spec("again") == first


def test_the_model_strategy_trades_each_folds_own_model(tradenova_home, store):
    from rl_helpers import crafted_model

    from tradenova_dagster.market.data import get_source

    calls, puts = (crafted_model(store, bias, promote=False) for bias in (0.8, -0.8))  # stand-ins for two folds' models
    plan_sweep("wf", ["model"], [0], *RANGE, 2, 2, 1, model_paths=[str(calls.path), str(puts.path)])
    firsts = [run_partition(store, get_source("synthetic"), f"wf|model|0|{fold}")[1] for fold in (0, 1)]
    assert [f["model"].iloc[0] for f in firsts] == [calls.path.name, puts.path.name]
    contracts = [ledger_store(f"backtest:sweep.wf.model.s0.f{fold}").query("SELECT DISTINCT contract LIKE 'SPY%C%' "
                                                                           "FROM trades") for fold in (0, 1)]
    assert contracts == [[(True,)], [(False,)]]  # fold 0's model bought calls only, fold 1's puts only
