"""Deep prompts: learned tokens that replace token positions before given transformer blocks.

Text prompts occupy rows ``1 .. n`` (after the start token); visual prompts are appended at the tail
of the image token sequence and later replace the last ``n`` tokens (docs/design/baselines.md §5.4-5.5, §6.3).
"""
import copy

import torch
import torch.nn as nn

from .encoders import tile_rows
from .prompts import normal_prompt


def replace_tokens(x, prompt, at, round_fp16=False):
    """Replace ``prompt.shape[-2]`` tokens of ``x`` (N, L, D) starting at row ``at`` ("tail" = the last ones).

    ``prompt`` is (n, D), shared by every sequence, (N, n, D), or (S, n, D) prompt sets tiled over the
    sequences (``tile_rows``: ALIGN's set-minor rows). ``round_fp16``: see ``deep_prompt_hook``.
    """
    prompt = tile_rows(prompt, x.shape[0])
    prompt = (prompt.half() if round_fp16 else prompt).to(x.dtype)
    n = prompt.shape[1]
    if at == "tail":
        return torch.cat([x[:, :-n], prompt], dim=1)
    return torch.cat([x[:, :at], prompt, x[:, at + n:]], dim=1)


def deep_prompt_hook(prompts, at, first_layer=1, round_fp16=False):
    """A ``layer_hook`` that puts ``prompts[k]`` in place before block ``first_layer + k``.

    ``round_fp16`` rounds the prompt through fp16 after expanding it over the sequences, as the official
    IVLP/VPT code does at every use even in fp32 mode (a parity quirk, docs/design/baselines.md §6.5, §7.4;
    the order decides how the gradients of the copies are rounded and summed).
    """

    def hook(layer, x):
        k = layer - first_layer
        if 0 <= k < len(prompts):
            return replace_tokens(x, prompts[k], at, round_fp16)
        return x

    return hook


def init_prompt(n, width, dtype=torch.float32, device=None):
    """A learnable prompt (n, width) drawn as the official code draws them: N(0, 0.02^2)."""
    return nn.Parameter(normal_prompt(n, width, dtype=dtype, device=device))


def add_coupled_prompts(module, width, vision_width, depth, prompt_shape, dtype, device):
    """MaPLe's text-to-vision coupling (docs/design/baselines.md §5), shared by MaPLe and ALIGN (docs/design/align.md
    §2):
    ``module.proj`` maps the first-layer text context to visual prompts, ``compound_prompts_text[k]`` are
    the deep text prompts before block k+1 and ``compound_prompt_projections[k]`` map them to visual ones.

    Created in the official order (proj, the deep prompts, then one Linear cloned for every depth:
    docs/design/baselines.md Q6), so the random draws match. ``prompt_shape`` is (n_ctx,) or (sets, n_ctx); the first
    coupling runs in the model's ``dtype`` (upstream: always fp16, which crashes in fp32)."""
    module.proj = nn.Linear(width, vision_width).to(device=device, dtype=dtype)
    module.compound_prompts_text = nn.ParameterList(
        [nn.Parameter(normal_prompt(*prompt_shape, width, device=device)) for _ in range(depth - 1)])
    single = nn.Linear(width, vision_width).to(device)
    module.compound_prompt_projections = nn.ModuleList([copy.deepcopy(single) for _ in range(depth - 1)])


def coupled_visual_prompts(module):
    """First-layer visual prompts proj(ctx) and the deep ones F_l(P_l) of ``add_coupled_prompts``."""
    deep = [proj(p) for proj, p in zip(module.compound_prompt_projections, module.compound_prompts_text)]
    return module.proj(module.ctx), deep


class VisualPrompts(nn.Module):
    """Visual prompt tokens: ``visual_ctx`` appended before ``ln_pre`` and ``visual_deep[k]`` replacing
    the last tokens before block k+1 (IVLP, VPT: docs/design/baselines.md §6.2, §7.2)."""

    def __init__(self, n_ctx, width, depth, round_fp16=False):
        super().__init__()
        self.visual_ctx = init_prompt(n_ctx, width)
        self.visual_deep = nn.ParameterList([init_prompt(n_ctx, width) for _ in range(depth - 1)])
        self.round_fp16 = round_fp16

    def encode(self, image_encoder, images):
        ctx = tile_rows(self.visual_ctx, images.shape[0])
        hook = deep_prompt_hook(list(self.visual_deep), "tail", round_fp16=self.round_fp16)
        return image_encoder(images, extra_tokens=ctx.half() if self.round_fp16 else ctx, layer_hook=hook)


OFFICIAL_MODEL_PREFIXES = ("prompt_learner.", "image_encoder.", "text_encoder.")


def is_official_whole_model(state_dict):
    """True for the official MaPLe/IVLP/VPT checkpoints, which save the whole CustomCLIP."""
    return any(k.startswith(OFFICIAL_MODEL_PREFIXES) for k in state_dict)


def rename_official_keys(state_dict, visual="visual_prompts.", text="text_deep."):
    """Map the official whole-model names to those of our prompt module (prompts that the official
    IVLP/VPT keep inside CLIP's blocks included); the frozen CLIP weights are left out."""
    if not is_official_whole_model(state_dict):
        return state_dict
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if key == "image_encoder.VPT":
            key = visual + "visual_ctx"
        elif parts[-1] == "VPT_shallow" and parts[0] in ("image_encoder", "text_encoder"):
            layer = int(parts[-2])
            key = (visual + "visual_deep." if parts[0] == "image_encoder" else text) + str(layer - 1)
        elif key.startswith("prompt_learner."):
            key = key[len("prompt_learner."):]
        else:
            continue  # frozen CLIP weights saved by the official code: ours come from the backbone
        out[key] = value
    return out
