"""Seed the real data sets that need no internet: scikit-learn's (digits, breast_cancer) and the
image sets of :mod:`inhouse.data.image_sets` (mnist, fashion_mnist)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from inhouse.data.image_sets import IMAGE_SETS, ImageSet
from inhouse.data.packed import insert_packed
from inhouse.data.seal import reserve_seqs
from inhouse.data.store import DatasetInfo, create_dataset, create_in, describe, validate_rows
from inhouse.data.table import DatasetRecord, rows_table
from inhouse.db import session_scope
from inhouse.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

TEST_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass(frozen=True)
class _Source:
    features: np.ndarray
    labels: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    description: str


# numpy and scikit-learn are imported by the functions that need them: opening a database
# imports this package (its tables), and that must stay fast.


def _digits() -> _Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    names = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    classes = [str(d) for d in range(10)]
    return _Source(bunch.data, bunch.target, names, classes, "8x8 handwritten digits, 0-16")


def _breast_cancer() -> _Source:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = [str(n).replace(" ", "_") for n in bunch.feature_names]
    classes = [str(c) for c in bunch.target_names]
    return _Source(bunch.data, bunch.target, names, classes, "Wisconsin diagnostic breast cancer")


BUILTIN = {"digits": _digits, "breast_cancer": _breast_cancer}
NAMES = (*BUILTIN, *IMAGE_SETS)
"""Every data set ``seed`` creates."""


def seed(engine: Engine, name: str) -> tuple[DatasetInfo, bool]:
    """Create and fill a built-in data set unless it exists; returns (info, created).

    The test split is fixed (scikit-learn's: stratified, 20%, seed 0; the image sets': their
    official one) so every run evaluates on the same rows.
    """
    if name not in NAMES:
        raise InvalidInputError(f"unknown built-in data set {name!r}; choose from {list(NAMES)}")
    with session_scope(engine) as session:
        exists = session.get(DatasetRecord, name) is not None
    if exists:
        return describe(engine, name), False
    if name in IMAGE_SETS:
        seed_images(engine, name, IMAGE_SETS[name]())
        return describe(engine, name), True
    import numpy as np
    from sklearn.model_selection import train_test_split

    source = BUILTIN[name]()
    train_idx, test_idx = train_test_split(
        np.arange(len(source.labels)),
        test_size=TEST_FRACTION,
        random_state=SPLIT_SEED,
        stratify=source.labels,
    )
    splits = [
        validate_rows(
            features=source.features[idx].tolist(),
            labels=source.labels[idx].tolist(),
            n_features=len(source.feature_names),
            n_classes=len(source.class_names),
            split=split,
        )
        for split, idx in (("train", np.sort(train_idx)), ("test", np.sort(test_idx)))
    ]
    create_dataset(
        engine,
        name=name,
        feature_names=source.feature_names,
        class_names=source.class_names,
        description=source.description,
        initial_rows=splits,
    )
    return describe(engine, name), True


def image_layout(images: ImageSet) -> dict[str, Any]:
    """The catalog layout of an image set: raw uint8 pixels (values 0..255), its image shape."""
    return {
        "dtype": "uint8",
        "scale": 1.0,
        "image": {"height": images.height, "width": images.width},
        "source": images.source,
    }


def seed_images(engine: Engine, name: str, images: ImageSet) -> None:
    """Create data set ``name`` from an image set in one transaction: its train rows, then its
    test rows, each row the image's bytes (uint8, packed as they are: no float copy)."""
    height, width = images.height, images.width
    n_train, n_test = len(images.train_labels), len(images.test_labels)
    blobs = [row.tobytes() for part in (images.train_images, images.test_images) for row in part]
    labels = [*images.train_labels.tolist(), *images.test_labels.tolist()]
    with engine.begin() as conn:
        create_in(
            conn,
            name=name,
            feature_names=[f"pixel_{r}_{c}" for r in range(height) for c in range(width)],
            class_names=images.class_names,
            description=images.description,
            layout=image_layout(images),
        )
        table = rows_table(name)
        insert_packed(
            conn,
            table,
            blobs=blobs,
            labels=labels,
            splits=["train"] * n_train + ["test"] * n_test,
            first_seq=reserve_seqs(conn, table.name),
        )
