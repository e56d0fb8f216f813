"""VPT, deep vision prompting (baselines.md §7): visual prompts only; fixed "a photo of a {}." classifier.

As upstream, CLIP runs in fp32 whatever TRAINER.VPT.PREC says (amp adds autocast) and the prompts are
rounded through fp16 at every use (TRAINER.VPT.FP16_PROMPT_ROUNDING)."""
from engine import TRAINER_REGISTRY
from engine.config import add_config_node
from engine.utils.tools import UserError
from models.deep_prompts import VisualPrompts, rename_official_keys

from .base import PromptTrainer
from .zsclip import FixedPromptCLIP

VPT_TEMPLATE = "a photo of a {}."  # upstream hard-codes it and ignores CTX_INIT


class VPTCLIP(FixedPromptCLIP):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__(clip_model, classnames, [VPT_TEMPLATE])
        self.prompt_learner = VisualPrompts(cfg.N_CTX_VISION, self.image_encoder.width, cfg.PROMPT_DEPTH_VISION,
                                            round_fp16=cfg.FP16_PROMPT_ROUNDING).to(clip_model.logit_scale.device)

    def image_features(self, image):
        return self.prompt_learner.encode(self.image_encoder, image.to(self.dtype))


@TRAINER_REGISTRY.register()
class VPT(PromptTrainer):
    config_node = "VPT"

    @classmethod
    def extend_cfg(cls, cfg):
        add_config_node(cfg, "TRAINER.VPT", {"N_CTX_VISION": 2, "CTX_INIT": "a photo of a", "PREC": "fp16",
                                             "PROMPT_DEPTH_VISION": 1, "FP16_PROMPT_ROUNDING": True})

    def build_model(self):
        cfg = self.trainer_cfg
        clip_model = self.load_clip(precision="amp" if self.prec == "amp" else "fp32")
        if getattr(clip_model.visual, "transformer", None) is None:
            raise UserError("VPT needs a ViT backbone")
        if not 1 <= cfg.PROMPT_DEPTH_VISION <= len(clip_model.visual.transformer.resblocks):
            raise UserError("TRAINER.VPT.PROMPT_DEPTH_VISION must be between 1 and the backbone's layers")
        self.build_custom_clip(lambda clip: VPTCLIP(cfg, self.dm.dataset.classnames, clip), "prompt_learner",
                               clip_model)

    def adapt_checkpoint(self, name, state_dict):
        return rename_official_keys(state_dict, visual="")
