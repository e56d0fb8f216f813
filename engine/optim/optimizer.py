"""Dassl's ``build_optimizer`` (docs/design/engine.md §8.1)."""
import torch
import torch.nn as nn

from ..utils.tools import UserError

AVAILABLE_OPTIMIZERS = ("adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw")


def build_optimizer(model, optim_cfg, param_groups=None):
    name = optim_cfg.NAME
    if name not in AVAILABLE_OPTIMIZERS:
        raise UserError(f"OPTIM.NAME must be one of {', '.join(AVAILABLE_OPTIMIZERS)}, got {name!r}")
    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)

    if param_groups is not None and optim_cfg.STAGED_LR:
        raise UserError("OPTIM.STAGED_LR cannot be combined with explicit param_groups")
    if param_groups is None:
        if isinstance(model, nn.Module):
            if optim_cfg.STAGED_LR:
                param_groups = _staged_param_groups(model, optim_cfg)
            else:
                param_groups = model.parameters()
        else:
            param_groups = model

    if name == "adam":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas, eps=optim_cfg.EPS)
    if name == "amsgrad":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas, amsgrad=True)
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                               dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV)
    if name == "rmsprop":
        return torch.optim.RMSprop(param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                                   alpha=optim_cfg.RMSPROP_ALPHA)
    if name == "radam":
        return torch.optim.RAdam(param_groups, lr=lr, weight_decay=wd, betas=betas)
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=wd, betas=betas)


def _staged_param_groups(model, optim_cfg):
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    if not new_layers:
        raise UserError("OPTIM.STAGED_LR needs OPTIM.NEW_LAYERS (names of the model's new child modules)")
    base, new = [], []
    for name, module in model.named_children():
        (new if name in new_layers else base).extend(module.parameters())
    return [{"params": base, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT}, {"params": new}]
