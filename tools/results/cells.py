"""Records into protocol cells.

Class subset base/new -> base-to-new; all classes under a folder named few_shot/fewshot -> few-shot; an
evaluation-only run on all classes -> a cross-dataset or domain-generalisation target (ImageNet: the source
column); a training run on all classes under a cross-dataset folder (cross_dataset, domain_gen, xd,
evaluation, or SEP's base2new) -> the source; any other training run on all classes -> few-shot. Zero-shot
CLIP evaluated under a few-shot folder is the 0-shot point."""
from collections import defaultdict
from dataclasses import dataclass, field

from meta.protocols import DEFAULT_SHOTS, XD_SOURCE

from .logs import find_records

# folder names of the official repositories' layouts
FEW_DIRS = {"few_shot", "fewshot", "few-shot"}
XD_DIRS = {"cross_dataset", "cross-dataset", "domain_gen", "xd", "evaluation", "base2new"}


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
        return [("transfer", rec.dataset, None, "source" if rec.dataset == XD_SOURCE else "target")]
    if parts & XD_DIRS:
        return [("transfer", rec.dataset, None, "source")]
    out = [("few_shot", rec.dataset, rec.shots, "acc")]
    if rec.dataset == XD_SOURCE and rec.shots == DEFAULT_SHOTS:
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
