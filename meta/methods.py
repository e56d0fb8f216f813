"""Method data: what the tools and tests know about each trainer, read from its config folder.

A method is its trainer file (``trainers/<file>.py``) plus its folder ``configs/trainers/<Trainer>/``,
which holds the yamls and ``method.yaml`` (schema in ``configs/trainers/README.md``). Everything the
sweeps, the scripts, the results tables, the benchmark and the registry tests need about a method is
read from there; nothing here imports torch.
"""
import functools
import os
from dataclasses import dataclass, field

from .errors import UserError, read_yaml
from .protocols import DEFAULT_SHOTS, FEW_SHOTS, PROTOCOL_SECTION, PROTOCOLS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_ROOT = os.path.join(REPO, "configs", "trainers")
METHOD_FILE = "method.yaml"


class MethodDataError(UserError, ValueError):
    """A method.yaml that does not follow the schema (raised with the file and the key)."""


@dataclass(frozen=True)
class ProtocolSettings:
    """How one sweep runs one protocol: configs, options, shots and where they come from."""

    cfg: str
    source: str
    cfg_by_dataset: dict = field(default_factory=dict)
    cfg_by_shots: dict = field(default_factory=dict)
    opts: tuple = ()
    eval_opts: tuple = ()
    shots: tuple = None

    def config_for(self, dataset, shots):
        return self.cfg_by_dataset.get(dataset) or self.cfg_by_shots.get(shots) or self.cfg

    def configs(self):
        return {self.cfg, *self.cfg_by_dataset.values(), *self.cfg_by_shots.values()}


PREVIOUS_STAGE = "{previous}"  # in a stage's option values: the previous stage's run folder


@dataclass(frozen=True)
class Stage:
    """One training run of a chain (``stages`` of a sweep): every training of the protocols is the chain of
    its stages, run in order, each starting after the previous one is done."""

    name: str
    cfg: str = None        # a yaml of the sweep's folder (default: the protocol's); its stem names the stage's
                           # folder and, through labels_by_config, its rows in the results tables
    seeds: tuple = None    # the seeds this stage runs for (default: all); a seed not listed continues from the
                           # stage run of the first listed seed (PLOT++: stage 1 only for seed 1)
    opts: tuple = ()       # KEY VALUE for this stage's training runs; "{previous}" = the previous stage's folder
    eval_opts: tuple = ()  # last stage: KEY VALUE the evaluations of its models add


@dataclass(frozen=True)
class Sweep:
    """A sweepable setting of a method (``tools/sweep.py PROTOCOL <key>``; scripts/<key>/ when ``scripts``)."""

    key: str
    trainer: str
    config_dir: str
    train: bool
    seeds: tuple
    scripts: bool
    protocols: dict  # section (base2new / few_shot / transfer) -> ProtocolSettings
    aliases: tuple = ()
    stages: tuple = ()  # Stage per training run of a chain; () = one training run per (dataset, shots, seed)

    def settings(self, protocol):
        return self.protocols[PROTOCOL_SECTION[protocol]]

    def default_shots(self, protocol):
        """The protocol's ``shots`` when the method data sets them (ProGrad's base-to-new: 4), else 1 2 4 8 16
        for few-shot and 16 otherwise."""
        shots = self.settings(protocol).shots
        if shots is not None:
            return list(shots)
        return list(FEW_SHOTS) if protocol == "few_shot" else [DEFAULT_SHOTS]

    def config_file(self, cfg):
        """Path of a config of this sweep, relative to the repository."""
        return f"configs/trainers/{self.config_dir}/{cfg}.yaml"


@dataclass(frozen=True)
class BenchmarkSettings:
    """The trainer's row of tools/benchmark.py: the official setting it is measured in."""

    config_file: str      # relative to the repository
    opts: tuple = ()      # KEY VALUE options of the official scripts
    upstream_opts: tuple = ()  # switch this trainer's own speed-ups off (beyond the shared switches)


