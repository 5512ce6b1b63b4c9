"""One way from a pydantic ``ValidationError`` to inhouse's own error: the field, the rule
broken, and (where known) the value given and how to set it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from inhouse.errors import ConfigError, InhouseError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[int | str, ...]
# Where a field is set (``set --epochs``), from its location; None: say nothing.
Hint = Callable[[Loc], str | None]


def describe(
    error: ErrorDetails,
    *,
    label: str = "",
    root: str = "(root)",
    hint: Hint | None = None,
    show_input: bool = False,
) -> str:
    """``<label><field>: <rule> (got <value>; <hint>)`` for one validation error.

    Args:
        error: one entry of ``ValidationError.errors()``.
        label: prefix naming the section (``coordinator.``).
        root: the field's name when the error is about the whole model.
        hint: how to set the field at a location, or None.
        show_input: quote the value given.
    """
    field = ".".join(str(part) for part in error["loc"]) or root
    notes = [f"got {error.get('input')!r}"] if show_input else []
    how = hint(error["loc"]) if hint is not None else None
    if how:
        notes.append(how)
    tail = f" ({'; '.join(notes)})" if notes else ""
    return f"{label}{field}: {error['msg']}{tail}"


def parse_model(
    model: type[M],
    data: Any,
    *,
    error: type[InhouseError] = ConfigError,
    count_rest: bool = False,
    label: str = "",
    root: str = "(root)",
    hint: Hint | None = None,
    show_input: bool = False,
) -> M:
    """``data`` validated as ``model``; the first bad field raises ``error``.

    Args:
        model: the settings (or request) model.
        data: plain data to validate.
        error: the inhouse error raised (ConfigError; InvalidInputError for requests).
        count_rest: add ``(and N more)`` when more fields are bad.
        label, root, hint, show_input: how the field is named (see :func:`describe`).

    Raises:
        InhouseError: ``error``, naming the first bad field.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message = describe(
            exc.errors()[0], label=label, root=root, hint=hint, show_input=show_input
        )
        if count_rest and exc.error_count() > 1:
            message += f" (and {exc.error_count() - 1} more)"
        raise error(message) from None
