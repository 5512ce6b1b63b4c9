"""Differential privacy: per-data-set budgets and the ledger of DP runs.

:mod:`~inhouse.privacy.accounting` composes DP-SGD runs with Opacus' accountants;
:class:`PrivacyLedger` charges runs to data sets and refuses over-budget ones. What an
attacker learns about membership is measured by :mod:`inhouse.membership`. See
``docs/privacy.md``.
"""

from inhouse.privacy.accounting import (
    ACCOUNTANTS,
    DEFAULT_ACCOUNTANT,
    Mechanism,
    Span,
    dataset_epsilon,
    epsilon_of,
    noise_for_target,
    validate_budget,
)
from inhouse.privacy.ledger import PrivacyLedger
from inhouse.privacy.types import Budget, Charge, DatasetReport, NonDPRun

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_ACCOUNTANT",
    "Budget",
    "Charge",
    "DatasetReport",
    "Mechanism",
    "NonDPRun",
    "PrivacyLedger",
    "Span",
    "dataset_epsilon",
    "epsilon_of",
    "noise_for_target",
    "validate_budget",
]
