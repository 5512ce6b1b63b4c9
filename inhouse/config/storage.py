"""Where the registry and training runs keep their files: local disk or S3-compatible storage.

Object storage is reached through its S3 API (Amazon S3, MinIO, Ceph; Alibaba OSS and Google
Cloud Storage through their S3-compatible endpoints, ``docs/object-storage.md``). Artifacts are
encrypted before they are uploaded, exactly as on disk, so the store never sees plaintext.
Credentials come from a 0600 file in the AWS shared-credentials format, else from the usual
``AWS_*`` environment variables, else from the default AWS chain (instance roles).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from inhouse.config.sections import Section


class StorageSettings(Section):
    """The ``storage`` section: where artifacts live and how the object store is reached."""

    registry_uri: str | None = Field(
        None,
        description="Registry versions: a directory (default <home>/registry) or "
        "s3://bucket/prefix.",
    )
    runs_uri: str | None = Field(
        None,
        description="Ray Train storage_path (checkpoints): a directory (default "
        "<home>/runs/ray; shared by every node of a cluster) or s3://bucket/prefix.",
    )
    endpoint: str | None = Field(
        None,
        description="S3 endpoint URL (https://oss-cn-hangzhou.aliyuncs.com, "
        "https://storage.googleapis.com, http://127.0.0.1:9000); default AWS_ENDPOINT_URL, "
        "else Amazon S3.",
    )
    region: str | None = Field(
        None, description="S3 region; default AWS_REGION / AWS_DEFAULT_REGION."
    )
    credentials_file: Path | None = Field(
        None,
        description="0600 file in the AWS shared-credentials format (aws_access_key_id, "
        "aws_secret_access_key, optional aws_session_token); default: AWS_* env vars, then "
        "the default AWS chain.",
    )
    profile: str = Field("default", description="Section of credentials_file to read.")
    virtual_addressing: bool = Field(
        False,
        description="Address buckets as bucket.endpoint (Alibaba OSS requires it) instead of "
        "endpoint/bucket.",
    )
    allow_plain_http: bool = Field(
        False,
        description="Allow an http:// endpoint that is not on this machine (credentials and "
        "sealed artifacts would cross the network unencrypted by TLS).",
    )
    allow_plaintext: bool = Field(
        False,
        description="Allow object storage with security.encrypt_at_rest off (the store would "
        "hold plaintext weights and checkpoints).",
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="S3 connect timeout.")
    request_timeout_s: float = Field(120.0, gt=0, description="S3 request timeout.")

    def env(self) -> dict[str, str]:
        """``INHOUSE_STORAGE__*`` variables for the fields set away from their defaults.

        How a submitted job or a started node gets the same storage as the CLI; the section
        holds no secret (``credentials_file`` is a path to a 0600 file on each node).
        """
        values = self.model_dump(mode="json", exclude_defaults=True)
        return {
            f"INHOUSE_STORAGE__{key.upper()}": str(value).lower()
            if isinstance(value, bool)
            else str(value)
            for key, value in values.items()
        }
