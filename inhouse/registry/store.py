"""The model registry: versioned safetensors weights plus lineage, written atomically.

Layout on disk: ``<root>/<model>/v<version>/{weights.safetensors,lineage.json}``. The
directory is built under a temporary name and renamed into place, then the SQL row is
committed; a version exists only once both happened, so no reader sees half a version.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from inhouse.atomic import atomic_directory
from inhouse.db import session_scope
from inhouse.errors import ConflictError, InvalidInputError, ModelNotFoundError, StorageError
from inhouse.models import build_model
from inhouse.registry.records import AliasRecord, ModelVersionRecord

MODEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
ALIAS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
WEIGHTS_FILE = "weights.safetensors"
LINEAGE_FILE = "lineage.json"


def validate_model_name(name: str) -> str:
    """Model names become directories and URL segments: refuse anything odd."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid model name {name!r}: use 1-64 of a-z, 0-9, _, - starting with a letter"
        )
    return name


@dataclass(frozen=True)
class ModelVersion:
    """A registered version as callers see it."""

    model: str
    version: int
    created_at: datetime
    path: Path
    sha256: str
    size_bytes: int
    spec: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]

    @classmethod
    def _from(cls, record: ModelVersionRecord, root: Path) -> ModelVersion:
        return cls(
            model=record.model,
            version=record.version,
            created_at=record.created_at,
            path=root / record.path,
            sha256=record.sha256,
            size_bytes=record.size_bytes,
            spec=dict(record.spec),
            metrics=dict(record.metrics),
            lineage=dict(record.lineage),
        )


class Registry:
    """Register, find and load model versions."""

    def __init__(self, *, engine: Engine, root: Path) -> None:
        self.engine = engine
        self.root = Path(root)

    def register(
        self,
        model: str,
        *,
        state_dict: dict[str, torch.Tensor],
        spec: dict[str, Any],
        metrics: dict[str, Any],
        lineage: dict[str, Any],
    ) -> ModelVersion:
        """Store a new immutable version; returns it with its number (1, 2, ...)."""
        validate_model_name(model)
        build_model(spec).load_state_dict(state_dict)  # refuse weights that do not fit the spec
        weights = save_safetensors(
            {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        )
        digest = hashlib.sha256(weights).hexdigest()
        for _attempt in range(5):
            version = self._next_version(model)
            relative = f"{model}/v{version}"
            target = self.root / relative
            if target.exists():
                shutil.rmtree(target)  # an orphan of a crash before the row was committed
            document = {
                "model": model,
                "version": version,
                "spec": spec,
                "metrics": metrics,
                "lineage": lineage,
                "sha256": digest,
            }
            try:
                with atomic_directory(target) as tmp:
                    (tmp / WEIGHTS_FILE).write_bytes(weights)
                    (tmp / LINEAGE_FILE).write_text(json.dumps(document, indent=2, default=str))
            except OSError as exc:
                if target.exists():
                    continue  # a concurrent writer took this number
                raise StorageError(f"cannot write version {model} v{version}: {exc}") from exc
            try:
                with session_scope(self.engine) as session:
                    session.add(
                        ModelVersionRecord(
                            model=model,
                            version=version,
                            path=relative,
                            sha256=digest,
                            size_bytes=len(weights),
                            spec=spec,
                            metrics=metrics,
                            lineage=lineage,
                        )
                    )
            except SQLIntegrityError:
                continue
            return self.get(model, str(version))
        raise ConflictError(f"could not allocate a version number for {model!r}; retry")

    def _next_version(self, model: str) -> int:
        with session_scope(self.engine) as session:
            current = session.scalar(
                select(func.max(ModelVersionRecord.version)).where(
                    ModelVersionRecord.model == model
                )
            )
        return int(current or 0) + 1

    def resolve(self, model: str, ref: str = "champion") -> int:
        """Turn ``ref`` (a version number, ``latest`` or an alias) into a version number."""
        validate_model_name(model)
        with session_scope(self.engine) as session:
            if ref.isdigit():
                record = session.get(ModelVersionRecord, (model, int(ref)))
                if record is not None:
                    return record.version
            elif ref == "latest":
                latest = session.scalar(
                    select(func.max(ModelVersionRecord.version)).where(
                        ModelVersionRecord.model == model
                    )
                )
                if latest is not None:
                    return int(latest)
            else:
                alias = session.get(AliasRecord, (model, ref))
                if alias is not None:
                    return alias.version
        raise ModelNotFoundError(
            f"model {model!r} has no version {ref!r}; see `inhouse models list`"
        )

    def get(self, model: str, ref: str = "champion") -> ModelVersion:
        """The version ``ref`` of ``model``; raises ModelNotFoundError."""
        version = self.resolve(model, ref)
        with session_scope(self.engine) as session:
            record = session.get(ModelVersionRecord, (model, version))
            if record is None:
                raise ModelNotFoundError(f"model {model!r} version {version} vanished")
            return ModelVersion._from(record, self.root)

    def versions(self, model: str) -> list[ModelVersion]:
        validate_model_name(model)
        with session_scope(self.engine) as session:
            records = session.scalars(
                select(ModelVersionRecord)
                .where(ModelVersionRecord.model == model)
                .order_by(ModelVersionRecord.version)
            ).all()
            return [ModelVersion._from(r, self.root) for r in records]

    def models(self) -> list[str]:
        with session_scope(self.engine) as session:
            return list(
                session.scalars(select(ModelVersionRecord.model).distinct().order_by("model"))
            )

    def aliases(self, model: str) -> dict[str, int]:
        with session_scope(self.engine) as session:
            rows = session.scalars(select(AliasRecord).where(AliasRecord.model == model)).all()
            return {row.alias: row.version for row in rows}

    def set_alias(self, model: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (the version must exist)."""
        if not ALIAS_NAME.fullmatch(alias) or alias == "latest":
            raise InvalidInputError(f"invalid alias {alias!r}")
        self.resolve(model, str(version))
        with session_scope(self.engine) as session:
            record = session.get(AliasRecord, (model, alias))
            if record is None:
                session.add(AliasRecord(model=model, alias=alias, version=version))
            else:
                record.version = version

    def load_state_dict(self, info: ModelVersion) -> dict[str, torch.Tensor]:
        """Read and verify the weights of a version (safetensors: no code execution)."""
        data = (info.path / WEIGHTS_FILE).read_bytes()
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise StorageError(f"weights of {info.model} v{info.version} do not match their hash")
        return load_safetensors(data)

    def load_module(self, info: ModelVersion) -> torch.nn.Module:
        """The ready-to-run module of a version, in eval mode."""
        module = build_model(info.spec)
        module.load_state_dict(self.load_state_dict(info))
        return module.eval()
