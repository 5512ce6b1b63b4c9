"""The wheel installs one top-level package, ``inhouse``: serve/, jobs/, actors/ and benchmarks/
go in as ``inhouse.serve`` etc. (issue #17 §4), and every source package is in it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTER = ("serve", "jobs", "actors", "benchmarks")


def _source_packages() -> set[str]:
    """Every folder with an ``__init__.py``, by the name the wheel must install it under."""
    names = set()
    for top in ("inhouse", *OUTER):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            names.add(".".join(parts if top == "inhouse" else ("inhouse", *parts)))
    return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # Built from a copy, so the checkout gets no build/ or egg-info of its own.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "results", "*.pyc")
    for top in ("inhouse", *OUTER):
        shutil.copytree(ROOT / top, src / top, ignore=skip)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("inhouse-*.whl")
    return zipfile.ZipFile(built)


@pytest.mark.slow
def test_the_only_top_level_package_is_inhouse(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"inhouse"}


@pytest.mark.slow
def test_every_source_package_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    packed = {
        name.removesuffix("/__init__.py").replace("/", ".")
        for name in wheel.namelist()
        if name.endswith("/__init__.py")
    }
    missing = _source_packages() - packed
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert "inhouse/serve/app.py" in wheel.namelist()
    assert "inhouse/jobs/train.py" in wheel.namelist()
