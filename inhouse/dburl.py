"""The database URL handed to other processes by reference when it holds a secret.

Ray shows a job's ``runtime_env`` environment variables in the dashboard and the Jobs API, and
processes inherit their environment. So a URL with a password (or a secret query parameter) is
written once to a 0600 file in ``<home>/secrets`` (a 0700 directory), and what travels is
``INHOUSE_DATABASE_URL_FILE=<that file>`` with ``INHOUSE_DATABASE_URL`` set empty, so the file,
not a URL inherited from the cluster's own environment, is what the job connects to.
:mod:`inhouse.config` reads the file back (``Settings.database_url_file``). A URL without a
secret (SQLite, PostgreSQL with peer or ``.pgpass`` authentication) still travels as itself.

The file name is random, not derived from the URL, so that it tells nothing about the password.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from inhouse.atomic import atomic_write_bytes
from inhouse.errors import ConfigError
from inhouse.private_paths import check_trusted_file, secure_dir

SECRET_QUERY_WORDS = ("password", "passwd", "secret", "token")


def has_secret(url: str) -> bool:
    """Whether ``url`` carries a password or a secret-looking query parameter."""
    from sqlalchemy.engine import make_url  # not at import: ``inhouse --help`` reads settings
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return True  # unparseable: assume the worst
    if parsed.password:
        return True
    return any(word in key.lower() for key in parsed.query for word in SECRET_QUERY_WORDS)


def secrets_dir(home: Path) -> Path:
    return home / "secrets"


def store_url(*, home: Path, url: str) -> Path:
    """The 0600 file under ``<home>/secrets`` holding ``url``: an existing one, else a new one."""
    folder = secrets_dir(home)
    secure_dir(folder, what="secrets directory")
    for existing in sorted(folder.glob("database-*.url")):
        try:
            if existing.read_text().strip() == url:
                return existing
        except OSError:
            continue
    path = folder / f"database-{secrets.token_hex(8)}.url"
    atomic_write_bytes(path, url.encode(), mode=0o600)
    return path


def database_env(*, home: Path, url: str | None) -> dict[str, str]:
    """The environment variables that tell another process which database to use."""
    if not url:
        return {}
    if not has_secret(url):
        return {"INHOUSE_DATABASE_URL": url}
    path = store_url(home=home, url=url)
    return {"INHOUSE_DATABASE_URL": "", "INHOUSE_DATABASE_URL_FILE": str(path)}


def read_url_file(path: Path) -> str:
    """The URL stored in ``path``, which must be this user's and readable by nobody else.

    Raises:
        ConfigError: missing, another user's, readable or writable by others, or empty.
    """
    if not path.exists():
        raise ConfigError(
            f"database URL file {path} does not exist (on a multi-node cluster, give each "
            "node INHOUSE_DATABASE_URL in its own environment instead)"
        )
    check_trusted_file(path, what="database URL file")
    if path.stat().st_mode & 0o077:
        raise ConfigError(
            f"database URL file {path} is readable by other users: run `chmod 600 {path}`"
        )
    url = path.read_text().strip()
    if not url:
        raise ConfigError(f"database URL file {path} is empty")
    return url
