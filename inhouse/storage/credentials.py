"""S3 credentials: a 0600 file in the AWS shared-credentials format, else the environment.

The file is the one ``aws configure`` writes (``~/.aws/credentials``)::

    [default]
    aws_access_key_id = AKIA...
    aws_secret_access_key = ...
    aws_session_token = ...      # optional (temporary credentials)

It must be a regular file of this user that nobody else may read (mode 0600 or stricter):
a readable key is a leaked key. Without a file, ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``) are used; without those, nothing is
passed and pyarrow's default AWS chain (instance profile, web identity) applies.
"""

from __future__ import annotations

import configparser
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from inhouse.errors import ConfigError


@dataclass(frozen=True, repr=False)
class Credentials:
    """An access key pair (and session token); ``repr`` never shows the secret."""

    access_key: str
    secret_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key!r}, secret_key=***)"


def read_credentials_file(path: Path, *, profile: str = "default") -> Credentials:
    """The key pair of ``profile`` in the 0600 file at ``path``.

    Raises:
        ConfigError: the file is missing, not private (group/other bits set), not this user's,
            or lacks the profile or one of its two keys.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(
            f"storage.credentials_file {path} cannot be read: {exc.strerror}"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"storage.credentials_file {path} is not a regular file")
    if st.st_uid not in (os.getuid(), 0):
        raise ConfigError(
            f"storage.credentials_file {path} belongs to uid {st.st_uid}, not to you "
            f"(uid {os.getuid()}); use a file of your own"
        )
    if st.st_mode & 0o077:
        raise ConfigError(
            f"storage.credentials_file {path} has mode {stat.S_IMODE(st.st_mode):04o}, "
            f"readable by others; run `chmod 600 {path}`"
        )
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(), source=str(path))
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        reason = getattr(exc, "message", None) or str(exc).splitlines()[0]
        raise ConfigError(f"storage.credentials_file {path} is not readable: {reason}") from None
    if not parser.has_section(profile):
        raise ConfigError(
            f"storage.credentials_file {path} has no [{profile}] section "
            "(set storage.profile to the one holding the keys)"
        )
    section = parser[profile]
    missing = [
        key for key in ("aws_access_key_id", "aws_secret_access_key") if not section.get(key)
    ]
    if missing:
        raise ConfigError(f"storage.credentials_file {path} [{profile}] lacks {', '.join(missing)}")
    return Credentials(
        access_key=section["aws_access_key_id"].strip(),
        secret_key=section["aws_secret_access_key"].strip(),
        session_token=(section.get("aws_session_token") or "").strip() or None,
    )


def env_credentials() -> Credentials | None:
    """The key pair in ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, if both are set."""
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        return None
    return Credentials(access, secret, os.environ.get("AWS_SESSION_TOKEN") or None)
