"""yacs configuration with Dassl's keys and merge rules, and one-line errors for user mistakes."""
import ast
import copy
import difflib
import os

import yaml
from yacs.config import CfgNode

from meta.errors import read_yaml

from ..utils.tools import UserError
from .defaults import _C

__all__ = ["CfgNode", "get_cfg_default", "merge_from_file", "merge_from_mapping", "merge_from_list", "all_keys", "add_config_node",
           "ConfigConflict", "peek_yaml_value"]


def get_cfg_default():
    return _C.clone()


class ConfigConflict(UserError):
    """Two declarations of one config key with different defaults."""

    def __init__(self, key, existing, declared):
        super().__init__(f"{key} is declared with default {declared!r} but already has default {existing!r}")
        self.key, self.existing, self.declared = key, existing, declared


def add_config_node(cfg, path, defaults):
    """Create ``cfg.<path>`` (e.g. "TRAINER.COOP") if missing and add ``defaults`` to it.

    Several trainers may share a node (KgCoOp and SEP read CoOp's ``TRAINER.COOP``, as upstream); a key
    they both declare must have the same default, else ``ConfigConflict`` (no silent first-come choice)."""
    node = cfg
    for part in path.split("."):
        if part not in node:
            node[part] = CfgNode()
        node = node[part]
    for key, value in defaults.items():
        if key in node and node[key] != value:
            raise ConfigConflict(f"{path}.{key}", node[key], value)
        node[key] = value
    return node


def all_keys(node, prefix=""):
    """Every leaf key of ``node`` as a dotted string."""
    keys = []
    for k, v in node.items():
        full = prefix + k
        keys += all_keys(v, full + ".") if isinstance(v, CfgNode) else [full]
    return keys


def _unknown_key(cfg, key, source):
    close = difflib.get_close_matches(key, all_keys(cfg), n=3, cutoff=0.6)
    hint = f"; closest valid keys: {', '.join(close)}" if close else ""
    return UserError(f"unknown config key {key} in {source}{hint}")


def _run_merge(merge, source):
    try:
        merge()
    except UserError:
        raise
    except (KeyError, AssertionError, ValueError) as e:
        msg = str(e.args[0]) if e.args else str(e)
        raise UserError(f"{source}: {msg.strip()}") from e


# ``value_readers``: key -> function(value) -> value or None, for values written for an official release
# whose type differs from ours (KgCoOp's CTX_INIT True). The running trainer supplies them (its
# ``legacy_values``), so they never affect another trainer's run; None = not applicable.
def _translate_legacy(incoming, source, value_readers, prefix=""):
    for k, v in list(incoming.items()):
        full = prefix + k
        if isinstance(v, dict):
            _translate_legacy(v, source, value_readers, full + ".")
        elif full in value_readers:
            new = value_readers[full](v)
            if new is not None and new != v:
                print(f"Note: {full} {v!r} in {source} read as {new!r} (the official release's meaning)")
                incoming[k] = new


def peek_yaml_value(path, key):
    """``A.B.C`` of a yaml file, or None (a look before the config is built; errors surface at the merge)."""
    try:
        with open(path) as f:
            node = yaml.safe_load(f) or {}
        for part in key.split("."):
            node = node[part]
        return node
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def merge_from_file(cfg, path, value_readers=None):
    if not os.path.isfile(path):
        raise UserError(f"config file not found: {path} (expected a yaml file; see configs/)")
    merge_from_mapping(cfg, read_yaml(path), path, value_readers)


def merge_from_mapping(cfg, incoming, source, value_readers=None):
    """A nested dict of config values (a yaml file's, or the config a run or bundle saved), with the checks
    of ``merge_from_file``; ``source`` names it in errors."""
    incoming = copy.deepcopy(incoming)  # the legacy readers rewrite it
    _check_tree(cfg, incoming, source)
    _translate_legacy(incoming, source, value_readers or {})
    _run_merge(lambda: cfg.merge_from_other_cfg(CfgNode(incoming)), source)


def _check_tree(root, incoming, source):
    def walk(node, d, prefix):
        for k, v in d.items():
            full = prefix + k
            if k not in node:
                raise _unknown_key(root, full, source)
            if isinstance(node[k], CfgNode):
                if not isinstance(v, dict):
                    raise UserError(f"{source}: {full} is a group of keys, not a value")
                walk(node[k], v, full + ".")

    walk(root, incoming, "")


def merge_from_list(cfg, opts, value_readers=None):
    """Trailing ``KEY VALUE`` pairs from the command line (highest priority)."""
    if len(opts) % 2:
        raise UserError(f"options must come as KEY VALUE pairs, got an odd number: {' '.join(map(str, opts))} "
                        "(flags such as --seed must come before the KEY VALUE options)")
    keys = all_keys(cfg)
    opts = list(opts)
    for i in range(0, len(opts), 2):
        key, value = opts[i], opts[i + 1]
        if key.startswith("--"):
            raise UserError(f"flag {key} found among the trailing KEY VALUE options; put flags before them")
        if key not in keys:
            raise _unknown_key(cfg, key, "command-line options")
        if value_readers and key in value_readers:
            legacy = {key: _decode(value)}
            _translate_legacy(legacy, "command-line options", value_readers)
            opts[i + 1] = value = legacy[key]
        _check_type(cfg, key, value)
    _run_merge(lambda: cfg.merge_from_list(opts), "command-line options")


def _decode(value):
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _check_type(cfg, key, value):
    node = cfg
    for part in key.split(".")[:-1]:
        node = node[part]
    old, new = node[key.split(".")[-1]], _decode(value)
    if old is None or new is None or type(old) is type(new):
        return
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return
    hint = ""
    if isinstance(old, float) and isinstance(new, int):
        hint = f" (write {new}.0)"
    raise UserError(f"{key} expects a {type(old).__name__} (default {old!r}), got {value!r}{hint}")
