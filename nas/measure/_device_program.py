"""The device-side measurement program: time one exported model with the project's protocol on
the machine it runs on, and print the result as one JSON line.

It needs only the Python standard library and the runtime that runs the model (``onnxruntime``
with numpy, or ``executorch``); neither torch nor shufflenas (ExecuTorch's Python bindings import
torch themselves: the executorch wheel depends on it). The remote runner (:mod:`nas.measure._remote`)
copies this file and :mod:`nas.measure._protocol` (the one definition of the protocol) to a per-user
folder on the device and runs::

    python3 _device_program.py probe RUNTIME        # the device's fingerprint facts and runtime version
    python3 _device_program.py measure 'REQUEST'    # REQUEST: a JSON object, see measure()

The study host imports the same file (``nas.measure._device_program``) for its own ExecuTorch and
onnxruntime sessions, so a model is loaded and pinned to its threads the same way on both sides.

Output: the last stdout line starting with :data:`MARK` is the result, ``{"ok": true, ...}`` or
``{"ok": false, "error": KIND, "message": ...}`` (exit status 3; runtime logs may precede it).
A watchdog thread ends a measurement that outlives its ``timeout`` (exit status 124), even when the
runtime is stuck in native code; the device's latency lock (an exclusive ``flock`` of the same file
a local shufflenas uses, ``$SHUFFLENAS_LOCK_DIR/latency.lock`` else
``<tmp>/shufflenas-<user>/latency.lock``) is held while the model is timed, so two study hosts never
time one device at once.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

try:
    import fcntl
except ImportError:  # not a POSIX device: measurements there take no lock
    fcntl = None  # type: ignore[assignment]

if __package__:
    from nas.measure import _protocol as protocol
else:  # run as a script on the device: _protocol.py lies beside this file
    import _protocol as protocol  # type: ignore[no-redef]

PROGRAM_VERSION = 1
MARK = "SHUFFLENAS-RESULT "
RUNTIMES = ("onnxruntime", "executorch")
INSTALL = {"onnxruntime": "pip install onnxruntime numpy", "executorch": "pip install executorch"}
EXIT_ERROR = 3
EXIT_TIMEOUT = 124
LOCK_ENV = "SHUFFLENAS_LOCK_DIR"


class DeviceError(Exception):
    """A measurement that cannot be made; ``kind`` names the cause for the study host."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# ------------------------------------------------------------------------------------------ facts

def cpu_model() -> str:
    """The CPU model as ``/proc/cpuinfo`` (Linux, Android) or ``sysctl`` (macOS) names it."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return " ".join(value.split())
    if platform.system() == "Darwin":
        with contextlib.suppress(Exception):
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5).stdout.strip()
            if out:
                return out
    return platform.processor() or platform.machine() or "unknown"


def device_facts() -> dict[str, Any]:
    """What identifies the device's hardware and software (hostnames excluded: two identical
    boards are one device model, as two identical study hosts are)."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count() or 1, "machine": platform.machine(),
            "system": platform.system(), "python": platform.python_version()}


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence native (C++) logging on file descriptor 2 (ExecuTorch's cpuinfo and threadpool
    lines); Python's own ``sys.stderr`` objects are untouched."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _import(runtime: str) -> Any:
    name = {"onnxruntime": "onnxruntime", "executorch": "executorch.extension.pybindings.portable_lib"}[runtime]
    try:
        with quiet_native_stderr(), _no_warnings():
            return importlib.import_module(name)
    except ImportError as exc:
        raise DeviceError("runtime_missing", f"{runtime} is not installed for {sys.executable} "
                                             f"({type(exc).__name__}: {exc}); install it there: "
                                             f"{INSTALL[runtime]}") from None


