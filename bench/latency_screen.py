"""A study in ``[latency] mode = "screen"`` against the same study in ``"measured"`` mode (same
space, proxy, sampler and seed, same trial count), on this device: wall-clock time, hypervolume of
the measured front (one reference point for both), and how many of the measured study's front
members the screened study also found (sampled at all, and on its measured front).

Both studies run through ``shufflenas launch`` on journals under ``bench/tables/screen/``; a launch
is resumable, so each call runs at most ``--budget`` seconds (it is stopped with SIGTERM and the next
call resumes), to fit short ``/work/bankwork/quiet.sh`` windows::

    /work/bankwork/quiet.sh nice -n -15 python bench/latency_screen.py --runtime onnxruntime --budget 240

The screened study uses the latency model ``bench/latency_model.py`` built (``bench/tables/<runtime>.jsonl``).
Time is counted from the trials' own ``time_trial_s`` plus the screen's measuring (the launches'
start-up and the slices' pauses are left out of both); the model's build time is given beside it.
Writes ``bench/results/latency_screen_<runtime>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from nas import hypervolume, open_storage, pareto_front, parse_storage, study_data

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "tables" / "screen"

STUDY = """# bench/latency_screen.py: the default space, params proxy, {runtime}, 1 thread, 224x224
name = "{name}"
trials = {trials}
baselines = ["v2_0.5x", "v2_1.0x", "v1_g3_0.5x", "v1_g3_1.0x"]
[proxy]
name = "params"
[latency]
runtime = "{runtime}"
{mode}
[sampler]
name = "nsga2"
seed = {seed}
population_size = {population}
"""


def _write_study(mode: str, args) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    name = f"{mode}_{args.runtime}{args.tag}"
    extra = "" if mode == "measured" else (f'mode = "screen"\nmodel = "{(ROOT / "tables" / (args.runtime + ".jsonl"))}"\n'
                                          f"screen_margin = {args.margin}")
    text = STUDY.format(name=name, trials=args.trials, runtime=args.runtime, mode=extra, seed=args.seed,
                        population=args.population)
    path = WORK / f"{name}.toml"
    path.write_text(text)
    return path


def _launch(path: Path, budget: float) -> tuple[int, float, str]:
    """Run ``shufflenas launch`` for at most ``budget`` seconds (SIGTERM then: it tells the running
    trial FAIL 'interrupted' and the next launch resumes). Each study has its own latency cache: the
    screen never reuses a measurement the measured study made."""
    t0 = time.perf_counter()
    env = {**os.environ, "SHUFFLENAS_CACHE_DIR": str(WORK / f"cache-{path.stem}")}
    proc = subprocess.Popen([sys.executable, "-m", "nas", "launch", str(path), "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    return proc.returncode, time.perf_counter() - t0, err


def _study(path: Path) -> optuna.Study:
    name = path.stem
    storage = open_storage(parse_storage(str(path.with_suffix(".journal"))), create=False)
    return optuna.load_study(study_name=name, storage=storage)


def _done(path: Path, trials: int, screen: bool) -> bool:
    if not path.with_suffix(".journal").exists():
        return False
    study = _study(path)
    searched = [t for t in study.get_trials(deepcopy=False) if "baseline" not in t.user_attrs
                and (t.state.name == "COMPLETE" or (t.state.name == "FAIL" and not t.user_attrs.get("interrupted")))]
    return len(searched) >= trials and (not screen or "screen_done" in study.user_attrs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--population", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--margin", type=float, default=0.1, help="screen_margin of the screened study")
    ap.add_argument("--budget", type=float, default=240.0)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    measured, screen = _write_study("measured", args), _write_study("screen", args)
    out = ROOT / "results" / f"latency_screen_{args.runtime}{args.tag}.json"
    state = json.loads(out.read_text()) if out.exists() else {"calls": []}
    t0 = time.perf_counter()
    for path, is_screen in ((measured, False), (screen, True)):
        left = args.budget - (time.perf_counter() - t0)
        if _done(path, args.trials, is_screen) or left < 20:
            continue
        rc, secs, err = _launch(path, left)
        state["calls"].append({"study": path.stem, "rc": rc, "seconds": round(secs, 1), "load": os.getloadavg()[0],
                               "nice": os.nice(0), "stderr_tail": err.strip().splitlines()[-3:]})
    finished = _done(measured, args.trials, False) and _done(screen, args.trials, True)
    if finished:
        state.update(compare(measured, screen, args))
    state.update({"bench": "latency_screen", "runtime": args.runtime, "trials": args.trials, "seed": args.seed,
                  "population": args.population, "screen_margin": args.margin, "finished": finished,
                  "command": f"/work/bankwork/quiet.sh nice -n -15 python bench/latency_screen.py --runtime "
                             f"{args.runtime} --trials {args.trials} --margin {args.margin} --budget {args.budget:g}"})
    out.write_text(json.dumps(state, indent=1, default=str) + "\n")
    print(f"latency_screen: {'finished' if finished else 'not finished: run again'}; {out}", file=sys.stderr)
    if finished:
        c = state["comparison"]
        for k, v in c.items():
            print(f"  {k}: {v}")
    return 0


def compare(measured_path: Path, screen_path: Path, args) -> dict:
    dm, ds = study_data(_study(measured_path)), study_data(_study(screen_path))
    directions = dm["meta"]["directions"]
    fm = pareto_front(dm["rows"], directions)
    fs = pareto_front(ds["rows"], directions)
    # one reference point for both: per objective the worst measured value of either study's
    # measured rows (the screened study's unmeasured rows are predictions: left out)
    pts = [r["values"] for r in dm["rows"] if r.get("values") and r["state"] == "COMPLETE"]
    pts += [r["values"] for r in ds["rows"] if r.get("values") and r["state"] == "COMPLETE"
            and r.get("latency_source") == "measured"]
    ref = [min(p[0] for p in pts), max(p[1] for p in pts)]
    hv_m = hypervolume([r["values"] for r in fm], ref, directions)
    hv_s = hypervolume([r["values"] for r in fs], ref, directions)

    def seconds(data: dict) -> float:
        return sum(float(r["attrs"].get("time_trial_s", 0.0)) for r in data["rows"])

    screen_attr = ds["meta"]["user_attrs"].get("screen_done", {})
    t_m = seconds(dm)
    t_s = seconds(ds) + float(screen_attr.get("seconds", 0.0))
    hashes_s = {r.get("spec_hash") for r in ds["rows"]}
    front_s = {r.get("spec_hash") for r in fs}
    model_path = ROOT / "results" / f"latency_model_{args.runtime}.json"
    build_s = json.loads(model_path.read_text()).get("build_seconds") if model_path.exists() else None
    return {"comparison": {
        "seconds_measured_study": round(t_m, 1),
        "seconds_screened_study": round(t_s, 1),
        "screen_measuring_seconds": round(float(screen_attr.get("seconds", 0.0)), 1),
        "speedup": round(t_m / t_s, 2) if t_s else None,
        "model_build_seconds": build_s,
        "reference_point": ref,
        "hypervolume_measured_study": hv_m,
        "hypervolume_screened_study_measured_front": hv_s,
        "hypervolume_ratio": round(hv_s / hv_m, 3) if hv_m else None,
        "front_measured_study": len(fm),
        "front_screened_study": len(fs),
        "screen_measured_trials": screen_attr.get("measured"),
        "measured_front_members_sampled_by_screen": sum(r.get("spec_hash") in hashes_s for r in fm),
        "measured_front_members_on_screened_front": sum(r.get("spec_hash") in front_s for r in fm),
    }, "front_measured": [{"number": r["number"], "values": r["values"], "short": r.get("short")} for r in fm],
        "front_screened": [{"number": r["number"], "values": r["values"], "pred_ms": r["metrics"].get("latency_pred_ms"),
                            "short": r.get("short")} for r in fs]}


if __name__ == "__main__":
    sys.exit(main())
