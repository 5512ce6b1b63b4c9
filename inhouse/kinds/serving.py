"""The serving half of a model kind (``ServingKind``): load, parse, predict, explain.

``serve/`` holds one model replica, one explainer sidecar and one ingress for every kind; each
asks the version's kind (``ModelKind.serving``) for what differs::

    ingress   parse_v2 / parse_v1 / parse_explain   body -> the kind's inputs (4xx on bad input)
              v2_response / v1_response / model_metadata   the kind's answer -> protocol JSON
    replica   load / load_variant / describe / prepare / predict   (batched by the replica)
    explainer load_explained / explain / explain_png

What the replica loads is the kind's own object (a :class:`Loaded`: it knows its model name and
version); inputs, explain calls and per-request answers are the kind's own picklable values,
passed between the three deployments untouched. The ingress imports the kind too: keep a kind's
``serving`` module light and import its model code inside ``load``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from inhouse.registry import ModelVersion, Registry


class Loaded(Protocol):
    """A version loaded for serving: which model and version answers."""

    @property
    def model(self) -> str: ...

    @property
    def version(self) -> int: ...


L = TypeVar("L", bound=Loaded)  # what the replica answers with
E = TypeVar("E", bound=Loaded)  # what the explainer explains


class ServingKind(Protocol[L, E]):
    """What ``serve/`` calls; one implementation per kind (``inhouse/kinds/<name>/serving.py``,
    whose ``SERVING`` is typed ``ServingKind[<loaded class>, <explained class>]``)."""

    #: Whether a request may name a variant of the model (Serve model multiplexing, the
    #: ``serve_multiplexed_model_id`` header); other kinds ignore that header.
    multiplexed: bool

    def refusal(self, spec: Mapping[str, Any]) -> str | None:
        """Why a version with ``spec`` cannot answer requests (``None``: it can)."""
        ...

    # -- the replica --------------------------------------------------------------------

    def load(self, registry: Registry, info: ModelVersion) -> L:
        """Load ``info`` in the form the replica answers with (decrypted in memory)."""
        ...

    def load_variant(self, registry: Registry, served: ModelVersion, variant: str) -> L:
        """Load ``variant`` (a registered model) as a variant of the ``served`` version."""
        ...

    def describe(self, loaded: L) -> dict[str, Any]:
        """What the ingress needs to parse requests for ``loaded`` (its ``metadata``)."""
        ...

    def prepare(self, loaded: L, inputs: Any) -> Any:
        """Check one request's inputs against ``loaded`` (before batching); returns them."""
        ...

    def predict(self, loaded: L, batch: list[Any]) -> list[dict[str, Any]]:
        """Answer the inputs of several requests in one pass; one answer per request."""
        ...

    # -- the explainer sidecar ----------------------------------------------------------

    def load_explained(self, registry: Registry, info: ModelVersion) -> E:
        """Load what explanations of the served ``info`` are computed on."""
        ...

    def explain(self, loaded: E, call: Any, *, max_instances: int) -> dict[str, Any]:
        """The JSON body of a v1 ``:explain`` answer for ``call`` (from ``parse_explain``)."""
        ...

    def explain_png(self, loaded: E, call: Any, *, max_instances: int) -> bytes:
        """The picture of ``call``'s first instance (``?format=png``)."""
        ...

    # -- the ingress: protocols ---------------------------------------------------------

    def model_metadata(self, *, model: str, info: Mapping[str, Any]) -> dict[str, Any]:
        """``GET /v2/models/{name}``, from the replica's ``describe``."""
        ...

    def parse_v2(
        self, body: Any, info: Mapping[str, Any], *, max_instances: int
    ) -> tuple[Any, str | None]:
        """The inputs and request id of an OIP v2 infer body."""
        ...

    def parse_v1(self, body: Any, info: Mapping[str, Any], *, max_instances: int) -> Any:
        """The inputs of a KServe v1 predict body."""
        ...

    def parse_explain(
        self, body: Any, info: Mapping[str, Any], *, max_instances: int, fmt: str
    ) -> Any:
        """The explain call of a v1 explain body, answered as ``fmt`` (``json`` or ``png``)."""
        ...

    def v2_response(
        self, *, model: str, request_id: str | None, result: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The OIP v2 answer; ``result`` is a ``predict`` answer plus ``model`` and ``version``."""
        ...

    def v1_response(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The KServe v1 answer to ``result``."""
        ...
