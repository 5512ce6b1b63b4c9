"""Issue #16, finding 11: a database URL with a password never goes into a job's environment.

Before the fix ``run_job`` put ``INHOUSE_DATABASE_URL`` (password included) into the job's
``runtime_env`` env vars, which the Ray dashboard and the Jobs API show to anyone who can see
the cluster; ``inhouse cluster env`` printed it too. ``test_submitted_job_env_holds_no_password``
failed then (the password was in ``env_vars``). The job must still connect: it rebuilds the URL
from the 0600 file its environment names.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from inhouse import local_cluster
from inhouse.cli import main
from inhouse.cli.ray_ops import run_job
from inhouse.config import load_settings
from inhouse.console import RESULT_MARKER
from inhouse.errors import ConfigError

PASSWORD = "s3cr3t-Pa55"
URL = f"postgresql+psycopg://trainer:{PASSWORD}@db.internal:5432/inhouse"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("INHOUSE_")]:
        monkeypatch.delenv(key)


@pytest.fixture()
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Jobs given to a stand-in ``JobSubmissionClient`` (no Ray is imported or started)."""
    jobs: list[dict[str, Any]] = []

    class Status:
        SUCCEEDED, FAILED, STOPPED = "SUCCEEDED", "FAILED", "STOPPED"

    class Client:
        def __init__(self, address: str) -> None:
            self.address = address

        def submit_job(self, **job: Any) -> str:
            jobs.append(job)
            return "raysubmit_test"

        def get_job_status(self, _job_id: str) -> str:
            return Status.SUCCEEDED

        def get_job_logs(self, _job_id: str) -> str:
            return f'{RESULT_MARKER}{{"ok": true}}\n'

    fake = types.ModuleType("ray.job_submission")
    fake.JobStatus = Status  # type: ignore[attr-defined]
    fake.JobSubmissionClient = Client  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray.job_submission", fake)
    monkeypatch.setattr(local_cluster, "dashboard_up", lambda _settings: True)
    return jobs


def test_submitted_job_env_holds_no_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, submitted: list[dict[str, Any]]
) -> None:
    settings = load_settings(home=str(tmp_path), database_url=URL)
    assert run_job(settings, "inhouse.jobs.train", ["--epochs", "1"]) == {"ok": True}
    runtime_env = submitted[0]["runtime_env"]
    assert PASSWORD not in json.dumps(submitted[0])
    env = runtime_env["env_vars"]
    reference = Path(env["INHOUSE_DATABASE_URL_FILE"])
    assert env["INHOUSE_DATABASE_URL"] == ""  # not one inherited from the cluster's env
    assert reference.parent == tmp_path / "secrets"
    assert stat.S_IMODE(reference.stat().st_mode) == 0o600
    assert stat.S_IMODE(reference.parent.stat().st_mode) == 0o700
    assert PASSWORD not in reference.name
    # the job reads its settings through inhouse.config, from that environment
    monkeypatch.setenv("INHOUSE_DATABASE_URL", "postgresql+psycopg://node-default/other")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    job_settings = load_settings()
    assert job_settings.database_url == URL and job_settings.db_url == URL


def test_the_reference_file_is_reused(tmp_path: Path, submitted: list[dict[str, Any]]) -> None:
    settings = load_settings(home=str(tmp_path), database_url=URL)
    run_job(settings, "inhouse.jobs.train", [])
    run_job(settings, "inhouse.jobs.train", [])
    files = {job["runtime_env"]["env_vars"]["INHOUSE_DATABASE_URL_FILE"] for job in submitted}
    assert len(files) == 1 and len(list((tmp_path / "secrets").iterdir())) == 1


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////srv/inhouse/inhouse.db",
        "postgresql+psycopg://trainer@db.internal/inhouse",  # peer / .pgpass authentication
    ],
)
def test_a_url_without_a_secret_still_travels_as_itself(
    tmp_path: Path, submitted: list[dict[str, Any]], url: str
) -> None:
    run_job(load_settings(home=str(tmp_path), database_url=url), "inhouse.jobs.train", [])
    env = submitted[0]["runtime_env"]["env_vars"]
    assert env["INHOUSE_DATABASE_URL"] == url and "INHOUSE_DATABASE_URL_FILE" not in env


def test_secret_query_parameters_count_as_passwords(
    tmp_path: Path, submitted: list[dict[str, Any]]
) -> None:
    url = "postgresql+psycopg://trainer@db.internal/inhouse?password=" + PASSWORD
    run_job(load_settings(home=str(tmp_path), database_url=url), "inhouse.jobs.train", [])
    assert PASSWORD not in json.dumps(submitted[0])


def test_cluster_env_prints_no_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(tmp_path), "--database-url", URL, "cluster", "env"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out and "INHOUSE_DATABASE_URL_FILE=" in out


def test_a_loose_or_missing_reference_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loose = tmp_path / "db.url"
    loose.write_text(URL)
    loose.chmod(0o644)
    monkeypatch.setenv("INHOUSE_DATABASE_URL_FILE", str(loose))
    with pytest.raises(ConfigError, match=f"{loose} is readable by other users"):
        load_settings(home=str(tmp_path))
    monkeypatch.setenv("INHOUSE_DATABASE_URL_FILE", str(tmp_path / "gone.url"))
    with pytest.raises(ConfigError, match="gone.url does not exist"):
        load_settings(home=str(tmp_path))
