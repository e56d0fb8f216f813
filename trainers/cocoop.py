"""CoCoOp (docs/design/baselines.md §4): CoOp's context shifted per image by a small meta-net on the image feature."""
from collections import OrderedDict

import torch
import torch.nn as nn

from engine import TRAINER_REGISTRY
from models.encoders import SharedPrefix
from models.prompted_clip import PromptedCLIP, normalize
from models.prompts import ClassPromptLearner, init_context

from .base import PromptTrainer


class CoCoOpPromptLearner(ClassPromptLearner):
    """Keys as official: ``ctx``, ``meta_net.linear1/2``, ``token_prefix``, ``token_suffix``."""

    def __init__(self, cfg, classnames, text_encoder, image_dim):
        ctx, prompt_prefix = init_context(text_encoder, cfg.CTX_INIT, cfg.N_CTX)
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {ctx.shape[0]}")
        super().__init__(text_encoder, classnames, ctx, prompt_prefix)
        hidden = image_dim // 16
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(image_dim, hidden)), ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(hidden, text_encoder.width))]))
        self.meta_net.to(device=ctx.device, dtype=text_encoder.dtype)  # halved in fp16 mode, as upstream

    def forward(self, image_features):
        """Prompts per image: (B, n_cls, L, D); one meta-net shift added to every context vector."""
        shift = self.meta_net(image_features)  # (B, D)
        ctx = self.ctx.unsqueeze(0) + shift.unsqueeze(1)  # (B, M, D)
        b, n_cls = ctx.shape[0], self.n_cls
        return torch.cat([
            self.token_prefix.unsqueeze(0).expand(b, -1, -1, -1),
            ctx.unsqueeze(1).expand(-1, n_cls, -1, -1),
            self.token_suffix.unsqueeze(0).expand(b, -1, -1, -1),
        ], dim=2)


class CoCoOpCLIP(PromptedCLIP):
    image_conditioned_text = True
    # images whose prompts go through the text encoder together (memory: chunk x n_cls sequences)
    text_chunk_images = 8

    def __init__(self, cfg, classnames, clip_model, encoder_options=None):
        super().__init__(clip_model, encoder_options)
        self.prompt_learner = CoCoOpPromptLearner(cfg, classnames, self.text_encoder, self.image_encoder.output_dim)

    def forward(self, image):
        image_features = normalize(self.image_features(image))
        prompts = self.prompt_learner(image_features)
        b, n_cls = prompts.shape[:2]
        pl = self.prompt_learner
        eot = pl.eot_indices.repeat(min(b, self.text_chunk_images))
        # an image's class prompts share the start token and its shifted context
        prefix = pl.shared_prefix()
        logits = []
        # several images' prompts in one text-encoder pass (the official loop does one image at a time;
        # each row is computed the same way, docs/design/baselines.md B10)
        for start in range(0, b, self.text_chunk_images):
            chunk = prompts[start:start + self.text_chunk_images]
            n = chunk.shape[0]
            if prefix is not None:
                rows = torch.arange(n * n_cls, device=chunk.device)
                prefix = SharedPrefix(prefix.length, row_group=rows // n_cls, group_rows=rows[::n_cls])
            text = normalize(self.text_encoder(chunk.reshape(n * n_cls, *chunk.shape[2:]), eot[:n * n_cls],
                                               length=pl.text_length, shared_prefix=prefix))
            text = text.reshape(n, n_cls, -1)
            logits.append(torch.einsum("bd,bcd->bc", image_features[start:start + n], text))
        return self.logit_scale.exp() * torch.cat(logits)  # the per-image form of PromptedCLIP.logits


@TRAINER_REGISTRY.register()
class CoCoOp(PromptTrainer):
    config_node = "COCOOP"
    config_defaults = {"N_CTX": 16, "CTX_INIT": "", "PREC": "fp16"}

    def build_model(self):
        self.build_custom_clip(CoCoOpCLIP, self.trainer_cfg, self.dm.dataset.classnames)
