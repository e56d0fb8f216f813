"""What every CLIP prompt trainer shares: loading CLIP for its precision, registering the trainable
module with optimizer/scheduler (and amp scaler), the fp16/fp32/amp training step, and evaluation
that encodes the class prompts once when they do not depend on the image."""
import torch
import torch.nn.functional as F

from engine import TrainerX
from engine.evaluation import compute_accuracy
from engine.optim import build_lr_scheduler, build_optimizer
from engine.utils.tools import UserError
from models import load_clip
from models.clip import PRECISIONS


class PromptTrainer(TrainerX):
    """Subclasses set ``config_node`` (e.g. "COOP") and implement ``build_model``.

    ``self.model(image, label)`` must return the logits in eval mode; in train mode it may return
    logits (cross-entropy is applied here) or a ``(loss, logits-or-None)`` pair from ``compute_loss``.
    """

    config_node = ""
    # buffers rebuilt from the current class names; never loaded from a checkpoint (engine.md §6.5)
    checkpoint_ignored_keys = ("token_prefix", "token_suffix")

    @classmethod
    def extend_cfg(cls, cfg):
        """Add this trainer's config node (called for every registered trainer, as CoOp's extend_cfg)."""

    @property
    def trainer_cfg(self):
        return self.cfg.TRAINER[self.config_node]

    @property
    def prec(self):
        return self.trainer_cfg.PREC

    def check_cfg(self, cfg):
        prec = cfg.TRAINER[self.config_node].PREC
        if prec not in PRECISIONS:
            raise UserError(f"TRAINER.{self.config_node}.PREC must be one of {', '.join(PRECISIONS)}, got {prec!r}")

    def load_clip(self, precision=None):
        backbone = self.cfg.MODEL.BACKBONE
        print(f"Loading CLIP (backbone: {backbone.NAME})")
        clip_model = load_clip(backbone.NAME, backbone.PATH, precision or self.prec, self.device)
        resolution = clip_model.visual.image_size
        resolution = resolution[0] if isinstance(resolution, (tuple, list)) else resolution
        if self.cfg.INPUT.SIZE[0] != resolution:
            raise UserError(f"INPUT.SIZE is {tuple(self.cfg.INPUT.SIZE)} but {backbone.NAME} takes "
                            f"{resolution}x{resolution} images; set INPUT.SIZE ({resolution}, {resolution})")
        return clip_model

    def build_custom_clip(self, build, register_name, clip_model=None, trainable="prompt_learner"):
        """The CoOp-family ``build_model``: CLIP -> ``build(clip_model)`` -> freeze all but the parameters
        whose name contains ``trainable`` -> register ``model.prompt_learner`` with optimizer/schedule."""
        clip_model = clip_model if clip_model is not None else self.load_clip()
        print("Building custom CLIP")
        self.model = build(clip_model)
        self.model.text_encoder.truncate = self.cfg.MODEL.TEXT_TRUNCATE
        self.model.text_encoder.share_prefix = self.cfg.MODEL.TEXT_SHARED_PREFIX
        print("Turning off gradients in both the image and the text encoder")
        for name, param in self.model.named_parameters():
            param.requires_grad_(trainable in name)
        self.model.to(self.device)
        self.register_trainable(register_name, self.model.prompt_learner)

    def register_trainable(self, name, module, params=None):
        """Optimizer and LR schedule over ``params`` (default: the module), registered under ``name``."""
        if self.cfg.MODEL.INIT_WEIGHTS:
            from engine.checkpoint import load_pretrained_weights

            load_pretrained_weights(module, self.cfg.MODEL.INIT_WEIGHTS,
                                    adapt=lambda sd: self.adapt_checkpoint(name, sd))
        optim = build_optimizer(module if params is None else params, self.cfg.OPTIM)
        sched = build_lr_scheduler(optim, self.cfg.OPTIM)
        self.register_model(name, module, optim, sched)
        # loss scaling only for fp16 autocast (bf16 has fp32's range)
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if self.prec == "amp" and self.amp_dtype == torch.float16 else None)
        self.trainable_name = name

    def compute_loss(self, image, label):
        """Default: cross-entropy on the logits. Returns (loss, logits)."""
        logits = self.model(image)
        return F.cross_entropy(logits, label), logits

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)[:2]
        if self.scaler is not None:
            with self.autocast():
                loss, logits = self.compute_loss(image, label)
            self.model_zero_grad()
            self.scaler.scale(loss).backward()
            for name in self.get_model_names():
                self.scaler.step(self._optims[name])
            self.scaler.update()
        else:
            with self.autocast():  # bf16 amp: no scaler
                loss, logits = self.compute_loss(image, label)
            self.model_backward_and_update(loss)
        summary = {"loss": loss.item()}
        if logits is not None:
            summary["acc"] = compute_accuracy(logits, label)[0].item()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    @property
    def amp_dtype(self):
        dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
        if self.cfg.MODEL.AMP_DTYPE not in dtypes:
            raise UserError(f"MODEL.AMP_DTYPE must be fp16 or bf16, got {self.cfg.MODEL.AMP_DTYPE!r}")
        return dtypes[self.cfg.MODEL.AMP_DTYPE]

    def autocast(self):
        """Mixed precision for PREC amp (fp32 master prompts); a no-op context otherwise."""
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.prec == "amp")

    def model_inference(self, input):
        with self.autocast():
            return self.model(input)

    def before_test(self, split):
        if self.cfg.TEST.CACHE_TEXT_FEATURES and hasattr(self.model, "cache_text_features"):
            with self.autocast():
                self.model.cache_text_features()

    def after_test(self, split):
        if hasattr(self.model, "clear_text_cache"):
            self.model.clear_text_cache()
