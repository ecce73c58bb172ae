"""Research sweeps: strategies x seeds x walk-forward folds, each run a partition of its own.

Three assets:

- ``sweep_plan`` (config: the sweep) checks the sweep, writes its spec to
  ``$TRADENOVA_HOME/sweeps/<sweep id>/sweep.json`` and registers one dynamic partition of
  ``sweep_result`` per (strategy, seed, fold);
- ``sweep_result`` (those partitions) replays its fold's evaluation days through the real
  session loop on a backtest account of its own and writes its result file atomically
  (``tradenova_dagster.research.sweep``). A backfill of its partitions — or one
  ``dagster asset materialize --partition <key>`` per key, in as many processes as there
  are cores — runs them in parallel: each has its own ledger file and its own result
  file, so no two processes contend for one DuckDB writer; a failed partition leaves no
  result file and is re-run alone by its key;
- ``sweep_summary`` (config: the sweep id) reads every result file with DuckDB into one row
  per strategy (``research.summary.sweep_summary``), written to ``summary.parquet``
  beside them and shown as a typed table; the gate's verdict on every trained strategy
  (``sweep_verdicts``: the promotion rule, on the same files) as a table and as the
  ``gate`` check; and the sweep's HTML report (``research.report``) beside the files.

Why dynamic partitions keyed ``<sweep id>|<strategy>|<seed>|<fold>`` and not
``MultiPartitionsDefinition``: a sweep has three dimensions (four with its id) and multi
partitions allow two, so one of strategy / seed / fold would have to be folded into a
combined key anyway; the grid also differs per sweep (strategies, seeds and the number of
folds are the sweep's config, not the code's), which static partitions cannot express.
One dynamic key per run, registered by ``sweep_plan``, is exactly the sweep's grid, reads
as what it is in the UI, and names all a run needs (the rest is in the sweep's spec), so
any partition can be run again alone. Several sweeps coexist: their keys differ by id.
"""

import dagster as dg

from assets.market import table_metadata
from resources.market_data import MarketDataResource
from resources.store import StoreResource
from tradenova_dagster.research.summary import SUMMARY_COLUMNS, sweep_summary as summarise, sweep_verdicts
from tradenova_dagster.research.sweep import plan_sweep, run_partition, sweep_dir, write_atomic
from tradenova_dagster.strategies import BASELINES

sweep_partitions = dg.DynamicPartitionsDefinition(name="sweep_runs")

FOLD_COLUMNS = {"fold": "int", "train_start": "string", "train_end": "string", "eval_start": "string",
                "eval_end": "string"}
GATE_COLUMNS = {"strategy": "string", "promotable": "bool", "iqm": "float", "ci_low": "float", "ci_high": "float",
                "reason": "string"}
RESULT_COLUMNS = {"day": "string", "pnl": "float", "trades": "int", "wins": "int", "losses": "int",
                  "refused": "int"}


class SweepPlanConfig(dg.Config):
    sweep_id: str
    strategies: list[str] = list(BASELINES)
    seeds: list[int] = [0, 1, 2]
    start: str  # the range the folds are laid in (trading days; the folds end at ``end``)
    end: str
    n_folds: int = 4
    train_days: int = 20
    eval_days: int = 5
    # The 'model' strategy: the model trained on each fold's training window, one path per
    # fold in fold order (walk-forward training writes them). Baselines need none.
    model_paths: list[str] = []
    initial_cash: float = 100_000.0
    contracts: int = 1


class SweepSummaryConfig(dg.Config):
    sweep_id: str


@dg.asset(group_name="research", owners=["team:research"],
          description="Plans a research sweep (strategies x seeds x walk-forward folds) and registers one "
          "sweep_result partition per run.")
