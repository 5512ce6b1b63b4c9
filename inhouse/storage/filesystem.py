"""A storage URI to a pyarrow filesystem: local directories and ``s3://bucket/prefix``.

Every reader and writer of artifacts (the registry, Ray Train's checkpoints, data imports) goes
through :func:`filesystem_for`, so one ``storage`` settings section decides which object store,
endpoint, region and credentials are used. Alibaba OSS and Google Cloud Storage are reached
through their S3-compatible endpoints (``docs/object-storage.md``); their native schemes are
refused with the setting to use instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from inhouse.config.storage import StorageSettings
from inhouse.errors import ConfigError
from inhouse.private_paths import is_loopback
from inhouse.storage.credentials import Credentials, env_credentials, read_credentials_file

if TYPE_CHECKING:
    from pyarrow import fs as pafs

    from inhouse.config import Settings

S3_SCHEME = "s3"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_NATIVE = {
    "gs": "https://storage.googleapis.com (with an HMAC key)",
    "gcs": "https://storage.googleapis.com (with an HMAC key)",
    "oss": "https://oss-<region>.aliyuncs.com and storage.virtual_addressing: true",
}


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` names object storage (``s3://``) rather than a local directory."""
    return isinstance(uri, str) and urlsplit(uri).scheme == S3_SCHEME


def is_local_filesystem(filesystem: pafs.FileSystem) -> bool:
    """Whether ``filesystem`` is this machine's disk (paths are OS paths, rename is atomic)."""
    from pyarrow import fs as pafs

    return isinstance(filesystem, pafs.LocalFileSystem)


def display_uri(filesystem: pafs.FileSystem, path: str) -> str:
    """``path`` on ``filesystem`` as a person would write it (``s3://bucket/key`` or a path)."""
    return path if is_local_filesystem(filesystem) else f"{S3_SCHEME}://{path}"


def filesystem_for(
    uri: str | os.PathLike[str], settings: Settings | StorageSettings
) -> tuple[pafs.FileSystem, str]:
    """The filesystem that holds ``uri`` and the path of ``uri`` on it.

    ``uri`` is a local path (absolute or relative, ``~`` expanded; ``file://`` allowed) or
    ``s3://bucket[/prefix]``; for S3 the returned path is ``bucket/prefix`` without a trailing
    slash, as pyarrow expects.

    Raises:
        ConfigError: an unknown scheme, a bad bucket name, an unsafe endpoint or bad
            credentials (naming the setting to fix).
    """
    storage = settings if isinstance(settings, StorageSettings) else settings.storage
    text = os.fspath(uri)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or re.fullmatch(r"[a-zA-Z]", scheme):
        local = parts.path if scheme == "file" else text
        from pyarrow import fs as pafs

        return pafs.LocalFileSystem(), str(Path(local).expanduser().resolve())
    if scheme in _NATIVE:
        raise ConfigError(
            f"{text}: use s3://{parts.netloc}{parts.path} with storage.endpoint set to "
            f"{_NATIVE[scheme]}"
        )
    if scheme != S3_SCHEME:
        raise ConfigError(f"{text}: unknown storage scheme {scheme!r}; use a path or s3://")
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError(f"{text}: {bucket!r} is not a valid bucket name")
    if parts.query or parts.fragment:
        raise ConfigError(f"{text}: put endpoint and region in the storage settings, not the URI")
    prefix = "/".join(p for p in parts.path.split("/") if p)
    if any(p in (".", "..") for p in prefix.split("/")):
        raise ConfigError(f"{text}: '.' and '..' are not allowed in an object key")
    return s3_filesystem(storage), f"{bucket}/{prefix}" if prefix else bucket


def _endpoint(storage: StorageSettings) -> tuple[str | None, str | None]:
    """``(scheme, host[:port])`` of the configured endpoint, or ``(None, None)`` for AWS."""
    url = (
        storage.endpoint
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if not url:
        return None, None
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"storage.endpoint {url!r} must be http(s)://host[:port]")
    if parts.path.strip("/") or parts.query:
        raise ConfigError(f"storage.endpoint {url!r} must not have a path; put it in the URI")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not storage.allow_plain_http:
        raise ConfigError(
            f"storage.endpoint {url} is plain http to another machine: keys and artifacts "
            "would cross the network without TLS; use https or set storage.allow_plain_http"
        )
    return parts.scheme, parts.netloc


def credentials(storage: StorageSettings) -> Credentials | None:
    """The key pair from ``storage.credentials_file``, else the environment, else None."""
    if storage.credentials_file is not None:
        return read_credentials_file(storage.credentials_file.expanduser(), profile=storage.profile)
    return env_credentials()


def s3_filesystem(storage: StorageSettings, *, background_writes: bool = True) -> pafs.S3FileSystem:
    """An S3 filesystem configured by ``storage`` (endpoint, region, credentials)."""
    scheme, endpoint = _endpoint(storage)
    region = storage.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    keys = credentials(storage)
    options: dict[str, object] = {
        "region": region,
        "connect_timeout": storage.connect_timeout_s,
        "request_timeout": storage.request_timeout_s,
        "force_virtual_addressing": storage.virtual_addressing,
        "background_writes": background_writes,
    }
    if endpoint is not None:
        options |= {"endpoint_override": endpoint, "scheme": scheme}
    if keys is not None:
        options |= {
            "access_key": keys.access_key,
            "secret_key": keys.secret_key,
            "session_token": keys.session_token,
        }
    from pyarrow import fs as pafs

    return pafs.S3FileSystem(**options)


def check_sealed(settings: Settings, uri: str) -> None:
    """Refuse object storage for artifacts while encryption at rest is off (unless allowed).

    Raises:
        ConfigError: naming the setting and both ways out.
    """
    if is_remote(uri) and not settings.security.encrypt_at_rest:
        if not settings.storage.allow_plaintext:
            raise ConfigError(
                f"{uri} is object storage but security.encrypt_at_rest is off: the store would "
                "hold plaintext weights; turn encryption on or set storage.allow_plaintext"
            )
