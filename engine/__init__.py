"""vlprompt's Dassl-compatible core. ``from dassl.engine import X`` becomes ``from engine import X``."""
from .trainer import TRAINER_REGISTRY, SimpleTrainer, TrainerBase, TrainerX, build_trainer

__all__ = ["TRAINER_REGISTRY", "TrainerBase", "SimpleTrainer", "TrainerX", "build_trainer"]
