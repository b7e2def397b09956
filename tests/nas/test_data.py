"""The CIFAR-10 loader on the real shared data, on the official python layout, and on broken and
hostile files."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from nas._errors import DataError, NasError
from nas.proxies import ENV_VAR, load_cifar10, resolve_data_dir


def test_shared_binary_data_loads(cifar_dir):
    d = load_cifar10(cifar_dir)
    assert d.train_images.shape == (20_000, 3, 32, 32) and d.train_images.dtype == np.uint8
    assert d.test_images.shape == (10_000, 3, 32, 32) and d.test_labels.dtype == np.int64
    assert np.bincount(d.test_labels).tolist() == [1000] * 10
    assert d.classes[0] == "airplane" and d.classes[-1] == "truck" and len(d.classes) == 10
    assert not d.train_images.flags.writeable
    assert load_cifar10(cifar_dir) is d  # loaded once per process
    # the binary layout: label byte then R, G, B planes
    raw = np.fromfile(cifar_dir / "test_batch.bin", dtype=np.uint8, count=2 * 3073).reshape(2, 3073)
    assert d.test_labels[1] == raw[1, 0]
    assert np.array_equal(d.test_images[1].reshape(-1), raw[1, 1:])


def _link_batches(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("data_batch_1.bin", "data_batch_2.bin", "test_batch.bin", "batches.meta.txt", "SHA256SUMS"):
        if name not in skip:
            os.symlink(src / name, dst / name)


def test_truncated_batch_names_the_file(cifar_dir, tmp_path):
    _link_batches(cifar_dir, tmp_path, skip=("data_batch_2.bin", "SHA256SUMS"))
    raw = (cifar_dir / "data_batch_2.bin").read_bytes()
    (tmp_path / "data_batch_2.bin").write_bytes(raw[: 3073 * 9_000 + 100])
    with pytest.raises(DataError, match=r"data_batch_2\.bin: 27,657,100 bytes.*truncated"):
        load_cifar10(tmp_path)


def test_corrupt_batch_fails_its_checksum(cifar_dir, tmp_path):
    _link_batches(cifar_dir, tmp_path, skip=("test_batch.bin",))
    raw = bytearray((cifar_dir / "test_batch.bin").read_bytes())
    raw[5_000] ^= 0xFF  # one pixel byte: the size is right, only the checksum can tell
    (tmp_path / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"test_batch\.bin: SHA-256 .* does not match .*SHA256SUMS"):
        load_cifar10(tmp_path)


def test_bad_label_and_missing_files(cifar_dir, tmp_path):
    bad = tmp_path / "bad"
    _link_batches(cifar_dir, bad, skip=("test_batch.bin", "SHA256SUMS"))
    raw = bytearray((cifar_dir / "test_batch.bin").read_bytes())
    raw[3073 * 7] = 11
    (bad / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"test_batch\.bin: label 11 found; CIFAR-10 labels are 0-9"):
        load_cifar10(bad)
    no_test = tmp_path / "no_test"
    _link_batches(cifar_dir, no_test, skip=("test_batch.bin",))
    with pytest.raises(DataError, match=r"test_batch\.bin: missing"):
        load_cifar10(no_test)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no CIFAR-10 batches found"):
        load_cifar10(tmp_path / "empty")


def _python_layout(cifar_dir: Path, folder: Path) -> Path:
    """The official python layout (dicts of bytes keys, a uint8 array and a list of labels, pickled at
    protocol 2 like the published files), made from the shared binary batches."""
    folder.mkdir(parents=True)
    for name in ("data_batch_1", "test_batch"):
        rec = np.fromfile(cifar_dir / f"{name}.bin", dtype=np.uint8).reshape(-1, 3073)
        doc = {b"batch_label": name.encode(), b"labels": rec[:, 0].astype(int).tolist(),
               b"data": np.ascontiguousarray(rec[:, 1:]), b"filenames": [b"x.png"] * len(rec)}
        (folder / name).write_bytes(pickle.dumps(doc, protocol=2))
    meta = {b"label_names": [c.encode() for c in load_cifar10(cifar_dir).classes], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def test_python_layout_matches_binary(cifar_dir, tmp_path):
    _python_layout(cifar_dir, tmp_path / "cifar-10-batches-py")
    d = load_cifar10(tmp_path)  # the official sub-folder is found
    ref = load_cifar10(cifar_dir)
    assert d.train_images.shape == (10_000, 3, 32, 32)
    assert np.array_equal(d.train_images, ref.train_images[:10_000])
    assert np.array_equal(d.test_labels, ref.test_labels)
    assert d.classes == ref.classes


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_does_not_run(cifar_dir, tmp_path):
    folder = _python_layout(cifar_dir, tmp_path / "py")
    marker = tmp_path / "pwned"
    # the payload hides inside an otherwise normal batch dict
    doc = pickle.loads((folder / "data_batch_1").read_bytes())
    doc[b"filenames"] = [_Payload(marker)]
    (folder / "data_batch_1").write_bytes(pickle.dumps(doc, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1: the pickle asks for (posix|os)\.system.*refused"):
        load_cifar10(folder)
    assert not marker.exists()
    # and a batch that is nothing but the payload
    (folder / "data_batch_1").write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    with pytest.raises(DataError, match="refused without running it"):
        load_cifar10(folder)
    assert not marker.exists()
    # a truncated pickle
    raw = pickle.dumps(doc | {b"filenames": []}, protocol=2)
    (folder / "data_batch_1").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"data_batch_1: .*truncated or corrupt"):
        load_cifar10(folder)


def test_checksums_file_must_be_well_formed(cifar_dir, tmp_path):
    _link_batches(cifar_dir, tmp_path, skip=("SHA256SUMS",))
    (tmp_path / "SHA256SUMS").write_text("not a checksum line\n")
    with pytest.raises(DataError, match=r"SHA256SUMS: line 1 is not"):
        load_cifar10(tmp_path)
    digest = hashlib.sha256((cifar_dir / "test_batch.bin").read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  test_batch.bin\n")  # lists only some files: fine
    assert load_cifar10(tmp_path).num_test == 10_000


def test_resolve_data_dir_order(tmp_path, monkeypatch):
    a, b, c = (tmp_path / n for n in "abc")
    for p in (a, b, c):
        p.mkdir()
    monkeypatch.setenv(ENV_VAR, str(c))
    assert resolve_data_dir(str(a), str(b)) == a
    assert resolve_data_dir(None, str(b)) == b
    assert resolve_data_dir(None, None) == c
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(DataError, match=r"--data-dir DIR.*data_dir in the study file.*SHUFFLENAS_DATA"):
        resolve_data_dir(None)
    with pytest.raises(DataError, match=r"nowhere \(from --data-dir\) does not exist"):
        resolve_data_dir(str(tmp_path / "nowhere"), str(b))
    assert issubclass(DataError, NasError)
