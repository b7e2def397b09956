"""Where a study's latency comes from: ``[latency] mode``.

- ``"measured"`` (default): every trial is timed (``nas.measure.measure_latency``), as always.
- ``"predicted"``: the objective is the latency model's prediction (``nas.measure.LatencyModel``,
  the table built by ``shufflenas latency-model build`` for this device and runtime); trials carry
  ``latency_pred_ms`` and ``latency_source = "predicted"``, never ``latency_ms``, and the study's
  objective is named ``latency_pred_ms``: a predicted axis says so.
- ``"screen"``: predicted during the search; at the end of ``launch`` every member of the
  predicted front (and, with ``screen_margin`` m, every trial the front would not dominate if the
  trial were m faster) and every baseline is measured for real (``nas.study._runner.run_screen``).
  Optuna keeps a finished trial's values and attributes as they were told, so the measurements are
  study user attributes ``screen:<trial number>`` (``latency_ms``, IQR, runs, fingerprint);
  :func:`apply_screen` merges them into the study's rows: a measured row carries both numbers
  (``latency_ms`` measured, ``latency_pred_ms`` predicted) and its value on the latency axis is the
  measured one; a row never measured is ``latency_source = "screened"`` and takes no part in the
  front, which is therefore built on measured latency only (``shufflenas pareto``, the dashboards,
  export).

Study-file keys (beside the ``LatencySettings`` keys): ``mode``, ``model`` (the table file; default
the one ``latency-model build`` writes for this device, runtime and deployment settings),
``on_missing`` (``"measure"``: a table entry the model lacks is measured on demand and appended;
``"refuse"``: the trial fails naming it), ``screen_margin`` (default 0).

Plain Python (no torch): the rows of :mod:`nas.study._rows` use :func:`apply_screen`; the
evaluator's :class:`nas.study._evaluator.Predictor` loads the model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from nas.study._pareto import dominates, pareto_front, usable
from nas.study._schema import (ATTR_LATENCY_IQR_MS, ATTR_LATENCY_MS, ATTR_LATENCY_PRED_MS, ATTR_LATENCY_QUALITY,
                               ATTR_LATENCY_RUNS,
                               ATTR_LATENCY_SOURCE, LATENCY_MEASURED, LATENCY_PREDICTED, LATENCY_SCREENED,
                               STUDY_LATENCY_MODE, STUDY_SCREEN_DONE, STUDY_SCREEN_PREFIX)

MODES = ("measured", "predicted", "screen")
MODE_KEYS = ("mode", "model", "on_missing", "screen_margin")


@dataclass(frozen=True)
class LatencyMode:
    mode: str = "measured"
    model: str | None = None
    on_missing: str = "measure"
    screen_margin: float = 0.0

    @property
    def predicts(self) -> bool:
        return self.mode in ("predicted", "screen")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if v is not None}


def parse_mode(table: Mapping[str, Any], problems: Callable[[str], None],
               base_dir: Path | None = None) -> tuple[dict[str, Any], LatencyMode]:
    """Split a ``[latency]`` table into the measurement settings and the :class:`LatencyMode`;
    problems are reported through ``problems`` (one per key)."""
    rest = {k: v for k, v in table.items() if k not in MODE_KEYS}
    mode = table.get("mode", "measured")
    if mode not in MODES:
        problems(f"latency.mode: got {mode!r}; allowed: {', '.join(map(repr, MODES))}")
        mode = "measured"
    model = table.get("model")
    if model is not None:
        if not isinstance(model, str) or not model:
            problems(f"latency.model: got {model!r}; expected the path of a latency model table (shufflenas "
                     f"latency-model build --table PATH)")
            model = None
        elif base_dir is not None and not Path(model).expanduser().is_absolute():
            model = str((base_dir / Path(model).expanduser()).resolve())
    on_missing = table.get("on_missing", "measure")
    if on_missing not in ("measure", "refuse"):
        problems(f"latency.on_missing: got {on_missing!r}; allowed: 'measure', 'refuse'")
        on_missing = "measure"
    margin = table.get("screen_margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
            or not 0 <= margin < 1:
        problems(f"latency.screen_margin: got {margin!r}; expected a number in [0, 1) (0.1: also measure trials "
                 f"within 10 % of the predicted front)")
        margin = 0.0
    for key in ("model", "on_missing", "screen_margin"):
        if key in table and mode == "measured":
            problems(f"latency.{key}: only for mode 'predicted' or 'screen', not 'measured'; remove it or set mode")
    if "screen_margin" in table and mode == "predicted":
        problems("latency.screen_margin: only for mode 'screen'; remove it")
    return rest, LatencyMode(mode=mode, model=model, on_missing=on_missing, screen_margin=float(margin))


def latency_objective_name(mode: LatencyMode) -> str:
    """The latency objective's name: ``latency_ms`` when measured, ``latency_pred_ms`` when the
    values the sampler sees are predictions (``predicted`` and ``screen``)."""
    return ATTR_LATENCY_PRED_MS if mode.predicts else ATTR_LATENCY_MS


def latency_value(attrs: Mapping[str, Any]) -> Any:
    """A trial's latency for a ``max_latency_ms`` limit: measured when there is one, else predicted."""
    v = attrs.get(ATTR_LATENCY_MS)
    return v if v is not None else attrs.get(ATTR_LATENCY_PRED_MS)


