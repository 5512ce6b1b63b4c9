"""What users do to a coordinator, Ray-free: start (register), stop, request a retrain, roll back.

During a canary, rollback stops it (:func:`abort_canary`): the champion never moved. Otherwise
rollback moves the ``champion`` alias back to ``previous`` at once, in one transaction with its
history event; replicas that follow the alias serve it from their next refresh. ``previous``
then points at the champion before that one (from the promotion history), so repeated
rollbacks walk back through the promotions.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine

from inhouse.config import CoordinatorSettings
from inhouse.coordinator.state import CoordinatorState, CoordinatorStore, Event
from inhouse.db import session_scope
from inhouse.errors import ConflictError, InvalidInputError, ModelNotFoundError
from inhouse.kinds import kind_for_spec
from inhouse.registry import Registry, move_alias, read_aliases

MANUAL = "retrain_requested"


def initial_watermark(registry: Registry, model: str) -> tuple[int, int]:
    """The champion's version and the last row id its training consumed."""
    try:
        champion = registry.get(model, "champion")
    except ModelNotFoundError:
        raise InvalidInputError(
            f"model {model!r} has no champion to keep up to date; train one first "
            f"(`inhouse train --model {model}`)"
        ) from None
    rows = champion.lineage.get("rows") or {}
    return champion.version, int(rows.get("up_to_id") or 0)


def check_fits(registry: Registry, settings: CoordinatorSettings) -> None:
    """Refuse settings that cannot work for this model and data set, before anything starts."""
    from inhouse.data import describe

    kind = kind_for_spec(registry.get(settings.model, "champion").spec)
    rows = describe(registry.engine, settings.dataset).kind
    if rows != kind.name:
        raise InvalidInputError(
            f"model {settings.model!r} is a {kind.name} model but data set "
            f"{settings.dataset!r} holds {rows} rows; pass --dataset with the rows it learns"
        )
    kind.updating.check_settings(settings)


def start(registry: Registry, settings: CoordinatorSettings) -> CoordinatorState:
    """Create or re-enable a model's coordinator state (keeping its watermark and history)."""
    initial_watermark(registry, settings.model)  # a champion must exist
    check_fits(registry, settings)
    store = CoordinatorStore(registry.engine)
    for _attempt in range(5):
        state = store.get(settings.model)
        if state is None:
            champion, watermark = initial_watermark(registry, settings.model)
            fresh = CoordinatorState(
                model=settings.model,
                dataset=settings.dataset,
                settings=settings.model_dump(mode="json"),
                watermark=watermark,
                last_run_at=time.time(),
                champion_version=champion,
            )
            try:
                return store.create(fresh, events=[Event("started", {"watermark": watermark})])
            except ConflictError:
                continue
        running = state.replace(
            status="running", settings=settings.model_dump(mode="json"), dataset=settings.dataset
        )
        try:
            return store.commit(running, events=[Event("started", {"watermark": state.watermark})])
        except ConflictError:
            continue
    raise ConflictError(f"coordinator state of {settings.model!r} keeps changing; retry")


def stop(engine: Engine, model: str) -> CoordinatorState:
    """Mark the coordinator stopped (a running actor exits at its next step)."""
    store = CoordinatorStore(engine)
    for _attempt in range(5):
        state = store.load(model)
        try:
            return store.commit(state.replace(status="stopped"), events=[Event("stopped")])
        except ConflictError:
            continue
    raise ConflictError(f"coordinator state of {model!r} keeps changing; retry")


def request_retrain(engine: Engine, model: str, *, actor: str = "cli") -> int:
    """Ask for a retrain at the next step (consumed once); returns the request's event id."""
    store = CoordinatorStore(engine)
    store.load(model)
    return store.record(model, MANUAL, {"actor": actor})


def rollback(engine: Engine, model: str, *, actor: str = "cli") -> tuple[int, int]:
    """Point ``champion`` back at ``previous`` now; returns ``(from_version, to_version)``."""
    with session_scope(engine) as session:
        aliases = read_aliases(session, model)
        if "champion" not in aliases or "previous" not in aliases:
            raise ConflictError(f"model {model!r} has no previous champion to roll back to")
        was, now = aliases["champion"], aliases["previous"]
        move_alias(session, model, "champion", now)
        earlier = CoordinatorStore.replaced_champion(session, model, now)
        move_alias(session, model, "previous", None if earlier == now else earlier)
        detail = {"from": was, "to": now, "previous": earlier, "actor": actor}
        CoordinatorStore.add_events(session, model, [Event("rollback", detail)])
    return was, now


def abort_canary(engine: Engine, model: str, *, actor: str = "cli") -> int | None:
    """Stop a running canary at once (the champion keeps all traffic); returns its version,
    or None when no canary runs (or no coordinator was started for ``model``)."""
    store = CoordinatorStore(engine)
    for _attempt in range(5):
        state = store.get(model)
        if state is None or state.canary is None:
            return None
        version = state.canary.version
        event = Event("canary_aborted", {"candidate_version": version, "actor": actor})
        try:
            store.commit(state.replace(canary=None), events=[event], aliases={"candidate": None})
        except ConflictError:
            continue
        return version
    raise ConflictError(f"coordinator state of {model!r} keeps changing; retry")


def status(engine: Engine, model: str, *, history: int = 10) -> dict[str, Any]:
    """The state and recent history of a model's coordinator, JSON-ready."""
    store = CoordinatorStore(engine)
    state = store.load(model)
    return {
        **{k: v for k, v in state.__dict__.items() if k not in ("settings", "canary")},
        "canary": state.canary.to_dict() if state.canary else None,
        "settings": state.settings,
        "history": [e.__dict__ for e in store.history(model, limit=history)],
    }
