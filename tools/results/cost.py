"""Cost figures per method and dataset (issue 18), next to accuracy: ``tools/parse_results.py --cost`` and
``tools/plot_results.py --kind cost``.

A run's figures come from its sweep marker (``done.json`` "cost"), else its ``cost.json``, else the last
``=> cost {...}`` line of its log (engine/cost.py writes all three). The tables hold the training runs (the
figures of an evaluation-only run are its test throughput only), grouped as the accuracy tables group them
(tools/results/cells.py), with the accuracy of the same runs (for base-to-new: the base classes); every number
is the mean over seeds."""
import json
import os
from collections import defaultdict

from meta.protocols import DISPLAY, TITLES
from meta.runs import COST_FILE, DONE, read_json

from .cells import classify
from .logs import find_records
from .tables import Table, order_datasets, order_methods, stat

COST_LINE = "=> cost "
# (cost key, column, decimals of the CSV's mean)
FIGURES = (("trainable_params", "Params", 0), ("train_seconds", "Train s", 3), ("seconds_per_epoch", "s/epoch", 3),
           ("train_images_per_second", "Train img/s", 2), ("test_images_per_second", "Test img/s", 2),
           ("peak_memory_mib", "Peak MiB", 1))
TEXT_FIGURES = (("device", "Device"), ("precision", "Prec"))
# the cells' protocols (cross-dataset and domain generalisation share their ImageNet training run: "transfer")
ORDER = ("base2new", "few_shot", "transfer")
SECTIONS = {"base2new": ("base2new",), "few_shot": ("few_shot",), "transfer": ("cross_dataset", "domain_gen")}
TITLE = {"base2new": TITLES["base2new"], "few_shot": TITLES["few_shot"],
         "transfer": "the ImageNet model of cross-dataset transfer and domain generalisation"}


def read_cost(folder, log):
    """The cost figures of one run folder, or None."""
    done = read_json(os.path.join(folder, DONE))
    if isinstance(done, dict) and isinstance(done.get("cost"), dict):
        return done["cost"]
    cost = read_json(os.path.join(folder, COST_FILE))
    if isinstance(cost, dict):
        return cost
    found = None
    try:
        with open(os.path.join(folder, log), errors="replace") as f:
            for line in f:
                if line.startswith(COST_LINE):
                    found = line[len(COST_LINE):]
    except OSError:
        return None
    try:
        return json.loads(found) if found else None
    except ValueError:
        return None


def collect_costs(root):
    """{(protocol, label, dataset, shots): {seed: (accuracy, cost)}} of the training runs under ``root``."""
    out = defaultdict(dict)
    records, _ = find_records(root)
    for rec in records:
        if rec.eval_only or not rec.dataset or not rec.trainer:
            continue
        cost = read_cost(rec.path, rec.log)
        if not cost or cost.get("train_seconds") is None:
            continue
        protocol, dataset, shots, _ = classify(rec)[0]
        label = f"{rec.label} [{rec.cfg}]" if rec.cfg else rec.label
        out[(protocol, label, dataset, shots)][rec.seed] = (rec.acc, cost)
    # a method with a single config per protocol is shown by its name alone, as in the accuracy tables
    cfgs = defaultdict(set)
    for protocol, label, _, _ in out:
        cfgs[(protocol, label.split(" [")[0])].add(label)
    return {(p, lab.split(" [")[0] if len(cfgs[(p, lab.split(" [")[0])]) == 1 else lab, d, s): v
            for (p, lab, d, s), v in out.items()}


def _text(values):
    distinct = sorted({str(v) for v in values if v is not None})
    return "/".join(distinct) if distinct else None


def cost_tables(root, protocols=None, methods=None, datasets=None):
    """One table per protocol: Dataset, Method, (Shots), Acc and the cost figures, means over seeds."""
    costs = collect_costs(root)
    tables = []
    for protocol in [p for p in ORDER if any(k[0] == p for k in costs)]:
        if protocols and not set(SECTIONS[protocol]) & set(protocols):
            continue
        keys = [k for k in costs if k[0] == protocol and (methods is None or k[1].split(" [")[0] in methods
                                                             or k[1] in methods)
                and (datasets is None or k[2] in datasets)]
        if not keys:
            continue
        with_shots = protocol == "few_shot" or len({k[3] for k in keys}) > 1
        columns = ["Dataset", "Method"] + (["Shots"] if with_shots else []) + ["Acc"]
        columns += [c for _, c, _ in FIGURES] + [c for _, c in TEXT_FIGURES] + ["Seeds"]
        rows, long = [], []
        for d in order_datasets({k[2] for k in keys}):
            for m in order_methods({k[1] for k in keys if k[2] == d}):
                for s in sorted({k[3] for k in keys if k[1] == m and k[2] == d}, key=lambda x: (x is None, x)):
                    runs = list(costs[(protocol, m, d, s)].values())
                    acc = stat([a for a, _ in runs])
                    figures = [stat([c[key] for _, c in runs if c.get(key) is not None]) for key, _, _ in FIGURES]
                    texts = [_text(c.get(key) for _, c in runs) for key, _ in TEXT_FIGURES]
                    if figures[0] is not None:  # parameter counts are integers
                        figures[0] = round(figures[0].mean)
                    rows.append([DISPLAY.get(d, d), m] + ([s] if with_shots else []) + [acc] + figures + texts
                                + [len(runs)])
                    base = {"protocol": protocol, "method": m, "dataset": d, "shots": "" if s is None else s,
                            "n_seeds": len(runs), "published": "", "diff": "", "source": ""}
                    long.append({**base, "metric": "acc", "mean": round(acc.mean, 4), "std": round(acc.std, 4)})
                    for (key, _, digits), v in zip(FIGURES, figures):
                        if v is not None:
                            mean = v if isinstance(v, int) else round(v.mean, digits)
                            long.append({**base, "metric": key, "mean": mean,
                                         "std": "" if isinstance(v, int) else round(v.std, digits)})
                    for (key, _), v in zip(TEXT_FIGURES, texts):
                        long.append({**base, "metric": key, "mean": v, "std": ""})
        title = (f"Cost, {TITLE[protocol]}: training runs (Acc: their own evaluation"
                 f"{', base classes' if protocol == 'base2new' else ''}), mean over seeds")
        notes = ["Peak MiB: CUDA allocator peak on a GPU, peak resident set of the process on a CPU"]
        tables.append(Table(title, columns, rows, notes, long))
    return tables


def accuracy_vs_time(root, methods=None):
    """{protocol: {method: [(dataset, train seconds, accuracy)]}}, means over seeds (for the plot)."""
    series = defaultdict(lambda: defaultdict(list))
    for (protocol, m, d, s), runs in collect_costs(root).items():
        if methods is not None and m.split(" [")[0] not in methods and m not in methods:
            continue
        seconds = [c["train_seconds"] for _, c in runs.values()]
        series[protocol][m].append((d if s is None else f"{d} ({s} shots)", sum(seconds) / len(seconds),
                                    sum(a for a, _ in runs.values()) / len(runs)))
    return series
