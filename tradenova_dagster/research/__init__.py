"""Research: walk-forward folds and sweeps of strategies x seeds x folds (plain Python;
the Dagster assets that run them are in ``assets/sweeps.py``)."""

from tradenova_dagster.research.folds import Fold, folds
from tradenova_dagster.research.summary import sweep_summary
from tradenova_dagster.research.sweep import SweepSpec, plan_sweep, run_partition

__all__ = ["Fold", "SweepSpec", "folds", "plan_sweep", "run_partition", "sweep_summary"]