# precision modes: name -> (TRAINER.<node>.PREC, MODEL.AMP_DTYPE); "amp" in a method's precisions means both
# autocast dtypes. The registry tests and tools/precision.py run these.
PRECISION_MODES = {"fp32": ("fp32", None), "fp16": ("fp16", None), "amp-fp16": ("amp", "fp16"),
                   "amp-bf16": ("amp", "bf16")}


def precision_opts(config_node, mode):
    """The command-line options that select precision ``mode`` for a trainer whose node is ``config_node``."""
    prec, amp_dtype = PRECISION_MODES[mode]
    opts = [f"TRAINER.{config_node}.PREC", prec] if config_node else []
    return opts + (["MODEL.AMP_DTYPE", amp_dtype] if amp_dtype else [])


@dataclass(frozen=True)
class Method:
    trainer: str          # registered trainer name (= folder name)
    label: str            # name in the results tables
    title: str            # name in prose (the scripts' headers), e.g. "Zero-shot CLIP"
    order: int            # position in the tables
    official: str         # official repository (owner/name)
    demo: str             # offline demo config (a file in the folder)
    folder: str
    aliases: tuple = ()   # other registered names of the same trainer (ALIGN: MMP)
    labels_by_config: dict = field(default_factory=dict)
    precisions: tuple = ("fp16", "fp32", "amp")
    benchmark: BenchmarkSettings = None
    sweeps: dict = field(default_factory=dict)

    @property
    def demo_config(self):
        return os.path.join(self.folder, self.demo)

    @property
    def precision_modes(self):
        """The modes of ``PRECISION_MODES`` this method runs in (its ``precisions``)."""
        return [mode for mode, (prec, _) in PRECISION_MODES.items() if prec in self.precisions]

    def label_for(self, cfg=""):
        """Table label of a run of this method with config ``cfg`` (paper-mode configs end in ``_paper``)."""
        label = self.labels_by_config.get(cfg or "", self.label)
        return label + "-paper" if (cfg or "").endswith("_paper") else label


_SWEEP_KEYS = {"config_dir", "train", "seeds", "scripts", "aliases", "stages", *PROTOCOL_SECTION.values()}
_STAGE_KEYS = {"name", "cfg", "seeds", "opts", "eval_opts"}
_METHOD_KEYS = {"trainer", "label", "title", "order", "official", "demo", "aliases", "labels_by_config",
                "precisions", "benchmark", "sweeps"}
_BENCHMARK_KEYS = {"protocol", "config", "opts", "upstream_opts"}
_SETTINGS_KEYS = {"cfg", "source", "cfg_by_dataset", "cfg_by_shots", "opts", "eval_opts", "shots"}


def _check_keys(d, allowed, where):
    unknown = set(d) - allowed
    if unknown:
        raise MethodDataError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected some of "
                              f"{', '.join(sorted(allowed))}")


def _strs(values, where):
    values = tuple(values or ())
    if not all(isinstance(v, (str, int, float)) for v in values):
        raise MethodDataError(f"{where}: options must be a flat list of KEY VALUE strings")
    return tuple(str(v) for v in values)


def _settings(d, where):
    _check_keys(d, _SETTINGS_KEYS, where)
    for key in ("cfg", "source"):
        if not d.get(key):
            raise MethodDataError(f"{where}: '{key}' is required")
    return ProtocolSettings(cfg=d["cfg"], source=" ".join(str(d["source"]).split()),
                            cfg_by_dataset=dict(d.get("cfg_by_dataset") or {}),
                            cfg_by_shots={int(k): v for k, v in (d.get("cfg_by_shots") or {}).items()},
                            opts=_strs(d.get("opts"), where + ".opts"),
                            eval_opts=_strs(d.get("eval_opts"), where + ".eval_opts"),
                            shots=tuple(int(s) for s in d["shots"]) if d.get("shots") else None)


