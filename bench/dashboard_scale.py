"""How the dashboard scales with the number of trials: building the page and opening it in a real
browser.

    python bench/dashboard_scale.py                                 # N = 1000, 5000, 10000
    python bench/dashboard_scale.py --trials 1000,3000 --storage studies/quickstart.journal --study quickstart

For each N: a study of N completed trials written by plain Optuna code (ZDT1, two objectives, five
parameters; ``optuna.trial.create_trial``), then, each repeated ``--repeats`` times and reported as
the median: ``gather`` + the three figures, the whole static page (``render_html``), its size, and
the time headless chromium (Debian's package) takes from navigation to the page's ``data-ready``
mark (every figure drawn; WebGL traces above 1,000 trials). With ``--storage`` / ``--study`` it also
reports the page bytes per trial of a real shufflenas study (specs, hover text, metrics weigh more
per trial than ZDT1 rows), to scale the sizes above.

Nothing is asserted; the machine may be shared (the load average is recorded). Writes
``bench/results/dashboard_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM = os.environ.get("SHUFFLENAS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def zdt1_data(n: int, seed: int = 0) -> dict:
    import optuna

    from nas.study import study_data

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(seed)
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    trials = []
    for _ in range(n):
        x = [rng.random() for _ in range(5)]
        g = 1 + 9 * sum(x[1:]) / 4
        trials.append(optuna.trial.create_trial(values=[x[0], g * (1 - math.sqrt(x[0] / g))],
                                                params={f"x{k}": v for k, v in enumerate(x)},
                                                distributions={f"x{k}": dist for k in range(5)}))
    study = optuna.create_study(study_name=f"zdt1-{n}", directions=["minimize", "minimize"])
    study.add_trials(trials)
    return study_data(study)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def browser_load_s(path: Path, repeats: int) -> float:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            t0 = time.perf_counter()
            page.goto(path.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=300_000)
            times.append(time.perf_counter() - t0)
            page.close()
        browser.close()
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", default="1000,5000,10000", help="comma-separated trial counts")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--storage", help="a real shufflenas study's storage, for bytes per trial")
    ap.add_argument("--study", help="its study name")
    ap.add_argument("--no-browser", action="store_true", help="skip the chromium load times")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "dashboard_scale.json"))
    args = ap.parse_args(argv)

    import dashboards

    rows = []
    print(f"{'trials':>7s} {'gather+figs s':>13s} {'page s':>7s} {'page MB':>8s} {'browser s':>9s}  (medians of {args.repeats})")
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(v) for v in args.trials.split(",")]:
            data = zdt1_data(n)
            figs_s, _ = timed(lambda: dashboards.figures(dashboards.gather(data)), args.repeats)
            page_s, html = timed(lambda: dashboards.render_html(data), args.repeats)
            path = Path(tmp) / f"p{n}.html"
            path.write_text(html, encoding="utf-8")
            load_s = None if args.no_browser else browser_load_s(path, args.repeats)
            size = path.stat().st_size
            rows.append({"trials": n, "gather_and_figures_s": figs_s, "page_s": page_s, "page_bytes": size,
                         "browser_load_s": load_s})
            print(f"{n:7d} {figs_s:13.2f} {page_s:7.2f} {size / 1e6:8.1f} "
                  f"{'' if load_s is None else f'{load_s:9.2f}'}")
        real = None
        if args.storage:
            from nas.cli._dashboard import open_study
            from nas.study import study_data

            study, target = open_study(args.storage, args.study)
            data = study_data(study)
            base = len(dashboards.render_html({"meta": data["meta"], "rows": []}, storage=target))
            full = len(dashboards.render_html(data, storage=target))
            real = {"study": study.study_name, "trials": len(data["rows"]), "page_bytes": full,
                    "bytes_per_trial": (full - base) / max(1, len(data["rows"]))}
            print(f"real study {study.study_name!r}: {len(data['rows'])} trials, {full / 1e6:.2f} MB, "
                  f"{real['bytes_per_trial']:.0f} bytes per trial beyond the empty page")
    doc = {"bench": "dashboard_scale", "machine": platform.machine(), "python": platform.python_version(),
           "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "repeats": args.repeats,
           "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "zdt1": rows, "real_study": real}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
