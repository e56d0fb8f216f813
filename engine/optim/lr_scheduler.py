"""Dassl's epoch-based LR schedulers with warm-up (docs/design/engine.md §8.2), minus two Dassl defects:

* no positional ``verbose`` argument (torch removed it; Dassl's wrapper crashes on current torch);
* the warm-up wrapper saves its successor's *state*, not the successor object, so a resumed run keeps
  following the schedule (Dassl's unpickled successor drives a dead optimizer copy and the live LR
  freezes, docs/design/engine.md §6.4). Uninterrupted runs give exactly Dassl's per-epoch values.
"""
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR, StepLR

from ..utils.tools import UserError

AVAILABLE_LR_SCHEDULERS = ("single_step", "multi_step", "cosine")


class _BaseWarmupScheduler(LRScheduler):
    def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def step(self, epoch=None):
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)

    def state_dict(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        successor = state.pop("successor", None)
        if successor is not None and not isinstance(successor, dict):
            successor = successor.state_dict()  # a checkpoint written by Dassl pickles the object itself
        self.__dict__.update(state)
        if successor is not None:
            self.successor.load_state_dict(successor)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    def __init__(self, optimizer, successor, warmup_epoch, cons_lr, last_epoch=-1):
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    def __init__(self, optimizer, successor, warmup_epoch, min_lr, last_epoch=-1):
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def build_lr_scheduler(optimizer, optim_cfg):
    name, stepsize, max_epoch = optim_cfg.LR_SCHEDULER, optim_cfg.STEPSIZE, optim_cfg.MAX_EPOCH
    if name not in AVAILABLE_LR_SCHEDULERS:
        raise UserError(f"OPTIM.LR_SCHEDULER must be one of {', '.join(AVAILABLE_LR_SCHEDULERS)}, got {name!r}")
    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise UserError(f"OPTIM.STEPSIZE must be an int for single_step, got {stepsize!r}")
        if stepsize <= 0:
            stepsize = max_epoch
        scheduler = StepLR(optimizer, step_size=stepsize, gamma=optim_cfg.GAMMA)
    elif name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise UserError(f"OPTIM.STEPSIZE must be a list of epochs for multi_step, got {stepsize!r}")
        scheduler = MultiStepLR(optimizer, milestones=list(stepsize), gamma=optim_cfg.GAMMA)
    else:
        scheduler = CosineAnnealingLR(optimizer, T_max=float(max_epoch))

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR)
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR)
        else:
            raise UserError(f"OPTIM.WARMUP_TYPE must be constant or linear, got {optim_cfg.WARMUP_TYPE!r}")
    return scheduler


__all__ = ["build_lr_scheduler", "ConstantWarmupScheduler", "LinearWarmupScheduler", "torch"]
