"""``shufflenas dashboard``: the Pareto dashboard of a study, as one self-contained HTML file
(``--out``), served live while the study runs (``--serve``), or saved into the study for
optuna-dashboard (``--to-optuna-dashboard``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from search_space import SHORT_LEGEND

from nas._errors import NasError
from nas.cli._command import STORAGE_FLAGS, Command
from nas.fleet import load_existing_study
from nas import study as nas_study  # param_importances loads fANOVA (scikit-learn) only when called
from nas.study import study_data


def _add_dashboard(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", required=True, metavar="URL",
                   help="the study's storage: journal file path, sqlite:///PATH or a database URL")
    p.add_argument("--study", metavar="NAME", help="study name (default: the only study in the storage)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", metavar="PATH.html",
                      help="write one self-contained HTML file (plotly.js inlined; opens from disk, works offline)")
    mode.add_argument("--serve", action="store_true",
                      help="serve the dashboard live: new trials appear without reloading")
    mode.add_argument("--to-optuna-dashboard", action="store_true",
                      help="save the Pareto view with baselines, the parameter importance and the knob EDFs into "
                           "the study, where `optuna-dashboard STORAGE` shows them (needs the optuna-dashboard extra)")
    p.add_argument("--host", help="with --serve: address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, help="with --serve: port (default 8050; 0 picks a free one)")
    p.add_argument("--poll", type=float, metavar="SECONDS",
                   help="with --serve: how often the page asks for new trials (default 2)")
    p.add_argument("--webgl-threshold", type=int, default=1000, metavar="N",
                   help="draw scatter traces with WebGL above N trials (default 1000)")


def open_study(storage_arg: str, study_arg: str | None, write: bool = False) -> tuple[Any, str]:
    """(optuna Study, storage string for the export command) from CLI strings (journal files,
    SQLite, any database URL); read-only unless ``write`` (saving figures into the study)."""
    study, location = load_existing_study(storage_arg, study_arg, write=write)
    return study, location.target


def _reader(study: Any) -> Any:
    """A function giving the study's data with its parameter importances (fANOVA takes seconds:
    recomputed only when the number of trials changes, so a live page polls cheaply)."""
    cache: dict[str, Any] = {}

    def read() -> dict:
        data = study_data(study)
        n = sum(1 for r in data["rows"] if r["state"] == "COMPLETE")
        if cache.get("n") != n:
            cache.update(n=n, importance=nas_study.param_importances(study))
        data["meta"]["importance"] = cache["importance"]
        return data
    return read


OPTUNA_DASHBOARD_FIGURES = {"shufflenas-pareto": "pareto", "shufflenas-importance": "importance",
                            "shufflenas-knob-edf": "knob_edf"}


def save_for_optuna_dashboard(study: Any, data: dict) -> list[str]:
    """Save the Pareto view (trials, front, baselines), the parameter importance per objective and the
    knob EDFs into ``study`` with ``optuna_dashboard.save_plotly_graph_object`` (its "plots" tab);
    returns the graph object ids (:data:`OPTUNA_DASHBOARD_FIGURES`), overwritten on a second call."""
    try:  # optional: the optuna-dashboard extra; deferred to its use
        from optuna_dashboard import save_note, save_plotly_graph_object
    except ImportError:
        raise NasError("--to-optuna-dashboard: optuna-dashboard is not installed; install it with "
                       "`pip install -c constraints-cpu.txt -e '.[optuna-dashboard]'`") from None
    from dashboards import design_figures, pareto_figure  # deferred: plotly, only this command needs it

    figs = {"pareto": pareto_figure(data), **design_figures(data)}
    for graph_id, key in OPTUNA_DASHBOARD_FIGURES.items():
        save_plotly_graph_object(study, figs[key], graph_object_id=graph_id)
    save_note(study, study_note(data))
    return list(OPTUNA_DASHBOARD_FIGURES)


def study_note(data: dict) -> str:
    """The study's note in optuna-dashboard (Markdown): what the accuracy objective is worth, which
    trials are baselines (its Best Trials list them too: they are COMPLETE trials on the same
    objectives), where the shufflenas figures are, and the legend of the architecture string."""
    from dashboards._info import objective_caveat  # deferred with plotly above (the package imports it)

    meta, rows = data["meta"], data["rows"]
    base = sorted((r["number"], r["baseline"]) for r in rows if r.get("baseline") and r["state"] == "COMPLETE")
    names = meta.get("objective_names") or []
    lines = [f"## shufflenas study {meta.get('study_name')}", "",
             f"Objectives: {', '.join(f'`{n}` ({d})' for n, d in zip(names, meta.get('directions') or []))}.", "",
             f"**The accuracy objective**: {objective_caveat(meta)}.", ""]
    if base:
        lines += [f"**Baselines**: trials {', '.join(f'{n} ({b})' for n, b in base)} are the canonical ShuffleNet "
                  f"configs, evaluated with the same objectives, not searched (user attribute `baseline`). They "
                  f"have no parameters, and *Best Trials* lists those on the front like searched trials: the plot "
                  f"`shufflenas-pareto` tells them apart.", ""]
    lines += ["Plots: `shufflenas-pareto` (trials, front, baselines), `shufflenas-importance` (fANOVA importance "
              "per objective, searched trials only), `shufflenas-knob-edf` (per-knob EDFs of accuracy and latency). "
              "Refresh them with `shufflenas dashboard --storage STORAGE --to-optuna-dashboard`.", "",
              f"User attribute `short`: {SHORT_LEGEND}."]
    return "\n".join(lines) + "\n"


def _run_dashboard(args: argparse.Namespace) -> int:
    # plotly (through dashboards) is heavy and only this command needs it: deferred to its use
    from dashboards import DashboardError, DashboardServer, write_html
    from dashboards._serve import is_loopback  # deferred with the line above: plotly

    if not args.serve:
        given = [f for f, v in (("--host", args.host), ("--port", args.port), ("--poll", args.poll)) if v is not None]
        if given:
            raise NasError(f"{', '.join(given)}: only with --serve (--out writes a file)")
    if args.webgl_threshold < 0:
        raise NasError(f"--webgl-threshold: got {args.webgl_threshold}; expected an integer >= 0")
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            raise NasError(f"--out {args.out}: is a folder; give a file path such as {out / 'pareto.html'}")
        if not out.parent.is_dir():
            raise NasError(f"--out {args.out}: folder {out.parent} does not exist; create it or choose another path")
    study, target = open_study(args.storage, args.study, write=args.to_optuna_dashboard)
    read = _reader(study)
    if args.to_optuna_dashboard:
        ids = save_for_optuna_dashboard(study, read())
        print(f"saved {len(ids)} figures into study {study.study_name!r} ({', '.join(ids)}); see them with: "
              f"optuna-dashboard {target}")
        return 0
    try:
        if args.out:
            data = read()
            path = write_html(data, args.out, storage=target, webgl_threshold=args.webgl_threshold)
            size = Path(path).stat().st_size
            print(f"wrote {path} ({len(data['rows'])} trials of study {study.study_name!r}, {size / 1e6:.1f} MB); "
                  f"open it in a browser, it works offline")
            return 0
        host = args.host or "127.0.0.1"
        server = DashboardServer(read, host=host,
                                 port=8050 if args.port is None else args.port,
                                 poll_s=2.0 if args.poll is None else args.poll, storage=target,
                                 webgl_threshold=args.webgl_threshold)
    except DashboardError as exc:
        raise NasError(str(exc)) from None
    if not is_loopback(host):
        print(f"shufflenas dashboard: warning: listening on {host}: anyone who can reach this address can read "
              f"the study (specs, metrics, storage location)", file=sys.stderr)
    print(f"shufflenas dashboard: serving study {study.study_name!r} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("shufflenas dashboard: stopped", flush=True)
    return 0


COMMANDS = [
    Command("dashboard", "the Pareto dashboard of a study: one offline HTML file (--out) or live (--serve)",
            _add_dashboard, _run_dashboard, flags=STORAGE_FLAGS),
]
