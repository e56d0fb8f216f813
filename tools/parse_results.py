#!/usr/bin/env python
"""Paper-style tables from an output tree: ours (tools/sweep.py) or the official repositories'.

    python tools/parse_results.py OUTPUT_ROOT [--format terminal|markdown|csv|latex] [--compare-published]
                                  [--protocol base2new ...] [--method CoOp ...] [--dataset dtd ...] [--no-std]

Every folder holding a ``log.txt`` (or ``log.txt-<time>``, which Dassl writes when log.txt exists) is one
run. Its trainer, config, dataset, seed, shots and class subset come from the log's argument and config
blocks (falling back on the folder names of the CoOp-family layouts); its accuracy is the last
``* accuracy: X%`` after ``Finish training`` (``Finished training`` in Dassl <= 0.6.0), or after the last
``=> result`` of an evaluation-only log; one or two decimals both read. A folder made by tools/sweep.py
counts only once its ``done.json`` marker exists.

Protocols are recognised as follows: class subset base/new -> base-to-new; all classes under a folder
named few_shot/fewshot -> few-shot; an evaluation-only run on all classes -> a cross-dataset or
domain-generalisation target (ImageNet: the source column); a training run on all classes under a
cross-dataset folder (cross_dataset, domain_gen, xd, evaluation, or SEP's base2new) -> the source;
any other training run on all classes -> few-shot. Zero-shot CLIP evaluated under a few-shot folder
is the 0-shot point.

Tables: per dataset the mean +- population std over seeds (as the field's parse_test_res.py);
base-to-new HM = 2BN/(B+N) from the seed-averaged Base and New, the Average row = the mean of the
per-dataset Base and New and the HM of those two means; cross-dataset and domain-generalisation
averages over the targets (ImageNet, the source, excluded); few-shot averages over datasets per shot
count. ``--compare-published`` adds the numbers of data/published_results.csv and ours minus theirs.
"""
import argparse
import csv
import io
import math
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHED = os.path.join(REPO, "data", "published_results.csv")

B2N_DATASETS = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
XD_TARGETS = B2N_DATASETS[1:]
DG_TARGETS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
SOURCE = "imagenet"
DATASET_ORDER = B2N_DATASETS + DG_TARGETS
DISPLAY = {"imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
           "stanford_cars": "StanfordCars", "oxford_flowers": "Flowers102", "food101": "Food101",
           "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT",
           "ucf101": "UCF101", "imagenetv2": "ImageNet-V2", "imagenet_sketch": "ImageNet-Sketch",
           "imagenet_a": "ImageNet-A", "imagenet_r": "ImageNet-R", "average": "Average"}
NAME_TO_KEY = {"ImageNet": "imagenet", "Caltech101": "caltech101", "OxfordPets": "oxford_pets",
               "StanfordCars": "stanford_cars", "OxfordFlowers": "oxford_flowers", "Food101": "food101",
               "FGVCAircraft": "fgvc_aircraft", "SUN397": "sun397", "DescribableTextures": "dtd",
               "EuroSAT": "eurosat", "UCF101": "ucf101", "ImageNetV2": "imagenetv2",
               "ImageNetSketch": "imagenet_sketch", "ImageNetA": "imagenet_a", "ImageNetR": "imagenet_r"}
METHOD_ORDER = ["CLIP", "CLIP-ens", "CoOp", "CoCoOp", "KgCoOp", "MaPLe", "IVLP", "IVLP-lang", "VPT", "SEP",
                "SEP-paper", "ALIGN", "ALIGN-paper"]
PROTOCOLS = ["base2new", "few_shot", "cross_dataset", "domain_gen"]
TITLES = {"base2new": "Base-to-new generalisation", "few_shot": "Few-shot classification",
          "cross_dataset": "Cross-dataset transfer", "domain_gen": "Domain generalisation"}

RESULT_RE = re.compile(r"\* accuracy: ([\.\deE+-]+)%")
LOG_RE = re.compile(r"^log\.txt(-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})?$")
FEW_DIRS = {"few_shot", "fewshot", "few-shot"}
XD_DIRS = {"cross_dataset", "cross-dataset", "domain_gen", "xd", "evaluation", "base2new"}


def is_log_name(name):
    return bool(LOG_RE.match(name))