# ---- the screen ---------------------------------------------------------------------------------------

@dataclass
class ScreenReport:
    front: int = 0
    measured: int = 0
    already: int = 0
    baselines: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def screen_candidates(rows: list[Mapping[str, Any]], directions: list[str], margin: float) -> list[Mapping[str, Any]]:
    """Searched rows to measure: the predicted front, and with ``margin`` m every row the front
    would not dominate if the row's latency were (1 - m) times its prediction."""
    front = pareto_front(rows, directions)
    if margin <= 0:
        return list(front)
    picked = {r["number"] for r in front}
    out = list(front)
    for r in rows:
        if r["number"] in picked or r.get("baseline") or not usable(r, len(directions)) or not r.get("feasible", True):
            continue
        optimistic = [r["values"][0], r["values"][1] * (1 - margin)]
        if not any(dominates(f["values"], optimistic, directions) for f in front):
            out.append(r)
            picked.add(r["number"])
    return out


def screen_key(number: int) -> str:
    return f"{STUDY_SCREEN_PREFIX}{number}"


def apply_screen(meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """In place: merge a screened study's measurements into its rows (see the module docstring). A
    study in another mode, or a screen whose search is still running, is left as it is."""
    attrs = meta.get("user_attrs") or {}
    if attrs.get(STUDY_LATENCY_MODE) != "screen":
        return
    meta["latency_mode"] = "screen"
    if STUDY_SCREEN_DONE not in attrs:
        meta["screen_done"] = False
        return
    meta["screen_done"] = True
    names = list(meta.get("objective_names") or [])
    if len(names) == 2:
        meta["objective_names"] = [names[0], ATTR_LATENCY_MS]
    for r in rows:
        m = attrs.get(screen_key(r["number"]))
        if m and r.get("values") is not None and len(r["values"]) == 2:
            r["attrs"] = {**r.get("attrs", {}), **m, ATTR_LATENCY_SOURCE: LATENCY_MEASURED}
            r["metrics"] = {**r.get("metrics", {}),
                            **{k: m[k] for k in (ATTR_LATENCY_MS, ATTR_LATENCY_IQR_MS, ATTR_LATENCY_RUNS)}}
            r[ATTR_LATENCY_SOURCE] = LATENCY_MEASURED
            r["latency_quality"] = m.get(ATTR_LATENCY_QUALITY, r.get("latency_quality"))
            r["values"] = [r["values"][0], float(m[ATTR_LATENCY_MS])]
        elif r.get(ATTR_LATENCY_SOURCE) == LATENCY_PREDICTED:
            r[ATTR_LATENCY_SOURCE] = LATENCY_SCREENED
