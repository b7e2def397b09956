"""Issue 15: fourteen faults found by a fault probe, each reproduced through the CLI as a user meets it
(real files, real processes, real signals; a small tmpfs for the full disk and the read-only folder).

Most commands run in this process through ``nas.cli.main`` (the same entry point as ``shufflenas``)
to keep the suite fast; the ones about processes and signals run ``python -m nas`` as a user does.
Every study here is tiny: a V2-only space of small widths, latency at 32x32 with 3 timed runs, no
latency retries or drift control, and no end-of-launch re-measurement but in one test.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from nas.cli import main
from nas.fleet import open_storage

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

STUDY = """
name = "f"
trials = TRIALS
baselines = BASELINES
[space]
families = ["v2"]
groups = [1, 2]
kernel = [3]
fragments = [1]
depth = [[1, 2], [1, 2], [1, 1]]
first_width = [16, 256]
final_channels = [0, 128]
[proxy]
name = "params"
[latency]
resolution = 32
num_classes = 10
warmup = 1
warmup_seconds = WARMUP
min_runs = 3
max_runs = 5
max_seconds = 0.1
retries = 0
drift_control = false
[sampler]
name = "random"
"""


def _study(folder: Path, *, trials: int = 3, baselines: str = '["v2_0.5x"]', warmup: float = 0.0,
           extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "f.toml"
    path.write_text(STUDY.replace("TRIALS", str(trials)).replace("BASELINES", baselines)
                    .replace("WARMUP", str(warmup)) + extra)
    return path


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "SHUFFLENAS_CACHE_DIR": str(tmp / "cache"),
            "SHUFFLENAS_LOCK_DIR": str(tmp / "lock")}


@pytest.fixture
def here(tmp_path, monkeypatch):
    """In-process CLI runs with this test's own latency cache and lock folder."""
    for k in ("SHUFFLENAS_CACHE_DIR", "SHUFFLENAS_LOCK_DIR"):
        monkeypatch.setenv(k, _env(tmp_path)[k])
    return tmp_path


def _cli(*args: str, tmp: Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, env=_env(tmp),
                          cwd=REPO, timeout=timeout, **kw)


