"""Compression: magnitude pruning + int8 quantization, a compact artifact, a report and a gate.

Typical use (the settings are ``inhouse.config.CompressionSettings`` and ``GateSettings``)::

    compressed = compress(model, CompressionSettings(), train=(x_train, y_train))
    save_compressed(compressed, "artifacts/digits/v3-compressed")
    report = compare(model, compressed, x_test, y_test)
    ok, reasons = gate(report, GateSettings(max_accuracy_drop_points=0.5))
    served = load_compressed("artifacts/digits/v3-compressed")
"""

from __future__ import annotations

from inhouse.compress.arch import Standardize, register_layer
from inhouse.compress.artifact import (
    FORMAT,
    artifact_size,
    dumps_compressed,
    float32_size,
    load_compressed,
    read_manifest,
    save_compressed,
)
from inhouse.compress.layers import Int8Embedding, Int8Linear
from inhouse.compress.pipeline import compress
from inhouse.compress.prune import (
    classifier_finetune,
    make_permanent,
    prune_global_unstructured,
    prune_model,
    prune_structured,
    sparsity,
)
from inhouse.compress.quantize import (
    quantize_embeddings,
    quantize_linears,
    quantize_model,
    round_to_float16,
)
from inhouse.compress.report import (
    CompressionReport,
    ModelStats,
    accuracy,
    compare,
    count_parameters,
    gate,
    latency_ms,
)

__all__ = [
    "FORMAT",
    "CompressionReport",
    "Int8Embedding",
    "Int8Linear",
    "ModelStats",
    "Standardize",
    "accuracy",
    "artifact_size",
    "classifier_finetune",
    "compare",
    "compress",
    "count_parameters",
    "dumps_compressed",
    "float32_size",
    "gate",
    "latency_ms",
    "load_compressed",
    "make_permanent",
    "prune_global_unstructured",
    "prune_model",
    "prune_structured",
    "quantize_embeddings",
    "quantize_linears",
    "quantize_model",
    "read_manifest",
    "register_layer",
    "round_to_float16",
    "save_compressed",
    "sparsity",
]
