"""Storage URIs to pyarrow filesystems: paths, s3://, refused schemes, endpoints, credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyarrow import fs as pafs

from inhouse.config import StorageSettings, load_settings
from inhouse.errors import ConfigError
from inhouse.storage import filesystem_for, is_remote, read_credentials_file
from inhouse.storage.filesystem import credentials


def _file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


KEYS = "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n"


def test_local_paths_resolve_to_the_local_filesystem(tmp_path: Path) -> None:
    fs, path = filesystem_for(str(tmp_path / "reg"), StorageSettings())
    assert isinstance(fs, pafs.LocalFileSystem) and path == str((tmp_path / "reg").resolve())
    fs, path = filesystem_for(f"file://{tmp_path}", StorageSettings())
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path.resolve())
    assert not is_remote(str(tmp_path)) and is_remote("s3://b-1/x")


def test_s3_uris_give_bucket_and_prefix(tmp_path: Path) -> None:
    storage = StorageSettings(endpoint="http://127.0.0.1:9", region="eu-west-1")
    fs, path = filesystem_for("s3://my-bucket/a//b/", storage)
    assert isinstance(fs, pafs.S3FileSystem) and path == "my-bucket/a/b"
    assert filesystem_for("s3://my-bucket", storage)[1] == "my-bucket"
    settings = load_settings(home=str(tmp_path), storage={"endpoint": "http://localhost:9"})
    assert filesystem_for("s3://abc/x", settings)[1] == "abc/x"  # whole Settings work too


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gs://bkt/x", "storage.googleapis.com"),
        ("oss://bkt/x", "aliyuncs.com"),
        ("ftp://bkt/x", "unknown storage scheme"),
        ("s3://B_ad/x", "not a valid bucket name"),
        ("s3://bkt/../x", "'..'"),
        ("s3://bkt/x?endpoint_override=evil", "storage settings"),
    ],
)
def test_bad_uris_are_refused_naming_the_fix(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        filesystem_for(uri, StorageSettings(endpoint="http://127.0.0.1:9"))


def test_plain_http_to_another_machine_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="without TLS"):
        filesystem_for("s3://bkt/x", StorageSettings(endpoint="http://10.0.0.5:9000"))
    allowed = StorageSettings(endpoint="http://10.0.0.5:9000", allow_plain_http=True)
    assert filesystem_for("s3://bkt/x", allowed)[1] == "bkt/x"
    with pytest.raises(ConfigError, match="must not have a path"):
        filesystem_for("s3://bkt/x", StorageSettings(endpoint="https://h.example/p"))


def test_credentials_file_must_be_private_and_complete(tmp_path: Path) -> None:
    good = _file(tmp_path / "c", KEYS + "aws_session_token = TOK\n")
    keys = read_credentials_file(good)
    assert (keys.access_key, keys.secret_key, keys.session_token) == ("AK", "SK", "TOK")
    assert "SK" not in repr(keys)
    loose = _file(tmp_path / "loose", KEYS, mode=0o644)
    with pytest.raises(ConfigError, match=r"mode 0644.*chmod 600"):
        read_credentials_file(loose)
    with pytest.raises(ConfigError, match=r"no \[prod\] section"):
        read_credentials_file(good, profile="prod")
    partial = _file(tmp_path / "partial", "[default]\naws_access_key_id = AK\n")
    with pytest.raises(ConfigError, match="lacks aws_secret_access_key"):
        read_credentials_file(partial)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_credentials_file(tmp_path / "absent")


def test_env_is_the_fallback_for_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    assert credentials(StorageSettings()) is None  # pyarrow's default AWS chain then
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ENVS")
    found = credentials(StorageSettings())
    assert found is not None and found.access_key == "ENV"
    chosen = credentials(StorageSettings(credentials_file=_file(tmp_path / "c", KEYS)))
    assert chosen is not None and chosen.access_key == "AK"  # the file wins


def test_storage_settings_come_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_STORAGE__REGISTRY_URI", "s3://bkt/registry")
    monkeypatch.setenv("INHOUSE_STORAGE__VIRTUAL_ADDRESSING", "true")
    settings = load_settings(home=str(tmp_path))
    assert settings.storage.registry_uri == "s3://bkt/registry"
    assert settings.storage.virtual_addressing
    with pytest.raises(ConfigError, match="storage"):
        load_settings(home=str(tmp_path), storage={"regoin": "x"})


def test_the_storage_section_travels_to_jobs_as_env(tmp_path: Path) -> None:
    from inhouse import local_cluster

    settings = load_settings(
        home=str(tmp_path),
        storage={"registry_uri": "s3://bkt/r", "virtual_addressing": True, "region": "x-1"},
    )
    env = local_cluster.client_env(settings)
    assert env["INHOUSE_STORAGE__REGISTRY_URI"] == "s3://bkt/r"
    assert env["INHOUSE_STORAGE__VIRTUAL_ADDRESSING"] == "true"
    assert "INHOUSE_STORAGE__ENDPOINT" not in env  # defaults stay out
    assert (
        StorageSettings.model_validate(
            {
                k.removeprefix("INHOUSE_STORAGE__").lower(): v
                for k, v in env.items()
                if "STORAGE" in k
            }
        )
        == settings.storage
    )


def test_object_storage_without_encryption_is_refused_unless_allowed(tmp_path: Path) -> None:
    from inhouse import services
    from inhouse.storage.runs import runs_storage

    storage = {
        "registry_uri": "s3://bkt/r",
        "runs_uri": "s3://bkt/runs",
        "endpoint": "http://127.0.0.1:9",
    }
    plain = load_settings(home=str(tmp_path), storage=storage, security={"encrypt_at_rest": False})
    with pytest.raises(ConfigError, match="plaintext weights"):
        services.registry(plain)
    with pytest.raises(ConfigError, match="storage.allow_plaintext"):
        runs_storage(plain)
    allowed = load_settings(
        home=str(tmp_path),
        storage=storage | {"allow_plaintext": True},
        security={"encrypt_at_rest": False},
    )
    assert runs_storage(allowed)[0] == "bkt/runs"
