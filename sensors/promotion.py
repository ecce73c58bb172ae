"""The model promotion sensor: a model whose evaluation passed trades the next session.

``model_evaluation`` (assets/models.py) replays the freshly trained models and the
baselines over held-out sessions through the session loop, gates each model
(``rl.gate.gate``: CI low of daily after-cost P&L above 0, IQM above every baseline's)
and yields its ``promotable`` asset check in the same step, with the winner in the
check's metadata (``best_model_id``). This sensor reads ``model_evaluation``
materializations newer than its cursor (an event storage id), oldest first, and for each
one looks up the ``promotable`` check evaluation of the same run:

- passed → ``registry.promote(best_model_id)`` for the ``global`` account, the model every
  account trades unless it has a promotion of its own (the same as
  ``tradenova train --promote``); the session and backtests pick it up when they next load
  the promoted model. ``promote`` re-checks the evaluation recorded in DuckDB and refuses a
  model that did not pass, so the sensor can never promote a loser. The promotion is
  also written as an observation on ``model_evaluation``, visible in the asset catalog;
- failed, or the check never ran in a finished run → nothing is promoted, with a reason;
- the run is still going and the check is not there yet → wait (the cursor stays).

The sensor starts no runs, so each tick ends with a SkipReason that says what it did.
"""

from __future__ import annotations

import dagster as dg

from resources.store import StoreResource
from schedules.trading_day import default_sensor_status
from tradenova_dagster.rl import registry

EVALUATION = dg.AssetKey("model_evaluation")
CHECK_NAME = "promotable"
BATCH = 20


def check_evaluation(instance: dg.DagsterInstance, run_id: str) -> dg.AssetCheckEvaluation | None:
    """The ``promotable`` check evaluation logged by a run, if any."""
    found = None
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.asset_key == EVALUATION and evaluation.check_name == CHECK_NAME:
            found = evaluation
    return found


def _best_model_id(evaluation: dg.AssetCheckEvaluation, record) -> str:
    for metadata in (evaluation.metadata, record.asset_materialization.metadata):
        value = metadata.get("best_model_id")
        if value is not None and str(value.value).strip():
            return str(value.value).strip()
    return ""


@dg.sensor(
    name="model_promotion_sensor",
    minimum_interval_seconds=60,
    default_status=default_sensor_status(),
    description="A new model_evaluation whose promotable check passed → promote its best model "
    "(global) for the next session.",
)
def model_promotion_sensor(context: dg.SensorEvaluationContext, store: StoreResource):
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=EVALUATION, after_storage_id=after), limit=BATCH, ascending=True,
    ).records
    if not records:
        return dg.SkipReason("no new model_evaluation materialization")
    cursor, notes, events = after, [], []
    for record in records:
        run_id = record.run_id
        evaluation = check_evaluation(context.instance, run_id)
        if evaluation is None:
            run = context.instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                notes.append(f"run {run_id}: waiting for its {CHECK_NAME} check")
                break
            notes.append(f"run {run_id}: the {CHECK_NAME} check did not run: nothing promoted")
        elif not evaluation.passed:
            notes.append(f"run {run_id}: {CHECK_NAME} check failed ({evaluation.description}): nothing promoted")
        else:
            model_id = _best_model_id(evaluation, record)
            try:
                if not model_id:
                    raise ValueError("the check passed but names no best_model_id")
                model = registry.promote(model_id, reason=f"model_promotion_sensor: {CHECK_NAME} check passed "
                                         f"in run {run_id}", run_id=run_id, store=store.get_store())
            except ValueError as exc:
                notes.append(f"run {run_id}: not promoted: {exc}")
            else:
                note = f"promoted {model.model_id} ({model.agent}, {model.symbol}) for the next session"
                notes.append(note)
                context.log.info(note)
                events.append(dg.AssetObservation(EVALUATION, metadata={
                    "promoted_model_id": model.model_id, "promoted_for": registry.GLOBAL_ACCOUNT,
                    "evaluation_run_id": run_id,
                }))
        cursor = record.storage_id
    return dg.SensorResult(skip_reason="; ".join(notes), asset_events=events,
                           cursor=str(cursor) if cursor is not None else None)
