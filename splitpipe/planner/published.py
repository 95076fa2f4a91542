"""The papers' own choices and estimates beside the planner's, so `splitpipe plan` can show both.

`--method paper`: PipeLearn's published parameter rule (planner/pipelearn.py `paper_rule`)
per device, predicted by the event engine and set beside the search's choice.
`--estimator closed-form`: MP-SL's closed-form epoch time (planner/mpsl_cost.py) of the
chosen cuts beside the event predictor's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from splitpipe.engine.predict import predict_epoch
from splitpipe.plan import Plan
from splitpipe.planner.mpsl_cost import closed_form_epoch
from splitpipe.planner.pipelearn import paper_rule, with_choices
from splitpipe.profile import Profile

if TYPE_CHECKING:
    from splitpipe.planner.choose import PlanResult

__all__ = ["paper_result", "closed_form_notes"]


def paper_result(plan: Plan, profiles: Mapping[str, Profile], search: PlanResult) -> PlanResult:
    """`search` replaced by the published rule's choice for every device, with the search's in the notes."""
    from splitpipe.planner.choose import PlanResult

    rules = [paper_rule(profiles[d], profiles[plan.server], plan, d) for d in plan.owners]
    chosen = with_choices(plan, [(s, n) for s, n, _ in rules])
    prediction = predict_epoch(chosen, profiles)
    splits, counts = [s for s, _, _ in rules], [n for _, n, _ in rules]
    settings: dict[str, object] = {"split": splits[0], "micro_batches": counts[0]}
    if len(set(zip(splits, counts))) > 1:
        settings["device_splits"] = ",".join(map(str, splits))
        settings["device_micro_batches"] = ",".join(map(str, counts))
    rows = [{**row, "split": s, "micro_batches": n, "paper_path_s": path, "idle_s": prediction.idle_s[str(row["device"])]}
            for row, (s, n, path) in zip(search.rows, rules)]
    searched = ", ".join(f"{k} {v}" for k, v in search.settings.items())
    notes = [
        "method paper: PipeLearn's published rule per device (N from stage times, capped at B/2 and 100, a "
        "divisor of B; the split with the shortest critical path, paper_path_s: one mini-batch)",
        f"paper's choice: predicted epoch time {prediction.time_s:.4g} s",
        f"search's choice: {searched}: predicted epoch time {search.prediction.time_s:.4g} s "
        f"(paper's is {prediction.time_s / search.prediction.time_s - 1:+.1%})",
    ]
    return PlanResult(search.technique, chosen, prediction, search.baseline_s, settings, rows, notes)


def closed_form_notes(plan: Plan, profiles: Mapping[str, Profile], events_s: float) -> list[str]:
    """Two lines: the closed-form estimate term by term, and its gap to the event predictor."""
    closed = closed_form_epoch(plan, profiles)
    return [f"closed-form (the paper's cost model): {closed.formula()}",
            f"event predictor: {events_s:.4g} s; closed-form is {closed.time_s / events_s - 1:+.1%} off it"]
