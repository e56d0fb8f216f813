"""VPT, deep vision prompting (docs/design/baselines.md §7): visual prompts only; fixed "a photo of a {}." classifier.

As upstream, CLIP runs in fp32 whatever TRAINER.VPT.PREC says (amp adds autocast) and the prompts are
rounded through fp16 at every use (TRAINER.VPT.FP16_PROMPT_ROUNDING)."""
from engine import TRAINER_REGISTRY
from models.clip import check_depth, require_vit
from models.deep_prompts import VisualPrompts, rename_official_keys
from models.prompted_clip import FixedPromptCLIP

from .base import PromptTrainer

VPT_TEMPLATE = "a photo of a {}."  # upstream hard-codes it and ignores CTX_INIT


class VPTCLIP(FixedPromptCLIP):
    def __init__(self, cfg, classnames, clip_model, encoder_options=None):
        super().__init__(clip_model, classnames, [VPT_TEMPLATE], encoder_options)
        self.prompt_learner = VisualPrompts(cfg.N_CTX_VISION, self.image_encoder.width, cfg.PROMPT_DEPTH_VISION,
                                            round_fp16=cfg.FP16_PROMPT_ROUNDING).to(clip_model.logit_scale.device)

    def image_features(self, image):
        return self.prompt_learner.encode(self.image_encoder, image.to(self.dtype))


@TRAINER_REGISTRY.register()
class VPT(PromptTrainer):
    config_node = "VPT"
    config_defaults = {"N_CTX_VISION": 2, "CTX_INIT": "a photo of a", "PREC": "fp16", "PROMPT_DEPTH_VISION": 1,
                       "FP16_PROMPT_ROUNDING": True}

    @property
    def clip_precision(self):
        return "amp" if self.prec == "amp" else "fp32"  # upstream builds VPT's CLIP in fp32 whatever PREC says

    def build_model(self):
        cfg = self.trainer_cfg
        clip_model = self.load_clip()
        require_vit(clip_model, "VPT")
        check_depth("TRAINER.VPT.PROMPT_DEPTH_VISION", cfg.PROMPT_DEPTH_VISION,
                    len(clip_model.visual.transformer.resblocks))
        self.build_custom_clip(VPTCLIP, cfg, self.dm.dataset.classnames, clip_model=clip_model)

    def adapt_checkpoint(self, name, state_dict):
        return rename_official_keys(state_dict, visual="")
