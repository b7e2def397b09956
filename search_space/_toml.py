"""Reading a search space from a TOML file's ``[space]`` table."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ._space import SearchSpace, SpaceError


def load_space(path: str | Path, table: str = "space") -> SearchSpace:
    """The ``[space]`` table of a TOML file (a study file) as a :class:`SearchSpace`.

    A file without the table gives the default space.
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise SpaceError(f"{p}: no such file; give the path of a study TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"{p}: not valid TOML ({exc})") from None
    return SearchSpace.from_dict(doc.get(table, {}), where=f"{p}: [{table}]")
