"""AccessService on SQLite: tokens at rest, the 401/403/200 matrix, grants, audit of decisions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, select, text

from inhouse.access import AccessService
from inhouse.access.records import AuditRecord, TokenRecord
from inhouse.db import session_scope
from inhouse.errors import (
    AuthenticationError,
    ConflictError,
    InhouseError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)

if TYPE_CHECKING:
    from conftest import FakeClock

HOUR = timedelta(hours=1)


def _audit_rows(engine: Engine) -> list[AuditRecord]:
    with session_scope(engine) as session:
        return list(session.scalars(select(AuditRecord).order_by(AuditRecord.id)))


def test_token_shown_once_and_hashed_at_rest(
    service: AccessService, engine: Engine, db_path: Path
) -> None:
    service.create_principal(name="alice", roles=["predictor"])
    issued = service.issue_token(principal="alice", expires_in=HOUR, description="laptop")
    secret = issued.token.split("_", 2)[2]  # the secret itself may contain "_"
    service.check(f"Bearer {issued.token}", action="model:predict", resource="d", request_id="r1")
    engine.dispose()
    on_disk = b"".join(
        p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)
    )
    assert secret.encode() not in on_disk
    assert issued.token_id.encode() in on_disk  # the id is public, the secret is not
    with session_scope(engine) as session:
        row = session.get(TokenRecord, issued.token_id)
        assert row is not None and row.secret_hash != secret and row.hash_scheme
    [info] = service.list_tokens(principal="alice")
    assert info.token_id == issued.token_id and info.description == "laptop"
    assert secret not in repr(info)
    assert not hasattr(info, "token") and not hasattr(info, "secret_hash")
    assert all(secret not in str(vars(r)) for r in _audit_rows(engine))


@pytest.fixture
def headers(service: AccessService, clock: FakeClock) -> dict[str, Callable[[], str | None]]:
    service.create_principal(name="alice")
    service.grant(principal="alice", action="model:predict", resource="digits")
    good = service.issue_token(principal="alice", expires_in=HOUR).token
    expired = service.issue_token(principal="alice", expires_in=timedelta(seconds=1)).token
    revoked = service.issue_token(principal="alice", expires_in=HOUR)
    service.revoke_token(token_id=revoked.token_id)
    clock.advance(timedelta(seconds=2))
    return {
        "none": lambda: None,
        "malformed": lambda: "Bearer not-a-token",
        "expired": lambda: f"Bearer {expired}",
        "revoked": lambda: f"Bearer {revoked.token}",
        "wrong_scope": lambda: f"Bearer {good}",
        "right_scope": lambda: f"Bearer {good}",
    }


@pytest.mark.parametrize(
    ("case", "action", "status"),
    [
        ("none", "model:predict", 401),
        ("malformed", "model:predict", 401),
        ("expired", "model:predict", 401),
        ("revoked", "model:predict", 401),
        ("wrong_scope", "model:explain", 403),
        ("right_scope", "model:predict", 200),
    ],
)
def test_auth_matrix(
    service: AccessService,
    engine: Engine,
    headers: dict[str, Callable[[], str | None]],
    case: str,
    action: str,
    status: int,
) -> None:
    try:
        principal = service.check(
            headers[case](), action=action, resource="digits", request_id=f"req-{case}"
        )
        got = 200
        assert principal.name == "alice" and principal.token_id
    except InhouseError as exc:
        got = exc.status_code
        assert isinstance(exc, AuthenticationError if status == 401 else PermissionDeniedError)
    assert got == status
    last = _audit_rows(engine)[-1]
    assert (last.request_id, last.action, last.resource) == (f"req-{case}", action, "digits")
    assert last.outcome == ("allow" if status == 200 else "deny")
    expected_who = "-" if case in ("none", "malformed") else "alice"
    assert last.principal == expected_who


def test_unknown_id_and_wrong_secret_are_indistinguishable(service: AccessService) -> None:
    service.create_principal(name="alice", roles=["admin"])
    issued = service.issue_token(principal="alice", expires_in=HOUR)
    service.revoke_token(token_id=issued.token_id)
    wrong_secret = f"ih_{issued.token_id}_{'A' * 43}"
    unknown_id = f"ih_{'0' * 16}_{'A' * 43}"
    messages = []
    for token in (wrong_secret, unknown_id):
        with pytest.raises(AuthenticationError) as info:
            service.authenticate(f"Bearer {token}")
        messages.append(info.value.message)
    # A revoked token's id must not be confirmed without its secret.
    assert messages == ["invalid token", "invalid token"]


def test_disabled_principal_cannot_authenticate(service: AccessService) -> None:
    service.create_principal(name="svc", kind="service", roles=["predictor"])
    token = service.issue_token(principal="svc", expires_in=HOUR).token
    assert service.authenticate(f"Bearer {token}").name == "svc"
    service.disable_principal(name="svc")
    with pytest.raises(AuthenticationError, match="disabled"):
        service.authenticate(f"Bearer {token}")
    with pytest.raises(ConflictError):
        service.issue_token(principal="svc", expires_in=HOUR)


def test_last_used_is_recorded_and_throttled(service: AccessService, clock: FakeClock) -> None:
    service.create_principal(name="alice", roles=["predictor"])
    issued = service.issue_token(principal="alice", expires_in=HOUR)
    assert service.list_tokens()[0].last_used_at is None
    service.authenticate(f"Bearer {issued.token}")
    first = clock.now
    clock.advance(timedelta(seconds=10))
    service.authenticate(f"Bearer {issued.token}")
    assert service.list_tokens()[0].last_used_at == first
    clock.advance(timedelta(seconds=60))
    service.authenticate(f"Bearer {issued.token}")
    info = service.list_tokens()[0]
    assert info.last_used_at == clock.now and info.status(clock.now) == "active"


def test_expiry_bounds_and_unknown_principal(service: AccessService) -> None:
    service.create_principal(name="alice")
    for bad in (timedelta(0), timedelta(seconds=-1), timedelta(days=366)):
        with pytest.raises(InvalidInputError):
            service.issue_token(principal="alice", expires_in=bad)
    with pytest.raises(NotFoundError):
        service.issue_token(principal="nobody", expires_in=HOUR)
    with pytest.raises(NotFoundError):
        service.revoke_token(token_id="0" * 16)


def test_short_pepper_refused(engine: Engine) -> None:
    with pytest.raises(InhouseError, match="pepper"):
        AccessService(engine=engine, pepper=b"too short")


def test_grants_roles_and_conflicts(service: AccessService) -> None:
    service.create_principal(name="bob")
    with pytest.raises(ConflictError):
        service.create_principal(name="bob")
    with pytest.raises(InvalidInputError):
        service.create_principal(name="../bob")
    with pytest.raises(InvalidInputError):
        service.create_principal(name="eve", roles=["superuser"])
    service.grant(principal="bob", action="data:*", resource="cancer-*")
    with pytest.raises(ConflictError):
        service.grant(principal="bob", action="data:*", resource="cancer-*")
    service.assign_role(principal="bob", role="predictor", resource="digits")
    token = service.issue_token(principal="bob", expires_in=HOUR).token
    header = f"Bearer {token}"
    service.check(header, action="data:write", resource="cancer-eu", request_id=None)
    service.check(header, action="model:explain", resource="digits", request_id=None)
    with pytest.raises(PermissionDeniedError):
        service.check(header, action="data:read", resource="digits", request_id=None)
    service.revoke_grant(principal="bob", action="data:*", resource="cancer-*")
    service.unassign_role(principal="bob", role="predictor", resource="digits")
    with pytest.raises(NotFoundError):
        service.revoke_grant(principal="bob", action="data:*", resource="cancer-*")
    for action, resource in (("data:write", "cancer-eu"), ("model:explain", "digits")):
        with pytest.raises(PermissionDeniedError):
            service.check(header, action=action, resource=resource, request_id=None)


def test_invalid_resource_is_422_and_audited(service: AccessService, engine: Engine) -> None:
    service.create_principal(name="root", roles=["admin"])
    header = f"Bearer {service.issue_token(principal='root', expires_in=HOUR).token}"
    with pytest.raises(InvalidInputError):
        service.check(header, action="model:predict", resource="../../etc", request_id="x")
    last = _audit_rows(engine)[-1]
    assert last.outcome == "deny" and last.resource == "../../etc"


def test_admin_changes_are_audited_with_actor(service: AccessService, engine: Engine) -> None:
    service.create_principal(name="carol", roles=["auditor"], actor="root")
    issued = service.issue_token(principal="carol", expires_in=HOUR, actor="root")
    service.revoke_token(token_id=issued.token_id, actor="root")
    rows = [(r.principal, r.action, r.resource) for r in _audit_rows(engine)]
    assert rows == [
        ("root", "access:create_principal", "carol"),
        ("root", "access:issue_token", "carol"),
        ("root", "access:revoke_token", issued.token_id),
    ]
    with pytest.raises(ConflictError):
        service.create_principal(name="carol", actor="root")
    assert len(_audit_rows(engine)) == 3  # a refused change leaves no entry
    assert service.audit.verify().ok


def test_authenticate_audits_both_outcomes(service: AccessService, engine: Engine) -> None:
    service.create_principal(name="alice")
    token = service.issue_token(principal="alice", expires_in=HOUR).token
    service.authenticate(f"Bearer {token}", request_id="a")
    with pytest.raises(AuthenticationError):
        service.authenticate("Token abc", request_id="b")
    tail = service.audit.tail(2)
    assert [(e.request_id, e.outcome, e.principal) for e in tail] == [
        ("a", "allow", "alice"),
        ("b", "deny", "-"),
    ]
    assert tail[1].detail is not None and tail[1].detail.startswith("unauthenticated")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 4


def test_record_privileged_action(service: AccessService) -> None:
    entry = service.record(
        principal="ops", action="model:deploy", resource="digits", outcome="error", detail="boom"
    )
    assert entry.id == 1 and service.audit.verify().ok
