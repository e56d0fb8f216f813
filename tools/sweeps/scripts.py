"""The one-line wrappers scripts/<sweep key>/<protocol>.sh, generated from the method data: one per protocol
for every sweep with ``scripts: true``, with a header that says what the script runs and where its settings
come from. ``python tools/sweep.py --write-scripts`` writes them; a test checks the files equal its output."""
import os
import textwrap

from meta.methods import PREVIOUS_STAGE, all_sweeps, method_of
from meta.protocols import (DG_TARGETS, DISPLAY, PROTOCOL_SECTION, PROTOCOLS, TITLES, XD_SOURCE,
                            XD_TARGETS)
from meta.runs import write_text_atomic
from tools import REPO

from .plan import DEMO_PROTOCOLS

SCRIPTS_DIR = os.path.join(REPO, "scripts")
WIDTH = 110


def _and(names):
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def describe(sweep, protocol):
    """What the protocol runs for this sweep, as a clause of the header's first sentence."""
    source, others, variants = DISPLAY[XD_SOURCE], len(XD_TARGETS), _and([DISPLAY[d] for d in DG_TARGETS])
    shots = sweep.default_shots(protocol)[0]
    if not sweep.train:
        return {"base2new": "evaluate zero-shot on the base and on the new classes",
                "few_shot": "zero-shot accuracy on all classes (the 0-shot point of the curves)",
                "cross_dataset": f"evaluate zero-shot on {source} and on the other {others} datasets",
                "domain_gen": f"evaluate zero-shot on {source} and on {variants}"}[protocol]
    return {"base2new": f"per dataset, train on the base classes ({shots} shots) and evaluate on the new "
                        "classes (eval-only, last epoch)",
            "few_shot": "per dataset and shot count K, train on all classes with K images per class",
            "cross_dataset": f"train on {source} ({shots} shots, all classes), evaluate (eval-only) on the "
                             f"other {others} datasets",
            "domain_gen": f"the {source} model of cross_dataset (trained first if missing) evaluated on "
                          f"{variants}"}[protocol]


def describe_stages(sweep, protocol):
    """The chain of training stages, as a sentence of the header (empty without stages)."""
    if not sweep.stages:
        return ""
    parts = []
    for i, st in enumerate(sweep.stages):
        notes = [f"config {st.cfg}"] if st.cfg else []
        if st.seeds is not None:
            notes.append(f"{_counted('seed', st.seeds)} only; the other seeds continue from seed {st.seeds[0]}'s run")
        if st.opts:
            notes.append(" ".join(o.replace(PREVIOUS_STAGE, "<previous stage's folder>") for o in st.opts))
        parts.append(st.name + (f" ({'; '.join(notes)})" if notes else ""))
    text = f"Each training is a chain of {len(parts)} stages, run in order: {', then '.join(parts)}"
    if protocol != "few_shot":
        eval_opts = sweep.stages[-1].eval_opts
        text += "; evaluations load the last stage's model" + (f" with {' '.join(eval_opts)}" if eval_opts else "")
    return text + "."


def _counted(word, values):
    return f"{word}{'s' if len(values) > 1 else ''} {' '.join(map(str, values))}"


def script_text(sweep, protocol):
    method = method_of(sweep.trainer)
    method_file = os.path.relpath(os.path.join(method.folder, "method.yaml"), REPO)
    section = PROTOCOL_SECTION[protocol]
    counts = [_counted("seed", sweep.seeds)]
    if protocol == "few_shot" and sweep.train:
        counts.append(_counted("shot", sweep.default_shots(protocol)))
    title = TITLES[protocol][0].lower() + TITLES[protocol][1:]
    source = sweep.settings(protocol).source
    paragraphs = [f"{method.title}, {title}: {describe(sweep, protocol)}; {', '.join(counts)}.",
                  f"Settings ({method_file}, sweeps.{sweep.key}.{section}): {source.rstrip('.')}."]
    if sweep.stages:
        paragraphs.insert(1, describe_stages(sweep, protocol))
    path = f"scripts/{sweep.key}/{protocol}.sh"
    lines = ["#!/usr/bin/env bash"]
    for text in paragraphs:
        lines += textwrap.wrap(text, WIDTH, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)
    lines += [f"# Usage: DATA=/path/to/datasets bash {path} DATASET... | all  [sweep options] [-- KEY VALUE...]",
              '#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;',
              "#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.",
              *([f"# Offline demo (CPU, no download): DEMO=1 bash {path} synthetic_shapes (the demo configs and CLIP)."]
                if protocol in DEMO_PROTOCOLS else []),
              f"# Generated from {method_file} by `python tools/sweep.py --write-scripts` (edit that file).",
              f'exec "${{PYTHON:-python3}}" "$(dirname "$0")/../../tools/sweep.py" {protocol} {sweep.key} "$@"']
    return "\n".join(lines) + "\n"


def expected_scripts():
    """{path relative to scripts/: text} for every script the method data asks for."""
    return {os.path.join(s.key, f"{p}.sh"): script_text(s, p)
            for s in all_sweeps().values() if s.scripts for p in PROTOCOLS}


def stale_folders(folder=SCRIPTS_DIR):
    """Folders of scripts/ that no sweep with scripts asks for (a renamed or removed method's)."""
    wanted = {os.path.dirname(rel) for rel in expected_scripts()}
    return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and d not in wanted)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def write_scripts(folder=SCRIPTS_DIR):
    """Write every script; returns 1 (and says which) when a stale folder is left to delete."""
    changed = 0
    for rel, text in expected_scripts().items():
        path = os.path.join(folder, rel)
        if _read(path) != text:
            write_text_atomic(path, text)
            changed += 1
        os.chmod(path, 0o755)
    print(f"{len(expected_scripts())} scripts under {folder}, {changed} written anew")
    stale = stale_folders(folder)
    for d in stale:
        print(f"stale: {os.path.join(folder, d)} (no sweep with scripts has the key {d!r}); delete it")
    return 1 if stale else 0
