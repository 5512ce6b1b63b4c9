"""Build the inhouse Serve application: one ingress in front of, per model, a replica set and
an explainer sidecar.

Every model kind shares the front door and the deployments: each model's registry spec (of
the version ``ref`` names) picks its kind (:func:`inhouse.kinds.kind_for_spec`), which the
replica, the explainer and the ingress delegate to. Typed entry point for ``serve run`` /
``serve deploy`` config files::

    serve run inhouse.serve.app:build_app models='["digits", "banking"]'
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from inhouse import services
from inhouse.config import ServeArgs, ServeSettings, Settings, load_settings, settings_payload
from inhouse.errors import InvalidInputError
from inhouse.kinds import ModelKind, kind_for_spec
from inhouse.registry import validate_model_name
from inhouse.serve.explainer import Explainer
from inhouse.serve.ingress import Ingress
from inhouse.serve.model_replica import ModelReplica

APP_NAME = "inhouse"


def replica_scaling(serve_cfg: ServeSettings) -> dict[str, Any]:
    """How many model replicas: an ``autoscaling_config`` when autoscaling is on, else fixed."""
    autoscaling = serve_cfg.autoscaling_config()
    if autoscaling is None:
        return {"num_replicas": serve_cfg.num_replicas}
    return {"autoscaling_config": autoscaling}


def replica_devices(kind: ModelKind) -> dict[str, Any]:
    """A GPU for each replica of a kind that generates text when the cluster has one (the
    replica then runs the model in bf16 on CUDA); nothing otherwise."""
    import ray

    if not kind.has_part("generating") or not ray.is_initialized():
        return {}
    if ray.cluster_resources().get("GPU", 0) < 1:
        return {}
    return {"ray_actor_options": {"num_cpus": 0.5, "num_gpus": 1}}


def serving_kinds(settings: Settings, models: list[str], ref: str) -> dict[str, ModelKind]:
    """The kind of each model's version ``ref``.

    A version its kind cannot serve (a text encoder without a head) is refused here, before
    any deployment starts.
    """
    registry = services.registry(settings)
    kinds = {}
    for name in models:
        spec = registry.get(name, ref).spec
        kind = kind_for_spec(spec)
        reason = kind.serving.refusal(spec)
        if reason is not None:
            raise InvalidInputError(f"{name} ({ref}) is {reason}")
        kinds[name] = kind
    return kinds


def build_app(args: dict[str, Any] | ServeArgs) -> Application:
    """The Serve application for ``args`` (a dict when called by ``serve run``)."""
    parsed = args if isinstance(args, ServeArgs) else ServeArgs.model_validate(args)
    overrides: dict[str, Any] = {}
    if parsed.home:
        overrides["home"] = parsed.home
    if parsed.database_url:
        overrides["database_url"] = parsed.database_url
    settings = load_settings(**overrides)
    if not parsed.batching:
        settings.serve.max_batch_size = 1
    payload = settings_payload(settings)
    serve_cfg = settings.serve
    for name in parsed.models:
        validate_model_name(name)
    kinds = serving_kinds(settings, parsed.models, parsed.ref)
    handles, explainers = {}, {}
    for name, kind in kinds.items():
        handles[name] = ModelReplica.options(
            name=f"model-{name}",
            max_ongoing_requests=serve_cfg.max_ongoing_requests,
            # A dead replica is noticed in ~2 s rather than Serve's default ~10 s.
            health_check_period_s=2,
            health_check_timeout_s=5,
            **replica_scaling(serve_cfg),
            **replica_devices(kind),
        ).bind(name, payload, parsed.ref, kind)
        if not parsed.explainers:
            continue
        # The explainer sidecar: its own replicas, so heavy explanations never slow
        # predictions. Work is serialised per replica: scale out with replicas.
        explainers[name] = Explainer.options(
            name=f"explainer-{name}",
            autoscaling_config={
                "min_replicas": 1,
                "max_replicas": parsed.max_explainer_replicas,
                "target_ongoing_requests": 1,
            },
        ).bind(name, payload, parsed.ref, kind)
    return Ingress.options(max_ongoing_requests=serve_cfg.max_ongoing_requests * 4).bind(
        handles, payload, explainers, kinds
    )
