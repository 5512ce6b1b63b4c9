"""Changes to access state: principals, role bindings, grants and tokens.

Every change commits in one transaction with its audit entry (``principal`` = the actor,
``resource`` = the principal or token changed), so the log never misses a change that
happened nor records one that did not. :class:`~inhouse.access.service.AccessService`
inherits these methods; callers authorize them first (``access:admin``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inhouse.access.audit import AuditLog
from inhouse.access.permissions import (
    Grant,
    Principal,
    RoleBinding,
    validate_action,
    validate_name,
    validate_pattern,
    validate_role,
)
from inhouse.access.records import GrantRecord, PrincipalRecord, RoleBindingRecord, TokenRecord
from inhouse.access.tokens import HASH_SCHEME, IssuedToken, TokenInfo, hash_secret, new_token
from inhouse.db import session_scope
from inhouse.errors import ConflictError, InvalidInputError, NotFoundError

PRINCIPAL_KINDS = frozenset({"user", "service"})


class AccessAdmin:
    """Administration half of the access service (state set up by the subclass)."""

    _engine: Engine
    _pepper: bytes
    _clock: Callable[[], datetime]
    _max_lifetime: timedelta
    audit: AuditLog

    def create_principal(
        self, *, name: str, kind: str = "user", roles: Iterable[str] = (), actor: str = "system"
    ) -> Principal:
        """Create a principal, optionally holding built-in roles on every resource."""
        validate_name(name, what="principal name")
        if kind not in PRINCIPAL_KINDS:
            raise InvalidInputError(f"principal kind {kind!r} must be 'user' or 'service'")
        role_list = sorted({validate_role(r) for r in roles})

        def change(session: Session) -> None:
            if session.get(PrincipalRecord, name) is not None:
                raise ConflictError(f"principal {name!r} already exists")
            session.add(PrincipalRecord(name=name, kind=kind, created_at=self._clock()))
            session.flush()
            session.add_all(
                RoleBindingRecord(principal=name, role=r, resource="*") for r in role_list
            )

        self._mutate(change, actor, "access:create_principal", name, f"{kind} roles={role_list}")
        return self.get_principal(name=name)

    def get_principal(self, *, name: str) -> Principal:
        """Load a principal with its roles and grants (raises NotFoundError)."""
        with session_scope(self._engine) as session:
            return load_principal(session, validate_name(name, what="principal name"), None)

    def disable_principal(self, *, name: str, actor: str = "system") -> None:
        """Disable a principal: its tokens stop authenticating (cached checks within 1 s)."""

        def change(session: Session) -> None:
            require_principal(session, name).disabled = True

        self._mutate(change, actor, "access:disable_principal", name, None)

    def assign_role(
        self, *, principal: str, role: str, resource: str = "*", actor: str = "system"
    ) -> None:
        """Give ``principal`` a built-in role on a resource pattern."""
        validate_role(role)
        validate_pattern(resource)
        binding = RoleBindingRecord(principal=principal, role=role, resource=resource)
        self._add_one(binding, actor, "access:assign_role", principal, f"{role} on {resource}")

    def unassign_role(
        self, *, principal: str, role: str, resource: str = "*", actor: str = "system"
    ) -> None:
        """Remove a role binding (raises NotFoundError if absent)."""
        where = (
            RoleBindingRecord.principal == principal,
            RoleBindingRecord.role == role,
            RoleBindingRecord.resource == resource,
        )
        self._delete_one(
            RoleBindingRecord,
            where,
            actor,
            "access:unassign_role",
            principal,
            f"{role} on {resource}",
        )

    def grant(self, *, principal: str, action: str, resource: str, actor: str = "system") -> None:
        """Grant ``action`` (or ``domain:*`` / ``*``) on a resource pattern to ``principal``."""
        validate_action(action, allow_wildcard=True)
        validate_pattern(resource)
        grant = GrantRecord(principal=principal, action=action, resource=resource)
        self._add_one(grant, actor, "access:grant", principal, f"{action} on {resource}")

    def revoke_grant(
        self, *, principal: str, action: str, resource: str, actor: str = "system"
    ) -> None:
        """Remove a direct grant (raises NotFoundError if absent)."""
        where = (
            GrantRecord.principal == principal,
            GrantRecord.action == action,
            GrantRecord.resource == resource,
        )
        self._delete_one(
            GrantRecord, where, actor, "access:revoke_grant", principal, f"{action} on {resource}"
        )

    def issue_token(
        self, *, principal: str, expires_in: timedelta, description: str = "", actor: str = "system"
    ) -> IssuedToken:
        """Issue a token for ``principal``; the plaintext is in the result and nowhere else.

        Raises:
            InvalidInputError: ``expires_in`` is not positive or exceeds the maximum lifetime.
            NotFoundError: the principal does not exist.
            ConflictError: the principal is disabled.
        """
        if not timedelta(0) < expires_in <= self._max_lifetime:
            raise InvalidInputError(
                f"expires_in {expires_in} must be positive and at most {self._max_lifetime}"
            )
        parsed, plaintext = new_token()
        now = self._clock()
        expires_at = now + expires_in

        def change(session: Session) -> None:
            if require_principal(session, principal).disabled:
                raise ConflictError(f"principal {principal!r} is disabled")
            session.add(
                TokenRecord(
                    token_id=parsed.token_id,
                    principal=principal,
                    secret_hash=hash_secret(self._pepper, parsed.token_id, parsed.secret),
                    hash_scheme=HASH_SCHEME,
                    description=description[:256],
                    created_at=now,
                    expires_at=expires_at,
                )
            )

        detail = f"token={parsed.token_id} expires_at={expires_at.isoformat()}"
        self._mutate(change, actor, "access:issue_token", principal, detail)
        return IssuedToken(parsed.token_id, principal, expires_at, plaintext)

    def revoke_token(self, *, token_id: str, actor: str = "system") -> None:
        """Revoke a token by id (idempotent; raises NotFoundError for an unknown id)."""

        def change(session: Session) -> None:
            row = session.get(TokenRecord, token_id)
            if row is None:
                raise NotFoundError(f"no token with id {token_id!r}")
            if row.revoked_at is None:
                row.revoked_at = self._clock()

        self._mutate(change, actor, "access:revoke_token", token_id, None)

    def list_tokens(self, *, principal: str | None = None) -> list[TokenInfo]:
        """Every token (of ``principal`` if given), oldest first; never secrets or hashes."""
        query = select(TokenRecord).order_by(TokenRecord.created_at, TokenRecord.token_id)
        if principal is not None:
            query = query.where(TokenRecord.principal == principal)
        with session_scope(self._engine) as session:
            return [
                TokenInfo(
                    r.token_id,
                    r.principal,
                    r.description,
                    r.created_at,
                    r.expires_at,
                    r.revoked_at,
                    r.last_used_at,
                )
                for r in session.scalars(query)
            ]

    def _add_one(self, record: Any, actor: str, action: str, target: str, what: str) -> None:
        """Add ``record`` (a binding or grant of the principal ``target``, which must exist)."""

        def change(session: Session) -> None:
            require_principal(session, target)
            session.add(record)

        self._mutate(change, actor, action, target, what)

    def _delete_one(
        self, table: Any, where: tuple[Any, ...], actor: str, action: str, target: str, what: str
    ) -> None:
        def change(session: Session) -> None:
            if not session.execute(delete(table).where(*where)).rowcount:  # type: ignore[attr-defined]
                raise NotFoundError(f"{target!r} has no {what}")

        self._mutate(change, actor, action, target, what)

    def _mutate(
        self,
        change: Callable[[Session], None],
        actor: str,
        action: str,
        target: str,
        detail: str | None,
    ) -> None:
        """Apply ``change`` and its audit entry in one transaction."""
        try:
            with session_scope(self._engine) as session:
                change(session)
                session.flush()
                self.audit.append_in(
                    session,
                    principal=actor,
                    action=action,
                    resource=target,
                    outcome="allow",
                    detail=detail,
                )
        except IntegrityError as exc:
            raise ConflictError(f"{action} on {target!r} conflicts with existing state") from exc


def require_principal(session: Session, name: str) -> PrincipalRecord:
    """The principal row named ``name`` (raises NotFoundError)."""
    row = session.get(PrincipalRecord, name)
    if row is None:
        raise NotFoundError(f"no principal named {name!r}")
    return row


def load_principal(session: Session, name: str, token_id: str | None) -> Principal:
    """Build a :class:`Principal` with its roles and grants from the database."""
    require_principal(session, name)
    roles = session.scalars(select(RoleBindingRecord).where(RoleBindingRecord.principal == name))
    grants = session.scalars(select(GrantRecord).where(GrantRecord.principal == name))
    return Principal(
        name=name,
        roles=frozenset(RoleBinding(r.role, r.resource) for r in roles),
        grants=frozenset(Grant(g.action, g.resource) for g in grants),
        token_id=token_id,
    )
