"""Run folders and their Dassl-style logs, ours or the official repositories': one Record per folder.

A run's trainer, config, dataset, seed, shots and class subset come from the log's argument and config
blocks (falling back on the folder names of the CoOp-family layouts); its accuracy is the last
``* accuracy: X%`` after ``Finish training`` (``Finished training`` in Dassl <= 0.6.0), or after the last
result block of an evaluation-only log; one or two decimals both read. A folder made by tools/sweep.py
counts only once its done.json marker exists. A dataset the tables do not know (one a user registered) is
reported under the name its run record gives (the sweep's sweep.json, else the dataset yaml or DATASET.NAME
of the log)."""
import os
import re
from dataclasses import dataclass, field

from meta.methods import known_trainers, label_for
from meta.protocols import DISPLAY, NAME_TO_KEY
from meta.runs import DONE, RECORD, RESULT_HEADER, RESULT_RE, is_log_name, read_json

TRAINING_END = ("Finish training", "Finished training")


def _parse_config_block(lines):
    """yacs' dump (two-space indented ``KEY: value``) -> {"A.B.C": "value"}."""
    cfg, stack = {}, []
    for line in lines:
        m = re.match(r"^( *)([A-Za-z0-9_]+):(?: (.*))?$", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        if m.group(3) is not None and m.group(3) != "":
            cfg[".".join(stack)] = m.group(3).strip()
        elif m.group(3) == "":
            cfg[".".join(stack)] = ""
    return cfg


def read_log(path):
    """{"args", "cfg", "config_text", "acc"} of one Dassl-style log (acc None if no result)."""
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    args, cfg_lines, section = {}, [], None
    for line in lines:
        s = line.strip()
        if s == "** Arguments **":
            section = "args"
            continue
        if s == "** Config **":
            section = "cfg"
            continue
        if section and (s.startswith("Collecting env info") or s == "** System info **"
                        or s.startswith("Loading trainer")):
            break
        if section == "args" and not s.startswith("****"):
            m = re.match(r"^([a-z_]+): ?(.*)$", line)
            if m:
                args[m.group(1)] = m.group(2)
        elif section == "cfg" and not s.startswith("****"):
            cfg_lines.append(line)
    end = None
    for i, line in enumerate(lines):
        if line.strip() in TRAINING_END:
            end = i
    if end is None:
        for i, line in enumerate(lines):
            if line.strip() == RESULT_HEADER:
                end = i
    acc = None
    if end is not None:
        for line in lines[end:]:
            m = RESULT_RE.search(line.strip())
            if m:
                acc = float(m.group(1))
    while cfg_lines and not cfg_lines[-1].strip():
        cfg_lines.pop()
    return {"args": args, "cfg": _parse_config_block(cfg_lines), "acc": acc,
            "config_text": "\n".join(cfg_lines) + "\n" if cfg_lines else ""}


@dataclass
class Record:
    path: str
    log: str
    trainer: str
    cfg: str
    dataset: str
    seed: int
    shots: int
    subsample: str
    eval_only: bool
    acc: float
    parts: list = field(default_factory=list)

    @property
    def label(self):
        return label_for(self.trainer, self.cfg)


def _stem(path):
    base = os.path.basename(path or "")
    return base[:-5] if base.endswith(".yaml") else base


def parse_int(text):
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def record_from_log(folder, log, parts, recorded_dataset=None):
    """``recorded_dataset``: the dataset the sweep's run record names (its yaml key)."""
    try:
        info = read_log(os.path.join(folder, log))
    except OSError:
        return None
    if info["acc"] is None:
        return None
    a, c = info["args"], info["cfg"]
    trainer = a.get("trainer") or c.get("TRAINER.NAME") or ""
    cfg = _stem(a.get("config_file", ""))
    dataset = _stem(a.get("dataset_config_file", ""))
    if dataset not in DISPLAY:
        dataset = NAME_TO_KEY.get(c.get("DATASET.NAME", ""), "")
    if not dataset:
        dataset = next((p for p in reversed(parts) if p in DISPLAY), "")
    if not dataset:  # a dataset the tables do not know (the user's own): its name from the run record
        dataset = (recorded_dataset or _stem(a.get("dataset_config_file", ""))
                   or c.get("DATASET.NAME", "").strip("'\""))
    seed = parse_int(a.get("seed"))
    if seed is None or seed < 0:
        seed = parse_int(c.get("SEED"))
    path_seed = next((int(m.group(1)) for p in reversed(parts) for m in [re.fullmatch(r"seed_?(\d+)", p)] if m),
                     None)
    if seed is None or seed < 0:
        seed = path_seed if path_seed is not None else 0
    shots = parse_int(c.get("DATASET.NUM_SHOTS"))
    if shots is None:
        for p in reversed(parts):
            m = re.match(r"^shots_(\d+)", p) or re.search(r"_(\d+)shots$", p)
            if m:
                shots = int(m.group(1))
                break
    subsample = c.get("DATASET.SUBSAMPLE_CLASSES")
    if subsample is None:  # no config block: the layout says
        subsample = ("base" if any(p in ("train_base", "test_base") for p in parts) else
                     "new" if "test_new" in parts else "all")
    eval_only = a.get("eval_only", "False") == "True" if "eval_only" in a else any(
        p.startswith("test_") or p == "evaluation" for p in parts)
    if not trainer:
        known = known_trainers()
        trainer = next((p for p in parts if p in known), "")
    if not cfg and trainer in parts:
        i = parts.index(trainer)
        cfg = parts[i + 1] if i + 1 < len(parts) and not parts[i + 1].startswith("seed") else ""
    return Record(folder, log, trainer, cfg, dataset, seed, shots if shots is not None else -1, subsample,
                  eval_only, info["acc"], parts)


def find_records(root):
    """One Record per run folder under root (skipping folders of unfinished sweep runs)."""
    root = os.path.abspath(root)
    anchor = os.path.dirname(root)
    records, skipped = [], []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        logs = sorted(f for f in files if is_log_name(f))
        if not logs:
            continue
        parts = os.path.relpath(folder, anchor).split(os.sep)
        sweep_record = {}
        if RECORD in files:  # a sweep's run: only the log its done.json names counts
            sweep_record = read_json(os.path.join(folder, RECORD)) or {}
            done = read_json(os.path.join(folder, DONE))
            if not isinstance(done, dict) or "log" not in done:
                skipped.append(folder)
                continue
            logs = [done["log"]]
        rec = None
        for log in reversed(logs):  # the latest log with a result ("log.txt" sorts first)
            rec = record_from_log(folder, log, parts, sweep_record.get("dataset"))
            if rec is not None:
                break
        if rec is None:
            skipped.append(folder)
        else:
            records.append(rec)
    return records, skipped
