"""Issue #16, High 2: training checkpoints are authenticated as a whole.

(a) with a key ring, a checkpoint holding plaintext files is refused; (b) the run and epoch a
checkpoint is opened as come from the caller and bind its decryption; (iii) ``state.json`` is
sealed too; (c) the privacy ledger is settled from the driver's own step count, never from the
accountant history a checkpoint file holds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from cryptography.hazmat.primitives.asymmetric import rsa
from safetensors.torch import save

from inhouse.crypto import KeyRing
from inhouse.data import create_dataset
from inhouse.errors import ConfigError, IntegrityError
from inhouse.kinds import build_model
from inhouse.models import MLPSpec
from inhouse.privacy import Mechanism, PrivacyLedger, epsilon_of
from inhouse.schema import get_engine
from inhouse.training import load_checkpoint, save_checkpoint
from inhouse.training.dp import plan_dp
from inhouse.training.private_run import PrivateRun

SPEC = MLPSpec(input_dim=6, hidden=[8], num_classes=2).model_dump()


@pytest.fixture(scope="module")
def master_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


@pytest.fixture
def ring(tmp_path: Path, master_key: rsa.RSAPrivateKey) -> KeyRing:
    keyring = KeyRing(tmp_path / "keys")
    keyring.init(private_key=master_key)
    return keyring


def _save(directory: Path, *, keyring: KeyRing | None, run: str, epoch: int, seed: int) -> None:
    torch.manual_seed(seed)
    model = build_model(SPEC)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 6)).sum().backward()
    optimizer.step()  # so the optimizer has state tensors to save
    state = {"epoch": epoch, "train_accuracy": 0.5, "accountant": {"history": [[1.1, 0.1, 30]]}}
    save_checkpoint(
        directory, model=model, optimizer=optimizer, state=state, keyring=keyring, artifact_id=run
    )


def _open(directory: Path, *, keyring: KeyRing | None, run: str, epoch: int) -> torch.nn.Module:
    model = build_model(SPEC)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    load_checkpoint(
        directory,
        model=model,
        optimizer=optimizer,
        keyring=keyring,
        artifact_id=run,
        epoch=epoch,
    )
    return model


def _plant_plaintext(directory: Path, *, epoch: int, run: str) -> torch.Tensor:
    """The attack of finding (a): the attacker's own weights in plaintext, with their SHA-256
    in a plaintext ``state.json``, as an unencrypted checkpoint looks; returns the weight."""
    torch.manual_seed(666)
    planted = build_model(SPEC)
    data = save({k: v.contiguous() for k, v in planted.state_dict().items()})
    (directory / "model.safetensors").write_bytes(data)
    document = {
        "state": {"epoch": epoch},
        "param_groups": [],
        "scalars": {},
        "artifact_id": run,
        "epoch": epoch,
        "sha256": {"model.safetensors": hashlib.sha256(data).hexdigest()},
    }
    (directory / "state.json").write_text(json.dumps(document))
    return planted[1].weight.detach().clone()


def test_a_plaintext_checkpoint_is_refused_when_a_key_ring_is_configured(
    tmp_path: Path, ring: KeyRing
) -> None:
    # Fails on the old code: its reader used a `.enc` file only if one existed and otherwise
    # read the plaintext file, checked against the hash in the (unauthenticated) state.json,
    # so deleting the sealed weights and planting plaintext ones loaded the attacker's model.
    ckpt = tmp_path / "ckpt"
    _save(ckpt, keyring=ring, run="run-a", epoch=2, seed=0)
    for sealed in ckpt.iterdir():
        sealed.unlink()
    planted = _plant_plaintext(ckpt, epoch=2, run="run-a")
    model = build_model(SPEC)
    before = model[1].weight.detach().clone()
    with pytest.raises(IntegrityError, match="plaintext"):
        load_checkpoint(ckpt, model=model, keyring=ring, artifact_id="run-a", epoch=2)
    assert torch.equal(model[1].weight, before) and not torch.equal(before, planted)

    # A plaintext file next to the genuine sealed ones is refused as loudly.
    genuine = tmp_path / "genuine"
    _save(genuine, keyring=ring, run="run-a", epoch=2, seed=0)
    (genuine / "model.safetensors.enc").unlink()
    shutil.copy(ckpt / "model.safetensors", genuine / "model.safetensors")
    with pytest.raises(IntegrityError, match="plaintext"):
        _open(genuine, keyring=ring, run="run-a", epoch=2)


def test_the_run_and_epoch_come_from_the_caller_and_bind_every_file(
    tmp_path: Path, ring: KeyRing
) -> None:
    # Fails on the old code: it took `artifact_id` and `epoch` from the plaintext state.json,
    # so another run's (or epoch's) sealed files loaded once those two fields were edited.
    mine, older, theirs = tmp_path / "mine", tmp_path / "older", tmp_path / "theirs"
    _save(mine, keyring=ring, run="run-a", epoch=2, seed=0)
    _save(older, keyring=ring, run="run-a", epoch=1, seed=1)
    _save(theirs, keyring=ring, run="run-b", epoch=2, seed=2)
    _open(mine, keyring=ring, run="run-a", epoch=2)  # intact: loads
    for other in (older, theirs):
        swapped = tmp_path / f"swapped-{other.name}"
        shutil.copytree(other, swapped)  # a whole, consistent checkpoint of another run/epoch
        with pytest.raises(IntegrityError):
            _open(swapped, keyring=ring, run="run-a", epoch=2)
        for name in ("model.safetensors.enc", "optimizer.safetensors.enc", "state.json.enc"):
            spliced = tmp_path / f"spliced-{other.name}-{name}"
            shutil.copytree(mine, spliced)
            shutil.copy(other / name, spliced / name)  # one file of another run/epoch
            with pytest.raises(IntegrityError):
                _open(spliced, keyring=ring, run="run-a", epoch=2)
    # Without a key ring the plaintext state must name the run and epoch the caller expects.
    plain = tmp_path / "plain"
    _save(plain, keyring=None, run="run-b", epoch=1, seed=3)
    _open(plain, keyring=None, run="run-b", epoch=1)
    for run, epoch in (("run-a", 1), ("run-b", 2)):
        with pytest.raises(IntegrityError, match="not"):
            _open(plain, keyring=None, run=run, epoch=epoch)


def test_the_checkpoint_state_is_sealed_and_authenticated(tmp_path: Path, ring: KeyRing) -> None:
    # Fails on the old code: state.json (metrics, optimizer groups, the DP accountant) was
    # written in plaintext next to the sealed tensors, unauthenticated.
    ckpt = tmp_path / "ckpt"
    _save(ckpt, keyring=ring, run="run-a", epoch=2, seed=0)
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "model.safetensors.enc",
        "optimizer.safetensors.enc",
        "state.json.enc",
    ]
    assert b"accountant" not in (ckpt / "state.json.enc").read_bytes()
    sealed = ckpt / "state.json.enc"
    original = sealed.read_bytes()
    flipped = bytearray(original)
    flipped[-5] ^= 0x01
    sealed.write_bytes(bytes(flipped))
    with pytest.raises(IntegrityError):
        _open(ckpt, keyring=ring, run="run-a", epoch=2)
    sealed.write_bytes(original)
    model = build_model(SPEC)
    state = load_checkpoint(ckpt, model=model, keyring=ring, artifact_id="run-a", epoch=2)
    assert state["accountant"] == {"history": [[1.1, 0.1, 30]]}
    with pytest.raises(ConfigError, match="encrypted"):
        _open(ckpt, keyring=None, run="run-a", epoch=2)


def test_the_ledger_is_settled_from_the_drivers_count_not_the_checkpoint(tmp_path: Path) -> None:
    # Fails on the old code: `PrivateRun.settle(engine, history, version)` charged the sum of
    # the steps in the accountant history read back from the final checkpoint's state.json, so
    # a history edited to one step under-charged the data set's privacy budget (and the
    # version's lineage claimed that epsilon). Now the driver charges its plan (every planned
    # epoch ran, exactly `steps_per_epoch` Poisson steps each), or more if the workers reported
    # more through Ray; no checkpoint file is consulted.
    engine = get_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_dataset(engine, name="cancer", feature_names=["a", "b"], class_names=["no", "yes"])
    plan = plan_dp(
        train_rows=400,
        batch_size=40,
        epochs=3,
        max_grad_norm=1.0,
        delta=1e-5,
        accountant="rdp",
        noise_multiplier=1.1,
    )
    assert plan.steps == 30
    ledger = PrivacyLedger(engine)

    def reserved(run: str) -> PrivateRun:
        charge = ledger.reserve(
            dataset="cancer",
            first_id=1,
            up_to_id=400,
            mechanism=Mechanism(plan.noise_multiplier, plan.sample_rate, plan.steps),
            accountant="rdp",
            clipping=1.0,
            model="cancer",
            run=run,
            delta=1e-5,
        )
        return PrivateRun(plan=plan, charge_id=charge.id)

    tampered_history_steps = 1  # what an edited checkpoint's accountant would claim
    run = reserved("run-1")
    lineage = run.lineage(reported_steps=tampered_history_steps)
    run.settle(engine, reported_steps=tampered_history_steps, version=1)
    assert run.charge_id is not None
    charge = ledger.charge(run.charge_id)
    full = epsilon_of([Mechanism(1.1, plan.sample_rate, 30)], delta=1e-5, accountant="rdp")
    assert (charge.steps, lineage["steps"]) == (30, 30)
    assert charge.epsilon == pytest.approx(full) and lineage["epsilon"] == pytest.approx(full)

    # Workers that ran more than planned (reported through Ray) are charged all of it.
    more = reserved("run-2")
    more.settle(engine, reported_steps=45, version=2)
    assert more.charge_id is not None and ledger.charge(more.charge_id).steps == 45