@contextlib.contextmanager
def _no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def runtime_info(runtime: str) -> dict[str, Any]:
    """The runtime's version (and ExecuTorch's delegate), importing it; :class:`DeviceError`
    ``runtime_missing`` when it is not installed."""
    if runtime not in RUNTIMES:
        raise DeviceError("bad_request", f"runtime {runtime!r}: this program runs {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        ort = _import("onnxruntime")
        _import_numpy()
        return {"onnxruntime": ort.__version__}
    lib = _import("executorch")
    version = executorch_version()
    if not lib._is_available("XnnpackBackend"):
        raise DeviceError("runtime_missing", f"executorch {version} here has no XnnpackBackend; install a build "
                                             f"with XNNPACK ({INSTALL['executorch']})")
    return {"executorch": version, "delegate": "xnnpack"}


def _import_numpy() -> Any:
    try:
        return importlib.import_module("numpy")  # the runtime's own dependency, imported when it is used
    except ImportError:
        raise DeviceError("runtime_missing", f"numpy is not installed for {sys.executable}; install it there: "
                                             f"{INSTALL['onnxruntime']}") from None


def executorch_version() -> str:
    """The installed executorch's version (its distribution metadata: nothing is imported)."""
    try:
        return metadata.version("executorch")
    except metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------------------ runtimes

def ort_session_options(ort: Any, threads: int) -> Any:
    """onnxruntime options of every shufflenas session: ``threads`` intra-op threads, one inter-op
    thread, sequential execution, all graph optimisations, warnings off."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


def executorch_threads() -> int:
    """The size of ExecuTorch's threadpool (XNNPACK's worker threads come from it)."""
    lib = _import("executorch")
    with quiet_native_stderr():
        return int(lib._threadpool_get_thread_count())


#: How many times this process resized ExecuTorch's threadpool: a program loaded before a resize holds
#: the old pool, so a cached one (the drift-control reference) must not run after it.
POOL_RESETS = [0]


def set_executorch_threads(threads: int) -> int:
    """Resize ExecuTorch's process-wide threadpool, which the XNNPACK delegate runs its kernels on,
    to ``threads`` (``portable_lib._unsafe_reset_threadpool``: "unsafe" only while a method
    executes, which never happens here). Returns the previous size. Raises :class:`DeviceError`
    when the pool does not take the size (so a thread count is never silently wrong)."""
    lib = _import("executorch")
    with quiet_native_stderr():  # the pool's first use logs cpuinfo lines from native code
        before = int(lib._threadpool_get_thread_count())
        if before != threads:
            lib._unsafe_reset_threadpool(int(threads))
            POOL_RESETS[0] += 1
        now = int(lib._threadpool_get_thread_count())
    if now != threads:
        raise DeviceError("runtime_error", f"executorch threadpool: asked for {threads} thread(s), it has {now}")
    return before


def load_pte(path: str | os.PathLike, threads: int) -> Any:
    """An ExecuTorch program's ``forward`` method, loaded by the runtime's own loader
    (``executorch.runtime.Runtime``), with the threadpool at ``threads``."""
    runtime_info("executorch")
    set_executorch_threads(threads)
    with quiet_native_stderr(), _no_warnings():
        # deferred: executorch is the device's runtime, an optional heavy dependency here
        from executorch.runtime import Runtime  # type: ignore[import-not-found]

        program = Runtime.get().load_program(Path(path))
        return program.load_method("forward")


def load_onnx(path: str | os.PathLike, threads: int) -> Any:
    runtime_info("onnxruntime")
    ort = _import("onnxruntime")
    return ort.InferenceSession(str(path), sess_options=ort_session_options(ort, threads),
                                providers=["CPUExecutionProvider"])


def forward_of(runtime: str, path: str | os.PathLike, threads: int, shape: list[int],
               seed: int = 0) -> tuple[Callable[[], Any], Callable[[], None]]:
    """``(forward, close)``: one model call on a fixed seeded N(0, 1) float32 input of ``shape``."""
    if runtime == "onnxruntime":
        np = _import_numpy()
        session = load_onnx(path, threads)
        x = np.random.default_rng(seed).standard_normal(tuple(shape), dtype=np.float32)
        feed = {session.get_inputs()[0].name: x}
        return (lambda: session.run(None, feed)), (lambda: None)
    method = load_pte(path, threads)
    torch = importlib.import_module("torch")  # ExecuTorch's Python bindings take torch tensors (its wheel needs torch)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    args = [x]
    return (lambda: method.execute(args)), (lambda: None)


# ------------------------------------------------------------------------------------------ lock

def lock_file() -> Path:
    env = os.environ.get(LOCK_ENV)
    if env:
        return Path(env) / "latency.lock"
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no name for this uid (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"shufflenas-{user}" / "latency.lock"


_PHASE = ["starting"]  # what the program is doing, for the watchdog's message


def _phase(text: str) -> None:
    _PHASE[0] = text


@contextlib.contextmanager
def device_lock() -> Iterator[float]:
    """Hold the device's latency lock (an exclusive ``flock``, waited for as long as it takes: the
    watchdog bounds the wait); yields the seconds waited."""
    path = lock_file()
    if fcntl is None:  # not a POSIX device: no lock
        yield -1.0
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o666)
    t0 = time.monotonic()
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _phase(f"waiting for the device's latency lock {path}, held by another measurement")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield time.monotonic() - t0
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ------------------------------------------------------------------------------------------ commands

def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def probe(runtime: str) -> dict[str, Any]:
    """The device's facts and the runtime's version."""
    return {"ok": True, "program": PROGRAM_VERSION, "protocol": protocol.PROTOCOL_VERSION,
            "facts": device_facts(), "runtime": runtime, "versions": runtime_info(runtime),
            "python_executable": sys.executable}


def _place_model(request: dict[str, Any]) -> Path:
    """The model file named by ``request["model"]``; a freshly copied ``request["adopt"]`` file is
    checked against ``request["sha256"]`` and renamed into place first (content-addressed: a
    model already there is never copied again)."""
    model = Path(request["model"]).expanduser()
    adopt = request.get("adopt")
    if adopt:
        staged = Path(adopt).expanduser()
        if not staged.is_file():
            raise DeviceError("model_missing", f"copied model {staged} is not on the device")
        got = sha256_of(staged)
        if request.get("sha256") and got != request["sha256"]:
            staged.unlink()
            raise DeviceError("model_corrupt", f"copied model {staged} has sha256 {got[:12]}, expected "
                                               f"{request['sha256'][:12]} (the copy was cut short?)")
        os.replace(staged, model)
    if not model.is_file():
        raise DeviceError("model_missing", f"model {model} is not on the device")
    return model


def measure(request: dict[str, Any]) -> dict[str, Any]:
    """Time one model. ``request``: ``model`` (path on the device), ``sha256``, optional ``adopt``
    (a just-copied file to check and move to ``model``), ``runtime``, ``threads``, ``shape`` (the
    input's shape), ``protocol`` (the protocol parameters, defaults from nas.measure._protocol),
    ``timeout`` (seconds for the whole measurement, the lock wait included: the watchdog's), ``seed``."""
    try:
        runtime, threads, shape = request["runtime"], int(request["threads"]), [int(v) for v in request["shape"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DeviceError("bad_request", f"measure request lacks or garbles {exc}") from None
    params = protocol.protocol_params(request.get("protocol") or {})
    _phase(f"importing {runtime}")
    info = runtime_info(runtime)
    _phase("checking the model file")
    model = _place_model(request)
    t0 = time.perf_counter()
    with device_lock() as waited:
        t1 = time.perf_counter()
        _phase(f"loading the model in {runtime}")
        forward, close = forward_of(runtime, model, threads, shape, int(request.get("seed", 0)))
        t2 = time.perf_counter()
        _phase("timing the model")
        try:
            samples, stop = protocol.run_protocol(forward, params)
        finally:
            close()
        t3 = time.perf_counter()
    if runtime == "executorch":
        info["threadpool"] = executorch_threads()
    return {"ok": True, **protocol.summarise(samples, stop), "samples_ms": samples, "versions": info,
            "facts": device_facts(), "protocol": protocol.PROTOCOL_VERSION, "program": PROGRAM_VERSION,
            "lock_wait_s": round(waited, 4), "load_s": round(t2 - t1, 4), "timing_s": round(t3 - t2, 4),
            "total_s": round(t3 - t0, 4), "shape": shape, "threads": threads}


def _emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _watchdog(seconds: float) -> None:
    def fire() -> None:
        with contextlib.suppress(Exception):
            _emit({"ok": False, "error": "timeout",
                   "message": f"the measurement ran longer than {seconds:g} s (while {_PHASE[0]})"})
        os._exit(EXIT_TIMEOUT)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(argv) == 2 and argv[0] == "probe":
            _emit(probe(argv[1]))
            return 0
        if len(argv) == 2 and argv[0] == "measure":
            try:
                request = json.loads(argv[1])
            except json.JSONDecodeError as exc:
                raise DeviceError("bad_request", f"measure: the request is not JSON ({exc})") from None
            if not isinstance(request, dict):
                raise DeviceError("bad_request", "measure: the request is not a JSON object")
            _watchdog(float(request.get("timeout") or 600))
            _emit(measure(request))
            return 0
        raise DeviceError("bad_request", "usage: _device_program.py probe RUNTIME | measure REQUEST_JSON")
    except DeviceError as exc:
        _emit({"ok": False, "error": exc.kind, "message": str(exc)})
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - anything else is reported, not a traceback
        _emit({"ok": False, "error": "runtime_error", "message": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"})
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