def _stages(items, seeds, where):
    """The ``stages`` list of a sweep: names unique, one folder (config) per stage, ``{previous}`` only after the
    first stage, stage seeds among the sweep's."""
    if items is None:
        return ()
    if not isinstance(items, list) or not items:
        raise MethodDataError(f"{where}: a non-empty list of stages (each with a 'name')")
    stages = []
    for i, d in enumerate(items):
        w = f"{where}[{i}]"
        if not isinstance(d, dict):
            raise MethodDataError(f"{w}: a mapping with 'name' and optionally cfg, seeds, opts, eval_opts")
        _check_keys(d, _STAGE_KEYS, w)
        if not d.get("name"):
            raise MethodDataError(f"{w}: 'name' is required")
        stage_seeds = tuple(int(s) for s in d["seeds"]) if d.get("seeds") is not None else None
        if stage_seeds is not None and (not stage_seeds or not set(stage_seeds) <= set(seeds)):
            raise MethodDataError(f"{w}.seeds: a non-empty subset of the sweep's seeds {list(seeds)}")
        opts = _strs(d.get("opts"), w + ".opts")
        if i == 0 and any(PREVIOUS_STAGE in o for o in opts):
            raise MethodDataError(f"{w}.opts: the first stage has no previous stage for {PREVIOUS_STAGE}")
        eval_opts = _strs(d.get("eval_opts"), w + ".eval_opts")
        if eval_opts and i != len(items) - 1:
            raise MethodDataError(f"{w}.eval_opts: only the last stage's models are evaluated")
        stages.append(Stage(name=str(d["name"]), cfg=d.get("cfg"), seeds=stage_seeds, opts=opts, eval_opts=eval_opts))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise MethodDataError(f"{where}: stage names must differ, got {names}")
    cfgs = [s.cfg for s in stages]
    if len(set(cfgs)) != len(cfgs):
        raise MethodDataError(f"{where}: each stage needs its own config (cfg; at most one stage may use the "
                              f"protocol's): its stem names the stage's run folders and table rows, got {cfgs}")
    return tuple(stages)


def _benchmark(d, trainer, sweeps, where):
    """``protocol: P`` takes the config and options of the method's first sweep for protocol P (one place for
    the official settings); ``config`` and ``opts`` name another setting."""
    _check_keys(d, _BENCHMARK_KEYS, where)
    if ("protocol" in d) == ("config" in d):
        raise MethodDataError(f"{where}: give either 'protocol' (a sweep's settings) or 'config' (and 'opts')")
    upstream = _strs(d.get("upstream_opts"), where + ".upstream_opts")
    if "config" in d:
        return BenchmarkSettings(f"configs/trainers/{trainer}/{d['config']}.yaml",
                                 _strs(d.get("opts"), where + ".opts"), upstream)
    if "opts" in d:
        raise MethodDataError(f"{where}: 'opts' goes with 'config'; 'protocol' takes the sweep's options")
    if not sweeps:
        raise MethodDataError(f"{where}: 'protocol' needs a sweep of this method")
    if d["protocol"] not in PROTOCOL_SECTION:
        raise MethodDataError(f"{where}.protocol: one of {', '.join(PROTOCOL_SECTION)}, got {d['protocol']!r}")
    sweep = next(iter(sweeps.values()))
    settings = sweep.settings(d["protocol"])
    return BenchmarkSettings(sweep.config_file(settings.cfg), settings.opts, upstream)


