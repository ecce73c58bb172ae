"""The gate and the report read a sweep's results (issue 16, item 3): ``sweep_verdicts``
applies the promotion rule to the result files, ``sweep_summary`` shows it as a table and
a ``gate`` check, and ``report.html`` shows the summary, the verdicts and the chart.

The result files are written here by hand (the format ``run_partition`` writes), so the
numbers are known without replaying anything."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from tradenova_dagster.research.summary import sweep_verdicts
from tradenova_dagster.research.sweep import RESULT_COLUMNS, result_path, sweep_dir, write_atomic

DAYS = ["2026-11-16", "2026-11-17", "2026-11-18"]
FOLDS, SEEDS = (0, 1), (0, 1, 2)


def _write(sweep_id: str, strategy: str, seed: int, fold: int, pnl: list[float]) -> None:
    rows = [{"sweep_id": sweep_id, "strategy": strategy, "seed": seed, "fold": fold, "day": f"{day}-f{fold}",
             "start_equity": 100_000.0, "end_equity": 100_000.0 + p, "pnl": p, "trades": 2, "wins": int(p > 0),
             "losses": int(p < 0), "entries": 2, "refused": 0, "max_drawdown": 0.01, "model": strategy,
             "source": "synthetic"} for day, p in zip(DAYS, pnl)]
    frame = pd.DataFrame(rows)[list(RESULT_COLUMNS)]
    sweep_dir(sweep_id).mkdir(parents=True, exist_ok=True)
    write_atomic(result_path(sweep_id, strategy, seed, fold), lambda tmp: frame.to_parquet(tmp, index=False))


def _sweep(sweep_id: str, model_edge: float, rng_seed: int = 0) -> dict[str, np.ndarray]:
    """A sweep with a trained strategy ``ppo`` (3 seeds) whose daily P&L is ``model_edge``
    plus noise, ``flat`` (run once per fold, as the walk-forward runs the rule-based
    baselines) and ``random`` (3 seeds: +-40 around -5). Returns what was written."""
    rng = np.random.default_rng(rng_seed)
    written = {}
    for fold in FOLDS:
        _write(sweep_id, "flat", 0, fold, [0.0] * len(DAYS))
        for seed in SEEDS:
            model = model_edge + rng.normal(0, 5, len(DAYS))
            random = -5.0 + rng.choice([-40.0, 40.0], len(DAYS))
            _write(sweep_id, "ppo", seed, fold, list(model))
            _write(sweep_id, "random", seed, fold, list(random))
            written[("ppo", seed, fold)], written[("random", seed, fold)] = model, random
    return written


def test_a_trained_strategy_with_an_edge_passes_and_one_without_fails(tradenova_home):
    written = _sweep("edge", model_edge=30.0)
    verdict = sweep_verdicts(sweep_dir("edge"))["ppo"]
    model = np.concatenate([written[("ppo", s, f)] for s in SEEDS for f in FOLDS])
    assert verdict.days == len(SEEDS) * len(FOLDS) * len(DAYS) == 18
    assert verdict.mean == pytest.approx(model.mean())
    # random's P&L on each (fold, day) is the mean over its 3 seeds, repeated for each of ppo's seeds
    per_day = np.mean([np.concatenate([written[("random", s, f)] for f in FOLDS]) for s in SEEDS], axis=0)
    trimmed = np.sort(np.tile(per_day, len(SEEDS)))[18 // 4: 18 - 18 // 4]
    assert verdict.baseline_iqm == {"flat": 0.0, "random": pytest.approx(trimmed.mean())}
    assert verdict.promotable, verdict.reason

    _sweep("no-edge", model_edge=-2.0)
    verdict = sweep_verdicts(sweep_dir("no-edge"))["ppo"]
    assert not verdict.promotable and set(verdict.failed) == {"ci_low", "iqm"}
    assert "does not beat flat +0.00" in verdict.reason


def test_a_baseline_that_did_not_replay_every_day_is_named(tradenova_home):
    _sweep("partial", model_edge=30.0)
    result_path("partial", "flat", 0, 1).unlink()  # fold 1's flat run has not run yet
    with pytest.raises(ValueError, match=r"baseline\(s\) \['flat'\] did not replay every day ppo traded"):
        sweep_verdicts(sweep_dir("partial"))


def test_baselines_only_give_no_verdict(tradenova_home):
    _write("baselines", "flat", 0, 0, [0.0, 0.0, 0.0])
    _write("baselines", "orb", 0, 0, [5.0, -3.0, 1.0])
    assert sweep_verdicts(sweep_dir("baselines")) == {}


@pytest.mark.parametrize("edge, passes", [(30.0, True), (-2.0, False)])
def test_sweep_summary_shows_the_gate_as_a_check_and_writes_the_report(tradenova_home, edge, passes):
    from assets.sweeps import sweep_summary

    _sweep("wf", model_edge=edge)
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([sweep_summary], instance=instance,
                                run_config={"ops": {"sweep_summary": {"config": {"sweep_id": "wf"}}}})
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "gate" and check.passed is passes
    metadata = result.asset_materializations_for_node("sweep_summary")[0].metadata
    [row] = metadata["gate"].value.records
    assert row.data["strategy"] == "ppo" and row.data["promotable"] is passes
    page = (sweep_dir("wf") / "report.html").read_text()
    assert str(metadata["report"].value) == str(sweep_dir("wf") / "report.html")
    assert ("<td>promotable</td>" in page) is passes and ("<td>not promotable</td>" in page) is not passes
    for strategy in ("flat", "ppo", "random"):
        assert f"<td>{strategy}</td>" in page
    assert 'src="data:image/png;base64,' in page
