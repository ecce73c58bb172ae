"""Every `tradenova` command that does work is a Dagster run on the instance in DAGSTER_HOME:
`report`, `sweep` (and `train`, `evaluate`: tests/test_rl_cli.py) leave a run with the UI's
tags and SUCCESS, print what the in-process code gives for the same inputs, and a run that
fails is one line naming the run."""

import dagster as dg
import pandas as pd
import pytest

from tradenova_dagster.cli import main

DAY = "2026-11-20"


def _runs(job_name: str) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.get() as instance:
        return list(instance.get_runs(dg.RunsFilter(job_name=job_name)))


@pytest.mark.slow
def test_report_is_a_run_tagged_with_its_account_and_prints_what_report_gives(tradenova_home, capsys):
    assert main(["backtest", "--start", DAY, "--end", DAY, "--strategy", "always-call", "--id", "rep",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", "--account", "backtest:rep", "--date", DAY]) == 0
    printed = capsys.readouterr().out
    [run] = _runs("report_job")
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["tradenova/job"] == "report" and run.tags["tradenova/account"] == "backtest:rep"
    from tradenova_dagster.metrics.commands import report

    in_process = report({"accounts": ["backtest:rep"], "date": DAY, "start": "", "tearsheet": False, "source": "",
                         "initial_capital": 100_000.0, "lookback_days": 30, "db": ""})
    assert printed == "\n".join(in_process) + "\n" and "2026-11-20" in printed


def test_a_failed_run_is_one_line_naming_the_run(tradenova_home, capsys, monkeypatch):
    import tradenova_dagster.metrics.commands as commands

    def broken(options):
        raise OSError("disk full while writing the report")

    monkeypatch.setattr(commands, "report", broken)
    assert main(["report", "--date", DAY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    [run] = _runs("report_job")
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert len(err) == 1 and run.run_id in err[0] and "disk full while writing the report" in err[0]


def test_a_mistake_is_refused_before_any_run(tradenova_home, capsys):
    assert main(["report", "--date", "2026-13-01"]) == 1
    assert "--date" in capsys.readouterr().err
    assert main(["sweep", "--id", "bad id", "--start", "2026-10-01", "--end", DAY]) == 1
    assert "sweep_id must be letters" in capsys.readouterr().err
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []


SWEEP = ["--start", "2026-10-01", "--end", DAY, "--strategies", "always-call", "--seeds", "0",
         "--folds", "2", "--train-days", "10", "--eval-days", "1"]


@pytest.mark.slow
def test_sweep_runs_each_partition_as_a_run_and_prints_the_in_process_summary(tradenova_home, store, capsys):
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.research.summary import sweep_summary
    from tradenova_dagster.research.sweep import plan_sweep, run_partition, sweep_dir

    assert main(["sweep", "--id", "cli", *SWEEP, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    partitions = _runs("sweep_job")
    assert sorted(r.tags["dagster/partition"] for r in partitions) == ["cli|always-call|0|0", "cli|always-call|0|1"]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS and r.tags["tradenova/sweep"] == "cli" for r in partitions)
    assert [r.status for r in _runs("sweep_plan_job") + _runs("sweep_summary_job")] == [dg.DagsterRunStatus.SUCCESS] * 2

    # The same sweep in this process, with no Dagster: the same numbers.
    spec = plan_sweep("inproc", ["always-call"], [0], "2026-10-01", DAY, 2, 10, 1)
    for key in spec.partition_keys():
        run_partition(store, get_source("synthetic"), key)
    expected = sweep_summary(sweep_dir("inproc"))
    pd.testing.assert_frame_equal(pd.read_parquet(sweep_dir("cli") / "summary.parquet"), expected)
    assert expected.to_string(index=False, float_format=lambda v: f"{v:,.2f}") in printed