def _popen(*args: str, tmp: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nas", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(tmp), cwd=REPO, **kw)


def _trials(journal: Path, name: str = "f") -> list:
    return optuna.load_study(study_name=name, storage=open_storage(str(journal), create=False)).get_trials()


def _one_line(err: str) -> str:
    """The one error line of a command's stderr (progress lines and notes aside), and no traceback."""
    lines = [line for line in err.strip().splitlines() if line.startswith("shufflenas ") and ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _wait_for(predicate, timeout: float = 120.0, what: str = "") -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _running(journal: Path) -> list:
    if not journal.exists():
        return []
    with contextlib.suppress(Exception):
        return [t for t in _trials(journal) if t.state == TrialState.RUNNING]
    return []


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished study (1 baseline + 3 searched trials), made once; tests copy its folder."""
    tmp = tmp_path_factory.mktemp("finished")
    study = _study(tmp / "study")
    with pytest.MonkeyPatch.context() as mp:
        for k in ("SHUFFLENAS_CACHE_DIR", "SHUFFLENAS_LOCK_DIR"):
            mp.setenv(k, _env(tmp)[k])
        assert main(["launch", str(study), "--no-progress", "--no-remeasure"]) == 0
    return study.parent


def _copy(finished: Path, dest: Path) -> Path:
    shutil.copytree(finished, dest, ignore=shutil.ignore_patterns("*.lock"))
    return dest / "f.toml"


@contextlib.contextmanager
def _tmpfs(path: Path, size: str = "400k"):
    if not IS_ROOT:
        pytest.skip("needs root to mount a small tmpfs (the full disk)")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ---- 1. data loss: a partial last record ---------------------------------------------------------------

def test_01_a_full_disk_is_one_line_and_the_rerun_finds_the_study_intact(finished, here, capsys):
    with _tmpfs(here / "disk") as disk:
        study = _copy(finished, disk / "s")
        journal = study.with_suffix(".journal")
        before = {t.number: t.state for t in _trials(journal)}
        fd = os.open(disk / "fill", os.O_WRONLY | os.O_CREAT)   # fill the disk
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0")
        os.close(fd)
        assert main(["launch", str(study), "--trials", "5", "--no-progress", "--no-remeasure"]) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"no space left on device writing {journal}" in line and "the study is intact" in line, line
        assert journal.read_bytes().endswith(b"\n")     # the failed append was undone: no half record
        (disk / "fill").unlink()                        # free space, then re-run as the message says
        rerun = main(["launch", str(study), "--trials", "5", "--no-progress", "--no-remeasure"])
        assert rerun == 0, capsys.readouterr().err
        capsys.readouterr()
        assert main(["pareto", str(study), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        trials = _trials(journal)
        assert all(trials[n].state == s for n, s in before.items() if s == TrialState.COMPLETE)  # nothing lost
        searched = Counter(t.state for t in trials if "baseline" not in t.user_attrs
                           and not t.user_attrs.get("fail_reason", "").startswith("worker lost"))
        assert searched[TrialState.COMPLETE] == 5 and summary["front"]


def test_01_a_truncated_journal_is_skipped_by_readers_and_set_aside_by_launch(finished, here, capsys):
    study = _copy(finished, here / "s")
    journal = study.with_suffix(".journal")
    size = journal.stat().st_size
    os.truncate(journal, size - 150)   # `truncate -s -150 X.journal`
    assert main(["pareto", str(study)]) == 0
    err = capsys.readouterr().err
    assert "skipped a partial last record" in err and "byte offset" in err, err
    assert journal.stat().st_size == size - 150   # a reader changes nothing
    assert main(["launch", str(study), "--no-progress"]) == 0   # with the end-of-launch re-measurement
    err = capsys.readouterr().err
    assert "set aside a partial last record" in err and "re-measured" in err, err
    offset = int(err.split("at byte offset ")[1].split(",")[0].split(")")[0])
    side = Path(f"{journal}.partial-{offset}")
    assert side.exists() and side.stat().st_size == size - 150 - offset
    assert main(["pareto", str(study), "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["front"]
    assert all(line.startswith(b"{") for line in journal.read_bytes().splitlines())   # every line a record


# ---- 2, 3, 14: launches, kills and signals -------------------------------------------------------------

def test_02_two_launches_on_one_study_join_like_workers(here):
    study = _study(here / "s", trials=6, baselines='["v2_0.5x", "v1_g3_0.5x"]')
    procs = [_popen("launch", str(study), "--no-progress", "--no-remeasure", tmp=here) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trials = _trials(study.with_suffix(".journal"))
    assert Counter(t.state for t in trials) == Counter({TrialState.COMPLETE: 8})   # 2 baselines + 6, not more
    assert sorted(t.user_attrs["baseline"] for t in trials if "baseline" in t.user_attrs) == ["v1_g3_0.5x",
                                                                                              "v2_0.5x"]
    by = {}
    for t in trials:
        if "baseline" not in t.user_attrs:
            by.setdefault(t.system_attrs["shufflenas:worker"], []).append(t)
    assert len(by) == 2   # both processes took trials
    first = [min(ts, key=lambda t: t.number).params for ts in by.values()]
    assert first[0] != first[1]   # distinct sampler streams
    assert not any("left RUNNING" in err for _, err in outs)


def test_03_14_sigterm_is_recorded_as_such_and_a_kill_9_trial_is_requeued(here, capsys):
    study = _study(here / "s", trials=3, baselines="[]", warmup=1.5)
    journal = study.with_suffix(".journal")
    # SIGTERM: the running trial is recorded FAIL "interrupted (SIGTERM)", not "(Ctrl-C)"
    p = _popen("launch", str(study), "--no-progress", "--no-remeasure", tmp=here)
    _wait_for(lambda: _running(journal), what="a RUNNING trial")
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    stopped = [t for t in _trials(journal) if t.state == TrialState.FAIL]
    assert len(stopped) == 1 and "interrupted (SIGTERM)" in stopped[0].user_attrs["fail_reason"]
    assert "Ctrl-C" not in stopped[0].user_attrs["fail_reason"]
    # kill -9: the trial carries host:pid; the next command fails it with the reason and re-queues it
    p = _popen("launch", str(study), "--no-progress", "--no-remeasure", tmp=here)
    _wait_for(lambda: [t for t in _running(journal) if "shufflenas:worker" in t.system_attrs],
              what="a RUNNING trial that names its process")
    victim = _running(journal)[0]
    assert victim.system_attrs["shufflenas:worker"] == f"{socket.gethostname()}:{p.pid}"
    p.kill()
    p.communicate(timeout=60)
    r = _cli("worker", str(study), tmp=here, timeout=180)   # returns: it does not wait for the dead one's trial
    assert r.returncode == 0, r.stderr
    trials = _trials(journal)
    lost = trials[victim.number]
    assert lost.state == TrialState.FAIL and f":{p.pid} is no longer running" in lost.user_attrs["fail_reason"]
    retry = [t for t in trials if t.system_attrs.get("retry_history") == [victim.number]]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert victim.params.items() <= retry[0].params.items()   # the choices it had made are kept
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_13_workers_stop_when_their_launch_parent_is_killed(here):
    study = _study(here / "s", trials=4, baselines="[]", warmup=1.5)
    journal = study.with_suffix(".journal")
    parent = _popen("launch", str(study), "--workers", "2", tmp=here)
    # a worker names itself on its trial just after taking it: wait for both names
    _wait_for(lambda: len([t for t in _running(journal) if "shufflenas:worker" in t.system_attrs]) == 2,
              timeout=180, what="two workers' RUNNING trials")
    pids = [int(t.system_attrs["shufflenas:worker"].rsplit(":", 1)[1]) for t in _running(journal)]
    parent.kill()
    parent.communicate(timeout=60)

    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in ("Z", "X")
        except (FileNotFoundError, IndexError):
            return True

    _wait_for(lambda: all(gone(pid) for pid in pids), timeout=60, what="the orphaned workers to stop")
    reasons = [t.user_attrs.get("fail_reason", "") for t in _trials(journal) if t.state == TrialState.FAIL]
    assert len([r for r in reasons if "interrupted (SIGTERM)" in r]) == 2, reasons
    assert not _running(journal)


# ---- 4-7: wrong results --------------------------------------------------------------------------------

def test_04_constraints_added_on_resume_are_refused(finished, here, capsys):
    study = _copy(finished, here / "s")
    study.write_text(study.read_text() + "[constraints]\nmax_params = 100000\n")
    for command in ("launch", "worker"):
        assert main([command, str(study)]) == 2
        line = _one_line(capsys.readouterr().err)
        assert "constraints" in line and "max_params = 100000" in line and "cannot change" in line, line


def test_05_damaged_latency_cache_rows_are_misses_with_a_note(here, capsys):
    cache = here / "cache" / "latency.sqlite"
    first = _study(here / "a", trials=2, baselines="[]")
    assert main(["launch", str(first), "--no-progress", "--no-remeasure"]) == 0
    capsys.readouterr()
    damages = ["UPDATE latency SET median_ms = -5", "UPDATE latency SET settings = '{not json'",
               "UPDATE latency SET median_ms = 'abc'"]
    for i, damage in enumerate(damages):
        with sqlite3.connect(cache) as con:
            con.execute(damage)
        study = _study(here / f"b{i}", trials=2, baselines="[]")   # the same specs (same seed), a new study
        assert main(["launch", str(study), "--no-progress", "--no-remeasure"]) == 0
        err = capsys.readouterr().err
        assert "ignored a damaged row" in err and "Traceback" not in err, err
        for t in _trials(study.with_suffix(".journal")):
            assert t.state == TrialState.COMPLETE and t.values[1] > 0 and not t.user_attrs["latency_cached"]


def test_06_pareto_of_a_study_with_other_objective_counts_is_one_line(here, capsys):
    journal = here / "foreign.journal"
    storage = open_storage(str(journal))
    for name, directions in (("three", ["maximize", "minimize", "minimize"]), ("one", ["minimize"])):
        study = optuna.create_study(study_name=name, storage=storage, directions=directions)
        study.optimize(lambda t: tuple(t.suggest_float(f"x{i}", 0, 1) for i in range(len(directions))), 3)
    for name, n in (("three", 3), ("one", 1)):
        assert main(["pareto", "--storage", str(journal), "--study", name]) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"has {n} objective(s)" in line and "2 objectives" in line, line


def _cifar_folder(folder: Path, cifar_dir: Path, batches: int = 2) -> Path:
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, batches + 1)] + ["test_batch.bin"]:
        (folder / name).symlink_to(cifar_dir / name)
    return folder


def test_07_a_batch_listed_in_sha256sums_but_missing_is_an_error(here, cifar_dir, capsys):
    data = _cifar_folder(here / "data", cifar_dir, batches=2)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    (data / "SHA256SUMS").write_text("".join(f"{'0' * 64}  {n}\n" for n in names))
    assert main(["evaluate", "v2_0.5x", "--proxy", "naswot", "--data-dir", str(data)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "data_batch_3.bin is listed in SHA256SUMS but missing" in line, line


# ---- 8: credentials ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, secret", [
    ("postgresql://bob@127.0.0.1:9/db?password=hunter2", "hunter2"),
    ("postgresql://127.0.0.1:9/db?user=bob&sslpassword=hunter2", "hunter2"),
    ("postgresql://bob:hun@ter2@127.0.0.1:9/db", "ter2"),
    ("postgresql://bob:hun:t@er2x@127.0.0.1/db", "er2x"),
    ("postgresql://bob:hunter2@127.0.0.1:9x/db", "hunter2"),
])
def test_08_every_credential_form_is_masked(url, secret, here, capsys):
    assert main(["pareto", "--storage", url, "--study", "x"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert secret not in line and "***" in line, line
    if url.count("@") > 1:
        assert "percent-encode" in line, line


def test_08_the_dashboard_page_never_holds_a_query_password():
    from dashboards._page import display_storage   # what `dashboard --out` writes into its page

    for url in ("postgresql://bob@db:5432/x?password=hunter2", "postgresql://db/x?sslmode=require&sslpassword=hunter2",
                "postgresql://bob:hunter2@db/x"):
        shown, note = display_storage(url)
        assert "hunter2" not in shown and note and "db" in shown, shown


# ---- 9: tracebacks instead of one line -----------------------------------------------------------------

def _nested_pickle(path: Path, shape: tuple) -> None:
    """A CIFAR python batch whose data array claims ``shape`` (negative, or overflowing int64)."""
    class Arr:
        def __reduce__(self):
            return (np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                    (1, shape, np.dtype("u1"), False, b"\0" * 16))
    path.write_bytes(pickle.dumps({b"data": Arr(), b"labels": [0] * 10_000}, protocol=2))


def test_09_hostile_inputs_are_one_line_each(here, capsys):
    cases = []
    (here / "digits.json").write_text('{"schema_version": 1, "stem_channels": ' + "9" * 5000 + ', "stages": []}')
    cases.append((["profile", str(here / "digits.json")], "digits"))
    (here / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    cases.append((["profile", str(here / "deep.json")], "nested"))
    cases.append((["evaluate", "v2_0.5x", "--resolution", "99999"], "99999"))
    cases.append((["profile", "v2_0.5x", "--resolution", "99999"], "99999"))
    for name, shape in (("neg", (-1, 3072)), ("big", (2**40, 2**40))):
        folder = here / f"py-{name}" / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for batch in ("data_batch_1", "test_batch"):
            _nested_pickle(folder / batch, shape)
        cases.append((["evaluate", "v2_0.5x", "--proxy", "naswot", "--data-dir", str(folder.parent)], "data_batch_1"))
    journal = here / "bad.journal"
    storage = open_storage(str(journal))
    optuna.create_study(study_name="j", storage=storage, directions=["maximize", "minimize"])
    for k, line in enumerate(('{"op_code": 99, "worker_id": "w"}', "[1, 2]")):
        bad = here / f"bad{k}.journal"
        bad.write_text(journal.read_text() + line + "\n")
        n = len(journal.read_text().splitlines()) + 1
        cases.append((["pareto", "--storage", str(bad), "--study", "j"], f"line {n} is not an Optuna journal"))
    db = here / "s.db"
    optuna.create_study(study_name="q", storage=f"sqlite:///{db}", directions=["maximize", "minimize"])
    with sqlite3.connect(db) as con:
        con.execute("DROP TABLE trial_values")
    cases.append((["pareto", "--storage", str(db), "--study", "q"], "trial_values"))
    for argv, named in cases:
        assert main(argv) == 2, argv
        line = _one_line(capsys.readouterr().err)
        assert named in line, (argv, line)


def _limited(gb: float):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (int(gb * 2**30), int(gb * 2**30)))
    return limit


class _Hung(Exception):
    pass


@contextlib.contextmanager
def _bounded(seconds: int = 60, more_memory_gb: float = 2.0):
    """Run an in-process command under a deadline and a memory limit (this process's size plus
    ``more_memory_gb``), as the subprocess tests do with ``timeout`` and ``RLIMIT_AS``: a command
    that would block (open a FIFO) or read without end (``/dev/zero``) fails the test, not the suite."""
    def on_alarm(signum, frame):
        raise _Hung(f"the command still ran after {seconds} s")

    size = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    before = signal.signal(signal.SIGALRM, on_alarm)
    resource.setrlimit(resource.RLIMIT_AS, (size + int(more_memory_gb * 2**30), hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, before)


def test_09_a_spec_too_big_for_memory_is_refused_up_front(here, capsys):
    doc = {"schema_version": 1, "stem_channels": 24, "final_channels": 16384, "stages": [
        {"width": w, "depth": d, "unit": {"family": "v2"}} for w, d in ((4096, 4), (8192, 8), (16384, 4))]}
    (here / "huge.json").write_text(json.dumps(doc))
    with _bounded(120):   # today's code builds it and dies of MemoryError under the limit
        assert main(["profile", str(here / "huge.json")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "needs about" in line and "GB" in line, line


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_09_only_regular_data_files_are_read_and_sizes_come_first(kind, here, cifar_dir, capsys):
    data = _cifar_folder(here / "data", cifar_dir, batches=1)
    if kind == "dev-zero":
        (data / "data_batch_2.bin").symlink_to("/dev/zero")
    else:
        os.mkfifo(data / "data_batch_2.bin")
    with _bounded(60):   # today's code blocks on the FIFO, or reads /dev/zero until memory runs out
        assert main(["evaluate", "v2_0.5x", "--proxy", "naswot", "--data-dir", str(data)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "data_batch_2.bin" in line and "not a regular file" in line, line


# ---- 10, 11: bounds and every problem at once ----------------------------------------------------------

def test_10_bounds_on_trials_stages_and_a_streamed_sample(here, capsys):
    study = _study(here / "s", trials=99999999999999999999)
    with _bounded(60):   # today's code accepts it and runs until killed
        assert main(["launch", str(study)]) == 2
    assert "trials: got 99999999999999999999" in _one_line(capsys.readouterr().err)
    doc = {"stages": [{"width": 48, "depth": 1, "unit": {"family": "v2"}}] * 1000, "schema_version": 1}
    (here / "stages.json").write_text(json.dumps(doc))
    assert main(["profile", str(here / "stages.json")]) == 2
    assert "1,000 stages; expected at most 16" in _one_line(capsys.readouterr().err)
    space = _study(here / "space")
    p = subprocess.Popen(f"{sys.executable} -m nas sample --space {space} --n {10**12} | head -2", shell=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(here), cwd=REPO,
                         start_new_session=True, preexec_fn=_limited(4))
    try:
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail("`sample --n 10**12 | head -2` did not end")
    assert p.returncode == 0 and len(out.splitlines()) == 2 and "Traceback" not in err, err


def test_11_every_bad_value_inside_a_table_is_reported(here, capsys):
    study = here / "bad.toml"
    study.write_text("[space]\ngroups = [0]\nkernel = [4]\ndepth = [[3, 1]]\n"
                     "[latency]\nthreads = 0\nresolution = 5\nmin_runs = -1\n")
    assert main(["launch", str(study)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "6 problems" in line, line
    for key in ("space.groups", "space.kernel", "space.depth[0]", "latency.threads", "latency.resolution",
                "latency.min_runs"):
        assert key in line, key


# ---- 12: an archived, read-only study ------------------------------------------------------------------

def test_12_a_read_only_study_folder_can_be_viewed(finished, here, capsys):
    with _tmpfs(here / "ro", size="4m") as ro:
        study = _copy(finished, ro / "s")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        journal = str(study.with_suffix(".journal"))
        out = here / "out"
        out.mkdir()
        for argv in (["pareto", str(study)],
                     ["dashboard", "--storage", journal, "--out", str(out / "d.html")],
                     ["export", "--storage", journal, "--study", "f", "--trial", "1", "--format", "json",
                      "--out", str(out / "t.json")],
                     ["guidelines", "--storage", journal, "--study", "f"]):
            assert main(argv) == 0, (argv, capsys.readouterr().err)
        assert (out / "d.html").exists() and (out / "t.json").exists()
        assert sorted(p.name for p in study.parent.iterdir()) == ["f.journal", "f.toml"]


# ---- 14: messages --------------------------------------------------------------------------------------

def test_14_messages_say_what_happened(here, cifar_dir, capsys):
    data = _cifar_folder(here / "data", cifar_dir, batches=1)
    (data / "data_batch_1.bin").unlink()
    with open(data / "data_batch_1.bin", "wb") as f:   # one byte too many (sparse: nothing to copy)
        f.truncate(10_000 * 3073 + 1)
    assert main(["evaluate", "v2_0.5x", "--proxy", "naswot", "--data-dir", str(data)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "(the file has trailing bytes)" in line and "is has" not in line, line

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    import torch
    torch.save({"w": Evil()}, here / "evil.pt")
    assert main(["export", "--spec", "v2_0.5x", "--format", "pytorch", "--weights", str(here / "evil.pt"),
                 "--out", str(here / "x.pt")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "refused" in line and "posix.system" in line and "weights_only` set to `False" not in line, line
    assert "will likely succeed" not in line and not (here / "x.pt").exists()

    (here / "noversion.json").write_text(json.dumps({"stages": [{"width": 48, "depth": 1}] * 3}))
    assert main(["profile", str(here / "noversion.json"), "--resolution", "32"]) == 0
    assert "no schema_version; read as schema_version 1" in capsys.readouterr().err
