"""Membership-inference attacks on a trained classifier: what its outputs reveal about its rows.

Two attacks score each row; the higher the score, the more the attacker believes the row was
trained on. Both are run on equally many members (training rows) and non-members (held-out
rows), and summarised by the ROC AUC and the true-positive rate at 1% false positives (the
regime that matters: confidently identifying a few members, Carlini et al. 2022).

- **Loss threshold** (Yeom et al. 2018): score = -cross-entropy loss of the row.
- **Offline LiRA, shadow-free**: the logit-scaled confidence ``phi = z_y - logsumexp(z_not_y)``
  of a non-member is modelled per class as a Gaussian fitted on held-out rows; a row's score
  is how far above that distribution its confidence lies (the one-sided likelihood-ratio test
  of offline LiRA, with the held-out rows standing in for shadow models). The Gaussians are
  cross-fitted: no non-member is scored by a Gaussian fitted on itself.

An (epsilon, delta)-DP training run bounds every such attack: ``TPR <= e^eps * FPR + delta``
(and the symmetric bound), see :func:`dp_bounds`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from inhouse.errors import InvalidInputError

TARGET_FPR = 0.01
FOLDS = 5
MIN_STD = 1e-3
BATCH = 4096


@dataclass(frozen=True)
class AttackResult:
    """Both attacks' AUC and TPR at 1% FPR, on ``members`` + ``non_members`` rows."""

    loss_auc: float
    loss_tpr_at_1pct_fpr: float
    lira_auc: float
    lira_tpr_at_1pct_fpr: float
    members: int
    non_members: int
    member_loss: float
    non_member_loss: float
    member_accuracy: float
    non_member_accuracy: float

    @property
    def auc(self) -> float:
        """The stronger attack's AUC."""
        return max(self.loss_auc, self.lira_auc)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, ...]:
    """Per-row loss, logit-scaled confidence and correctness (float64)."""
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    chunks = [model(x[i : i + BATCH].to(device)).double().cpu() for i in range(0, len(x), BATCH)]
    logits = torch.cat(chunks) if chunks else torch.empty(0, 2, dtype=torch.float64)
    loss = nn.functional.cross_entropy(logits, y, reduction="none")
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], -math.inf).logsumexp(dim=1)
    correct = (logits.argmax(dim=1) == y).double()
    return loss.numpy(), (true - others).numpy(), correct.numpy()


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr_target: float = TARGET_FPR) -> float:
    """The highest true-positive rate at a threshold whose false-positive rate <= target."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= fpr_target].max())


def _gaussian_z(
    fit_phi: np.ndarray, fit_y: np.ndarray, phi: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """``(phi - mu_class) / sd_class`` with per-class Gaussians fitted on (fit_phi, fit_y)."""
    overall = (float(fit_phi.mean()), max(float(fit_phi.std(ddof=1)), MIN_STD))
    z = np.empty_like(phi)
    for label in np.unique(y):
        values = fit_phi[fit_y == label]
        mu, sd = (
            (float(values.mean()), max(float(values.std(ddof=1)), MIN_STD))
            if len(values) >= 2
            else overall
        )
        z[y == label] = (phi[y == label] - mu) / sd
    return z


def _lira_scores(
    phi: np.ndarray, y: np.ndarray, member: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Cross-fitted offline-LiRA scores: each fold is scored by Gaussians fitted on the
    non-members of the other folds."""
    folds = np.empty(len(phi), dtype=np.int64)
    for group in (member, ~member):
        index = np.flatnonzero(group)
        folds[rng.permutation(index)] = np.arange(len(index)) % FOLDS
    scores = np.empty_like(phi)
    for fold in range(FOLDS):
        target = folds == fold
        fit = ~member & ~target
        if target.any():
            scores[target] = _gaussian_z(phi[fit], y[fit], phi[target], y[target])
    return scores


def membership_inference(
    model: nn.Module,
    members: tuple[torch.Tensor, torch.Tensor],
    non_members: tuple[torch.Tensor, torch.Tensor],
    *,
    seed: int = 0,
) -> AttackResult:
    """Attack ``model`` with the loss-threshold and shadow-free LiRA attacks.

    Args:
        model: a classifier returning logits.
        members: (features, labels) of rows it was trained on.
        non_members: (features, labels) of rows it never saw (same distribution).
        seed: picks the balanced subsample and the cross-fitting folds.

    The larger set is subsampled to the smaller one's size so that AUC 0.5 means chance.
    """
    n = min(len(members[1]), len(non_members[1]))
    if n < 2 * FOLDS:
        raise InvalidInputError(
            f"membership inference needs >= {2 * FOLDS} members and non-members, "
            f"got {len(members[1])} and {len(non_members[1])}"
        )
    rng = np.random.default_rng(seed)
    picked = [
        (x[rows], y[rows])
        for x, y in (members, non_members)
        for rows in [torch.from_numpy(np.sort(rng.permutation(len(y))[:n]))]
    ]
    x = torch.cat([picked[0][0], picked[1][0]]).float()
    y = torch.cat([picked[0][1], picked[1][1]]).long()
    member = np.arange(2 * n) < n
    loss, phi, correct = _outputs(model, x, y)
    labels = member.astype(np.int64)
    lira = _lira_scores(phi, y.numpy(), member, rng)
    return AttackResult(
        loss_auc=float(roc_auc_score(labels, -loss)),
        loss_tpr_at_1pct_fpr=tpr_at_fpr(labels, -loss),
        lira_auc=float(roc_auc_score(labels, lira)),
        lira_tpr_at_1pct_fpr=tpr_at_fpr(labels, lira),
        members=n,
        non_members=n,
        member_loss=float(loss[member].mean()),
        non_member_loss=float(loss[~member].mean()),
        member_accuracy=float(correct[member].mean()),
        non_member_accuracy=float(correct[~member].mean()),
    )


def dp_bounds(epsilon: float, delta: float, *, fpr: float = TARGET_FPR) -> tuple[float, float]:
    """The largest AUC and TPR at ``fpr`` any attack can reach on an (epsilon, delta)-DP model.

    The ROC curve of any test lies below ``min(1, e^eps*f + delta, 1 - e^-eps*(1 - delta - f))``
    (Kairouz et al. 2015); the AUC bound integrates that curve.
    """
    if epsilon < 0 or not 0 <= delta < 1:
        raise InvalidInputError(f"need epsilon >= 0 and 0 <= delta < 1, got {epsilon}, {delta}")

    def ceiling(f: np.ndarray) -> np.ndarray:
        grow = np.exp(min(epsilon, 700.0)) * f + delta
        mirror = 1 - np.exp(-epsilon) * (1 - delta - f)
        clipped: np.ndarray = np.clip(np.minimum(grow, mirror), 0.0, 1.0)
        return clipped

    grid = np.linspace(0.0, 1.0, 20_001)
    curve = ceiling(grid)
    auc = float(((curve[1:] + curve[:-1]) / 2 * np.diff(grid)).sum())
    return min(auc, 1.0), float(ceiling(np.array([fpr]))[0])