# ----------------------------------------------------------------------------------------------------
# Logs
# ----------------------------------------------------------------------------------------------------

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
    for i, line in enumerate(lines):
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
        if line.strip() in ("Finish training", "Finished training"):
            end = i
    if end is None:
        for i, line in enumerate(lines):
            if line.strip() == "=> result":
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


def method_label(trainer, cfg=""):
    """The table name of a (trainer, config): the papers' method names."""
    label = {"ZeroshotCLIP": "CLIP", "ZeroshotCLIP2": "CLIP-ens", "MMP": "ALIGN"}.get(trainer, trainer)
    if trainer == "IVLP" and "language_only" in (cfg or ""):
        label = "IVLP-lang"
    if (cfg or "").endswith("_paper"):
        label += "-paper"
    return label


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
        return method_label(self.trainer, self.cfg)


def _stem(path):
    base = os.path.basename(path or "")
    return base[:-5] if base.endswith(".yaml") else base


def _int(text):
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def record_from_log(folder, log, parts):
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
    seed = _int(a.get("seed"))
    if seed is None or seed < 0:
        seed = _int(c.get("SEED"))
    path_seed = next((int(m.group(1)) for p in reversed(parts) for m in [re.fullmatch(r"seed_?(\d+)", p)] if m),
                     None)
    if seed is None or seed < 0:
        seed = path_seed if path_seed is not None else 0
    shots = _int(c.get("DATASET.NUM_SHOTS"))
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
        trainer = next((p for p in parts if p in KNOWN_TRAINERS), "")
    if not cfg and trainer in parts:
        i = parts.index(trainer)
        cfg = parts[i + 1] if i + 1 < len(parts) and not parts[i + 1].startswith("seed") else ""
    return Record(folder, log, trainer, cfg, dataset, seed, shots if shots is not None else -1, subsample,
                  eval_only, info["acc"], parts)


KNOWN_TRAINERS = {"ZeroshotCLIP", "ZeroshotCLIP2", "CoOp", "CoCoOp", "KgCoOp", "MaPLe", "IVLP", "VPT", "SEP",
                  "ALIGN", "MMP"}


def find_records(root):
    """One Record per run folder under root (skipping folders of unfinished sweep runs)."""
    import json

    root = os.path.abspath(root)
    anchor = os.path.dirname(root)
    records, skipped = [], []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        logs = sorted(f for f in files if is_log_name(f))
        if not logs:
            continue
        parts = os.path.relpath(folder, anchor).split(os.sep)
        if "sweep.json" in files:
            try:
                with open(os.path.join(folder, "done.json")) as f:
                    logs = [json.load(f)["log"]]
            except (OSError, ValueError, KeyError):
                skipped.append(folder)
                continue
        rec = None
        for log in reversed(logs):  # the latest log with a result ("log.txt" sorts first)
            rec = record_from_log(folder, log, parts)
            if rec is not None:
                break
        if rec is None:
            skipped.append(folder)
        else:
            records.append(rec)
    return records, skipped


# ----------------------------------------------------------------------------------------------------
# Classification into protocol cells
# ----------------------------------------------------------------------------------------------------

@dataclass
class Results:
    # (protocol, label, dataset, shots, column) -> {seed: acc};
    # protocol "transfer" holds the cross-dataset and domain-generalisation runs (column source/target)
    cells: dict = field(default_factory=lambda: defaultdict(dict))
    cfgs: dict = field(default_factory=lambda: defaultdict(set))
    skipped: list = field(default_factory=list)
    n_records: int = 0


def classify(rec):
    """[(protocol, dataset, shots, column)] for one record."""
    zs = rec.trainer.startswith("ZeroshotCLIP")
    parts = set(rec.parts)
    if rec.subsample in ("base", "new"):
        return [("base2new", rec.dataset, rec.shots, rec.subsample)]
    if parts & FEW_DIRS:
        return [("few_shot", rec.dataset, 0 if zs else rec.shots, "acc")]
    if rec.eval_only or zs:
        return [("transfer", rec.dataset, None, "source" if rec.dataset == SOURCE else "target")]
    if parts & XD_DIRS:
        return [("transfer", rec.dataset, None, "source")]
    out = [("few_shot", rec.dataset, rec.shots, "acc")]
    if rec.dataset == SOURCE and rec.shots == 16:
        out.append(("transfer", rec.dataset, None, "source_candidate"))
    return out


