"""Shared fixtures. The CIFAR-10 folder comes from SHUFFLENAS_TEST_DATA, else ../shared/data/cifar10
beside the repository (the layout CI uses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# One intra-op thread for the tests and every subprocess they start: on 2 shared cores, 2 OpenMP
# threads spin against each other and a forward pass gets 10x slower, not faster.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    path = Path(os.environ.get("SHUFFLENAS_TEST_DATA", REPO.parent / "shared" / "data" / "cifar10"))
    if not (path / "test_batch.bin").exists():
        pytest.fail(f"CIFAR-10 test data not found at {path}; set SHUFFLENAS_TEST_DATA")
    return path


def run_cli(*args: str, timeout: float = 600, env: dict | None = None, cwd: Path | None = None):
    """Run ``python -m nas`` as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or REPO)
