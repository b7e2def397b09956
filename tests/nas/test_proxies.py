"""Accuracy proxies: finite, seed-stable, different for clearly different networks; clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from search_space import ArchSpec, StageSpec, UnitChoice

from nas._errors import DataError, NasError
from nas.proxies import (NEEDS_DATA, PROXY_NAMES, ZERO_COST, ProxySettings, compute_proxies, compute_proxies_timed,
                         load_cifar10)

# small batches keep the test fast; the published sizes are the defaults
FAST = ProxySettings(naswot_batch_size=16, grad_batch_size=16, zen_batch_size=4, zen_repeats=2,
                     train_images=256, train_steps=6, train_batch_size=32, eval_images=200)


def _spec(width: int, depth: int, family: str = "v2", final: int = 0) -> ArchSpec:
    unit = UnitChoice(family=family, groups=2 if family == "v1" else 1,
                      bottleneck=0.25 if family == "v1" else 1.0)
    return ArchSpec(stages=tuple(StageSpec(width * 2**i, depth, unit) for i in range(3)), stem_channels=8,
                    final_channels=final)


SMALL = _spec(16, 1)
LARGE = _spec(32, 2, family="v1", final=128)


@pytest.fixture(scope="module")
def data(cifar_dir):
    return load_cifar10(cifar_dir)


def test_zero_cost_proxies_finite_seed_stable_and_discriminating(data):
    names = list(ZERO_COST) + ["params_cifar", "flops"]
    small = compute_proxies(SMALL, names, data, FAST)
    again = compute_proxies(SMALL, names, data, FAST)
    large = compute_proxies(LARGE, names, data, FAST)
    assert list(small) == names
    for name in names:
        assert math.isfinite(small[name]) and math.isfinite(large[name]), name
        assert small[name] == pytest.approx(again[name], rel=1e-9, abs=1e-9), name
        assert small[name] != pytest.approx(large[name], rel=1e-3), name
    # the bigger, deeper network is the one every size-sensitive proxy scores higher
    for name in ("synflow", "snip", "params_cifar", "flops", "naswot"):
        assert large[name] > small[name], name
    other_seed = compute_proxies(SMALL, ["naswot", "zen", "grad_norm"], data, FAST.replace(seed=1))
    assert other_seed["zen"] != small["zen"] and other_seed["grad_norm"] != small["grad_norm"]


def test_value_does_not_depend_on_what_else_was_asked(data):
    alone = compute_proxies(LARGE, ["snip"], data, FAST)
    together = compute_proxies(LARGE, ["naswot", "zen", "snip"], data, FAST)
    assert alone["snip"] == together["snip"]


def test_baselines_match_cost_accounting():
    from shufflenet import build_model

    from nas import profile

    values = compute_proxies(LARGE, ["params_cifar", "flops", "synflow", "zen"], None, FAST)  # data-free: no data needed
    cost = profile(LARGE, 32, 10, "cifar")
    assert values["params_cifar"] == cost.params == sum(p.numel() for p in build_model(LARGE, 10, "cifar").parameters())
    assert values["flops"] == pytest.approx(cost.mflops)


def test_train_proxy_is_deterministic(data):
    values, seconds = compute_proxies_timed(SMALL, ["train"], data, FAST)
    again = compute_proxies(SMALL, ["train"], data, FAST)
    assert 0.0 <= values["train"] <= 100.0 and values["train"] == again["train"]
    assert seconds["train"] > 0


def test_train_learns_something(data):
    from nas.proxies import train_short

    settings = FAST.replace(train_images=2000, train_steps=40, train_batch_size=32, lr=0.05, eval_images=500)
    result = train_short(SMALL, data, settings, "cpu")
    assert result.accuracy > 14.0  # 10% is chance; 500 images give a standard error of about 1.3 points
    assert result.train_loss < 2.25  # below ln(10) = 2.30, the loss of a uniform guess
    assert result.steps == 40 and result.images_seen == 40 * 32


def test_bad_names_and_missing_data():
    with pytest.raises(NasError, match=r"unknown proxy 'nwot'; allowed: naswot, synflow, zen, grad_norm, snip, "
                                       r"params_cifar, flops, train, ensemble"):
        compute_proxies(SMALL, ["nwot"], None)
    for name in sorted(NEEDS_DATA):
        with pytest.raises(DataError, match=rf"proxy {name} needs CIFAR-10 images"):
            compute_proxies(SMALL, [name], None)
    with pytest.raises(NasError, match=r"proxy\.ensemble_reference: not set"):
        compute_proxies(SMALL, ["ensemble"], None, ProxySettings(ensemble_of=("params_cifar", "flops")))
    assert set(NEEDS_DATA) < set(PROXY_NAMES)


def test_settings_validate_and_round_trip():
    s = ProxySettings(seed=3, train_epochs=2)
    assert ProxySettings.from_dict(s.to_dict()) == s
    assert "device" not in s.key()
    with pytest.raises(NasError, match=r"proxy\.naswot_batch_size: got 0; expected an integer in \[2, 4096\]"):
        ProxySettings.from_dict({"naswot_batch_size": 0})
    with pytest.raises(NasError, match=r"study\.proxy: unknown key\(s\) 'batch'; allowed: .*grad_batch_size"):
        ProxySettings.from_dict({"batch": 3}, where="study.proxy")
    with pytest.raises(NasError, match=r"proxy\.lr: got -1"):
        ProxySettings.from_dict({"lr": -1})
    with pytest.raises(NasError, match=r"proxy\.device: got 'gpu'"):
        ProxySettings(device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(NasError, match="sees no CUDA device"):
            compute_proxies(SMALL, ["params_cifar"], None, ProxySettings(device="cuda"))
