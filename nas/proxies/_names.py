"""Renamed proxies (plain data, no torch: study rows and the dashboards read old studies through it).

``params`` was the parameter count of the 10-class CIFAR build, shown beside the deployed model's
``params`` metric (224 / 1,000 classes): two different counts under one word (over two studies they
differed 1.07-7.1x and ranked differently). It is ``params_cifar`` now; the old name is read as the
new one wherever it appears (study files, ``--proxy``, old studies' attributes, validation reports).
"""

from __future__ import annotations

PROXY_ALIASES = {"params": "params_cifar"}


def current_proxy_name(name: str) -> str:
    """The current name of a proxy (an old name mapped, any other name as it is)."""
    return PROXY_ALIASES.get(name, name)
