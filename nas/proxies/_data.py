"""CIFAR-10, loaded safely from a folder the user names.

Two on-disk layouts are read, both as the CIFAR-10 authors distribute them:

- **binary** (``cifar-10-batches-bin``): ``data_batch_1.bin`` ... ``data_batch_5.bin`` and
  ``test_batch.bin``, each 10,000 records of 3,073 bytes (one label byte, then 1,024 red, 1,024
  green, 1,024 blue bytes of a 32x32 image, row-major); class names in ``batches.meta.txt``.
- **python** (``cifar-10-batches-py``): ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``,
  each a pickled dict (``b"data"``: a 10000x3072 uint8 array, ``b"labels"``: a list of ints, plus a
  batch label and file names); class names in the pickled ``batches.meta``. Pickle can run code, so
  these files are read by :class:`_SafeUnpickler`: it accepts the dicts, lists, bytes, strings and
  ints these files contain, and it rebuilds their numpy arrays from raw bytes through stand-ins of
  its own, never by calling a global named in the file. Any other global (``os.system``,
  ``builtins.eval``...) is refused before anything runs.

Either layout may sit in the folder itself or in its official sub-folder. Every batch must hold
exactly 10,000 records and labels 0-9; a ``SHA256SUMS`` file beside the batches (``sha256sum``
format) is checked for every file it lists. Errors name the file and what is wrong.

The folder is given on the command line, in the study file, or by ``SHUFFLENAS_DATA``, in that
order (:func:`resolve_data_dir`); there is no built-in default path.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas._errors import DataError

ENV_VAR = "SHUFFLENAS_DATA"
RECORDS_PER_BATCH = 10_000
IMAGE_BYTES = 3 * 32 * 32
RECORD_BYTES = 1 + IMAGE_BYTES
NUM_CLASSES = 10
DEFAULT_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_MAX_TRAIN_BATCHES = 5


# ---- where the data is ---------------------------------------------------------------------------

def resolve_data_dir(cli_value: str | os.PathLike | None, study_value: str | os.PathLike | None = None) -> Path:
    """The CIFAR-10 folder: the CLI value, else the study file's, else ``$SHUFFLENAS_DATA``.

    Raises :class:`DataError` when none is given (saying the three ways to give it) or when the
    chosen folder does not exist (naming it and where the value came from).
    """
    for value, origin in ((cli_value, "--data-dir"), (study_value, "the study file's data_dir"),
                          (os.environ.get(ENV_VAR) or None, f"${ENV_VAR}")):
        if value is None or str(value) == "":
            continue
        path = Path(value).expanduser()
        if not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            raise DataError(f"CIFAR-10 folder {path} (from {origin}) {what}; give the folder that holds "
                            f"data_batch_*.bin and test_batch.bin (or cifar-10-batches-py)")
        return path
    raise DataError(f"no CIFAR-10 folder given: pass --data-dir DIR, set data_dir in the study file, or set "
                    f"{ENV_VAR}=DIR (a folder with the official binary or python CIFAR-10 batches)")


# ---- the data set --------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Cifar10:
    """CIFAR-10 as arrays: images uint8 (N, 3, 32, 32), labels int64 (N,), class names label-0 first.

    The arrays are read-only: one loaded copy is shared by every caller in the process.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...] = DEFAULT_CLASSES
    source: str = ""

    @property
    def num_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_labels.shape[0])


_CACHE: dict[tuple[str, str], Cifar10] = {}
_CACHE_LOCK = threading.Lock()


