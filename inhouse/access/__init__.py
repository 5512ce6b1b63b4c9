"""Access control and audit: API tokens, fine-grained permissions, a hash-chained audit log.

Typical use in an HTTP route or CLI command::

    access = AccessService(engine=engine, pepper=load_or_create_pepper(path))
    principal = access.check(
        request.headers.get("authorization"),
        action="model:predict",
        resource=model_name,
        request_id=request_id,
    )

``check`` raises :class:`~inhouse.errors.AuthenticationError` (401) or
:class:`~inhouse.errors.PermissionDeniedError` (403) and audits every decision.
"""

from inhouse.access.audit import AuditEntry, AuditLog, VerifyReport
from inhouse.access.permissions import (
    ACTIONS,
    ROLES,
    Grant,
    Principal,
    RoleBinding,
    authorize,
    is_allowed,
    match_resource,
    validate_name,
)
from inhouse.access.records import ACCESS_TABLES
from inhouse.access.service import AccessService
from inhouse.access.tokens import IssuedToken, TokenInfo, load_or_create_pepper

__all__ = [
    "ACCESS_TABLES",
    "ACTIONS",
    "ROLES",
    "AccessService",
    "AuditEntry",
    "AuditLog",
    "Grant",
    "IssuedToken",
    "Principal",
    "RoleBinding",
    "TokenInfo",
    "VerifyReport",
    "authorize",
    "is_allowed",
    "load_or_create_pepper",
    "match_resource",
    "validate_name",
]
