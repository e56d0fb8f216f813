import contextlib
import random
from collections import defaultdict

import numpy as np
import torch


from meta.errors import UserError  # noqa: F401  (torch-free, shared with the tools)


def set_random_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def collect_env_info():
    from torch.utils.collect_env import get_pretty_env_info
    import PIL

    try:
        info = get_pretty_env_info()
    except Exception as e:  # collect_env shells out; never let it break a run
        info = f"(environment report unavailable: {e})"
    return info + f"\n        Pillow ({PIL.__version__})"


class AverageMeter:
    def __init__(self, ema=False):
        self.reset()

    def reset(self):
        self.val = self.avg = self.sum = 0.0
        self.count = 0

    def update(self, val, n=1):
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


class MetricMeter:
    def __init__(self, delimiter=" "):
        self.meters = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict):
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for k, v in input_dict.items():
            self.meters[k].update(v)

    def __str__(self):
        return self.delimiter.join(f"{name} {m.val:.4f} ({m.avg:.4f})" for name, m in self.meters.items())


_deferred_warnings = None


def warn(message):
    """A value the run changed or ignored that the user must see (e.g. a trainer's epoch rule in
    ``resolve_cfg``): printed as "Warning: ..." now, or, inside ``deferred_warnings``, collected so that
    train.py prints it at start-up, before the config dump, and again in the run summary."""
    if _deferred_warnings is not None:
        _deferred_warnings.append(message)
    else:
        print(f"Warning: {message}")


@contextlib.contextmanager
def deferred_warnings():
    global _deferred_warnings
    previous, _deferred_warnings = _deferred_warnings, []
    try:
        yield _deferred_warnings
    finally:
        _deferred_warnings = previous
