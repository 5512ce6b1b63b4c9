"""One hierarchy of errors; each class maps to exactly one HTTP status.

::

    InhouseError                      500  unexpected failure of the platform
    ├── InvalidInputError             422  well-formed request whose content is wrong
    │   ├── MalformedRequestError     400  body is not parseable (bad JSON, wrong encoding)
    │   ├── WrongEndpointError        400  the model answers another route (an LLM's /v1/chat)
    │   └── ConfigError               422  a setting is invalid (names the field and the fix)
    ├── PayloadTooLargeError          413  body or batch over the configured limit
    ├── RequestTimeoutError           408  the client did not send its body in time
    ├── NotFoundError                 404
    │   ├── ModelNotFoundError        404  unknown model name / alias / version
    │   └── DatasetNotFoundError      404  unknown data set
    ├── ConflictError                 409  would change something immutable or already present
    │   └── DataChangedError          409  rows a model already consumed were changed or deleted
    ├── AuthenticationError           401  no, malformed, expired or revoked credentials
    ├── PermissionDeniedError         403  authenticated but lacking the permission
    ├── RateLimitedError              429  a token sent more requests than its rate allows
    ├── CryptoError                   422  an artifact cannot be decrypted; nothing is loaded
    │   ├── KeyNotFoundError          422  the key id in the header is not in the key ring
    │   ├── IntegrityError            422  tampered, truncated, reordered or spliced data
    │   └── UnsupportedFormatError    422  unknown format version or algorithm
    ├── BudgetExceededError           409  a privacy budget would be overspent
    ├── StorageError                  507  the disk refused a write (full, read-only)
    └── UnavailableError              503  a dependency (model replica, database) is not ready

Messages are one line, name what is wrong and, where possible, how to fix it.
"""

from __future__ import annotations


class InhouseError(Exception):
    """Base class of every error inhouse raises on purpose."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The JSON body an HTTP handler returns for this error."""
        return {"error": self.message, "code": self.code}


class InvalidInputError(InhouseError):
    status_code = 422
    code = "invalid_input"


class MalformedRequestError(InvalidInputError):
    status_code = 400
    code = "malformed_request"


class WrongEndpointError(InvalidInputError):
    status_code = 400
    code = "wrong_endpoint"


class ConfigError(InvalidInputError):
    code = "invalid_config"


class PayloadTooLargeError(InhouseError):
    status_code = 413
    code = "payload_too_large"


class RequestTimeoutError(InhouseError):
    status_code = 408
    code = "request_timeout"


class NotFoundError(InhouseError):
    status_code = 404
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class DatasetNotFoundError(NotFoundError):
    code = "dataset_not_found"


class ConflictError(InhouseError):
    status_code = 409
    code = "conflict"


class DataChangedError(ConflictError):
    """A consumed row window no longer matches its recorded count and checksum: the data
    set broke its append-only contract, so training on it stops until someone looks."""

    code = "data_changed"


class AuthenticationError(InhouseError):
    status_code = 401
    code = "unauthenticated"


class PermissionDeniedError(InhouseError):
    status_code = 403
    code = "permission_denied"


class RateLimitedError(InhouseError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CryptoError(InhouseError):
    status_code = 422
    code = "crypto_error"


class KeyNotFoundError(CryptoError):
    code = "key_not_found"


class IntegrityError(CryptoError):
    code = "integrity_error"


class UnsupportedFormatError(CryptoError):
    code = "unsupported_format"


class BudgetExceededError(InhouseError):
    status_code = 409
    code = "privacy_budget_exceeded"


class StorageError(InhouseError):
    status_code = 507
    code = "storage_error"


class UnavailableError(InhouseError):
    status_code = 503
    code = "unavailable"
