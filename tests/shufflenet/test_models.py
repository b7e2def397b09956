import torch
import pytest

from search_space import SearchSpace, sample_specs
from shufflenet import (CANONICAL, build_model, canonical_name_of, channel_shuffle, riffle_permutation,
                        shuffle_for_parts)


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_channel_shuffle_is_a_permutation(groups):
    c = groups * 6
    x = torch.arange(c, dtype=torch.float32).view(1, c, 1, 1).repeat(2, 1, 3, 3)
    y = channel_shuffle(x, groups)
    order = y[0, :, 0, 0].long().tolist()
    assert sorted(order) == list(range(c))
    # channel i of group k lands at position i * groups + k
    assert order[:groups] == [k * (c // groups) for k in range(groups)]
    assert torch.equal(y[1], y[0])


@pytest.mark.parametrize("a, b", [(1, 1), (3, 9), (87, 29), (29, 87), (58, 58), (5, 2)])
def test_riffle_is_a_permutation_and_matches_shuffle_for_equal_halves(a, b):
    perm = riffle_permutation(a, b)
    assert sorted(perm) == list(range(a + b))
    x = torch.randn(2, a + b, 4, 4)
    y = shuffle_for_parts(a, b)(x)
    assert torch.equal(y, x[:, perm])
    if a == b:
        assert torch.equal(y, channel_shuffle(x, 2))
    # each part's channels keep their relative order and are spread through the output
    pos_a = [perm.index(i) for i in range(a)]
    assert pos_a == sorted(pos_a)


@pytest.mark.parametrize("groups, parts", [(2, (6, 6)), (3, (9, 9)), (8, (16, 16)), (2, (3, 9)), (2, (29, 87))])
def test_shuffles_of_channels_last_tensors_are_the_same_permutation_and_stay_channels_last(groups, parts):
    """Training runs channels_last: the shuffle and the riffle permute in that layout (no NCHW round
    trip) and give exactly what they give a contiguous tensor, gradients included."""
    c = sum(parts)
    x = torch.randn(3, c, 5, 4)
    xl = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    ops = [shuffle_for_parts(*parts)] + ([lambda t: channel_shuffle(t, groups)] if c % groups == 0 else [])
    for op in ops:
        want, got = op(x), op(xl)
        assert torch.equal(got, want) and got.is_contiguous(memory_format=torch.channels_last)
        g = torch.randn_like(want)
        (gx,) = torch.autograd.grad((got * g).sum(), xl)
        x0 = x.clone().requires_grad_()
        (gx0,) = torch.autograd.grad((op(x0) * g).sum(), x0)
        assert torch.equal(gx, gx0)


def test_a_channels_last_network_computes_what_the_contiguous_one_does():
    spec = sample_specs(SearchSpace(), 1, seed=3)[0]
    torch.manual_seed(0)
    model = build_model(spec, num_classes=10, stem="cifar").eval()
    x = torch.randn(2, 3, 32, 32)
    want = model(x)
    got = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


def test_riffle_rejects_empty_parts():
    with pytest.raises(ValueError, match="part sizes"):
        riffle_permutation(0, 3)


@pytest.mark.parametrize("name", list(CANONICAL))
def test_canonical_forward_backward(name):
    model = build_model(name, num_classes=10, stem="cifar")
    x = torch.randn(2, 3, 32, 32)
    y = model(x)
    assert y.shape == (2, 10)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.spec.name == name and canonical_name_of(model.spec) == name


@pytest.mark.parametrize("name", [n for n, c in CANONICAL.items() if c.published_params])
def test_v2_parameter_counts_equal_torchvision(name):
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) == CANONICAL[name].published_params


def test_imagenet_stem_output_shape_and_features():
    model = build_model("v2_0.5x").eval()
    x = torch.randn(1, 3, 224, 224)
    feats = model.forward_features(x)
    assert feats.shape == (1, 1024, 7, 7)
    assert torch.allclose(model.forward_head(feats), model(x))


@pytest.mark.parametrize("chunk", range(4))
def test_200_random_specs_forward_backward(chunk):
    specs = sample_specs(SearchSpace(), 200, seed=11)[chunk * 50:(chunk + 1) * 50]
    for spec in specs:
        model = build_model(spec, num_classes=10, stem="cifar")
        y = model(torch.randn(2, 3, 32, 32))
        assert y.shape == (2, 10)
        y.sum().backward()


def test_build_model_rejects_bad_arguments():
    from search_space import SpecError
    with pytest.raises(SpecError, match="stem"):
        build_model("v2_1.0x", stem="mnist")
    with pytest.raises(SpecError, match="num_classes"):
        build_model("v2_1.0x", num_classes=0)
    with pytest.raises(SpecError, match="not a canonical config"):
        build_model("v2_3.0x")


def test_units_are_scriptable():
    model = build_model(sample_specs(SearchSpace(), 1, seed=5)[0], num_classes=10, stem="cifar").eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(scripted(x), model(x), atol=1e-5)
