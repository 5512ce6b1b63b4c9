"""Membership-inference audits: what an attacker learns about whether a row was trained on.

:mod:`~inhouse.membership.attack` runs the attacks (loss threshold, offline LiRA) and the DP
bound on any attack; :mod:`~inhouse.membership.audit` attacks a registered version and trains a
non-DP reference beside it (``inhouse privacy audit``), so it imports the training stack: it
is a package of its own, apart from the ledger (:mod:`inhouse.privacy`) that training uses.
See ``docs/privacy.md``.
"""
