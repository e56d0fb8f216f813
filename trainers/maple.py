"""MaPLe (baselines.md §5): text prompts at the input and before blocks 1..J-1, coupled to visual
prompts by linear maps text width -> vision width (taken from the backbone; upstream hard-codes 512/768)."""
import copy

import torch.nn as nn

from engine import TRAINER_REGISTRY
from engine.config import add_config_node
from engine.utils.tools import UserError
from models.deep_prompts import deep_prompt_hook, init_prompt, rename_official_keys
from models.prompted_clip import PromptedCLIP
from models.prompts import ClassPromptLearner, init_leading_context

from .base import PromptTrainer


class MultiModalPromptLearner(ClassPromptLearner):
    """Keys as upstream: ``ctx``, ``proj``, ``compound_prompts_text.k``, ``compound_prompt_projections.k``."""

    def __init__(self, cfg, classnames, text_encoder, vision_width):
        ctx, prompt_prefix = init_leading_context(text_encoder, cfg.CTX_INIT, cfg.N_CTX)
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of MaPLe context words (tokens): {cfg.N_CTX}")
        super().__init__(text_encoder, classnames, ctx.to(text_encoder.dtype), prompt_prefix)
        width = text_encoder.width
        # the first-layer coupling runs in the model's dtype (upstream: always fp16, which crashes in fp32)
        self.proj = nn.Linear(width, vision_width).to(device=ctx.device, dtype=text_encoder.dtype)
        self.compound_prompts_text = nn.ParameterList(
            [init_prompt(cfg.N_CTX, width, device=ctx.device) for _ in range(cfg.PROMPT_DEPTH - 1)])
        # one initialisation cloned for every deeper layer (upstream's _get_clones, baselines.md Q6)
        single = nn.Linear(width, vision_width).to(ctx.device)
        self.compound_prompt_projections = nn.ModuleList(
            [copy.deepcopy(single) for _ in range(cfg.PROMPT_DEPTH - 1)])

    def visual_prompts(self):
        """First-layer visual prompts F0(P0) and the deep ones F_l(P_l)."""
        deep = [proj(p) for proj, p in zip(self.compound_prompt_projections, self.compound_prompts_text)]
        return self.proj(self.ctx), deep


class MaPLeCLIP(PromptedCLIP):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__(clip_model)
        self.prompt_learner = MultiModalPromptLearner(cfg, classnames, self.text_encoder, self.image_encoder.width)

    def text_features(self):
        pl = self.prompt_learner
        hook = deep_prompt_hook(list(pl.compound_prompts_text), at=1)
        return self.text_encoder(pl.assemble(), pl.eot_indices, layer_hook=hook, length=pl.text_length,
                                 shared_prefix=pl.shared_prefix())

    def image_features(self, image):
        first, deep = self.prompt_learner.visual_prompts()
        return self.image_encoder(image.to(self.dtype), extra_tokens=first.unsqueeze(0),
                                  layer_hook=deep_prompt_hook(deep, at="tail"))


@TRAINER_REGISTRY.register()
class MaPLe(PromptTrainer):
    config_node = "MAPLE"

    @classmethod
    def extend_cfg(cls, cfg):
        add_config_node(cfg, "TRAINER.MAPLE", {"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16",
                                               "PROMPT_DEPTH": 9})

    def build_model(self):
        cfg = self.trainer_cfg
        clip_model = self.load_clip()
        layers = len(clip_model.transformer.resblocks)
        if not 1 <= cfg.PROMPT_DEPTH <= layers:
            raise UserError(f"TRAINER.MAPLE.PROMPT_DEPTH must be between 1 and {layers} (the backbone's layers)")
        if not getattr(clip_model.visual, "class_embedding", None) is not None:
            raise UserError("MaPLe needs a ViT backbone (visual prompts)")
        self.build_custom_clip(lambda clip: MaPLeCLIP(cfg, self.dm.dataset.classnames, clip),
                               "MultiModalPromptLearner", clip_model)

    def adapt_checkpoint(self, name, state_dict):
        return rename_official_keys(state_dict)
