"""A small REAL study for the dashboard tests, written the way the study runner writes one (the user
attribute contract of ``nas.study._schema``): specs asked from an Optuna trial through
``search_space.suggest``, cost accounting by ``nas.profile``, the NASWOT proxy computed on a real
CIFAR-10 batch, latency measured (median and IQR of timed eager forwards), the canonical baselines as
trials of their own, one FAIL trial with its reason, one RUNNING trial, and beside it a study written
by "other Optuna code" that has none of our attributes.
"""

from __future__ import annotations

import hashlib
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from search_space import SearchSpace, suggest
from shufflenet import build_model, canonical_spec

from nas import profile
from nas.study import study_data

STUDY = "dash-test"
FOREIGN = "other-code"
RESOLUTION = 16  # CIFAR-10 images average-pooled 2x: keeps the fixture quick on 2 shared CPU cores
BASELINES = ("v1_g3_0.5x", "v1_g8_0.5x", "v2_0.5x", "v2_1.0x")
N_SEARCH = 8
# small widths and depths, for the same reason
SPACE = SearchSpace(depth=((1, 2), (1, 3), (1, 2)), first_width=(24, 96), final_channels=(0, 256, 512))
MAX_PARAMS = 150_000  # a constraint, stored as the runner stores it: user attr "constraints", feasible when <= 0
LATENCY_SETTINGS = {"device": "cpu", "runtime": "eager", "threads": 1, "resolution": RESOLUTION, "batch": 1,
                    "warmup": 3, "runs": 15}


def cifar_batch(cifar_dir: Path, n: int = 16) -> torch.Tensor:
    """The first ``n`` CIFAR-10 test images (official binary layout), scaled to [0, 1] and
    average-pooled to ``RESOLUTION``."""
    raw = np.fromfile(cifar_dir / "test_batch.bin", dtype=np.uint8, count=n * 3073).reshape(n, 3073)
    images = torch.from_numpy(raw[:, 1:].reshape(n, 3, 32, 32).astype(np.float32) / 255.0)
    return torch.nn.functional.adaptive_avg_pool2d(images, RESOLUTION)


def naswot(model: torch.nn.Module, images: torch.Tensor) -> float:
    """NASWOT (Mellor et al. 2021): log|K| of the Hamming-similarity kernel of the ReLU codes."""
    n = images.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_m, _inp, out):
        codes = (out.detach().flatten(1) > 0).float()  # 0/1: float32 sums are exact here
        ones = codes.sum(1)
        agree = 2 * codes @ codes.T - ones[:, None] - ones[None, :] + codes.shape[1]  # N - Hamming distance
        kernel.add_(agree.double())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(kernel)[1])


def measure_latency(model: torch.nn.Module, warmup: int = 3, runs: int = 15) -> tuple[float, float]:
    """(median, IQR) in ms of eager forwards of one image on one thread."""
    x = torch.zeros(1, 3, RESOLUTION, RESOLUTION)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        with torch.inference_mode():
            for i in range(warmup + runs):
                t0 = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(threads)
    q1, _, q3 = statistics.quantiles(times, n=4)
    return statistics.median(times), q3 - q1


def _fingerprint() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "threads": 1, "torch": torch.__version__,
            "python": platform.python_version()}


def evaluate_into(trial: optuna.Trial, spec, images: torch.Tensor, baseline: str | None = None) -> list[float]:
    """Compute and record everything the runner records for one spec; returns the objective values."""
    cost = profile(spec, RESOLUTION, 10, "cifar")
    torch.manual_seed(trial.number)
    model = build_model(spec, num_classes=10, stem="cifar").eval()
    score = naswot(model, images)
    median, iqr = measure_latency(model)
    fp = _fingerprint()
    attrs = {
        "spec": spec.to_dict(), "spec_hash": spec.content_hash(), "short": spec.short(),
        "proxy_naswot": score, "proxy_params_cifar": float(cost.params),
        "params": cost.params, "mflops": cost.mflops, "mmac": cost.mmac, "fragments": cost.fragments,
        "kernel_launches": cost.kernel_launches, "elementwise_ops": cost.elementwise_ops,
        "latency_ms": median, "latency_iqr_ms": iqr, "latency_runs": LATENCY_SETTINGS["runs"],
        "latency_settings": LATENCY_SETTINGS, "device_fingerprint": fp,
        "fingerprint_id": hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12],
        "constraints": [float(cost.params - MAX_PARAMS)],
    }
    if baseline:
        attrs["baseline"] = baseline
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    return [score, median]


def add_search_trial(study: optuna.Study, images: torch.Tensor) -> int:
    """Ask one trial, suggest a spec from the space, evaluate and tell; returns its number."""
    trial = study.ask()
    spec = suggest(trial, SPACE)
    study.tell(trial, evaluate_into(trial, spec, images))
    return trial.number