def collect(root):
    records, skipped = find_records(root)
    entries = []  # (protocol, label, cfg, dataset, shots, column, rec)
    for rec in records:
        if not rec.dataset or not rec.trainer:
            skipped.append(rec.path)
            continue
        for protocol, dataset, shots, column in classify(rec):
            entries.append([protocol, rec.label, rec.cfg, dataset, shots, column, rec])
    # a method run with several configs in one cell (e.g. two CoOp variants): name it by config
    cell_cfgs = defaultdict(set)
    for protocol, label, cfg, dataset, shots, column, rec in entries:
        cell_cfgs[(protocol, label, dataset, shots, column)].add(cfg)
    split = {(k[0], k[1]) for k, v in cell_cfgs.items() if len(v) > 1}
    for e in entries:
        if (e[0], e[1]) in split:
            e[1] = f"{e[1]} [{e[2]}]"
    # the cross-dataset source of a method without one: its 16-shot ImageNet run with the targets' config
    have_source = {(e[1], e[2]) for e in entries if e[0] == "transfer" and e[5] == "source"}
    target_cfgs = {(e[1], e[2]) for e in entries if e[0] == "transfer" and e[5] == "target"}
    res = Results(skipped=skipped, n_records=len(records))
    chosen = {}
    for protocol, label, cfg, dataset, shots, column, rec in entries:
        if column == "source_candidate":
            if (label, cfg) in have_source or (label, cfg) not in target_cfgs:
                continue
            column = "source"
        key = (protocol, label, dataset, shots, column)
        prev = chosen.get((key, rec.seed))
        # a seed seen twice: prefer an evaluation-only run (test_base over train_base), then the later one
        if prev is not None and (prev.eval_only, prev.path) > (rec.eval_only, rec.path):
            continue
        chosen[(key, rec.seed)] = rec
        res.cells[key][rec.seed] = rec.acc
        res.cfgs[(protocol, label)].add(cfg)
    return res


# ----------------------------------------------------------------------------------------------------
# Statistics and published numbers
# ----------------------------------------------------------------------------------------------------

@dataclass
class Stat:
    mean: float
    std: float = 0.0
    n: int = 1


def stat(seeds):
    vals = list(seeds.values()) if isinstance(seeds, dict) else list(seeds)
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))  # population std (np.std)
    return Stat(mean, std, len(vals))


def hm(b, n):
    if b is None or n is None:
        return None
    return 0.0 if b + n == 0 else 2 * b * n / (b + n)


def load_published(path=PUBLISHED):
    """{(protocol, method, dataset, shots, metric): (value, source)} from the CSV (# lines are comments)."""
    out = {}
    if not os.path.isfile(path):
        return out
    with open(path, newline="") as f:
        rows = csv.DictReader(line for line in f if line.strip() and not line.lstrip().startswith("#"))
        for row in rows:
            shots = _int(row.get("shots"))
            out[(row["protocol"], row["method"], row["dataset"], shots, row["metric"])] = (
                float(row["value"]), row.get("source", ""))
    return out


# ----------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------

@dataclass
class Table:
    title: str
    columns: list
    rows: list                         # lists of str | float | Stat | None
    notes: list = field(default_factory=list)
    long: list = field(default_factory=list)   # CSV rows (dicts)


def _order_methods(labels):
    return sorted(labels, key=lambda m: (METHOD_ORDER.index(m.split(" [")[0]) if m.split(" [")[0] in METHOD_ORDER
                                         else len(METHOD_ORDER), m))


def _order_datasets(ds):
    return sorted(ds, key=lambda d: (DATASET_ORDER.index(d) if d in DATASET_ORDER else len(DATASET_ORDER), d))


def _diff(ours, pub):
    if ours is None or pub is None:
        return None
    return (ours.mean if isinstance(ours, Stat) else ours) - pub


def _mean(x):
    return x.mean if isinstance(x, Stat) else x


