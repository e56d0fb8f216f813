"""IVLP (docs/design/baselines.md §6): independent deep prompts in the text and the image encoder."""
import torch
import torch.nn as nn

from engine import TRAINER_REGISTRY
from models.clip import check_depth, require_vit
from models.deep_prompts import VisualPrompts, deep_prompt_hook, init_prompt, rename_official_keys
from models.prompted_clip import PromptedCLIP
from models.prompts import ClassPromptLearner, init_leading_context

from .base import PromptTrainer


class VLPromptLearner(ClassPromptLearner):
    """``ctx`` (first text layer), ``text_deep.k`` (before text block k+1), ``visual_prompts.*``."""

    def __init__(self, cfg, classnames, text_encoder, vision_width):
        ctx, prompt_prefix = init_leading_context(text_encoder, cfg.CTX_INIT, cfg.N_CTX_TEXT)
        print(f'Initial context: "{prompt_prefix}"')
        super().__init__(text_encoder, classnames, ctx.to(text_encoder.dtype), prompt_prefix)
        self.round_fp16 = cfg.FP16_PROMPT_ROUNDING
        self.text_deep = nn.ParameterList([init_prompt(cfg.N_CTX_TEXT, text_encoder.width, device=ctx.device)
                                           for _ in range(cfg.PROMPT_DEPTH_TEXT - 1)])
        self.visual_prompts = None
        if cfg.PROMPT_DEPTH_VISION > 0:
            self.visual_prompts = VisualPrompts(cfg.N_CTX_VISION, vision_width, cfg.PROMPT_DEPTH_VISION,
                                                round_fp16=self.round_fp16).to(ctx.device)


class IVLPCLIP(PromptedCLIP):
    def __init__(self, cfg, classnames, clip_model, encoder_options=None):
        super().__init__(clip_model, encoder_options)
        self.prompt_learner = VLPromptLearner(cfg, classnames, self.text_encoder, self.image_encoder.width)

    def text_features(self):
        pl = self.prompt_learner
        hook = deep_prompt_hook(list(pl.text_deep), at=1, round_fp16=pl.round_fp16)
        # upstream rounds every class's copy of a deep prompt to fp16, so each copy's gradient is rounded
        # before they are summed; a shared prefix would sum them first (3.7e-3 off after one epoch on 12-layer
        # weights). While training with the rounding on, every class keeps its own copy; evaluation shares.
        share = not (pl.round_fp16 and torch.is_grad_enabled())
        return self.text_encoder(pl.assemble(), pl.eot_indices, layer_hook=hook, length=pl.text_length,
                                 shared_prefix=pl.shared_prefix() if share else None)

    def image_features(self, image):
        visual = self.prompt_learner.visual_prompts
        if visual is None:
            return super().image_features(image)
        return visual.encode(self.image_encoder, image.to(self.dtype))


@TRAINER_REGISTRY.register()
class IVLP(PromptTrainer):
    config_node = "IVLP"
    config_defaults = {
        "N_CTX_VISION": 2, "N_CTX_TEXT": 2, "CTX_INIT": "a photo of a", "PREC": "fp16",
        "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9,
        # upstream rounds the deep prompts through fp16 at every use, even with PREC fp32
        "FP16_PROMPT_ROUNDING": True}

    def build_model(self):
        cfg = self.trainer_cfg
        clip_model = self.load_clip()
        check_depth("TRAINER.IVLP.PROMPT_DEPTH_TEXT", cfg.PROMPT_DEPTH_TEXT, len(clip_model.transformer.resblocks))
        if cfg.PROMPT_DEPTH_VISION > 0:
            require_vit(clip_model, "IVLP", "visual prompts; set TRAINER.IVLP.PROMPT_DEPTH_VISION 0 for text only")
            check_depth("TRAINER.IVLP.PROMPT_DEPTH_VISION", cfg.PROMPT_DEPTH_VISION,
                        len(clip_model.visual.transformer.resblocks))
        self.build_custom_clip(IVLPCLIP, cfg, self.dm.dataset.classnames, register_name="VLPromptLearner",
                               clip_model=clip_model)

    def adapt_checkpoint(self, name, state_dict):
        return rename_official_keys(state_dict)
