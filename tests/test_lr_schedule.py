"""Per-epoch learning rates against the values tabled in docs/design/engine.md §8.2 (verified on Dassl's code)."""
import pytest
import torch

from engine.config import get_cfg_default
from engine.optim import build_lr_scheduler, build_optimizer

TABLE = [
    (dict(LR=0.002, LR_SCHEDULER="cosine", MAX_EPOCH=10, WARMUP_EPOCH=1, WARMUP_TYPE="constant"),
     [1e-05, 0.002, 0.00195106, 0.00180902, 0.00158779, 0.00130902, 0.001, 0.000690983, 0.000412215, 0.000190983]),
    (dict(LR=0.0035, LR_SCHEDULER="cosine", MAX_EPOCH=5, WARMUP_EPOCH=1, WARMUP_TYPE="constant"),
     [1e-05, 0.0035, 0.00316578, 0.00229078, 0.00120922]),
    (dict(LR=0.002, LR_SCHEDULER="cosine", MAX_EPOCH=10, WARMUP_EPOCH=3, WARMUP_TYPE="linear"),
     [1e-05, 0.000666667, 0.00133333, 0.002, 0.00195106, 0.00180902]),
    (dict(LR=0.002, STEPSIZE=(4,), MAX_EPOCH=10), [0.002] * 4 + [0.0002] * 4 + [2e-05] * 2),
    (dict(LR=0.002, LR_SCHEDULER="multi_step", STEPSIZE=(3, 6), MAX_EPOCH=10),
     [0.002] * 3 + [0.0002] * 3 + [2e-05] * 4),
    (dict(LR=0.002, LR_SCHEDULER="cosine", MAX_EPOCH=4), [0.002, 0.00170711, 0.001, 0.000292893]),
    (dict(LR=0.002, LR_SCHEDULER="cosine", MAX_EPOCH=10, WARMUP_EPOCH=3, WARMUP_TYPE="constant",
          WARMUP_RECOUNT=False), [1e-05, 1e-05, 1e-05, 0.002, 0.00164886, 0.00125962]),
]


def _build(**optim):
    cfg = get_cfg_default()
    cfg.OPTIM.NAME = "sgd"
    for k, v in optim.items():
        setattr(cfg.OPTIM, k, v)
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.OPTIM)
    return cfg, opt, build_lr_scheduler(opt, cfg.OPTIM)


def _epoch_lrs(opt, sched, n):
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("optim,expected", TABLE)
def test_per_epoch_lr_matches_engine_md(optim, expected):
    _, opt, sched = _build(**optim)
    assert _epoch_lrs(opt, sched, len(expected)) == pytest.approx(expected, rel=1e-5)


def test_resumed_scheduler_continues_the_schedule():
    """Dassl freezes the LR after a resume (docs/design/engine.md §6.4); ours continues exactly."""
    optim = dict(LR=0.002, LR_SCHEDULER="cosine", MAX_EPOCH=10, WARMUP_EPOCH=1, WARMUP_TYPE="constant")
    _, opt, sched = _build(**optim)
    full = _epoch_lrs(opt, sched, 10)
    _, opt1, sched1 = _build(**optim)
    _epoch_lrs(opt1, sched1, 4)
    _, opt2, sched2 = _build(**optim)
    opt2.load_state_dict(opt1.state_dict())
    sched2.load_state_dict(sched1.state_dict())
    assert _epoch_lrs(opt2, sched2, 6) == pytest.approx(full[4:], rel=1e-9)


def test_warmup_constant_first_epoch_then_base_lr():
    _, opt, sched = _build(LR=0.002, LR_SCHEDULER="cosine", MAX_EPOCH=200, WARMUP_EPOCH=1,
                           WARMUP_TYPE="constant")
    lrs = _epoch_lrs(opt, sched, 200)
    assert lrs[0] == 1e-5 and lrs[1] == 0.002 and lrs[-1] == pytest.approx(4.93e-7, rel=1e-2)