def _build(storage: str, images: torch.Tensor) -> None:
    """Run both studies in memory (ask/tell as the runner does), then copy them into ``storage`` (one
    write per trial instead of one per attribute: SQLite commits are slow on a shared disk)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: no thread oversubscription
    try:
        _run_in_memory(storage, images)
    finally:
        torch.set_num_threads(threads)


def _run_in_memory(storage: str, images: torch.Tensor) -> None:
    memory = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name=STUDY, storage=memory, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_user_attr("objective_names", ["proxy:naswot", "latency_ms"])
    study.set_user_attr("proxy", "naswot")
    study.set_user_attr("latency_settings", LATENCY_SETTINGS)
    study.set_user_attr("target_fingerprint", _fingerprint())
    for name in BASELINES:
        trial = study.ask()
        study.tell(trial, evaluate_into(trial, canonical_spec(name).with_name(name), images, baseline=name))
    for _ in range(N_SEARCH):
        add_search_trial(study, images)
    # a trial that fails for real: the accounting refuses a resolution below 8
    trial = study.ask()
    spec = suggest(trial, SPACE)
    try:
        profile(spec, 4, 10, "cifar")
        raise AssertionError("profile accepted resolution 4")
    except ValueError as exc:
        trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    study.ask()  # left RUNNING

    # "other Optuna code": Binh and Korn, no shufflenas attributes at all
    other = optuna.create_study(study_name=FOREIGN, storage=memory, directions=["minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=1))
    other.optimize(lambda t: (4 * t.suggest_float("x", 0, 5) ** 2 + 4 * t.suggest_float("y", 0, 3) ** 2,
                              (t.params["x"] - 5) ** 2 + (t.params["y"] - 5) ** 2), n_trials=25)
    for name in (STUDY, FOREIGN):
        optuna.copy_study(from_study_name=name, from_storage=memory, to_storage=storage)


@pytest.fixture(scope="session")
def images(cifar_dir) -> torch.Tensor:
    return cifar_batch(cifar_dir)


@pytest.fixture(scope="session")
def study_db(tmp_path_factory, images) -> Path:
    """A SQLite file holding the real study (``STUDY``) and the foreign one (``FOREIGN``). Tests that
    add trials copy it first."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = tmp_path_factory.mktemp("dash") / "study.db"
    _build(f"sqlite:///{path}", images)
    return path


@pytest.fixture(scope="session")
def storage_url(study_db) -> str:
    return f"sqlite:///{study_db}"


@pytest.fixture(scope="session")
def dash_data(storage_url) -> dict:
    return study_data(optuna.load_study(study_name=STUDY, storage=storage_url))


@pytest.fixture(scope="session")
def foreign_data(storage_url) -> dict:
    return study_data(optuna.load_study(study_name=FOREIGN, storage=storage_url))


@pytest.fixture(scope="session")
def facts() -> dict:
    """What the fixture study was built with (tests import nothing from conftest)."""
    return {"study": STUDY, "foreign": FOREIGN, "baselines": BASELINES, "n_search": N_SEARCH,
            "resolution": RESOLUTION, "max_params": MAX_PARAMS}


@pytest.fixture(scope="session")
def add_trial(images):
    """``add_trial(storage_url) -> number``: one more real search trial in the study at ``storage_url``."""
    def add(storage: str, seed: int = 5) -> int:
        study = optuna.load_study(study_name=STUDY, storage=storage,
                                  sampler=optuna.samplers.RandomSampler(seed=seed))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return add_search_trial(study, images)
        finally:
            torch.set_num_threads(threads)
    return add


# ---- a study with every canonical baseline (29), launched as a user launches one -------------------------

ALL_BASELINES_TOML = {
    "name": "all-baselines", "trials": 12, "baselines": "all",
    "space": {"families": ["v1", "v2"], "groups": [1, 2, 3, 4, 8], "depth": [[1, 2], [1, 3], [1, 2]],
              "first_width": [24, 240], "growth": [2.0], "final_channels": [0, 512, 1024]},
    "proxy": {"name": "params_cifar", "record": ["flops"]},
    "latency": {"resolution": 64, "warmup": 1, "warmup_seconds": 0.0, "min_runs": 5, "max_runs": 9,
                "max_seconds": 0.2, "retries": 0, "drift_control": False},   # issue 17's: not what is tested
    "sampler": {"name": "random"},
}


@pytest.fixture(scope="session")
def all_baselines(tmp_path_factory) -> dict:
    """A real study (``nas.study.launch``: the CLI's path) holding all 29 canonical baselines and 12
    searched trials, latency measured at 64x64 in a short protocol; a journal file."""
    from nas.fleet import open_storage, parse_storage
    from nas.study import Evaluator, config_from_dict, launch, quiet_optuna

    folder = tmp_path_factory.mktemp("all-baselines")
    journal = folder / "all.journal"
    config = config_from_dict(ALL_BASELINES_TOML)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("SHUFFLENAS_LOCK_DIR", str(folder))  # timings are not asserted: no queue behind other benchmarks
    try:
        with quiet_optuna():
            storage = open_storage(parse_storage(str(journal)), create=True)
            launch(config, storage, evaluator=Evaluator(config, latency_cache=None), remeasure_end=False)
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    return {"journal": journal, "study": config.name, "n_search": config.trials, "n_baselines": len(config.baselines)}
