"""The signature of a run (what makes two runs the same run) and the check train.py does before it resumes
or writes into a folder (README "Run folders"; the lock and the record file are meta/run_folder.py's).

The signature: trainer, mode (train / eval), seed, dataset, the resolved config without locations and
logging keys (compared key by key), the code version, for an evaluation the model it loads, and the
fingerprint of the dataset's split (checked once the data is built)."""
import hashlib
import json
import os
import shutil

from meta.errors import UserError
from meta.run_folder import (WAYS_OUT, code_version, has_run_state, mismatch_message, read_record,
                             signature_differences, write_record)
from meta.runs import DONE

from .config import all_keys

# where a run reads or writes, and what it prints: not what it computes
NOT_IN_SIGNATURE = ("OUTPUT_DIR", "RESUME", "DATASET.ROOT", "TRAIN.PRINT_FREQ", "VERBOSE",
                    "SEED", "TRAINER.NAME", "DATASET.NAME")  # the last three are keys of their own
EARLY_KEYS = ("trainer", "mode", "seed", "dataset", "config", "code", "model")
CHECKPOINT_FILES = ("checkpoint", "model-best.pth.tar")


def _jsonable(value):
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _get(cfg, key):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def run_signature(cfg, eval_only=False, model_dir="", load_epoch=None):
    """Everything but the data fingerprint (known before any data is read)."""
    sig = {"trainer": cfg.TRAINER.NAME, "mode": "eval" if eval_only else "train", "seed": cfg.SEED,
           "dataset": cfg.DATASET.NAME, "code": code_version(),
           "config": {k: _jsonable(_get(cfg, k)) for k in all_keys(cfg) if k not in NOT_IN_SIGNATURE}}
    if eval_only:
        model = read_record(model_dir) if model_dir else None
        # the model by its own run's signature when it has one (the folder may move), else by path
        sig["model"] = {"run": model["hash"] if model else (os.path.abspath(model_dir) if model_dir else None),
                        "epoch": load_epoch}
    return sig


def data_fingerprint(dataset, root):
    """Hash of the split the run uses: every train/val/test item (path below the data root, label, class)."""
    h = hashlib.sha256()
    for split in ("train_x", "val", "test"):
        h.update(f"[{split}]".encode())
        for item in getattr(dataset, split, None) or ():
            path = os.path.relpath(item.impath, root) if root else item.impath
            h.update(f"{path}\t{item.label}\t{item.domain}\t{item.classname}\n".encode())
    return h.hexdigest()[:16]


def signature_hash(sig):
    return hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:16]


class FolderCheck:
    """Compare a folder's run record with this run's signature, in two phases (before the data is read, then
    with the data fingerprint); decide what to do (``action``) or refuse in one line."""

    def __init__(self, folder, overwrite=False, resume_anyway=False):
        self.folder = folder
        self.overwrite = overwrite
        self.resume_anyway = resume_anyway
        self.record = read_record(folder)
        self.action = "new" if self.record is None else "same"
        self.diffs = []

    def check(self, sig, keys):
        if self.record is None or self.action != "same":
            return self.action
        diffs = signature_differences(self.record["signature"], sig, keys)
        if not diffs:
            return self.action
        self.diffs = diffs
        if self.overwrite:
            self.action = "overwrite"
        elif self.resume_anyway:
            self.action = "anyway"
        elif not has_run_state(self.folder):
            self.action = "replace"  # a previous attempt left nothing to protect (e.g. failed in its first epoch)
        else:
            raise UserError(mismatch_message(self.folder, diffs))
        return self.action

    def record_run(self, sig, model_names):
        """After both phases: act (delete the previous run for --overwrite), print what was decided and write
        the record; returns the signature hashes whose checkpoints may be resumed from."""
        digest = signature_hash(sig)
        accepted = []
        note = None
        if self.overwrite:
            removed = clear_previous_run(self.folder, model_names)
            print(f"--overwrite: removed the previous run's {', '.join(removed) if removed else 'nothing'} "
                  f"from {self.folder}")
        elif self.action == "anyway":
            accepted = [self.record["hash"]] + list(self.record.get("accepted", []))
            note = "resumed with other settings: " + "; ".join(self.diffs)
            print(f"Warning: --resume-anyway: continuing the run in {self.folder} with other settings "
                  f"({'; '.join(self.diffs[:6])}); the checkpoint's optimizer and LR schedule are kept")
        elif self.action == "replace":
            print(f"Note: {self.folder} was made by a run with other settings that left no checkpoint or result; "
                  "recording this run instead")
        elif self.action == "new" and has_run_state(self.folder, model_names):
            print(f"Note: {self.folder} has no run record (made by an older version or by Dassl); its settings "
                  "cannot be checked")
        if self.action != "same" or self.overwrite:
            write_record(self.folder, sig, digest, note, accepted)
        elif self.record.get("hash") != digest:  # same keys, stale hash (cannot happen unless edited)
            write_record(self.folder, sig, digest, None, self.record.get("accepted", []))
        else:
            accepted = list(self.record.get("accepted", []))
        return [digest] + accepted


def check_resume_source(directory, sig, resume_anyway):
    """``--resume DIR`` elsewhere than the output folder: its run must have this run's settings."""
    rec = read_record(directory)
    if rec is None or resume_anyway:
        return
    diffs = signature_differences(rec["signature"], sig, [k for k in EARLY_KEYS if k != "mode"])
    if diffs:
        raise UserError(mismatch_message(directory, diffs).replace(WAYS_OUT, "pass --resume-anyway to continue "
                                                                             "from it with the new settings"))


def clear_previous_run(folder, model_names):
    """What --overwrite deletes: checkpoints of the registered models, logits, tensorboard, the done marker and
    the run record (logs stay: an existing log is never overwritten)."""
    removed = []
    for name in model_names:
        sub = os.path.join(folder, name)
        for f in sorted(os.listdir(sub)) if os.path.isdir(sub) else ():
            if f.startswith("model.pth.tar-") or f in CHECKPOINT_FILES:
                os.remove(os.path.join(sub, f))
                removed.append(f"{name}/{f}")
    for f in sorted(os.listdir(folder)):
        path = os.path.join(folder, f)
        if f == DONE or (f.startswith("logits_") and f.endswith(".pt")):
            os.remove(path)
            removed.append(f)
        elif f == "tensorboard" and os.path.isdir(path):
            shutil.rmtree(path)
            removed.append(f + "/")
    return removed
