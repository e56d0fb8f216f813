"""MaPLe (docs/design/baselines.md §5): text prompts at the input and before blocks 1..J-1, coupled to visual
prompts by linear maps text width -> vision width (taken from the backbone; upstream hard-codes 512/768)."""
from engine import TRAINER_REGISTRY
from models.clip import check_depth, require_vit
from models.deep_prompts import add_coupled_prompts, coupled_visual_prompts, deep_prompt_hook, rename_official_keys
from models.prompted_clip import PromptedCLIP
from models.prompts import ClassPromptLearner, init_leading_context

from .base import PromptTrainer


class MaPLePromptLearner(ClassPromptLearner):
    """Keys as upstream: ``ctx``, ``proj``, ``compound_prompts_text.k``, ``compound_prompt_projections.k``."""

    def __init__(self, cfg, classnames, text_encoder, vision_width):
        ctx, prompt_prefix = init_leading_context(text_encoder, cfg.CTX_INIT, cfg.N_CTX)
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of MaPLe context words (tokens): {cfg.N_CTX}")
        super().__init__(text_encoder, classnames, ctx.to(text_encoder.dtype), prompt_prefix)
        add_coupled_prompts(self, text_encoder.width, vision_width, cfg.PROMPT_DEPTH, (cfg.N_CTX,),
                            text_encoder.dtype, ctx.device)

    def visual_prompts(self):
        return coupled_visual_prompts(self)


class MaPLeCLIP(PromptedCLIP):
    def __init__(self, cfg, classnames, clip_model, encoder_options=None):
        super().__init__(clip_model, encoder_options)
        self.prompt_learner = MaPLePromptLearner(cfg, classnames, self.text_encoder, self.image_encoder.width)

    def text_features(self):
        pl = self.prompt_learner
        hook = deep_prompt_hook(list(pl.compound_prompts_text), at=1)
        return self.text_encoder(pl.assemble(), pl.eot_indices, layer_hook=hook, length=pl.text_length,
                                 shared_prefix=pl.shared_prefix())

    def image_features(self, image):
        first, deep = self.prompt_learner.visual_prompts()
        return self.image_encoder(image.to(self.dtype), extra_tokens=first,
                                  layer_hook=deep_prompt_hook(deep, at="tail"))


@TRAINER_REGISTRY.register()
class MaPLe(PromptTrainer):
    config_node = "MAPLE"
    config_defaults = {"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16", "PROMPT_DEPTH": 9}

    def build_model(self):
        cfg = self.trainer_cfg
        clip_model = self.load_clip()
        require_vit(clip_model, "MaPLe")
        check_depth("TRAINER.MAPLE.PROMPT_DEPTH", cfg.PROMPT_DEPTH, min(len(clip_model.transformer.resblocks),
                                                                        len(clip_model.visual.transformer.resblocks)))
        self.build_custom_clip(MaPLeCLIP, cfg, self.dm.dataset.classnames, register_name="MultiModalPromptLearner",
                               clip_model=clip_model)

    def adapt_checkpoint(self, name, state_dict):
        return rename_official_keys(state_dict)
