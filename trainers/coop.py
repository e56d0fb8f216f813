"""CoOp (baselines.md §3): M learnable context vectors in the text input, unified or class-specific,
with the class token at the end, middle or front."""
import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from engine import TRAINER_REGISTRY
from engine.utils.tools import UserError
from models.prompted_clip import PromptedCLIP
from models.prompts import context_from_words, embed_class_prompts

from .base import PromptTrainer

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


class PromptLearner(nn.Module):
    """Checkpoint keys as the official code: ``ctx``, ``token_prefix``, ``token_suffix``."""

    def __init__(self, cfg, classnames, text_encoder):
        super().__init__()
        n_cls, dtype, width = len(classnames), text_encoder.dtype, text_encoder.width
        if cfg.CTX_INIT:
            if cfg.CSC:
                raise UserError("TRAINER.COOP.CSC True cannot be combined with CTX_INIT (the official code "
                                "silently ignores CSC there); set CTX_INIT '' for class-specific context")
            ctx, prompt_prefix = context_from_words(text_encoder, cfg.CTX_INIT)
            ctx = ctx.to(dtype)
            n_ctx = ctx.shape[0]  # word init overrides N_CTX (baselines.md Q1)
        else:
            n_ctx = cfg.N_CTX
            shape = (n_cls, n_ctx, width) if cfg.CSC else (n_ctx, width)
            print("Initializing class-specific contexts" if cfg.CSC else "Initializing a generic context")
            ctx = torch.empty(shape, dtype=dtype, device=text_encoder.positional_embedding.device)
            nn.init.normal_(ctx, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)
        tokens, prefix, suffix, name_lens = embed_class_prompts(text_encoder, classnames, prompt_prefix, n_ctx)
        self.register_buffer("token_prefix", prefix)
        self.register_buffer("token_suffix", suffix)
        self.register_buffer("tokenized_prompts", tokens, persistent=False)
        self.n_cls, self.n_ctx, self.name_lens = n_cls, n_ctx, name_lens
        self.class_token_position = cfg.CLASS_TOKEN_POSITION

    def forward(self):
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prefix, suffix = self.token_prefix, self.token_suffix
        if self.class_token_position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        rows = []
        half = self.n_ctx // 2
        for i, name_len in enumerate(self.name_lens):
            name, rest = suffix[i:i + 1, :name_len], suffix[i:i + 1, name_len:]
            if self.class_token_position == "middle":
                parts = [prefix[i:i + 1], ctx[i:i + 1, :half], name, ctx[i:i + 1, half:], rest]
            else:  # front
                parts = [prefix[i:i + 1], name, ctx[i:i + 1], rest]
            rows.append(torch.cat(parts, dim=1))
        return torch.cat(rows, dim=0)


class CoOpCLIP(PromptedCLIP):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__(clip_model)
        self.prompt_learner = PromptLearner(cfg, classnames, self.text_encoder)

    def text_features(self):
        # the end token sits where the placeholder sentence had it, whatever the class-token position
        return self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts.argmax(dim=-1))


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    config_node = "COOP"

    @classmethod
    def extend_cfg(cls, cfg):
        cfg.TRAINER.COOP = CN({"N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16",
                               "CLASS_TOKEN_POSITION": "end"})

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        if cfg.TRAINER.COOP.CLASS_TOKEN_POSITION not in CLASS_TOKEN_POSITIONS:
            raise UserError(f"TRAINER.COOP.CLASS_TOKEN_POSITION must be one of {', '.join(CLASS_TOKEN_POSITIONS)}")

    def build_model(self):
        clip_model = self.load_clip()
        print("Building custom CLIP")
        self.model = CoOpCLIP(self.trainer_cfg, self.dm.dataset.classnames, clip_model)
        print("Turning off gradients in both the image and the text encoder")
        for name, param in self.model.named_parameters():
            param.requires_grad_("prompt_learner" in name)
        self.model.to(self.device)
        self.register_trainable("prompt_learner", self.model.prompt_learner)
