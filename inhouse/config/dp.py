"""The differential-privacy fields every DP-capable run shares (training, text fine-tuning,
the coordinator's retrains): DP-SGD through Opacus, charged to the data set's privacy ledger."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from inhouse.config.sections import Section

Accountant = Literal["prv", "rdp"]


class DPSettings(Section):
    """DP-SGD of one run: noise (given, or chosen for a target epsilon), clipping, accountant.

    Settings models that can train privately inherit these fields, so the flags
    (``--dp``, ``--noise-multiplier``...) and env vars keep their flat names.
    """

    dp: bool = Field(
        False, description="Differentially private training (Opacus DP-SGD, charged to the ledger)."
    )
    noise_multiplier: float | None = Field(
        None, gt=0, description="DP: Gaussian noise / clipping norm (or give --target-epsilon)."
    )
    target_epsilon: float | None = Field(
        None, gt=0, description="DP: noise is chosen so the planned epochs spend this epsilon."
    )
    target_delta: float = Field(1e-5, gt=0, lt=1, description="DP: delta of the guarantee.")
    max_grad_norm: float = Field(1.0, gt=0, description="DP: per-sample gradient clipping norm.")
    accountant: Accountant = Field("prv", description="DP: privacy accountant.")

    def dp_fields(self) -> dict[str, Any]:
        """These DP fields as keyword arguments of the run this one starts (a retrain)."""
        return {name: getattr(self, name) for name in DPSettings.model_fields}