def _long(protocol, method, dataset, shots, metric, value, published=None, source=""):
    return {"protocol": protocol, "method": method, "dataset": dataset, "shots": "" if shots is None else shots,
            "metric": metric, "mean": None if value is None else round(_mean(value), 4),
            "std": round(value.std, 4) if isinstance(value, Stat) else "",
            "n_seeds": value.n if isinstance(value, Stat) else "",
            "published": "" if published is None else published[0],
            "diff": "" if value is None or published is None else round(_mean(value) - published[0], 4),
            "source": "" if published is None else published[1]}


def base2new_tables(res, methods, datasets, published, compare):
    tables = []
    keys = [k for k in res.cells if k[0] == "base2new"]
    for shots in sorted({k[3] for k in keys}):
        labels = _order_methods({k[1] for k in keys if k[3] == shots and (methods is None or k[1] in methods)})
        if not labels:
            continue
        ds_all = _order_datasets({k[2] for k in keys if k[3] == shots and (datasets is None or k[2] in datasets)})
        columns = ["Dataset", "Method", "Base", "New", "HM"]
        if compare:
            columns += ["pub Base", "pub New", "pub HM", "Δ Base", "Δ New", "Δ HM"]
        columns.append("Seeds")
        per = {}  # (label, dataset) -> (B, N, H, n)
        for m in labels:
            for d in ds_all:
                b = stat(res.cells.get(("base2new", m, d, shots, "base"), {}))
                n = stat(res.cells.get(("base2new", m, d, shots, "new"), {}))
                if b is None and n is None:
                    continue
                per[(m, d)] = (b, n, hm(b.mean if b else None, n.mean if n else None),
                               min(x.n for x in (b, n) if x is not None))
        blocks, long, notes = [], [], []
        for m in labels:  # the Average row: mean Base, mean New, HM of the means
            full = [d for d in ds_all if (m, d) in per and per[(m, d)][0] and per[(m, d)][1]]
            if full:
                b = sum(per[(m, d)][0].mean for d in full) / len(full)
                n = sum(per[(m, d)][1].mean for d in full) / len(full)
                per[(m, "average")] = (b, n, hm(b, n), len(full))
                if len(full) != len(B2N_DATASETS):
                    notes.append(f"{m}: Average over {len(full)} of {len(B2N_DATASETS)} datasets")
        rows = []
        for d in ["average"] + ds_all:
            for m in labels:
                if (m, d) not in per:
                    continue
                b, n, h, k = per[(m, d)]
                row = [DISPLAY.get(d, d), m, b, n, h]
                pubs = [published.get(("base2new", m, d, None, metric)) for metric in ("base", "new", "hm")]
                partial = d == "average" and k != len(B2N_DATASETS)  # not comparable with the paper's Average
                if compare:
                    row += [p[0] if p else None for p in pubs]
                    row += [None if partial else _diff(x, p[0] if p else None) for x, p in zip((b, n, h), pubs)]
                row.append(k if d != "average" else f"{k} ds")
                rows.append(row)
                for metric, x, p in zip(("base", "new", "hm"), (b, n, h), pubs):
                    long.append(_long("base2new", m, d, shots, metric, x, p if compare and not partial else None))
        title = f"{TITLES['base2new']} ({shots} shots): Base, New, HM = 2BN/(B+N); mean ± std over seeds"
        tables.append(Table(title, columns, rows, notes, long))
    return tables


def few_shot_tables(res, methods, datasets, published, compare):
    keys = [k for k in res.cells if k[0] == "few_shot" and (methods is None or k[1] in methods)
            and (datasets is None or k[2] in datasets)]
    if not keys:
        return []
    labels = _order_methods({k[1] for k in keys})
    ds_all = _order_datasets({k[2] for k in keys})
    shots = sorted({k[3] for k in keys})
    columns = ["Dataset", "Method"] + [f"{s} shot{'s' if s != 1 else ''}" for s in shots]
    rows, long, notes = [], [], []
    per = {}
    for m in labels:
        for d in ds_all:
            for s in shots:
                x = stat(res.cells.get(("few_shot", m, d, s, "acc"), {}))
                if x is not None:
                    per[(m, d, s)] = x
        for s in shots:
            have = [per[(m, d, s)].mean for d in ds_all if (m, d, s) in per]
            if have:
                per[(m, "average", s)] = sum(have) / len(have)
                if len(have) != len(ds_all):
                    notes.append(f"{m}, {s} shots: Average over {len(have)} of {len(ds_all)} datasets")
    for d in ["average"] + ds_all:
        for m in labels:
            vals = [per.get((m, d, s)) for s in shots]
            if all(v is None for v in vals):
                continue
            rows.append([DISPLAY.get(d, d), m] + vals)
            pubs = [published.get(("few_shot", m, d, s, "acc")) for s in shots]
            if compare and any(pubs):
                rows.append(["", f"{m} (published)"] + [p[0] if p else None for p in pubs])
                rows.append(["", f"{m} Δ"] + [_diff(v, p[0] if p else None) for v, p in zip(vals, pubs)])
            for s, v, p in zip(shots, vals, pubs):
                if v is not None:
                    long.append(_long("few_shot", m, d, s, "acc", v, p if compare else None))
    title = f"{TITLES['few_shot']}: accuracy by shots; mean ± std over seeds"
    if compare and not any(k[0] == "few_shot" for k in published):
        notes.append("no confirmed published few-shot numbers in data/published_results.csv")
    return [Table(title, columns, rows, notes, long)]


