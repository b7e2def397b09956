"""``shufflenas dashboard``: the Pareto dashboard of a study, as one self-contained HTML file
(``--out``) or served live while the study runs (``--serve``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas._errors import NasError
from nas.cli._command import STORAGE_FLAGS, Command
from nas.fleet import load_existing_study
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
    p.add_argument("--host", help="with --serve: address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, help="with --serve: port (default 8050; 0 picks a free one)")
    p.add_argument("--poll", type=float, metavar="SECONDS",
                   help="with --serve: how often the page asks for new trials (default 2)")
    p.add_argument("--webgl-threshold", type=int, default=1000, metavar="N",
                   help="draw scatter traces with WebGL above N trials (default 1000)")


def open_study(storage_arg: str, study_arg: str | None) -> tuple[Any, str]:
    """(optuna Study, storage string for the export command) from CLI strings (journal files,
    SQLite, any database URL)."""
    study, location = load_existing_study(storage_arg, study_arg)
    return study, location.target


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
    study, target = open_study(args.storage, args.study)
    try:
        if args.out:
            data = study_data(study)
            path = write_html(data, args.out, storage=target, webgl_threshold=args.webgl_threshold)
            size = Path(path).stat().st_size
            print(f"wrote {path} ({len(data['rows'])} trials of study {study.study_name!r}, {size / 1e6:.1f} MB); "
                  f"open it in a browser, it works offline")
            return 0
        host = args.host or "127.0.0.1"
        server = DashboardServer(lambda: study_data(study), host=host,
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