def load_cifar10(data_dir: str | os.PathLike) -> Cifar10:
    """Read, verify and return CIFAR-10 from ``data_dir`` (either official layout, see the module
    docstring). The result is cached per folder (and its files' sizes and times) for the process."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"CIFAR-10 folder {root} does not exist; give the folder that holds data_batch_*.bin "
                        f"and test_batch.bin (or cifar-10-batches-py)")
    layout, folder = _find_layout(root)
    key = (str(folder.resolve()), _stat_key(folder))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        data = _load_binary(folder) if layout == "binary" else _load_python(folder)
        _CACHE.clear()  # one data set per process is what the tool needs; do not keep stale copies
        _CACHE[key] = data
        return data


def _stat_key(folder: Path) -> str:
    parts = []
    for p in sorted(folder.iterdir()):
        if p.is_file():
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _find_layout(root: Path) -> tuple[str, Path]:
    candidates = [root, root / "cifar-10-batches-bin", root / "cifar-10-batches-py"]
    for folder in candidates:
        if (folder / "test_batch.bin").exists() or (folder / "data_batch_1.bin").exists():
            return "binary", folder
        if (folder / "test_batch").exists() or (folder / "data_batch_1").exists():
            return "python", folder
    raise DataError(f"{root}: no CIFAR-10 batches found; expected data_batch_1.bin ... and test_batch.bin "
                    f"(official binary layout) or data_batch_1 ... and test_batch (official python layout, "
                    f"cifar-10-batches-py), in the folder or its cifar-10-batches-bin / cifar-10-batches-py "
                    f"sub-folder")


def _train_files(folder: Path, suffix: str) -> list[Path]:
    files = []
    for i in range(1, _MAX_TRAIN_BATCHES + 1):
        p = folder / f"data_batch_{i}{suffix}"
        if p.exists():
            files.append(p)
        else:
            break
    if not files:
        raise DataError(f"{folder / ('data_batch_1' + suffix)}: missing; the training batches start at "
                        f"data_batch_1{suffix}")
    gap = [p.name for p in folder.glob(f"data_batch_*{suffix}") if p not in files
           and re.fullmatch(rf"data_batch_\d+{re.escape(suffix)}", p.name)]
    if gap:
        raise DataError(f"{folder}: training batch(es) {', '.join(sorted(gap))} present but an earlier one is "
                        f"missing; batches must be numbered 1, 2, ... without gaps")
    test = folder / f"test_batch{suffix}"
    if not test.exists():
        raise DataError(f"{test}: missing; the test batch is needed for held-out accuracy")
    return files + [test]


# ---- checksums -----------------------------------------------------------------------------------

# What may sit in a data folder, by size: a file is size-checked (and must be a regular file: a FIFO
# would hang, /dev/zero never ends) before a byte of it is read.
BINARY_BATCH_BYTES = RECORDS_PER_BATCH * RECORD_BYTES
MAX_PYTHON_BATCH_BYTES = 64 * 2**20      # an official python batch is 31,035,704 bytes
MAX_SMALL_FILE_BYTES = 2**20             # SHA256SUMS, batches.meta(.txt)
_CIFAR_NAME = re.compile(r"(data_batch_\d+|test_batch)(\.bin)?|batches\.meta(\.txt)?")


def _regular_size(path: Path, limit: int) -> int:
    """The size of ``path``, a regular file (symlinks followed) of at most ``limit`` bytes; else DataError."""
    try:
        st = path.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a file")
        raise DataError(f"{path}: {kind}, not a regular file; a CIFAR-10 folder holds the official batch files only")
    if st.st_size > limit:
        raise DataError(f"{path}: {st.st_size:,} bytes, more than the {limit:,} bytes such a file can have; it is "
                        f"not an official CIFAR-10 file")
    return st.st_size


def _read_checksums(folder: Path) -> dict[str, str]:
    path = folder / "SHA256SUMS"
    if not path.exists():
        return {}
    sums: dict[str, str] = {}
    _regular_size(path, MAX_SMALL_FILE_BYTES)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64})\s+\*?(.+)", line)
        if not m:
            raise DataError(f"{path}: line {n} is not '<64 hex digits>  <file name>' (sha256sum format): {line!r}")
        sums[Path(m.group(2).strip()).name] = m.group(1).lower()
    for name in sorted(sums):
        if _CIFAR_NAME.fullmatch(name) and not (folder / name).exists():
            raise DataError(f"{folder}: {name} is listed in SHA256SUMS but missing; restore it (training would "
                            f"silently use fewer images), or remove its line from {path}")
    return sums


def _read_verified(path: Path, sums: dict[str, str], limit: int) -> bytes:
    _regular_size(path, limit)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    expected = sums.get(path.name)
    if expected is not None:
        got = hashlib.sha256(raw).hexdigest()
        if got != expected:
            raise DataError(f"{path}: SHA-256 {got[:16]}... does not match {expected[:16]}... in "
                            f"{path.parent / 'SHA256SUMS'}; the file is corrupt or was replaced: fetch it again")
    return raw


# ---- binary layout -------------------------------------------------------------------------------

def _check_binary_size(path: Path, size: int) -> None:
    expected = BINARY_BATCH_BYTES
    if size != expected:
        hint = "the file is truncated" if size < expected else "the file has trailing bytes"
        raise DataError(f"{path}: {size:,} bytes; an official CIFAR-10 binary batch is {RECORDS_PER_BATCH:,} "
                        f"records of {RECORD_BYTES:,} bytes = {expected:,} bytes ({hint})")


def _parse_binary(path: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    _check_binary_size(path, len(raw))
    records = np.frombuffer(raw, dtype=np.uint8).reshape(RECORDS_PER_BATCH, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    _check_labels(path, labels)
    images = records[:, 1:].reshape(RECORDS_PER_BATCH, 3, 32, 32)
    return images, labels


def _load_binary(folder: Path) -> Cifar10:
    files = _train_files(folder, ".bin")
    sums = _read_checksums(folder)
    for p in files:   # every size first: nothing is read from a file that cannot be a batch
        _check_binary_size(p, _regular_size(p, 2**62))
    parts = [_parse_binary(p, _read_verified(p, sums, BINARY_BATCH_BYTES)) for p in files]
    classes = DEFAULT_CLASSES
    meta = folder / "batches.meta.txt"
    if meta.exists():
        raw = _read_verified(meta, sums, MAX_SMALL_FILE_BYTES)
        try:
            names = tuple(line.strip() for line in raw.decode("utf-8").splitlines() if line.strip())
        except UnicodeDecodeError:
            raise DataError(f"{meta}: not UTF-8 text; expected one class name a line") from None
        classes = _check_classes(meta, names)
    return _assemble(parts, classes, f"binary:{folder}")


# ---- python layout -------------------------------------------------------------------------------

class _DtypeStandIn:
    """What ``numpy.dtype(...)`` in a CIFAR pickle becomes: its arguments, recorded, nothing run."""

    def __init__(self, code: Any = None, *_args: Any) -> None:
        if isinstance(code, bytes):
            code = code.decode("ascii", "replace")
        self.code = code
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def numpy(self, where: str) -> np.dtype:
        allowed = {"u1": np.uint8, "i1": np.int8, "i4": np.int32, "i8": np.int64, "u4": np.uint32, "u8": np.uint64}
        code = str(self.code).lstrip("<>|=")
        if code not in allowed:
            raise DataError(f"{where}: array of dtype {self.code!r}; a CIFAR-10 batch holds unsigned bytes (u1) "
                            f"and integer labels")
        order = "<"
        if isinstance(self.state, tuple) and len(self.state) > 1 and self.state[1] in (">", b">"):
            order = ">"
        return np.dtype(allowed[code]).newbyteorder(order) if code != "u1" and code != "i1" else np.dtype(allowed[code])


class _ArrayStandIn:
    """What ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` in a CIFAR pickle becomes;
    ``__setstate__`` receives ``(version, shape, dtype, fortran_order, raw_bytes)``."""

    def __init__(self, *_args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _NdarrayType:
    """Stands in for the class ``numpy.ndarray`` (only ever passed to ``_reconstruct``)."""


def _frombuffer_standin(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> dict:
    """Protocol-5 numpy pickles call ``numpy._core.numeric._frombuffer(buf, dtype, shape, order)``."""
    return {"__array__": True, "buf": buf, "dtype": dtype, "shape": shape, "order": order}


def _latin1_encode_standin(text: Any, encoding: Any = "utf-8") -> bytes:
    """Python 3 writes ``bytes`` at pickle protocol 2 as ``_codecs.encode(text, "latin1")``; only that
    exact use is accepted."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise DataError(f"the pickle asks for _codecs.encode with {type(text).__name__} / {encoding!r}; only the "
                        f"latin1 encoding of text that protocol-2 pickles of bytes use is accepted")
    return text.encode("latin1")


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and CIFAR's numpy arrays only; every other global is refused."""
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _ArrayStandIn,
        ("numpy._core.multiarray", "_reconstruct"): _ArrayStandIn,
        ("numpy", "ndarray"): _NdarrayType,
        ("numpy", "dtype"): _DtypeStandIn,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer_standin,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer_standin,
        ("_codecs", "encode"): _latin1_encode_standin,
    }

    def __init__(self, file: io.BufferedIOBase, where: str) -> None:
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"{self.where}: the pickle asks for {module}.{name}, which a CIFAR-10 batch never "
                            f"contains; refused without running it (the file is not an official CIFAR-10 "
                            f"batch, or it was tampered with)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.where}: the pickle uses persistent ids, which a CIFAR-10 batch never contains")


def _shape(where: str, shape: Any) -> tuple[int, ...]:
    """An array shape from a pickle: a short tuple of non-negative integers (checked in Python
    integers, which do not overflow as int64 products do)."""
    if not isinstance(shape, (tuple, list)) or len(shape) > 8 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape):
        raise DataError(f"{where}: array shape {str(shape)[:80]}; expected a few non-negative sizes (the file is "
                        f"corrupt or not CIFAR-10)")
    return tuple(shape)


def _to_array(where: str, value: Any) -> np.ndarray:
    if isinstance(value, _ArrayStandIn):
        st = value.state
        if not (isinstance(st, tuple) and len(st) == 5):
            raise DataError(f"{where}: malformed array in the pickle")
        _version, shape, dtype, fortran, raw = st
        if isinstance(raw, str):
            raw = raw.encode("latin1")
        if not isinstance(dtype, _DtypeStandIn) or not isinstance(raw, (bytes, bytearray)):
            raise DataError(f"{where}: malformed array in the pickle")
        dt = dtype.numpy(where)
        shape = _shape(where, shape)
        if math.prod(shape) * dt.itemsize != len(raw):
            raise DataError(f"{where}: array of shape {shape} has {len(raw):,} bytes of data; the file is truncated "
                            f"or corrupt")
        arr = np.frombuffer(bytes(raw), dtype=dt).reshape(shape, order="F" if fortran else "C")
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)
    if isinstance(value, dict) and value.get("__array__"):
        dt = value["dtype"].numpy(where) if isinstance(value["dtype"], _DtypeStandIn) else None
        buf = value["buf"]
        if dt is None or not isinstance(buf, (bytes, bytearray)):
            raise DataError(f"{where}: malformed array in the pickle")
        shape = _shape(where, value["shape"])
        if math.prod(shape) * dt.itemsize != len(buf):
            raise DataError(f"{where}: array of shape {shape} has {len(buf):,} bytes of data; truncated or corrupt")
        return np.frombuffer(bytes(buf), dtype=dt).reshape(shape, order="F" if value["order"] in ("F", b"F") else "C")
    if isinstance(value, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise DataError(f"{where}: expected a list of integers")
        return np.asarray(value, dtype=np.int64)
    raise DataError(f"{where}: expected an array or a list, got {type(value).__name__}")


def _unpickle(path: Path, raw: bytes) -> Any:
    try:
        return _SafeUnpickler(io.BytesIO(raw), str(path)).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            UnicodeDecodeError, MemoryError) as exc:
        raise DataError(f"{path}: not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc}); the file is "
                        f"truncated or corrupt") from None


def _key(doc: dict, name: str) -> Any:
    for k in (name.encode(), name):
        if k in doc:
            return doc[k]
    return None


def _parse_python(path: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    doc = _unpickle(path, raw)
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a pickled dict with 'data' and 'labels', got {type(doc).__name__}")
    data, labels = _key(doc, "data"), _key(doc, "labels")
    if data is None or labels is None:
        raise DataError(f"{path}: the pickled dict has no 'data' and 'labels' keys; not a CIFAR-10 batch")
    images = _to_array(f"{path}: data", data)
    labels_arr = _to_array(f"{path}: labels", labels).astype(np.int64).reshape(-1)
    if images.dtype != np.uint8 or images.shape != (RECORDS_PER_BATCH, IMAGE_BYTES):
        raise DataError(f"{path}: data has shape {images.shape} and dtype {images.dtype}; an official batch is "
                        f"({RECORDS_PER_BATCH}, {IMAGE_BYTES}) uint8")
    if labels_arr.shape != (RECORDS_PER_BATCH,):
        raise DataError(f"{path}: {labels_arr.shape[0]} labels; an official batch has {RECORDS_PER_BATCH}")
    _check_labels(path, labels_arr)
    return np.ascontiguousarray(images).reshape(RECORDS_PER_BATCH, 3, 32, 32), labels_arr


def _load_python(folder: Path) -> Cifar10:
    files = _train_files(folder, "")
    sums = _read_checksums(folder)
    for p in files:
        _regular_size(p, MAX_PYTHON_BATCH_BYTES)
    parts = [_parse_python(p, _read_verified(p, sums, MAX_PYTHON_BATCH_BYTES)) for p in files]
    classes = DEFAULT_CLASSES
    meta = folder / "batches.meta"
    if meta.exists():
        doc = _unpickle(meta, _read_verified(meta, sums, MAX_SMALL_FILE_BYTES))
        names = _key(doc, "label_names") if isinstance(doc, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
            raise DataError(f"{meta}: expected a pickled dict with a 'label_names' list of strings")
        classes = _check_classes(meta, tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n
                                             for n in names))
    return _assemble(parts, classes, f"python:{folder}")


# ---- shared checks -------------------------------------------------------------------------------

def _check_labels(path: Path, labels: np.ndarray) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = int(labels[(labels < 0) | (labels >= NUM_CLASSES)][0])
        raise DataError(f"{path}: label {bad} found; CIFAR-10 labels are 0-9 (the file is corrupt or not CIFAR-10)")


def _check_classes(path: Path, names: tuple[str, ...]) -> tuple[str, ...]:
    if len(names) != NUM_CLASSES:
        raise DataError(f"{path}: {len(names)} class names; CIFAR-10 has {NUM_CLASSES}")
    return names


def _assemble(parts: list[tuple[np.ndarray, np.ndarray]], classes: tuple[str, ...], source: str) -> Cifar10:
    train, test = parts[:-1], parts[-1]
    train_images = np.concatenate([p[0] for p in train]) if len(train) > 1 else np.array(train[0][0])
    train_labels = np.concatenate([p[1] for p in train])
    test_images, test_labels = np.array(test[0]), np.array(test[1])
    for a in (train_images, train_labels, test_images, test_labels):
        a.setflags(write=False)
    return Cifar10(train_images, train_labels, test_images, test_labels, tuple(classes), source)
