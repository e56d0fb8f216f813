"""Statistics over seeds, the published numbers, and the tables per protocol.

Per dataset the mean +- population std over seeds (as the field's parse_test_res.py); base-to-new
HM = 2BN/(B+N) from the seed-averaged Base and New, the Average row = the mean of the per-dataset Base and
New and the HM of those two means; cross-dataset and domain-generalisation averages over the targets
(ImageNet, the source, excluded); few-shot averages over datasets per shot count."""
import csv
import math
import os
from dataclasses import dataclass, field

from meta.methods import table_order
from meta.protocols import (B2N_DATASETS, DATASET_ORDER, DEFAULT_SHOTS, DG_TARGETS, DISPLAY, PROTOCOLS, TITLES,
                            XD_SOURCE, XD_TARGETS)
from tools import REPO

from .logs import parse_int

PUBLISHED = os.path.join(REPO, "data", "published_results.csv")


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
            shots = parse_int(row.get("shots"))
            out[(row["protocol"], row["method"], row["dataset"], shots, row["metric"])] = (
                float(row["value"]), row.get("source", ""))
    return out


@dataclass
class Table:
    title: str
    columns: list
    rows: list                         # lists of str | float | Stat | None
    notes: list = field(default_factory=list)
    long: list = field(default_factory=list)   # CSV rows (dicts)


def order_methods(labels):
    """Table order of the method data; a label split by config ("CoOp [rn50]") sorts with its method."""
    order = table_order()
    return sorted(labels, key=lambda m: (order.index(m.split(" [")[0]) if m.split(" [")[0] in order
                                         else len(order), m))


def order_datasets(ds):
    return sorted(ds, key=lambda d: (DATASET_ORDER.index(d) if d in DATASET_ORDER else len(DATASET_ORDER), d))


def _diff(ours, pub):
    return None if ours is None or pub is None else mean_of(ours) - pub


def mean_of(x):
    return x.mean if isinstance(x, Stat) else x


def _long(protocol, method, dataset, shots, metric, value, published=None, source=""):
    return {"protocol": protocol, "method": method, "dataset": dataset, "shots": "" if shots is None else shots,
            "metric": metric, "mean": None if value is None else round(mean_of(value), 4),
            "std": round(value.std, 4) if isinstance(value, Stat) else "",
            "n_seeds": value.n if isinstance(value, Stat) else "",
            "published": "" if published is None else published[0],
            "diff": "" if value is None or published is None else round(mean_of(value) - published[0], 4),
            "source": "" if published is None else published[1]}


def base2new_tables(res, methods, datasets, published, compare):
    tables = []
    keys = [k for k in res.cells if k[0] == "base2new"]
    for shots in sorted({k[3] for k in keys}):
        labels = order_methods({k[1] for k in keys if k[3] == shots and (methods is None or k[1] in methods)})
        if not labels:
            continue
        ds_all = order_datasets({k[2] for k in keys if k[3] == shots and (datasets is None or k[2] in datasets)})
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
        long, notes = [], []
        for m in labels:  # the Average row: mean Base, mean New, HM of the means (a one-dataset table has none)
            full = [d for d in ds_all if (m, d) in per and per[(m, d)][0] and per[(m, d)][1]]
            if full and len(ds_all) > 1:
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
    labels = order_methods({k[1] for k in keys})
    ds_all = order_datasets({k[2] for k in keys})
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
    labels = order_methods({k[1] for k in keys if k[4] == "target" and k[2] in targets_all})
    if not labels:
        return []
    targets = order_datasets({k[2] for k in keys if k[4] == "target" and k[2] in targets_all
                               and (datasets is None or k[2] in datasets)})
    columns = ["Method", "Source " + DISPLAY[XD_SOURCE]] + [DISPLAY.get(d, d) for d in targets] + ["Average"]
    rows, long, notes = [], [], []
    for m in labels:
        src = stat(res.cells.get(("transfer", m, XD_SOURCE, None, "source"), {}))
        vals = [stat(res.cells.get(("transfer", m, d, None, "target"), {})) for d in targets]
        have = [v.mean for v in vals if v is not None]
        avg = sum(have) / len(have) if have else None
        if have and len(have) != len(targets_all):
            notes.append(f"{m}: Average over {len(have)} of {len(targets_all)} targets")
        rows.append([m, src] + vals + [avg])
        names = [XD_SOURCE] + targets + ["average"]
        pubs = [published.get((protocol, m, d, None, "acc")) for d in names]
        if have and len(have) != len(targets_all):  # an Average over fewer targets is not the paper's
            pubs[-1] = None
        if compare and any(pubs):
            rows.append([f"{m} (published)"] + [p[0] if p else None for p in pubs])
            rows.append([f"{m} Δ"] + [_diff(v, p[0] if p else None) for v, p in zip([src] + vals + [avg], pubs)])
        for d, v, p in zip(names, [src] + vals + [avg], pubs):
            if v is not None:
                long.append(_long(protocol, m, d, DEFAULT_SHOTS, "acc", v, p if compare else None))
    title = (f"{TITLES[protocol]}: trained on {DISPLAY[XD_SOURCE]}, Average over the targets; mean ± std over seeds")
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