def sweep_plan(context: dg.AssetExecutionContext, config: SweepPlanConfig,
               market_data: MarketDataResource) -> dg.MaterializeResult:
    spec = plan_sweep(config.sweep_id, config.strategies, config.seeds, config.start, config.end, config.n_folds,
                      config.train_days, config.eval_days, source=market_data.get_source().name,
                      model_paths=config.model_paths, initial_cash=config.initial_cash, contracts=config.contracts)
    keys = spec.partition_keys()
    context.instance.add_dynamic_partitions(sweep_partitions.name, keys)
    folds = [{"fold": f.index, "train_start": f.train[0], "train_end": f.train[-1], "eval_start": f.evaluation[0],
              "eval_end": f.evaluation[-1]} for f in spec.folds]
    return dg.MaterializeResult(metadata={
        "sweep_id": spec.sweep_id, "runs": len(keys), "strategies": ", ".join(spec.strategies),
        "seeds": ", ".join(map(str, spec.seeds)), "source": spec.source, "folds": table_metadata(folds, FOLD_COLUMNS),
        "spec": dg.MetadataValue.path(str(sweep_dir(spec.sweep_id) / "sweep.json")),
    })


@dg.asset(partitions_def=sweep_partitions, deps=[sweep_plan], group_name="research", owners=["team:research"],
          kinds={"parquet"},
          description="One run of a sweep (partition <sweep id>|<strategy>|<seed>|<fold>): the fold's evaluation "
          "days replayed through the session loop on its own backtest account; its result is one Parquet file.")
def sweep_result(context: dg.AssetExecutionContext, store: StoreResource,
                 market_data: MarketDataResource) -> dg.MaterializeResult:
    path, frame = run_partition(store.get_store(), market_data.get_source(), context.partition_key)
    return dg.MaterializeResult(metadata={
        "result": dg.MetadataValue.path(str(path)), "days": len(frame), "pnl": float(frame["pnl"].sum()),
        "trades": int(frame["trades"].sum()), "max_drawdown": float(frame["max_drawdown"].iloc[0]),
        "model": str(frame["model"].iloc[0]), "by_day": table_metadata(frame.to_dict("records"), RESULT_COLUMNS),
    })


@dg.asset(deps=[sweep_result], group_name="research", owners=["team:research"], kinds={"duckdb", "parquet"},
          check_specs=[dg.AssetCheckSpec("gate", asset="sweep_summary",
                                         description="Some trained strategy of the sweep passes the promotion gate "
                                         "(rl.gate: CI low of its mean daily P&L > 0 and IQM above every baseline's).")],
          description="A sweep's results per strategy (mean daily P&L, IQM with a 95% bootstrap CI across seeds x "
          "folds, win rate, max drawdown, trades per day), the gate's verdict on each trained strategy, and the "
          "sweep's HTML report: what the report and the promotion gate read.")
def sweep_summary(context: dg.AssetExecutionContext, config: SweepSummaryConfig) -> dg.MaterializeResult:
    folder = sweep_dir(config.sweep_id)
    table = summarise(folder)
    write_atomic(folder / "summary.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    verdicts = sweep_verdicts(folder)
    from tradenova_dagster.research.report import write_sweep_report  # matplotlib: only when a report is drawn

    report = write_sweep_report(folder)
    rows = table.astype(object).where(table.notna(), None).to_dict("records")  # NaN (undefined) shows as empty
    gate_rows = [{"strategy": name, "promotable": v.promotable, "iqm": v.iqm, "ci_low": v.ci_low, "ci_high": v.ci_high,
                  "reason": v.reason} for name, v in verdicts.items()]
    passing = [name for name, v in verdicts.items() if v.promotable]
    check = dg.AssetCheckResult(
        check_name="gate", passed=bool(passing), severity=dg.AssetCheckSeverity.WARN,
        description=(f"passes the gate: {', '.join(passing)}" if passing else
                     "no trained strategy passes the gate" if verdicts else
                     "no trained strategy in this sweep (baselines only): nothing to promote"),
        metadata={name: v.reason for name, v in verdicts.items()})
    return dg.MaterializeResult(metadata={
        "sweep_id": config.sweep_id, "strategies": len(table), "runs": int(table["runs"].sum()),
        "summary": table_metadata(rows, SUMMARY_COLUMNS),
        "gate": table_metadata(gate_rows, GATE_COLUMNS),
        "file": dg.MetadataValue.path(str(folder / "summary.parquet")),
        "report": dg.MetadataValue.path(str(report)),
    }, check_results=[check])


sweep_job = dg.define_asset_job(
    "sweep_job", selection=["sweep_result"], partitions_def=sweep_partitions,
    description="The runs of a research sweep (plan it with sweep_plan first); a backfill runs them in parallel.",
)
