"""What every CLIP prompt trainer shares: its config node and precision, loading CLIP for that precision,
building the prompted CLIP with the encoder switches, registering the trainable module, and evaluation
that encodes the class prompts once when they do not depend on the image. The training step itself
(autocast, backward, loss scaling, the NaN check, the update) is the engine's; a trainer provides
``build_model`` and, when its loss is not plain cross-entropy, ``compute_loss``."""
from engine import TrainerX
from engine.config import add_config_node
from engine.optim import build_lr_scheduler, build_optimizer
from engine.utils.download import sha256sum
from engine.utils.tools import UserError
from models import load_clip
from models.clip import PRECISIONS, clip_weights_file, describe_open_clip, open_clip_backbone
from models.sinkhorn import OTDiagnostics


class PromptTrainer(TrainerX):
    """Subclasses set ``config_node`` (e.g. "COOP") and ``config_defaults`` and implement ``build_model``.

    ``self.model(image)`` returns the logits; ``compute_loss(image, label)`` returns ``(loss, logits)``.
    """

    config_node = ""
    config_defaults = {}  # TRAINER.<config_node> keys and defaults; several trainers may share a node
    # buffers rebuilt from the current class names; never loaded from a checkpoint (docs/design/engine.md §6.5)
    checkpoint_ignored_keys = ("token_prefix", "token_suffix")
    # config values written for an official release with another type: key -> reader(value) -> value or None
    # (applied only when this trainer runs; KgCoOp's CTX_INIT True)
    legacy_values = {}
    # whether the learned state is tied to the training classes, so that predict.py refuses other class names:
    # False (class-agnostic prompts), True, or the config key whose True value makes it so (class-specific
    # context); tests/test_predict.py checks every trainer's declaration against its tensors' shapes
    class_specific_state = False
    # config keys naming files that only training reads (initial weights, an earlier stage's run): cleared when
    # a trained run is rebuilt for evaluation or prediction elsewhere (predict.py, a bundle)
    training_only_keys = ("MODEL.INIT_WEIGHTS",)

    @classmethod
    def class_specific_reason(cls, cfg):
        """Why the learned state of a run with ``cfg`` only fits its training classes (one line), or None."""
        declared = cls.class_specific_state
        if isinstance(declared, str):
            node = cfg
            for part in declared.split("."):
                node = node[part]
            return f"{declared} True: one learned context per training class" if node else None
        return f"{cls.__name__} learns tensors for each training class" if declared else None

    @classmethod
    def extend_cfg(cls, cfg):
        """Add this trainer's config node (train.py calls it for every registered trainer)."""
        if cls.config_node:
            add_config_node(cfg, f"TRAINER.{cls.config_node}", cls.config_defaults)

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

    @property
    def clip_precision(self):
        """How CLIP is stored for this run: the trainer's PREC (VPT keeps CLIP fp32 in fp16 mode, as upstream)."""
        return self.prec

    def load_clip(self):
        backbone = self.cfg.MODEL.BACKBONE
        print(f"Loading CLIP (backbone: {backbone.NAME}{' ' + backbone.PRETRAINED if backbone.PRETRAINED else ''})")
        clip_model = load_clip(backbone.NAME, backbone.PATH, self.clip_precision, self.device, backbone.PRETRAINED)
        open_clip_model = open_clip_backbone(backbone.NAME, backbone.PRETRAINED, backbone.PATH)
        if open_clip_model is not None:
            print(describe_open_clip(open_clip_model, clip_model, self.cfg.INPUT.PIXEL_MEAN, self.cfg.INPUT.PIXEL_STD))
        resolution = clip_model.visual.image_size
        resolution = resolution[0] if isinstance(resolution, (tuple, list)) else resolution
        if tuple(self.cfg.INPUT.SIZE) != (resolution, resolution):
            raise UserError(f"INPUT.SIZE is {tuple(self.cfg.INPUT.SIZE)} but {backbone.NAME} takes "
                            f"{resolution}x{resolution} images; set INPUT.SIZE ({resolution}, {resolution})")
        return clip_model

    @property
    def clip_weights_path(self):
        """The local file this run's CLIP weights load from (OpenAI's, PATH, or open_clip's cached download)."""
        backbone = self.cfg.MODEL.BACKBONE
        return clip_weights_file(backbone.NAME, backbone.PRETRAINED, backbone.PATH)

    @property
    def clip_sha256(self):
        """SHA-256 of the CLIP weights file this run loads (recorded in checkpoints and bundles)."""
        if getattr(self, "_clip_sha256", None) is None:
            self._clip_sha256 = sha256sum(self.clip_weights_path)
        return self._clip_sha256

    def checkpoint_extras(self):
        return {**super().checkpoint_extras(), "clip_sha256": self.clip_sha256}

    def check_bundle(self, bundle, path):
        if bundle["trainer"] != self.cfg.TRAINER.NAME:
            raise UserError(f"the bundle {path} was trained with {bundle['trainer']}, not {self.cfg.TRAINER.NAME}; "
                            f"use --trainer {bundle['trainer']} (or leave --trainer out)")
        if bundle["clip_sha256"] != self.clip_sha256:
            raise UserError(f"the bundle {path} was trained on CLIP weights with SHA-256 {bundle['clip_sha256']} but "
                            f"{self.cfg.MODEL.BACKBONE.NAME} ({self.clip_weights_path}) has SHA-256 "
                            f"{self.clip_sha256}; set MODEL.BACKBONE.PATH to the weights it was trained on")

    @property
    def encoder_options(self):
        """The exact speed-up switches, given to the encoders when they are built."""
        return {"text_truncate": self.cfg.MODEL.TEXT_TRUNCATE, "text_shared_prefix": self.cfg.MODEL.TEXT_SHARED_PREFIX}

    def build_custom_clip(self, model_cls, *args, register_name="prompt_learner", clip_model=None,
                          trainable="prompt_learner"):
        """The CoOp-family ``build_model``: CLIP -> ``model_cls(*args, clip_model, encoder_options)`` -> freeze
        all but the parameters whose name contains ``trainable`` -> register ``model.prompt_learner`` with
        optimizer and schedule under ``register_name`` (the official checkpoint folder name)."""
        clip_model = clip_model if clip_model is not None else self.load_clip()
        print("Building custom CLIP")
        self.model = model_cls(*args, clip_model, encoder_options=self.encoder_options)
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

    def before_test(self, split):
        if self.cfg.TEST.CACHE_TEXT_FEATURES and hasattr(self.model, "cache_text_features"):
            with self.autocast():
                self.model.cache_text_features()

    def after_test(self, split):
        if hasattr(self.model, "clear_text_cache"):
            self.model.clear_text_cache()


