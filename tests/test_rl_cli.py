"""`tradenova train` and `python -m tradenova_dagster.rl.train`: train, register, evaluate."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from tradenova_dagster.cli import main
from tradenova_dagster.rl import registry


def test_tradenova_train_registers_evaluates_and_writes_logs_and_checkpoints(tradenova_home, store, capsys):
    import dagster as dg

    code = main(["train", "--agent", "ppo", "--timesteps", "4096", "--train-days", "3", "--eval-days", "2",
                 "--end", "2026-11-20", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    with dg.DagsterInstance.get() as instance:  # a run of train_job, tagged as the production queue limits it
        [run] = instance.get_runs(dg.RunsFilter(job_name="train_job"))
        summary = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT)[0].dagster_event
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["tradenova/job"] == "training" and run.tags["tradenova/source"] == "synthetic"
    assert out == summary.step_output_data.metadata["summary"].value + "\n"  # printed: what the run stored
    (record,) = registry.list_models("SPY", "ppo", store)
    assert record.timesteps >= 4096 and record.n_train_days == 3
    assert record.train_end.isoformat() == "2026-11-18"
    assert "always-call" in out and "orb" in out and "PROMOTABLE" in out  # the gate, against every baseline
    evaluation = registry.latest_evaluation(record.model_id, store)
    assert evaluation["eval_start"].isoformat() == "2026-11-19" and evaluation["n_days"] == 2
    assert f"model {record.model_id}: " in out and evaluation["reason"] in out  # what the run registered
    assert any((tradenova_home / "tensorboard").glob(f"{record.model_id}_*/events.out.tfevents.*"))


def test_checkpoints_are_written_every_n_steps(tradenova_home, store):
    from rl_helpers import planted_days
    from tradenova_dagster.rl.dataset import TrainingDataset
    from tradenova_dagster.rl.train import train_model

    result = train_model("ppo", TrainingDataset("SPY", planted_days(2, seed=5)), 4096, checkpoint_every=2048,
                         hyperparams={"n_envs": 8, "n_steps": 128, "batch_size": 256}, store=store)
    checkpoints = sorted(p.name for p in (result.record.path / "checkpoints").iterdir())
    assert checkpoints == ["step_2048_steps.zip", "step_4096_steps.zip", "step_vecnormalize_2048_steps.pkl",
                           "step_vecnormalize_4096_steps.pkl"]
    meta = result.record.meta
    assert meta["hyperparams"]["n_envs"] == 8 and meta["env_config"]["expiry_days"] == 2


def test_bad_arguments_are_refused(tradenova_home, capsys):
    assert main(["train", "--timesteps", "0"]) == 1
    assert "--timesteps must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--agent", "dqn"])
    from tradenova_dagster.rl.train import hyperparameters

    with pytest.raises(ValueError, match="unknown for ppo"):
        hyperparameters("ppo", {"group_size": 4})


@pytest.mark.slow
def test_python_dash_m_train_runs_grpo(tradenova_home):
    env = {**os.environ, "TRADENOVA_HOME": str(tradenova_home)}
    proc = subprocess.run(
        [sys.executable, "-m", "tradenova_dagster.rl.train", "--agent", "grpo", "--symbol", "SPY",
         "--timesteps", "2000", "--train-days", "2", "--eval-days", "1", "--no-progress"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "model grpo-SPY-" in proc.stdout and "env-steps/s" in proc.stdout


@pytest.mark.slow
def test_tradenova_evaluate_walk_forward_is_a_run_and_prints_the_summary_it_wrote(tradenova_home, capsys):
    import dagster as dg
    import pandas as pd

    from tradenova_dagster.research.sweep import sweep_dir

    assert main(["evaluate", "--walk-forward", "--start", "2026-11-09", "--end", "2026-11-20", "--folds", "1",
                 "--train-days", "3", "--eval-days", "1", "--seeds", "1", "--agents", "ppo", "--timesteps", "128",
                 "--baselines", "flat", "--id", "wfrun", "--no-progress"]) == 0
    out = capsys.readouterr().out
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs(dg.RunsFilter(job_name="walk_forward_job"))
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["tradenova/job"] == "training" and run.tags["tradenova/evaluation"] == "wfrun"
    summary = pd.read_parquet(sweep_dir("wfrun") / "summary.parquet")
    assert sorted(summary["strategy"]) == ["flat", "ppo"]
    assert summary.to_string(index=False, float_format=lambda v: f"{v:,.2f}") in out
