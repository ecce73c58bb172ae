"""A research sweep: strategies x seeds x walk-forward folds, one result file per run.

A sweep is planned once (``plan_sweep``): its id, strategies, seeds, folds (``folds.py``),
data source and — for the ``model`` strategy — one trained model per fold are written to
``$TRADENOVA_HOME/sweeps/<sweep id>/sweep.json``. Each (strategy, seed, fold) is then one
independent unit of work, named by a partition key ``<sweep id>|<strategy>|<seed>|<fold>``
that says everything needed to run it again alone (``run_partition``): it replays its
fold's evaluation days through the real session loop (``session.day.backtest_day``) on a
backtest account of its own, ``backtest:sweep.<id>.<strategy>.s<seed>.f<fold>``, so its
ledger is a DuckDB file of its own and two runs in two processes never contend for one
DuckDB writer. The shared database is only read (bars) or briefly written (the day's market
context) under its cross-process lock.

Each run writes its per-day results to ``result-<strategy>-s<seed>-f<fold>.parquet`` in the
sweep folder, atomically: a temporary file in the same folder, then ``os.replace``. A run
that crashes mid-write leaves at most a ``*.tmp-<pid>`` file that no reader's
``result-*.parquet`` glob matches, never a partial result; running it again replaces it.

The ``model`` strategy needs the model trained on that fold's training window (the
walk-forward training builds them): ``model_paths[fold]``. Without one for every fold the
plan is refused, naming the folds that lack one; the baselines need none.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tradenova_dagster import config
from tradenova_dagster.research.folds import Fold, folds
from tradenova_dagster.strategies import build_strategy, require_strategy

SPEC_FILE = "sweep.json"
RESULT_GLOB = "result-*.parquet"
KEY_SEPARATOR = "|"
RESULT_COLUMNS = ("sweep_id", "strategy", "seed", "fold", "day", "start_equity", "end_equity", "pnl", "trades",
                  "wins", "losses", "entries", "refused", "max_drawdown", "model", "source")


def sweeps_dir() -> Path:
    """``$TRADENOVA_HOME/sweeps``: one folder per sweep."""
    path = config.home() / "sweeps"
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_sweep_id(sweep_id: str) -> str:
    """Letters, digits, '-', '_': it names a folder, a partition key and backtest accounts."""
    if not sweep_id or not all(c.isalnum() or c in "-_" for c in sweep_id):
        raise ValueError(f"sweep_id must be letters, digits, '-' or '_', got {sweep_id!r}")
    return sweep_id


def sweep_dir(sweep_id: str) -> Path:
    return sweeps_dir() / require_sweep_id(sweep_id)


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep runs (see the module docstring); stored as ``sweep.json``."""

    sweep_id: str
    strategies: tuple[str, ...]
    seeds: tuple[int, ...]
    folds: tuple[Fold, ...]
    source: str
    model_paths: dict[int, str] = field(default_factory=dict)  # fold index -> the model trained on it
    initial_cash: float = 100_000.0
    contracts: int = 1

    def partition_keys(self) -> list[str]:
        return [partition_key(self.sweep_id, s, seed, f.index)
                for s in self.strategies for seed in self.seeds for f in self.folds]

    def to_json(self) -> str:
        return json.dumps({"sweep_id": self.sweep_id, "strategies": list(self.strategies), "seeds": list(self.seeds),
                           "folds": [f.as_dict() for f in self.folds], "source": self.source,
                           "model_paths": {str(k): v for k, v in self.model_paths.items()},
                           "initial_cash": self.initial_cash, "contracts": self.contracts}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SweepSpec":
        data = json.loads(text)
        return cls(data["sweep_id"], tuple(data["strategies"]), tuple(int(s) for s in data["seeds"]),
                   tuple(Fold.from_dict(f) for f in data["folds"]), data["source"],
                   {int(k): v for k, v in data["model_paths"].items()}, float(data["initial_cash"]),
                   int(data["contracts"]))


def plan_sweep(sweep_id: str, strategies, seeds, start, end, n_folds: int, train_days: int, eval_days: int, *,
               source: str = "synthetic", model_paths=None, initial_cash: float = 100_000.0,
               contracts: int = 1) -> SweepSpec:
    """Check a sweep and write its spec (atomically) to its folder; everything a user can
    get wrong is a ValueError naming the field and the value, before any run starts.
    ``model_paths``: one model file per fold, in fold order (only the ``model`` strategy)."""
    require_sweep_id(sweep_id)
    strategies = tuple(require_strategy(s, "strategies") for s in strategies)
    if not strategies or len(set(strategies)) != len(strategies):
        raise ValueError(f"strategies must be distinct and at least one, got {list(strategies)!r}")
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be distinct whole numbers >= 0 and at least one, got {list(seeds)!r}")
    windows = tuple(folds(start, end, n_folds, train_days, eval_days))
    paths = {i: str(p) for i, p in enumerate(model_paths or []) if p}
    if "model" in strategies:
        missing = [f.index for f in windows if f.index not in paths]
        if missing:
            raise ValueError(f"strategy 'model' needs a model trained on each fold's training window: model_paths "
                             f"has none for fold(s) {missing} (got {list(model_paths or [])!r}); train them with "
                             f"the walk-forward training, or sweep baselines only")
        absent = {i: p for i, p in paths.items() if not Path(p).exists()}
        if absent:
            raise ValueError(f"model_paths: no model file at {absent} (fold: path)")
    spec = SweepSpec(sweep_id, strategies, tuple(seeds), windows, source, paths, float(initial_cash), int(contracts))
    folder = sweep_dir(sweep_id)
    folder.mkdir(parents=True, exist_ok=True)
    planned = folder / SPEC_FILE
    if planned.exists() and planned.read_text() != spec.to_json():  # its results would mix with the new ones
        raise ValueError(f"sweep_id {sweep_id!r} is already planned differently ({planned}); choose a new "
                         f"sweep_id, or delete {folder} to start it over")
    write_atomic(planned, lambda tmp: tmp.write_text(spec.to_json()))
    return spec


def load_spec(sweep_id: str) -> SweepSpec:
    path = sweep_dir(sweep_id) / SPEC_FILE
    if not path.exists():
        raise ValueError(f"sweep_id {sweep_id!r}: no sweep planned ({path} is missing); plan it first (sweep_plan)")
    return SweepSpec.from_json(path.read_text())


def partition_key(sweep_id: str, strategy: str, seed: int, fold: int) -> str:
    return KEY_SEPARATOR.join([require_sweep_id(sweep_id), require_strategy(strategy), str(int(seed)), str(int(fold))])


def parse_partition_key(key: str) -> tuple[str, str, int, int]:
    """``<sweep id>|<strategy>|<seed>|<fold>`` as (sweep id, strategy, seed, fold)."""
    parts = key.split(KEY_SEPARATOR)
    if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
        raise ValueError(f"partition key must be <sweep id>|<strategy>|<seed>|<fold>, got {key!r}")
    return require_sweep_id(parts[0]), require_strategy(parts[1], "partition key strategy"), int(parts[2]), int(parts[3])


def result_path(sweep_id: str, strategy: str, seed: int, fold: int) -> Path:
    return sweep_dir(sweep_id) / f"result-{strategy}-s{seed}-f{fold}.parquet"


def write_atomic(path: Path, write) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, flushed to disk, then renamed
    over ``path`` in one step: a reader sees the old file or the whole new one, never a
    part. A failure removes the temporary file; a crash leaves it under a name no reader
    globs (``<name>.tmp-<pid>``)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def replay_run(store, source, signal, backtest_id: str, days, *, initial_cash: float = 100_000.0,
               contracts: int = 1) -> pd.DataFrame:
    """Replay ``days`` in order through the session loop on one backtest account (fresh on
    the first day) and return the per-day result rows (``RESULT_COLUMNS`` but the run's
    identity: sweep id, strategy, seed, fold)."""
    from tradenova_dagster.ledger.accounts import ledger_store
    from tradenova_dagster.session.day import backtest_account, backtest_days
    from tradenova_dagster.session.engine import SessionSettings

    rows = []
    for day, report in backtest_days(store, source, days, signal, backtest_id, initial_cash=initial_cash,
                                     settings=SessionSettings(contracts=contracts)):
        rows.append({"day": day, "start_equity": report.start_equity, "end_equity": report.end_equity,
                     "pnl": (report.end_equity or 0.0) - (report.start_equity or 0.0), "trades": report.trades,
                     "entries": report.entries, "refused": report.refusals})
    account = backtest_account(backtest_id)
    ledger = ledger_store(account)
    outcomes = ledger.query_df("SELECT day, count(*) FILTER (WHERE pnl > 0) AS wins, "
                               "count(*) FILTER (WHERE pnl < 0) AS losses FROM trades WHERE account = ? GROUP BY day",
                               [account])
    equity = ledger.query_df("SELECT equity FROM equity_curve WHERE account = ? ORDER BY ts", [account])["equity"]
    curve = pd.concat([pd.Series([initial_cash]), equity], ignore_index=True)
    drawdown = float((1.0 - curve / curve.cummax()).max())
    outcomes = outcomes.set_index(pd.to_datetime(outcomes["day"]).dt.date)
    frame = pd.DataFrame(rows)
    return frame.assign(wins=[int(outcomes["wins"].get(d, 0)) for d in frame["day"]],
                        losses=[int(outcomes["losses"].get(d, 0)) for d in frame["day"]],
                        max_drawdown=drawdown, model=signal.model_id, source=source.name)


def run_partition(store, source, key: str) -> tuple[Path, pd.DataFrame]:
    """Run one (strategy, seed, fold) of a planned sweep: replay the fold's evaluation days
    on the run's own backtest account, then write its result file. Returns (path, rows)."""
    sweep_id, strategy, seed, fold_index = parse_partition_key(key)
    spec = load_spec(sweep_id)
    if strategy not in spec.strategies or seed not in spec.seeds or fold_index >= len(spec.folds):
        raise ValueError(f"partition key {key!r} is not part of sweep {sweep_id!r} (strategies "
                         f"{list(spec.strategies)}, seeds {list(spec.seeds)}, {len(spec.folds)} folds)")
    if source.name != spec.source:
        raise ValueError(f"market data source {source.name!r}: sweep {sweep_id!r} was planned on {spec.source!r}; "
                         "every run of a sweep reads the same data")
    fold = spec.folds[fold_index]
    signal = build_strategy(strategy, seed=seed, model_path=spec.model_paths.get(fold_index, ""), store=store)
    frame = replay_run(store, source, signal, f"sweep.{sweep_id}.{strategy}.s{seed}.f{fold_index}", fold.evaluation,
                       initial_cash=spec.initial_cash, contracts=spec.contracts)
    frame = frame.assign(sweep_id=sweep_id, strategy=strategy, seed=seed, fold=fold_index)[list(RESULT_COLUMNS)]
    path = result_path(sweep_id, strategy, seed, fold_index)
    write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return path, frame
