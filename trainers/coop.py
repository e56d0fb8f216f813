"""CoOp (docs/design/baselines.md §3): M learnable context vectors in the text input, unified or class-specific,
with the class token at the end, middle or front."""
import torch

from engine import TRAINER_REGISTRY
from engine.utils.tools import UserError
from models.prompted_clip import PromptedCLIP
from models.prompts import ClassPromptLearner, init_context

from .base import PromptTrainer

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


class CoOpPromptLearner(ClassPromptLearner):
    """CoOp's prompts: unified or class-specific context, class token at the end, middle or front."""

    def __init__(self, cfg, classnames, text_encoder):
        n_cls = len(classnames)
        if cfg.CTX_INIT and cfg.CSC:
            raise UserError("TRAINER.COOP.CSC True cannot be combined with CTX_INIT (the official code "
                            "silently ignores CSC there); set CTX_INIT '' for class-specific context")
        if not cfg.CTX_INIT:
            print("Initializing class-specific contexts" if cfg.CSC else "Initializing a generic context")
        ctx, prompt_prefix = init_context(text_encoder, cfg.CTX_INIT, cfg.N_CTX, n_cls if cfg.CSC else None)
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {ctx.shape[-2]}")
        super().__init__(text_encoder, classnames, ctx, prompt_prefix)
        self.class_token_position = cfg.CLASS_TOKEN_POSITION

    def shared_prefix(self):
        # with the class name at the front or middle, only the start token precedes it
        return super().shared_prefix() if self.class_token_position == "end" else None

    def forward(self):
        if self.class_token_position == "end":
            return self.assemble()
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prefix, suffix = self.token_prefix, self.token_suffix
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
    def __init__(self, cfg, classnames, clip_model, encoder_options=None):
        super().__init__(clip_model, encoder_options)
        self.prompt_learner = CoOpPromptLearner(cfg, classnames, self.text_encoder)

    def text_features(self):
        # the end token sits where the placeholder sentence had it, whatever the class-token position
        pl = self.prompt_learner
        return self.text_encoder(pl(), pl.eot_indices, length=pl.text_length, shared_prefix=pl.shared_prefix())


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    config_node = "COOP"
    config_defaults = {"N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16", "CLASS_TOKEN_POSITION": "end"}
    class_specific_state = "TRAINER.COOP.CSC"  # CSC: one context per training class (KgCoOp, ProGrad inherit it)

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        if cfg.TRAINER.COOP.CLASS_TOKEN_POSITION not in CLASS_TOKEN_POSITIONS:
            raise UserError(f"TRAINER.COOP.CLASS_TOKEN_POSITION must be one of {', '.join(CLASS_TOKEN_POSITIONS)}")

    def build_model(self):
        self.build_custom_clip(CoOpCLIP, self.trainer_cfg, self.dm.dataset.classnames)
