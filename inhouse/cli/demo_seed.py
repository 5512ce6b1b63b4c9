"""The seed's own example, as ``make demo`` trains it: a Keras MLP on MNIST, mapped to inhouse.

The seed (the project's starting point) was this Keras script::

    model = Sequential([Dense(64, activation="relu", input_shape=(784,)),
                        Dense(64, activation="relu"), Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train / 255, y_train, epochs=5, batch_size=32)

inhouse trains the same model by Ray Train DDP: the same layers (softmax lives in the
cross-entropy), Adam at Keras's 1e-3, Keras's Glorot-uniform start, pixels scaled to [0, 1] by
their public range, 5 epochs and the seed's batch of 32 as the global batch (16 per worker on 2
workers). Flags the user gives on ``inhouse demo`` win over these.
"""

from __future__ import annotations

from typing import Any

from inhouse.config import TrainSettings

SEED_BATCH = 32  # the seed's batch_size: the global batch across the DDP workers
SEED_EXAMPLE: dict[str, Any] = {
    "dataset": "mnist",
    "model": "mnist",
    "hidden": [64, 64],
    "activation": "relu",
    "init": "glorot",
    "optimizer": "adam",
    "lr": 1e-3,
    "lr_schedule": "constant",
    "epochs": 5,
}
KERAS_LINES = (
    "Keras: Dense(64, relu) → Dense(64, relu) → Dense(10, softmax); adam; "
    "categorical_crossentropy; epochs=5, batch_size=32",
)


def seed_example(train: TrainSettings) -> TrainSettings:
    """``train`` with the seed's example wherever the user set nothing (flag, env or file)."""
    given = train.model_fields_set
    update = {key: value for key, value in SEED_EXAMPLE.items() if key not in given}
    if "batch_size" not in given:
        update["batch_size"] = max(1, SEED_BATCH // train.num_workers)
    return train.model_copy(update=update)


def mapping_lines(train: TrainSettings) -> list[str]:
    """How the run maps to the seed's Keras code (for the demo's summary)."""
    hidden = ",".join(map(str, train.hidden))
    return [
        f" seed example   {KERAS_LINES[0]}",
        f"                = inhouse train --dataset {train.dataset} --hidden {hidden} "
        f"--activation {train.activation} --init {train.init} --optimizer {train.optimizer} "
        f"--lr {train.lr:g} --epochs {train.epochs} --batch-size {train.batch_size} "
        f"--num-workers {train.num_workers}",
        f"                (Ray Train DDP: {train.batch_size} per worker x {train.num_workers} "
        f"= global batch {train.batch_size * train.num_workers}; pixels / 255 as in the seed)",
    ]
