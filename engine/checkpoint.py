"""Checkpoint I/O in Dassl's layout (docs/design/engine.md §6), atomic, and safe to read.

Dassl checkpoints pickle optimizer/scheduler *objects* (and, for the warm-up scheduler, a whole
optimizer). ``torch.load(weights_only=True)`` refuses them, and ``weights_only=False`` would run
arbitrary code from the file. We unpickle with an allow-list instead: tensors, plain containers and
numbers load as usual; any other class becomes an inert ``OpaqueObject`` holding its pickled state,
so nothing from the file is ever executed and Dassl need not be installed.
"""
import os
import pickle
import random
import types
from collections import OrderedDict

import numpy as np
import torch

from .utils.io import atomic_write
from .utils.tools import UserError


class OpaqueObject:
    """Stand-in for a class a checkpoint names but we do not load (schedulers, optimizers, Dassl types)."""

    pickled_module = pickled_name = ""

    def __init__(self, *args, **kwargs):
        self.__dict__["_args"] = args

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def state_dict(self):
        """The object's attributes, as an LR scheduler's own ``state_dict`` gives them."""
        state = self.__dict__.get("_state") or {}
        return {k: v for k, v in state.items() if k != "optimizer"} if isinstance(state, dict) else {}

    def __repr__(self):
        return f"<opaque {self.pickled_module}.{self.pickled_name}>"


_OPAQUE_TYPES = {}
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
    ("builtins", "bytearray"), ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"),
    ("builtins", "int"), ("builtins", "float"), ("builtins", "bool"), ("builtins", "str"),
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"), ("torch", "Size"), ("torch", "device"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
    ("_codecs", "encode"),  # how protocol-2 pickles store bytes
}
_NUMPY_DTYPE_MODULES = ("numpy.dtypes",)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS or module in _NUMPY_DTYPE_MODULES:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        key = (module, name)
        if key not in _OPAQUE_TYPES:
            _OPAQUE_TYPES[key] = type(name, (OpaqueObject,), {"pickled_module": module, "pickled_name": name})
        return _OPAQUE_TYPES[key]


restricted_pickle = types.SimpleNamespace(
    Unpickler=_RestrictedUnpickler, load=lambda f, **kw: _RestrictedUnpickler(f, **kw).load(),
    __name__="restricted_pickle",
)


def load_checkpoint(fpath, map_location=None):
    """Load a checkpoint written by vlprompt or by Dassl without executing code from the file."""
    if not fpath or not os.path.isfile(fpath):
        raise UserError(f"checkpoint not found: {fpath}")
    if map_location is None:
        map_location = None if torch.cuda.is_available() else "cpu"
    try:
        return torch.load(fpath, map_location=map_location, pickle_module=restricted_pickle, weights_only=False)
    except UnicodeDecodeError:
        return torch.load(fpath, map_location=map_location, pickle_module=restricted_pickle, weights_only=False,
                          encoding="latin1")
    except Exception as e:
        raise UserError(f'unable to load checkpoint from "{fpath}": {e}') from e


def save_checkpoint(state, save_dir, is_best=False, remove_module_from_keys=True, model_name=""):
    """Write ``model.pth.tar-<epoch>`` (or ``model_name``) and the ``checkpoint`` pointer, each atomically."""
    os.makedirs(save_dir, exist_ok=True)
    if remove_module_from_keys:
        state["state_dict"] = OrderedDict(
            (k[7:] if k.startswith("module.") else k, v) for k, v in state["state_dict"].items())
    if not model_name:
        model_name = f"model.pth.tar-{state['epoch']}"
    fpath = os.path.join(save_dir, model_name)
    with atomic_write(fpath, "wb") as f:
        torch.save(state, f)
    with atomic_write(os.path.join(save_dir, "checkpoint"), "w") as f:
        f.write(f"{os.path.basename(fpath)}\n")
    print(f"Checkpoint saved to {fpath}")
    if is_best:
        best = os.path.join(save_dir, "model-best.pth.tar")
        with atomic_write(best, "wb") as f:
            torch.save(state, f)
        print(f'Best checkpoint saved to "{best}"')
    return fpath


def load_pretrained_weights(model, weight_path, adapt=None):
    """Copy every tensor of the file whose name and shape match ``model`` (Dassl semantics).

    ``adapt(state_dict) -> state_dict`` may first rename keys (checkpoints of official releases)."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    state_dict = OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state_dict.items())
    if adapt is not None:
        state_dict = adapt(state_dict)
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for k, v in state_dict.items():
        if k in model_dict and model_dict[k].size() == v.size():
            matched[k] = v
        else:
            discarded.append(k)
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    if not matched:
        print(f'Cannot load {weight_path} (check the key names manually)')
    else:
        print(f"Successfully loaded pretrained weights from {weight_path}")
        if discarded:
            print(f"Layers discarded due to unmatched keys or size: {discarded}")
    return list(matched)


def get_rng_state():
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(_to_python_random_state(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _to_python_random_state(s):
    # a tuple may come back as a list after serialisation
    return (s[0], tuple(s[1]), s[2]) if isinstance(s, (list, tuple)) else s


def checkpoint_file_name(epoch=None):
    """Dassl's file name of a saved epoch (None: the best-validation file)."""
    return "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"


def saved_run_facts(directory, epoch=None):
    """{"classnames", "clip_sha256"} as the run's checkpoints of ``epoch`` record them (the first model folder
    that has the file; the keys it lacks, e.g. in official checkpoints, are None)."""
    name = checkpoint_file_name(epoch)
    folders = sorted(f for f in os.listdir(directory) if os.path.isfile(os.path.join(directory, f, name))) \
        if os.path.isdir(directory) else []
    if not folders:
        raise UserError(f"no {name} under {directory}: expected a training run's output folder (and --load-epoch "
                        "one of its saved epochs)")
    checkpoint = load_checkpoint(os.path.join(directory, folders[0], name))
    return {"classnames": checkpoint.get("classnames"), "clip_sha256": checkpoint.get("clip_sha256")}
