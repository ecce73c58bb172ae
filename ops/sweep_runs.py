"""``tradenova sweep``: a research sweep (strategies x seeds x walk-forward folds) as Dagster runs.

The sweep is the three assets of ``assets/sweeps.py``, launched as the UI would: a run of
``sweep_plan_job`` (checks the sweep, writes its spec, registers one ``sweep_result``
partition per run), one run of ``sweep_job`` per partition, then a run of
``sweep_summary_job`` (the per-strategy summary, ``summary.parquet``), whose table is what
the command prints. Everything a user can get wrong is refused before the first run
(``research.sweep.plan_sweep``, the check the plan's run repeats).

On the embedded default the partitions run one after another in this process. With the
queued coordinator (production profile) every partition is submitted at once and the
daemon runs as many side by side as the profile's limits allow: each has its own ledger
and result file, so they never wait on one DuckDB writer.
"""

from __future__ import annotations

import dagster as dg

from ops.launch import QUIET, Launcher, progress_bar

sweep_plan_job = dg.define_asset_job("sweep_plan_job", selection=["sweep_plan"],
                                     description="Plan a research sweep (what `tradenova sweep` runs first).")
sweep_summary_job = dg.define_asset_job("sweep_summary_job", selection=["sweep_summary"],
                                        description="Summarise a sweep's result files per strategy.")
JOBS = [sweep_plan_job, sweep_summary_job]

TAG_SWEEP = "tradenova/sweep"


def sweep_options(args) -> dict:
    """The sweep's config (``SweepPlanConfig``), checked up front: ``plan_sweep`` refuses a
    bad id, strategy, seed, fold layout or model path, naming the field and the value."""
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.research.sweep import plan_sweep

    source = get_source(args.source, **({"data_dir": args.data_dir} if args.source == "file" and args.data_dir else {}))
    plan = {"sweep_id": args.id, "strategies": list(args.strategies), "seeds": list(args.seeds), "start": args.start,
            "end": args.end, "n_folds": args.folds, "train_days": args.train_days, "eval_days": args.eval_days,
            "model_paths": list(args.model_paths)}
    plan_sweep(plan["sweep_id"], plan["strategies"], plan["seeds"], plan["start"], plan["end"], plan["n_folds"],
               plan["train_days"], plan["eval_days"], source=source.name, model_paths=plan["model_paths"])
    return plan


def run_sweep_command(args) -> int:
    """The ``tradenova sweep`` command (see the module docstring)."""
    import pandas as pd

    from tradenova_dagster import config
    from tradenova_dagster.research.sweep import sweep_dir

    plan = sweep_options(args)
    market = {"source": args.source, **({"data_dir": args.data_dir} if args.source == "file" and args.data_dir else {})}
    resources = {"resources": {"market_data": {"config": market}}, **QUIET}
    tags = {TAG_SWEEP: plan["sweep_id"], "tradenova/source": args.source, "tradenova/job": "sweep"}
    config.use_dagster_home()
    with dg.DagsterInstance.get() as instance, Launcher(instance) as launcher:
        planned = launcher.run(sweep_plan_job.name, {"ops": {"sweep_plan": {"config": plan}}, **resources}, tags)
        if not planned.success:
            raise RuntimeError(planned.failure(f"sweep {plan['sweep_id']}: planning failed"))
        keys = sorted(k for k in instance.get_dynamic_partitions("sweep_runs") if k.startswith(f"{plan['sweep_id']}|"))
        bar, progress = progress_bar(len(keys), f"sweep {plan['sweep_id']}", "run", args.no_progress)
        with bar:
            # Queued: all submitted at once, and the daemon runs them side by side within the
            # limits; in-process: one after another.
            started = {key: launcher.start("sweep_job", resources, _tags(tags, key), partition_key=key)
                       for key in keys} if launcher.queued else {}
            runs = {}
            for key in keys:
                run_id = started.get(key) or launcher.start("sweep_job", resources, _tags(tags, key),
                                                            partition_key=key)
                runs[key] = launcher.follow(run_id, progress=progress)
                bar.update()
        bad = [key for key, run in runs.items() if not run.success]
        if bad:
            raise RuntimeError(f"{len(bad)} of {len(keys)} sweep runs failed, first {runs[bad[0]].failure(bad[0])}; "
                               f"re-run it alone: dagster asset materialize -m tradenova_dagster.definitions "
                               f"--select sweep_result --partition '{bad[0]}'")
        summary = launcher.run(sweep_summary_job.name, {"ops": {"sweep_summary": {"config": {
            "sweep_id": plan["sweep_id"]}}}, **QUIET}, tags)
        if not summary.success:
            raise RuntimeError(summary.failure(f"sweep {plan['sweep_id']}: summary failed"))
    table = pd.read_parquet(summary.metadata["file"])
    print(f"sweep {plan['sweep_id']}: {len(keys)} runs ({len(plan['strategies'])} strategies x "
          f"{len(plan['seeds'])} seeds x {plan['n_folds']} folds) on {args.source} data")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    print(f"results: {sweep_dir(plan['sweep_id'])} (one Parquet file per run, summary.parquet)")
    return 0


def _tags(tags: dict, key: str) -> dict:
    from tradenova_dagster.research.sweep import parse_partition_key

    _, strategy, seed, fold = parse_partition_key(key)
    return {**tags, "tradenova/strategy": strategy, "tradenova/seed": str(seed), "tradenova/fold": str(fold)}
