"""Model kinds: what differs between tabular, text and generative models, behind one interface.

A kind is a package (``inhouse/kinds/<name>/``) with four parts, each loaded only when used:
``model.py`` (``build(spec)``: the module a version's spec describes, which :func:`load_module`
loads the registry's weights into), ``serving.py`` (``SERVING``: load for serving, parse a
request, predict, explain), ``training.py`` (``TRAINING``: the Ray-free per-worker training
pieces of a first model) and ``updating.py`` (``UPDATING``: retrain a candidate incrementally,
measure it for the gate, compress it). Optional parts, where the kind has them:
``importing.py`` (``models import``), ``compressing.py`` (``inhouse compress``), ``tuning.py``
(``inhouse tune``) and ``datasets.py`` (``data append``); :func:`kinds_with` names the kinds
that have one. ``serve/``, ``jobs/``, ``actors/``, the coordinator and the commands call these
and never branch on the kind. Adding a kind is adding a package and one ``register``
line in ``registry.py``.
"""

from inhouse.kinds.modules import build_model, load_module, register_module
from inhouse.kinds.registry import (
    ModelKind,
    kind_for_spec,
    kind_named,
    kinds_with,
    known_kinds,
    register,
    unregister,
)

__all__ = [
    "ModelKind",
    "build_model",
    "kind_for_spec",
    "kind_named",
    "kinds_with",
    "known_kinds",
    "load_module",
    "register",
    "register_module",
    "unregister",
]
