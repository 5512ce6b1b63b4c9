"""Private paths: who may have written what inhouse reads, who may read what it writes.

The trust boundary of one machine is the OS user that owns the state directory. So:

- a settings file is read only if it belongs to that user (or root) and nobody else may write
  it (:func:`check_trusted_file`): a file planted by another local user is refused, by name;
  Serve without authentication is refused off loopback (:func:`check_auth_off`);
- the state directory is 0700 and the SQLite database (with its ``-wal``/``-shm``/``-journal``
  side files) 0600, tightened with a warning when found looser (:func:`secure_dir`,
  :func:`private_sqlite`);
- a private root in the temp directory (:func:`private_root`) is created 0700 and refused if it
  already exists with another owner or a looser mode: Ray makes its own temp directories 0777,
  so they must sit inside a directory nobody else can enter.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from pathlib import Path

from inhouse.errors import ConfigError

log = logging.getLogger("inhouse.security")

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
STATE_CONFIG = "inhouse.yaml"  # the state directory's own settings file


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface (no DNS lookup is made)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def reaches_only_this_machine(host: str) -> bool:
    """Whether a connection to ``host`` stays on this machine: loopback, or the unspecified
    address (``0.0.0.0``/``::``, which a client's kernel routes to itself)."""
    if is_loopback(host):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_unspecified
    except ValueError:
        return False


def check_auth_off(*, require_auth: bool, host: str) -> None:
    """Refuse Serve without authentication on a non-loopback ``host``; warn about it anywhere.

    Raises:
        ConfigError: ``require_auth`` is false and ``host`` is not a loopback address.
    """
    if require_auth:
        return
    if not is_loopback(host):
        raise ConfigError(
            f"security.require_auth is false while serve.host is {host}: anyone who can "
            "reach it could call every route; keep require_auth on or bind serve.host to "
            "127.0.0.1"
        )
    log.warning("security.require_auth is false: Serve routes answer without a token")


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def check_trusted_file(path: Path, *, what: str) -> None:
    """Refuse ``path`` unless it is a regular file of this user (or root) nobody else may write.

    Raises:
        ConfigError: naming the file, its owner or mode, and the fix.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    uid = os.getuid()
    if st.st_uid not in (uid, 0):
        raise ConfigError(
            f"{what} {path} belongs to uid {st.st_uid}, not to you (uid {uid}): refusing to "
            "read settings another user could have planted; remove it or copy it to a file "
            "of your own"
        )
    if st.st_mode & 0o022:
        raise ConfigError(
            f"{what} {path} is writable by other users (mode {_mode(st)}): refusing to read "
            f"it; run `chmod go-w {path}`"
        )


def settings_file(*, explicit: str | None, home: Path) -> Path | None:
    """The settings file to read: ``explicit`` (``--config``/``INHOUSE_CONFIG``), else
    ``<home>/inhouse.yaml`` if present; never one in the working directory, where anyone who
    can write could plant it. Either must pass :func:`check_trusted_file`."""
    if explicit:
        path, what = Path(explicit).expanduser(), "settings file"
    else:
        path = home.expanduser() / STATE_CONFIG
        if not path.exists():
            return None
        what = "the state directory's settings file"
    check_trusted_file(path, what=what)
    return path


def secure_dir(path: Path, *, what: str = "state directory") -> None:
    """Make ``path`` a directory of this user with mode 0700: create it, or tighten it (with a
    warning) when group or others may enter it.

    Raises:
        ConfigError: it is not a directory, or another user owns it.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path} is not a directory")
    if st.st_uid != os.getuid():
        raise ConfigError(
            f"{what} {path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}): "
            "whoever owns it can read and replace everything inhouse keeps there; use a "
            "directory of your own (--home or INHOUSE_HOME)"
        )
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
        log.warning(
            "%s %s was mode %s, so other local users could read it; tightened to 0700",
            what,
            path,
            _mode(st),
        )


def tighten_file(path: Path, *, mode: int = 0o600) -> None:
    """Set ``path`` to ``mode`` (with a warning) if it exists and group or others have access."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_mode & 0o077 & ~mode:
        os.chmod(path, mode)
        log.warning(
            "%s was mode %s, so other local users could read it; tightened to %04o",
            path,
            _mode(st),
            mode,
        )


def private_sqlite(database: str) -> None:
    """Create the SQLite file ``database`` with mode 0600 if it is missing; tighten it and its
    side files if they exist. SQLite gives new ``-wal``/``-shm``/``-journal`` files the mode of
    the database file, so a 0600 database keeps them private too."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        return  # SQLite reports the missing directory itself
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        os.close(fd)  # an empty file is a valid empty SQLite database
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in SQLITE_SIDE_FILES)):
        tighten_file(candidate)


def private_root(path: Path) -> Path:
    """Create ``path`` (mode 0700) or accept it only if it already is a real directory of this
    user that nobody else may enter; returns ``path``.

    Raises:
        ConfigError: it pre-exists as a link, a file, another user's or with a looser mode.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(path, 0o700)  # whatever the umask
    st = os.lstat(path)
    uid = os.getuid()
    problem = None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        problem = "is not a plain directory"
    elif st.st_uid != uid:
        problem = f"belongs to uid {st.st_uid}, not to you (uid {uid})"
    elif st.st_mode & 0o077:
        problem = f"has mode {_mode(st)}, not 0700"
    if problem:
        raise ConfigError(
            f"private directory {path} already exists and {problem}: someone may be waiting "
            "to read or replace what would be written there; remove it (or ask its owner to) "
            "and try again"
        )
    return path
