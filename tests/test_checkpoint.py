"""Checkpoint files: atomic writes, safe reading of Dassl-written files, INIT_WEIGHTS semantics."""
import os
import pickle
import sys
import types

import pytest
import torch

import engine.checkpoint as ckpt
from engine.utils.tools import UserError

EXECUTED = []


def _side_effect(*args):
    EXECUTED.append(args)
    return None


class _Evil:
    def __reduce__(self):
        return (_side_effect, ("pwned",))


def _dassl_like_checkpoint(path):
    """A file shaped like Dassl's: state dict + pickled scheduler objects from a module we do not have."""
    fake = types.ModuleType("dassl_fake_sched")

    class ConstantWarmupScheduler:
        pass

    ConstantWarmupScheduler.__module__ = "dassl_fake_sched"
    ConstantWarmupScheduler.__qualname__ = "ConstantWarmupScheduler"
    fake.ConstantWarmupScheduler = ConstantWarmupScheduler
    sys.modules["dassl_fake_sched"] = fake
    try:
        successor = ConstantWarmupScheduler()
        successor.__dict__.update({"last_epoch": 3, "base_lrs": [0.002], "_last_lr": [0.0018]})
        state = {"state_dict": {"ctx": torch.arange(6.0).reshape(2, 3), "token_prefix": torch.zeros(2, 1, 3)},
                 "epoch": 4, "optimizer": {"state": {}, "param_groups": [{"lr": 0.0018, "params": [0]}]},
                 "scheduler": {"last_epoch": 1, "warmup_epoch": 1, "successor": successor}, "val_result": None,
                 "evil": _Evil()}
        torch.save(state, path)
    finally:
        del sys.modules["dassl_fake_sched"]


def test_dassl_checkpoint_loads_without_its_classes_and_runs_no_code(tmp_path):
    path = str(tmp_path / "model.pth.tar-4")
    _dassl_like_checkpoint(path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # what current torch does by default
    EXECUTED.clear()
    loaded = ckpt.load_checkpoint(path)
    assert EXECUTED == []  # the pickled call was not executed
    assert torch.equal(loaded["state_dict"]["ctx"], torch.arange(6.0).reshape(2, 3))
    assert loaded["epoch"] == 4
    successor = loaded["scheduler"]["successor"]
    assert isinstance(successor, ckpt.OpaqueObject)
    assert successor.state_dict()["last_epoch"] == 3


def test_interrupted_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    folder = str(tmp_path / "prompt_learner")
    ckpt.save_checkpoint({"state_dict": {"ctx": torch.ones(2)}, "epoch": 1}, folder)
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint({"state_dict": {"ctx": torch.zeros(2)}, "epoch": 2}, folder)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(os.listdir(folder)) == ["checkpoint", "model.pth.tar-1"]  # no temp file, no half file
    assert open(os.path.join(folder, "checkpoint")).read() == "model.pth.tar-1\n"
    assert torch.equal(ckpt.load_checkpoint(os.path.join(folder, "model.pth.tar-1"))["state_dict"]["ctx"],
                       torch.ones(2))


def test_corrupt_or_missing_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="unable to load checkpoint"):
        ckpt.load_checkpoint(str(bad))
    with pytest.raises(UserError, match="not found"):
        ckpt.load_checkpoint(str(tmp_path / "nope"))


def test_load_pretrained_weights_keeps_matching_names_and_shapes(tmp_path, capsys):
    module = torch.nn.Module()
    module.ctx = torch.nn.Parameter(torch.zeros(2, 3))
    module.register_buffer("token_prefix", torch.zeros(5, 1, 3))
    path = str(tmp_path / "init.pth")
    _dassl_like_checkpoint(path)  # its token_prefix has another class count
    loaded = ckpt.load_pretrained_weights(module, path)
    assert loaded == ["ctx"] and torch.equal(module.ctx.data, torch.arange(6.0).reshape(2, 3))
    assert "token_prefix" in capsys.readouterr().out


def test_rng_state_round_trip():
    import random

    state = ckpt.get_rng_state()
    a = (random.random(), torch.rand(1).item())
    ckpt.set_rng_state(pickle.loads(pickle.dumps(state)))
    assert (random.random(), torch.rand(1).item()) == a