class OTDiagnosticsHooks:
    """``TEST.OT_DIAGNOSTICS True`` (every OT trainer: PLOT, PLOTPP, ALIGN): each evaluation logs the mean
    entropy of the transport plans relative to the uniform plan (1 = uniform: the OT then equals a mean) and
    the Sinkhorn iterations per stopping group, per OT level (models/sinkhorn.py ``OTDiagnostics``); the
    model records into ``model.ot_diagnostics`` while it is set."""

    def before_test(self, split):
        self.model.ot_diagnostics = OTDiagnostics() if self.cfg.TEST.OT_DIAGNOSTICS else None
        super().before_test(split)

    def after_test(self, split):
        super().after_test(split)
        diagnostics, self.model.ot_diagnostics = getattr(self.model, "ot_diagnostics", None), None
        if diagnostics is None:
            return
        summary = diagnostics.summary()
        for line in diagnostics.report(summary):
            print(f"[{split}] {line}")
        for level, values in summary.items():
            tag = level.replace(" ", "_")
            self.write_scalar(f"{split}/ot_entropy_ratio_{tag}", values["entropy_ratio"], self.epoch)
            self.write_scalar(f"{split}/ot_iterations_{tag}", values["iterations"], self.epoch)
        self.ot_diagnostics_summary = summary
