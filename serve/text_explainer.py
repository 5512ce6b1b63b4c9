"""The text explainer sidecar: token attributions (Captum LayerIntegratedGradients on the input
embeddings) in a deployment of its own, beside the text replicas.

It explains the float version behind the served one (an int8 champion's parent): gradients
through the float embeddings are what the int8 model approximates, and an explanation must
never slow predictions down. One explanation at a time per replica, in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import torch
from ray import serve

from inhouse import services
from inhouse.config import SettingsPayload
from inhouse.explain.text import explain_text
from inhouse.explain.types import ExplainLimits, Explanation
from inhouse.models.lora import float_version
from inhouse.models.text import encode_texts
from inhouse.models.text_serving import Served, load_served


def _response(explanation: Explanation, served: Served, *, reference: int) -> dict[str, Any]:
    names = list(served.spec["class_names"])
    instances = []
    for i, tokens in enumerate(explanation.tokens or []):
        values = [float(v) for v in explanation.attributions[i, : len(tokens)]]
        instances.append(
            {
                "tokens": tokens,
                "attributions": values,
                "prediction": names[explanation.predictions[i]],
                "target": names[int(explanation.targets[i])],
                "delta": float(explanation.delta[i]),
            }
        )
    return {
        "model": served.model,
        "version": reference,
        "explained_version": served.version,
        "method": "layer_ig",
        "explanations": instances,
    }


@serve.deployment(name="text-explainer", ray_actor_options={"num_cpus": 0.5})
class TextExplainer:
    """Explains one text model (the float version behind ``ref``, default the champion)."""

    def __init__(self, model: str, settings: SettingsPayload, ref: str = "champion") -> None:
        torch.set_num_threads(1)
        self._settings = settings.load()
        self._registry = services.registry(self._settings)
        self._model_name = model
        self._limits = ExplainLimits(max_instances=min(self._settings.serve.max_instances, 16))
        self._busy = asyncio.Semaphore(1)
        self._load(ref)

    def _load(self, ref: str) -> None:
        info = self._registry.get(self._model_name, ref)
        self._reference = info.version
        self._served = load_served(
            self._registry, float_version(self._registry, info), quantize=False
        )

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        ref = str(user_config.get("ref", "champion"))
        if ref != str(self._reference):
            self._load(ref)

    def _explain(self, texts: list[str], target: int | None, n_steps: int) -> Explanation:
        served = self._served
        ids, mask = encode_texts(served.tokenizer, texts, max_length=int(served.spec["max_length"]))
        return explain_text(
            served.module,
            ids,
            attention_mask=mask,
            tokenizer=served.tokenizer,
            target=target,
            n_steps=n_steps,
            limits=self._limits,
        )

    async def explain(self, texts: list[str], target: int | None, n_steps: int) -> dict[str, Any]:
        """Per text: tokens, their attributions, prediction, explained class, completeness."""
        served, reference = self._served, self._reference
        async with self._busy:
            explanation = await asyncio.to_thread(self._explain, texts, target, n_steps)
        return _response(explanation, served, reference=reference)
