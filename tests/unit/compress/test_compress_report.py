"""The gate, the report's shapes and the settings' validation messages."""

from __future__ import annotations

import json

import pytest

from inhouse.compress import CompressionReport, ModelStats, gate
from inhouse.config import CompressionSettings, GateSettings
from inhouse.errors import ConfigError


def _report(drop: float, ratio: float = 12.0, compressed_ms: float = 0.02) -> CompressionReport:
    def stats(acc: float, size: int, ms: float) -> ModelStats:
        return ModelStats(
            size_bytes=size,
            parameters=8970,
            nonzero_parameters=1000,
            accuracy=acc,
            latency_ms={"batch=1,threads=1": ms},
        )

    return CompressionReport(
        parent=stats(97.0, int(3000 * ratio), 0.02),
        compressed=stats(97.0 - drop, 3000, compressed_ms),
        size_ratio=ratio,
        accuracy_drop_points=drop,
        test_samples=450,
    )


def test_gate_passes_within_the_limits() -> None:
    assert gate(_report(0.5)) == (True, [])
    assert gate(_report(-1.0)) == (True, [])  # the compressed model may be better


def test_gate_fails_with_one_reason_per_limit() -> None:
    settings = GateSettings(max_accuracy_drop_points=0.5, min_size_ratio=10, max_latency_ratio=1.2)
    passed, reasons = gate(_report(0.6, ratio=9.0, compressed_ms=0.05), settings)
    assert not passed
    assert len(reasons) == 3
    assert "0.60 points" in reasons[0] and "9.00x" in reasons[1] and "2.50x" in reasons[2]
    assert gate(_report(float("nan")))[0] is False


def test_report_renders_json_and_markdown() -> None:
    report = _report(0.2)
    assert json.loads(report.to_json())["accuracy_drop_points"] == pytest.approx(0.2)
    assert report.to_dict()["compressed"]["size_bytes"] == 3000  # type: ignore[index]
    table = report.to_markdown().splitlines()
    assert table[0] == "| measure | parent | compressed | change |"
    assert any(
        line.startswith("| test accuracy (%) | 97.00 | 96.80 | -0.20 points") for line in table
    )


def test_settings_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"CompressionSettings\.prune_amount"):
        CompressionSettings.parse({"prune_amount": 1.5})
    with pytest.raises(ConfigError, match=r"CompressionSettings\.pruning"):
        CompressionSettings.parse({"pruning": 0.5})
    with pytest.raises(ConfigError, match=r"GateSettings\.max_accuracy_drop_points"):
        GateSettings.parse({"max_accuracy_drop_points": -1})
    assert CompressionSettings.parse({"quantize": "none"}).quantize == "none"
