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
:class:`~inhouse.errors.PermissionDeniedError` (403) and audits every decision, one
database transaction per call (right for the CLI). A server answering many requests uses a
:class:`RequestAuthorizer` instead: same decisions and audit entries, tokens cached for
``cache_ttl_s`` and audit entries written in batches by a background thread
(:mod:`inhouse.access.fastpath`).
Then a :class:`RateLimiter` keyed by ``principal.token_id`` may refuse with
:class:`~inhouse.errors.RateLimitedError` (429); before authentication, a
:class:`PreAuthLimiter` budgets the attempts of each client address that cannot be
checked from memory. :mod:`inhouse.access.policy_sync` syncs the
database to a YAML policy file (:mod:`inhouse.access.policy`, GitOps).
"""

from inhouse.access.audit import AuditLog
from inhouse.access.auditentry import AuditEntry, AuditEvent, VerifyReport
from inhouse.access.fastpath import RequestAuthorizer
from inhouse.access.permissions import (
    ACTIONS,
    ROLE_DESCRIPTIONS,
    ROLES,
    Grant,
    Principal,
    RoleBinding,
    authorize,
    format_permission,
    format_role_binding,
    is_allowed,
    match_resource,
    parse_permission,
    parse_role_binding,
    validate_name,
)
from inhouse.access.policy import Policy, PrincipalPolicy, dump_policy, load_policy, parse_policy
from inhouse.access.policy_sync import (
    PolicyChange,
    PolicyDiff,
    apply_policy,
    diff_policy,
    export_policy,
)
from inhouse.access.preauth import PreAuthLimiter
from inhouse.access.ratelimit import RateLimiter
from inhouse.access.records import ACCESS_TABLES
from inhouse.access.service import AccessService
from inhouse.access.tokens import IssuedToken, TokenInfo, load_or_create_pepper

__all__ = [
    "ACCESS_TABLES",
    "ACTIONS",
    "ROLES",
    "ROLE_DESCRIPTIONS",
    "AccessService",
    "AuditEntry",
    "AuditEvent",
    "AuditLog",
    "Grant",
    "IssuedToken",
    "Policy",
    "PolicyChange",
    "PolicyDiff",
    "PreAuthLimiter",
    "Principal",
    "PrincipalPolicy",
    "RateLimiter",
    "RequestAuthorizer",
    "RoleBinding",
    "TokenInfo",
    "VerifyReport",
    "apply_policy",
    "authorize",
    "diff_policy",
    "dump_policy",
    "export_policy",
    "format_permission",
    "format_role_binding",
    "is_allowed",
    "load_or_create_pepper",
    "load_policy",
    "match_resource",
    "parse_permission",
    "parse_policy",
    "parse_role_binding",
    "validate_name",
]
