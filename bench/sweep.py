"""A research sweep run serially vs in 2 parallel processes: the wall time and the speed-up.

The same small sweep — 3 baselines (always-call, random, momentum) x 2 seeds x 2
walk-forward folds of 3 evaluation days on synthetic SPY: 12 partitions, 36 replayed
days — is planned (``sweep_plan``) and its ``sweep_result`` partitions materialised as real
Dagster runs on a real instance (``DAGSTER_HOME``), by worker processes that each load the
code once and run their share of the partitions one after another (``dg.materialize``,
one run per partition, as ``dagster asset materialize`` would):

- serial: 1 worker runs all 12;
- parallel: 2 workers, 6 each, at the same time — each partition on its own backtest
  account (its own ledger file) and its own result file, so they never wait on one DuckDB
  writer.

Each mode starts from a fresh TRADENOVA_HOME, is timed from launching its workers to the
last one exiting (code loading included in both), and must give the same summary as the
other (the runs are deterministic): a speed-up that changed the results would not count.

    python bench/sweep.py
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = {"sweep_id": "bench", "strategies": ["always-call", "random", "momentum"], "seeds": [0, 1],
         "start": "2026-10-01", "end": "2026-11-20", "n_folds": 2, "train_days": 10, "eval_days": 3}
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _resources() -> dict:
    from resources.market_data import MarketDataResource
    from resources.store import StoreResource

    return {"store": StoreResource(), "market_data": MarketDataResource()}


def worker(keys: list[str]) -> None:
    """Materialise ``keys`` of ``sweep_result``, one Dagster run each, in this process."""
    import dagster as dg

    from assets.sweeps import sweep_result

    with dg.DagsterInstance.get() as instance:
        for key in keys:
            result = dg.materialize([sweep_result], partition_key=key, instance=instance, resources=_resources(),
                                    run_config=QUIET)
            if not result.success:
                raise SystemExit(f"partition {key} failed")


def run_mode(workers: int) -> tuple[float, object, int]:
    """Plan the sweep in a fresh home, run its partitions with ``workers`` processes;
    returns (wall seconds, the sweep's summary, the number of partitions)."""
    import dagster as dg

    from assets.sweeps import sweep_plan
    from tradenova_dagster import config
    from tradenova_dagster.research import sweep_summary
    from tradenova_dagster.research.sweep import sweep_dir

    home = Path(tempfile.mkdtemp(prefix=f"tn-sweep-{workers}-"))
    os.environ.update(TRADENOVA_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    config.dagster_home()
    with dg.DagsterInstance.get() as instance:
        assert dg.materialize([sweep_plan], instance=instance, resources=_resources(),
                              run_config={"ops": {"sweep_plan": {"config": SWEEP}}, **QUIET}).success
        keys = instance.get_dynamic_partitions("sweep_runs")
    shares = [keys[i::workers] for i in range(workers)]
    logs = [open(home / f"worker{i}.log", "w") for i in range(workers)]
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", *share], cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT) for share, log in zip(shares, logs)]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - started
    for log in logs:
        log.close()
    if any(codes):
        raise SystemExit(f"a worker failed (exit codes {codes}); see {home}/worker*.log")
    return wall, sweep_summary(sweep_dir(SWEEP["sweep_id"])), len(keys)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs="+", metavar="KEY", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.worker:
        worker(args.worker)
        return
    import pandas as pd

    serial, serial_summary, runs = run_mode(1)
    parallel, parallel_summary, _ = run_mode(2)
    pd.testing.assert_frame_equal(serial_summary, parallel_summary)  # the same results either way
    days = runs * SWEEP["eval_days"]
    print(f"sweep: {len(SWEEP['strategies'])} strategies x {len(SWEEP['seeds'])} seeds x {SWEEP['n_folds']} folds "
          f"of {SWEEP['eval_days']} days = {runs} partitions, {days} replayed days (synthetic SPY); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"serial   (1 process):   {serial:6.1f} s wall  ({days / serial:.2f} days/s)")
    print(f"parallel (2 processes): {parallel:6.1f} s wall  ({days / parallel:.2f} days/s)")
    print(f"speed-up: {serial / parallel:.2f}x  (results identical in both modes)")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(parallel_summary.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
