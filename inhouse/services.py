"""Factories that turn settings into the platform's services (database, keys, registry, access).

Every layer (CLI, jobs, Serve replicas, actors) opens services here, so encryption and
database choices are made in one place.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from inhouse.access import AccessService, load_or_create_pepper
from inhouse.atomic import atomic_write_bytes
from inhouse.config import Settings
from inhouse.crypto import KeyRing
from inhouse.errors import AuthenticationError, NotFoundError
from inhouse.registry import Registry
from inhouse.schema import get_engine
from inhouse.storage import check_sealed, filesystem_for


def engine(settings: Settings) -> Engine:
    """The metadata/data database."""
    return get_engine(settings.db_url)


def keyring(settings: Settings) -> KeyRing | None:
    """The master key ring, initialised on first use; None when encryption is off."""
    if not settings.security.encrypt_at_rest:
        return None
    ring = KeyRing(settings.key_dir)
    if not ring.exists():
        ring.init()
    return ring


def registry(settings: Settings) -> Registry:
    """The model registry, encrypting artifacts when encryption at rest is on.

    Its files live in ``storage.registry_uri`` (a directory or ``s3://bucket/prefix``),
    by default ``<home>/registry``.
    """
    uri = settings.storage.registry_uri
    if uri is None:
        return Registry(
            engine=engine(settings), root=settings.registry_dir, keyring=keyring(settings)
        )
    check_sealed(settings, uri)
    filesystem, root = filesystem_for(uri, settings)
    return Registry(
        engine=engine(settings), root=root, keyring=keyring(settings), filesystem=filesystem
    )


def access(settings: Settings) -> AccessService:
    """Tokens, permissions and the audit log, over the metadata database."""
    pepper = load_or_create_pepper(settings.home / "token_pepper")
    return AccessService(engine=engine(settings), pepper=pepper)


def ensure_client_token(settings: Settings, *, principal: str = "local-client") -> Path:
    """A predictor token for local clients (CLI, demo) in ``<home>/client_token`` (0600).

    Created once; an expired or revoked one is replaced.
    """
    service = access(settings)
    path = settings.client_token_path
    if path.exists():
        try:
            service.authenticate("Bearer " + path.read_text().strip())
            return path
        except AuthenticationError:
            pass
    try:
        service.get_principal(name=principal)
    except NotFoundError:
        service.create_principal(
            name=principal, kind="service", roles=["predictor"], actor="local:setup"
        )
    issued = service.issue_token(
        principal=principal,
        expires_in=timedelta(days=90),
        description="local CLI and demo client",
        actor="local:setup",
    )
    atomic_write_bytes(path, issued.token.encode(), mode=0o600)
    return path
