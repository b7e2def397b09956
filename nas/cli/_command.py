"""One subcommand of ``shufflenas``: its name, help line, argument set-up and handler."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Callable, Mapping

# Library parameters and the flags that set them, where the names differ from the flags: an error
# about ``archs`` (``ValidationProtocol(archs=2)``) reads ``--archs`` on the command line.
STORAGE_FLAGS = {"storage": "--storage", "study_name": "--study"}


@dataclass(frozen=True)
class Command:
    """``flags``: library parameter -> the flag that sets it, for error messages (see ``NasError.param``)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    flags: Mapping[str, str] = field(default_factory=dict)