def transfer_tables(res, protocol, methods, datasets, published, compare):
    targets_all = XD_TARGETS if protocol == "cross_dataset" else DG_TARGETS
    keys = [k for k in res.cells if k[0] == "transfer" and (methods is None or k[1] in methods)]
    labels = _order_methods({k[1] for k in keys if k[4] == "target" and k[2] in targets_all})
    if not labels:
        return []
    targets = _order_datasets({k[2] for k in keys if k[4] == "target" and k[2] in targets_all
                               and (datasets is None or k[2] in datasets)})
    columns = ["Method", "Source " + DISPLAY[SOURCE]] + [DISPLAY.get(d, d) for d in targets] + ["Average"]
    rows, long, notes = [], [], []
    for m in labels:
        src = stat(res.cells.get(("transfer", m, SOURCE, None, "source"), {}))
        vals = [stat(res.cells.get(("transfer", m, d, None, "target"), {})) for d in targets]
        have = [v.mean for v in vals if v is not None]
        avg = sum(have) / len(have) if have else None
        if have and len(have) != len(targets_all):
            notes.append(f"{m}: Average over {len(have)} of {len(targets_all)} targets")
        rows.append([m, src] + vals + [avg])
        names = [SOURCE] + targets + ["average"]
        pubs = [published.get((protocol, m, d, None, "acc")) for d in names]
        if have and len(have) != len(targets_all):  # an Average over fewer targets is not the paper's
            pubs[-1] = None
        if compare and any(pubs):
            rows.append([f"{m} (published)"] + [p[0] if p else None for p in pubs])
            rows.append([f"{m} Δ"] + [_diff(v, p[0] if p else None) for v, p in zip([src] + vals + [avg], pubs)])
        for d, v, p in zip(names, [src] + vals + [avg], pubs):
            if v is not None:
                long.append(_long(protocol, m, d, 16, "acc", v, p if compare else None))
    title = (f"{TITLES[protocol]}: trained on {DISPLAY[SOURCE]}, Average over the targets; mean ± std over seeds")
    return [Table(title, columns, rows, notes, long)]


def build_tables(res, protocols=None, methods=None, datasets=None, compare=False, published=None):
    if published is None:
        published = load_published() if compare else {}
    methods = set(methods) if methods else None
    datasets = set(datasets) if datasets else None
    tables = []
    for p in [p for p in PROTOCOLS if not protocols or p in protocols]:
        if p == "base2new":
            tables += base2new_tables(res, methods, datasets, published, compare)
        elif p == "few_shot":
            tables += few_shot_tables(res, methods, datasets, published, compare)
        else:
            tables += transfer_tables(res, p, methods, datasets, published, compare)
    return tables


# ----------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------

def _fmt(v, std=True, signed=False, latex=False):
    if v is None:
        return "-" if not latex else "--"
    if isinstance(v, Stat):
        if std and v.n > 1:
            return f"{v.mean:.2f} $\\pm$ {v.std:.2f}" if latex else f"{v.mean:.2f} ± {v.std:.2f}"
        return f"{v.mean:.2f}"
    if isinstance(v, float):
        return f"{v:+.2f}" if signed else f"{v:.2f}"
    return str(v)


