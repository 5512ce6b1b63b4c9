"""Who runs a command, and the one check every command makes before it acts.

Trust boundary: without ``$INHOUSE_TOKEN`` the caller is the local owner of the state
directory (whoever can read it already holds every secret the server has), so the action is
allowed and recorded under :func:`local_actor`. With the variable set (automation, other
users) the token must hold the permission, as over HTTP.
"""

from __future__ import annotations

import os
import pwd
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inhouse.config import Settings

TOKEN_ENV = "INHOUSE_TOKEN"


def local_actor() -> str:
    """``local:<OS user>(uid=<uid>)``: who the audit log names for a command run here.

    The name comes from the password database for the real uid, not from ``$LOGNAME`` or
    ``$USER`` (which ``getpass.getuser`` trusts and anyone can set), and the uid is recorded
    beside it.
    """
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry (containers)
        user = f"uid{uid}"
    return f"local:{user}(uid={uid})"


def authorize(settings: Settings, *, action: str, resource: str, detail: str = "") -> str:
    """Check and audit an operation before doing it; returns who acts.

    Raises:
        AuthenticationError: ``$INHOUSE_TOKEN`` is set but not a valid token (401).
        PermissionDeniedError: the token lacks ``action`` on ``resource`` (403).
    """
    from inhouse import services

    service = services.access(settings)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        principal = service.check(
            f"Bearer {token}", action=action, resource=resource, request_id=None
        )
        return principal.name
    actor = local_actor()
    service.record(
        principal=actor, action=action, resource=resource, outcome="allow", detail=detail or None
    )
    return actor