def parse_method(path):
    folder = os.path.dirname(path)
    d = read_yaml(path)
    _check_keys(d, _METHOD_KEYS, path)
    trainer = d.get("trainer")
    if trainer != os.path.basename(folder):
        raise MethodDataError(f"{path}: 'trainer' must be the folder's name {os.path.basename(folder)!r}, "
                              f"got {trainer!r}")
    sweeps = {}
    for key, s in (d.get("sweeps") or {}).items():
        where = f"{path}: sweeps.{key}"
        _check_keys(s, _SWEEP_KEYS, where)
        missing = [p for p in PROTOCOL_SECTION.values() if p not in s]
        if missing:
            raise MethodDataError(f"{where}: protocol settings missing for {', '.join(missing)}")
        seeds = tuple(s.get("seeds", (1, 2, 3)))
        train = bool(s.get("train", True))
        stages = _stages(s.get("stages"), seeds, f"{where}.stages")
        if stages and not train:
            raise MethodDataError(f"{where}: 'stages' chain training runs; this sweep has train: false")
        sweeps[key] = Sweep(key=key, trainer=trainer, config_dir=s.get("config_dir", trainer), train=train,
                            seeds=seeds, scripts=bool(s.get("scripts", True)), aliases=tuple(s.get("aliases") or ()),
                            protocols={p: _settings(s[p], f"{where}.{p}") for p in PROTOCOL_SECTION.values()},
                            stages=stages)
    for key in ("label", "order", "official", "demo"):
        if d.get(key) is None:
            raise MethodDataError(f"{path}: '{key}' is required")
    benchmark = d.get("benchmark")
    return Method(trainer=trainer, label=d["label"], title=d.get("title") or d["label"], order=int(d["order"]),
                  official=d["official"], demo=d["demo"], folder=folder, aliases=tuple(d.get("aliases") or ()),
                  labels_by_config=dict(d.get("labels_by_config") or {}),
                  precisions=tuple(d.get("precisions") or ("fp16", "fp32", "amp")),
                  benchmark=_benchmark(benchmark, trainer, sweeps, f"{path}: benchmark") if benchmark else None,
                  sweeps=sweeps)


@functools.lru_cache(maxsize=None)
def _load(root):
    methods = {}
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        path = os.path.join(folder, METHOD_FILE)
        if os.path.islink(folder) or not os.path.isfile(path):
            continue  # e.g. configs/trainers/MMP, the official folder name of ALIGN's configs
        m = parse_method(path)
        methods[m.trainer] = m
    return methods


def all_methods(root=CONFIG_ROOT):
    """Trainer name -> Method, for every folder with a method.yaml, in table order."""
    return dict(sorted(_load(root).items(), key=lambda kv: (kv[1].order, kv[0])))


def method_of(trainer, root=CONFIG_ROOT):
    """The Method registered as ``trainer`` or as one of its aliases; None if unknown."""
    for m in _load(root).values():
        if trainer == m.trainer or trainer in m.aliases:
            return m
    return None


def known_trainers(root=CONFIG_ROOT):
    """Every registered name the method data knows (trainers and their aliases)."""
    return {name for m in _load(root).values() for name in (m.trainer, *m.aliases)}


def all_sweeps(root=CONFIG_ROOT):
    """Sweep key -> Sweep over all methods (keys are unique: an error names both files otherwise)."""
    sweeps, owner = {}, {}
    for m in all_methods(root).values():
        for key, s in m.sweeps.items():
            if key in sweeps:
                raise MethodDataError(f"sweep key {key!r} is defined by both {owner[key]} and {m.trainer}")
            sweeps[key], owner[key] = s, m.trainer
    return sweeps


def sweep_aliases(root=CONFIG_ROOT):
    """Other names accepted for a sweep key: the lowercase trainer names and aliases (e.g. mmp -> align)."""
    out = {}
    for m in all_methods(root).values():
        for key, s in m.sweeps.items():
            for alias in s.aliases:
                out[alias] = key
        if m.sweeps:
            first = next(iter(m.sweeps))
            for name in (m.trainer, *m.aliases, m.label):
                key = name.lower()
                if key not in m.sweeps:
                    out.setdefault(key, first)
    return out


def label_for(trainer, cfg=""):
    """Table label of a run (trainer, config stem); unknown trainers keep their name."""
    m = method_of(trainer)
    if m is None:
        return trainer + ("-paper" if (cfg or "").endswith("_paper") else "")
    return m.label_for(cfg)


def table_order():
    """Labels in table order (each method's label, its per-config labels, then the -paper variants)."""
    order = []
    for m in all_methods().values():
        labels = [m.label, *m.labels_by_config.values()]
        order += labels + [label + "-paper" for label in labels]
    return order


__all__ = ["Method", "Sweep", "Stage", "PREVIOUS_STAGE",
           "ProtocolSettings", "BenchmarkSettings", "MethodDataError", "all_methods", "method_of",
           "known_trainers", "all_sweeps", "sweep_aliases", "label_for", "table_order", "PROTOCOLS"]
