"""Int8 activations: full 8-bit range where the kernel is exact, and SmoothQuant factors chosen
per layer on calibration batches, round-tripping through the artifact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inhouse.compress import (
    Int8Linear,
    compress,
    dumps_compressed,
    load_compressed,
    quantize_linears,
    read_manifest,
)
from inhouse.compress.layers import dynamic_kernel_available, full_range_activations
from inhouse.compress.smooth import input_ranges, smooth_factors
from inhouse.config import CompressionSettings
from inhouse.errors import ConfigError

needs_kernel = pytest.mark.skipif(
    not dynamic_kernel_available(), reason="no fbgemm/x86 dynamic int8 kernel"
)


def _outlier_inputs(rows: int, features: int, seed: int) -> torch.Tensor:
    """Inputs whose channels 3 and 17 are ~60x the rest, as transformer activations are."""
    x = torch.randn(rows, features, generator=torch.Generator().manual_seed(seed))
    x[:, 3] *= 60.0
    x[:, 17] *= 40.0
    return x


def _linear(features: int = 256, out: int = 192) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(features, out)


def _relative_error(layer: nn.Module, reference: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        expected = reference(x)
        return float((layer(x) - expected).norm() / expected.norm())


def _smoothed(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if getattr(m, "smooth", None) is not None]


def test_smooth_factors_follow_the_formula_and_spare_dead_channels() -> None:
    weight = torch.tensor([[1.0, -4.0, 0.0], [0.5, 2.0, 0.0]])
    ranges = torch.tensor([16.0, 1.0, 5.0])
    factors = smooth_factors(weight, ranges, 0.5)
    # s_j = sqrt(max|x_j|) / sqrt(max|W_j|): channel 0: 4 / 1, channel 1: 1 / 2
    assert torch.allclose(factors[:2], torch.tensor([1 / 4.0, 2.0]))
    assert factors[2] == 1.0  # its weights are all zero: nothing to balance against


def test_input_ranges_are_the_channel_maxima_over_all_batches() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    batches = [torch.tensor([[1.0, -2.0, 0.0, 0.5]]), torch.tensor([[-3.0, 1.0, 0.0, 0.25]])]
    ranges = input_ranges(model, batches, ["0"])
    assert torch.equal(ranges["0"], torch.tensor([3.0, 2.0, 0.0, 0.5]))
    assert not model[0]._forward_pre_hooks  # hooks are removed afterwards


@needs_kernel
def test_dynamic_kernel_uses_eight_bit_activations_where_exact() -> None:
    linear = _linear()
    x = torch.randn(32, 256, generator=torch.Generator().manual_seed(1))
    layer = Int8Linear.from_linear(linear, mode="dynamic")
    weight_only = Int8Linear.from_linear(linear, mode="weight_only")  # same int8 weights
    error = _relative_error(layer, weight_only, x)
    seven_bit = torch.ops.quantized.linear_dynamic(x, layer._packed, True)
    with torch.no_grad():
        error7 = float((seven_bit - weight_only(x)).norm() / weight_only(x).norm())
    if full_range_activations():
        assert error < 0.7 * error7  # half the activation step: about half the error
    else:
        assert error == pytest.approx(error7)


@needs_kernel
def test_smoothing_cuts_the_error_an_outlier_channel_causes() -> None:
    linear = _linear()
    calibration = _outlier_inputs(64, 256, seed=2)
    x = _outlier_inputs(32, 256, seed=3)
    plain = Int8Linear.from_linear(linear, mode="dynamic")
    factors = smooth_factors(linear.weight, calibration.abs().amax(dim=0), 0.5)
    smoothed = Int8Linear.from_linear(linear, mode="dynamic", smooth=factors)
    assert smoothed.smooth is not None
    assert _relative_error(smoothed, linear, x) < 0.5 * _relative_error(plain, linear, x)
    # the weight-only kernel folds the factors into its weight: same product, no extra multiply
    folded = Int8Linear.from_linear(linear, mode="weight_only", smooth=factors)
    assert _relative_error(folded, linear, x) < 0.01


def test_smooth_factors_must_match_the_input_width() -> None:
    with pytest.raises(ValueError, match=r"smooth must have shape \(256,\)"):
        Int8Linear.from_linear(_linear(), smooth=torch.ones(3))


@needs_kernel
def test_calibration_smooths_only_where_it_helps() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 64)).eval()
    batches = [_outlier_inputs(32, 256, seed=s) for s in range(4)]
    x = _outlier_inputs(64, 256, seed=9)
    plain, tuned = [
        compress(
            model,
            CompressionSettings(prune_amount=0.0, runtime="dynamic"),
            calibration=batches if calibrated else None,
        )
        for calibrated in (False, True)
    ]
    assert all(m.smooth is None for m in plain.modules() if isinstance(m, Int8Linear))
    assert isinstance(tuned[0], Int8Linear) and tuned[0].smooth is not None
    assert _relative_error(tuned, model, x) < 0.7 * _relative_error(plain, model, x)
    never = nn.Sequential(nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 64))
    never.load_state_dict(model.state_dict())
    quantize_linears(never, runtime="dynamic", calibration=batches, smooth_alphas=())
    assert all(m.smooth is None for m in never.modules() if isinstance(m, Int8Linear))


@needs_kernel
def test_smoothed_model_round_trips_exactly() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    batches = [_outlier_inputs(16, 256, seed=s) for s in range(2)]
    compressed = compress(model, CompressionSettings(prune_amount=0.0), calibration=batches)
    assert compressed[0].smooth is not None
    data = dumps_compressed(compressed)
    names = [entry[0] for entry in read_manifest(data)["tensors"]]
    assert "0.smooth" in names
    loaded = load_compressed(data)
    x = _outlier_inputs(8, 256, seed=5)
    with torch.no_grad():
        assert torch.equal(loaded(x), compressed(x))
    assert torch.equal(loaded[0].smooth, compressed[0].smooth)
    # the same artifact served on the weight-only kernel computes the same product
    dense = load_compressed(data, runtime="weight_only")
    assert _relative_error(dense, model, x) < 0.01


@needs_kernel
def test_text_model_takes_tuples_of_arguments_as_calibration() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=300,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=32,
        num_labels=3,
    )
    model = transformers.BertForSequenceClassification(config).eval()
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 300, (4, 10), generator=gen), torch.ones(4, 10)) for _ in range(2)]
    settings = CompressionSettings(prune_amount=0.0, runtime="dynamic")
    compressed = compress(model, settings, calibration=batches)
    smoothed = _smoothed(compressed)
    assert smoothed  # a random BERT's activations have outlier channels too
    data = dumps_compressed(compressed)

    def build() -> nn.Module:
        return transformers.BertForSequenceClassification(config).eval()

    loaded = load_compressed(data, build=build)
    ids, mask = batches[0]
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask).logits, compressed(ids, mask).logits)
    assert _smoothed(loaded) == smoothed


def test_smooth_alphas_are_validated() -> None:
    with pytest.raises(ConfigError, match="smooth_alphas"):
        CompressionSettings.parse({"smooth_alphas": [0.5, 1.5]})
