"""Walk-forward evaluation: each model trades only days after its own training window,
through the session loop, next to the baselines on the same days."""

import pandas as pd
import pytest

from tradenova_dagster.cli import main
from tradenova_dagster.research.sweep import sweep_dir
from tradenova_dagster.research.walk_forward import plan_walk_forward

ARGS = ["evaluate", "--walk-forward", "--start", "2026-11-09", "--end", "2026-11-20", "--folds", "2",
        "--train-days", "3", "--eval-days", "1", "--seeds", "1", "--agents", "ppo", "--timesteps", "128",
        "--baselines", "flat", "always-call", "--no-progress"]


@pytest.mark.slow
def test_each_model_trades_only_the_unseen_days_after_its_window_next_to_the_baselines(tradenova_home, store,
                                                                                        capsys):
    from tradenova_dagster.rl import registry

    assert main([*ARGS, "--id", "wf"]) == 0
    out = capsys.readouterr().out
    runs = pd.concat(pd.read_parquet(p) for p in sorted(sweep_dir("wf").glob("result-*.parquet")))
    assert sorted(set(runs["strategy"])) == ["always-call", "flat", "ppo"]
    plan = plan_walk_forward("another", "2026-11-09", "2026-11-20", n_folds=2, train_days=3, eval_days=1, seeds=1,
                             agents=["ppo"], baselines=["flat"], timesteps=128)
    for fold in plan.folds:
        traded = runs[runs["fold"] == fold.index]
        assert set(traded["day"]) == set(fold.evaluation)  # every strategy on the same unseen days
        [model_id] = traded.loc[traded["strategy"] == "ppo", "model"].unique()
        assert tuple(registry.get_model(model_id, store).train_days) == fold.train  # trained on its fold only
    means = runs.groupby("strategy")["pnl"].mean()
    summary = pd.read_parquet(sweep_dir("wf") / "summary.parquet").set_index("strategy")
    assert summary["mean_daily_pnl"].to_dict() == pytest.approx(means.to_dict())
    assert "always-call" in out and "results:" in out


def test_folds_that_do_not_fit_are_refused_before_any_training(tradenova_home, store, capsys):
    from tradenova_dagster.rl import registry

    assert main([*ARGS[:-1], "--folds", "9", "--no-progress"]) == 1
    assert "n_folds" in capsys.readouterr().err
    assert main([*ARGS[:-1], "--timesteps", "0"]) == 1
    assert "timesteps: must be an integer >= 1, got 0" in capsys.readouterr().err
    assert registry.list_models(store=store) == []