def _cells(table, std, latex=False):
    out = []
    for row in table.rows:
        out.append([_fmt(v, std, signed=table.columns[i].startswith("Δ") or str(row[1] if len(row) > 1 else "")
                         .endswith(" Δ") or str(row[0]).endswith(" Δ"), latex=latex)
                    for i, v in enumerate(row)])
    return out


def _is_text_col(table, i):
    return all(isinstance(r[i], str) or r[i] is None for r in table.rows) and i < 2


def render(tables, fmt="terminal", std=True):
    if fmt == "csv":
        buf = io.StringIO()
        fields = ["protocol", "method", "dataset", "shots", "metric", "mean", "std", "n_seeds", "published",
                  "diff", "source"]
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for t in tables:
            w.writerows(t.long)
        return buf.getvalue()
    chunks = []
    for t in tables:
        cells = _cells(t, std, latex=fmt == "latex")
        if fmt == "markdown":
            lines = [f"**{t.title}**", "", "| " + " | ".join(t.columns) + " |",
                     "|" + "|".join("---" if _is_text_col(t, i) else "---:" for i in range(len(t.columns))) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in cells]
            lines += [""] + [f"- {n}" for n in t.notes]
        elif fmt == "latex":
            def esc(s):
                return (s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%")
                        .replace("&", "\\&").replace("#", "\\#").replace("Δ", "$\\Delta$").replace("±", "$\\pm$"))
            spec = "".join("l" if _is_text_col(t, i) else "r" for i in range(len(t.columns)))
            lines = [f"% {t.title}", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                     " & ".join(esc(c) for c in t.columns) + " \\\\", "\\midrule"]
            prev = None
            for r in cells:
                first = r[0]
                if prev is not None and first and first != prev and len(t.columns) > 2 and t.columns[0] == "Dataset":
                    lines.append("\\midrule")
                prev = first or prev
                lines.append(" & ".join(c if "$" in c else esc(c) for c in r) + " \\\\")
            lines += ["\\bottomrule", "\\end{tabular}"] + [f"% {n}" for n in t.notes]
        else:
            widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(t.columns)]
            def line(vals):
                return "  ".join(v.ljust(w) if _is_text_col(t, i) else v.rjust(w)
                                 for i, (v, w) in enumerate(zip(vals, widths))).rstrip()
            lines = [t.title, line(t.columns), "  ".join("-" * w for w in widths)]
            prev = None
            for r in cells:
                if prev is not None and r[0] and r[0] != prev and t.columns[0] == "Dataset":
                    lines.append("")
                prev = r[0] or prev
                lines.append(line(r))
            lines += [f"  note: {n}" for n in t.notes]
        chunks.append("\n".join(lines))
    return "\n\n".join(chunks) + ("\n" if chunks else "")


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/parse_results.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="output tree (ours or an official repository's)")
    p.add_argument("--format", choices=["terminal", "markdown", "csv", "latex"], default="terminal")
    p.add_argument("--protocol", nargs="+", choices=PROTOCOLS, help="only these protocols")
    p.add_argument("--method", nargs="+", help="only these methods (table names: CLIP, CoOp, MaPLe, ...)")
    p.add_argument("--dataset", nargs="+", help="only these datasets (yaml names)")
    p.add_argument("--compare-published", action="store_true",
                   help="add the published numbers (data/published_results.csv) and ours minus theirs")
    p.add_argument("--published", default=PUBLISHED, help="published-numbers CSV")
    p.add_argument("--no-std", action="store_true", help="means only")
    p.add_argument("-o", "--out", help="write to this file instead of stdout")
    args = p.parse_args(argv)
    if not os.path.isdir(args.root):
        raise SystemExit(f"error: {args.root} is not a folder")
    res = collect(args.root)
    published = load_published(args.published) if args.compare_published else {}
    datasets = set(args.dataset) if args.dataset else None
    tables = build_tables(res, args.protocol, args.method, datasets, args.compare_published, published)
    text = render(tables, args.format, std=not args.no_std)
    if not tables:
        print(f"no finished runs found under {args.root}", file=sys.stderr)
    if res.skipped and args.format == "terminal":
        text += f"\n({len(res.skipped)} run folder(s) without a result skipped, e.g. {res.skipped[0]})\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0 if tables else 1


if __name__ == "__main__":
    sys.exit(main())
