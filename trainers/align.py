"""ALIGN (docs/design/align.md; registered officially as ``MMP``): N text prompt sets and M = N visual prompt sets,
MaPLe-style coupled (visual set m = linear maps of text set m), scored by hierarchical optimal transport.

How the sets use the shared encoders (docs/design/align.md §3.2-3.3): the K classes x N text sets are K*N sequences
(class-major, row k*N+n uses set n) encoded in one text pass; the B images are tiled M times (image-major,
row i*M+m uses set m) and encoded in one image pass. Deep prompts are tiled to those rows and replace
the prompt positions before blocks 1..depth-1. The M x N pairing exists only in the similarity stage:

* token level (§3.4): for every (image, class, m, n) an entropic OT between the visual output tokens
  (patches + prompt outputs, CLS excluded) and the class's first L_k text output tokens gives the
  transport-weighted token similarity tau;
* prompt level (§3.5): cost C = 1 - cos(f_m, g_n) + BETA * tau (official; TOKEN_TERM "distance" uses
  BETA * (1 - tau), the paper's token-level OT distance), plan G by Sinkhorn, logit = scale * sum G * cos.

Both plans are constants for backprop (§3.8), so the token level runs without autograd and, in chunks of
at most TOKEN_OT_CHUNK similarity entries, never holds all images x classes x M x N x tokens x tokens.
"""
import torch
import torch.nn as nn

from engine import TRAINER_REGISTRY
from engine.utils.tools import UserError, warn
from models import tokenize
from models.clip import check_depth, require_vit
from models.deep_prompts import add_coupled_prompts, coupled_visual_prompts, deep_prompt_hook, rename_official_keys
from models.encoders import SharedPrefix
from models.prompted_clip import PromptedCLIP, normalize
from models.prompts import common_prefix_length, embed_class_prompts, normal_prompt
from models.sinkhorn import sinkhorn

from .base import OTDiagnosticsHooks, PromptTrainer

TOKEN_TERMS = ("similarity", "distance")


class ALIGNPromptLearner(nn.Module):
    """Official key names: ``ctx`` (N, b, D_text), ``proj``, ``compound_prompts_text.l`` (N, b, D_text),
    ``compound_prompt_projections.l``; buffers ``token_prefix`` / ``token_suffix`` with K*N rows."""

    def __init__(self, cfg, classnames, text_encoder, vision_width):
        super().__init__()
        n_sets, n_ctx, width = cfg.TEXT_PROMPT_NUMBER, cfg.N_CTX, text_encoder.width
        device = text_encoder.positional_embedding.device
        ctx = normal_prompt(n_sets, n_ctx, width, dtype=text_encoder.dtype, device=device)
        prefixes = [" ".join(["X"] * n_ctx)] * n_sets
        if cfg.CTX_INIT and n_ctx <= 4:
            # TAB-separated templates initialise the first sets; their whole text stays as fixed prefix (§2.3)
            for i, template in enumerate(cfg.CTX_INIT.split("\t")[:n_sets]):
                template = template.replace("_", " ")
                with torch.no_grad():
                    embedding = text_encoder.embed(tokenize(template, text_encoder.context_length).to(device))
                ctx[i] = embedding[0, 1:1 + n_ctx]
                prefixes[i] = template
        print(f"Initial context: {prefixes}")
        print(f"Number of text / vision prompt sets: {n_sets} / {cfg.VISION_PROMPT_NUMBER}")
        print(f"Number of ALIGN context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)
        # MaPLe's coupling, one prompt set per row (depth-0 map in the model's dtype: official fp16 crashes in
        # fp32, Q14; one init cloned for every depth, Q8)
        add_coupled_prompts(self, width, vision_width, cfg.TEXT_PROMPT_DEPTH, (n_sets, n_ctx), text_encoder.dtype,
                            device)
        if cfg.USECT:
            # log-temperature of the conditional-transport plans; the official code uses but never defines it
            self.phi = nn.Parameter(torch.tensor(float(cfg.CT_LOG_TEMPERATURE_INIT), device=device))

        # fixed parts per (class, set), class-major: row k*N + n is "<prefix_n> <class k>." (§2.3 step 6)
        parts = [embed_class_prompts(text_encoder, classnames, prefix, n_ctx) for prefix in prefixes]
        self.n_cls, self.n_sets, self.n_ctx = len(classnames), n_sets, n_ctx

        def interleave(i):
            return torch.stack([p[i] for p in parts], dim=1).flatten(0, 1)

        self.register_buffer("token_prefix", interleave(1))
        self.register_buffer("token_suffix", interleave(2))
        self.register_buffer("tokenized_prompts", interleave(0).to(device), persistent=False)
        self.text_length = int(self.tokenized_prompts.argmax(dim=-1).max()) + 1  # up to the last end token
        # positions every class prompt of a set shares (constant: no device read per step)
        tokens = self.tokenized_prompts.view(self.n_cls, self.n_sets, -1)
        self.shared_prefix_length = min(common_prefix_length(tokens[:, n], n_ctx) for n in range(n_sets))

    @property
    def eot_indices(self):
        return self.tokenized_prompts.argmax(dim=-1)

    def shared_prefix(self):
        """Rows k*N + n of set n share their start token, context and template words (one group per set)."""
        if self.n_cls < 2:
            return None
        rows = torch.arange(self.n_cls * self.n_sets, device=self.tokenized_prompts.device)
        return SharedPrefix(self.shared_prefix_length, row_group=rows % self.n_sets, group_rows=rows[:self.n_sets])

    @property
    def token_window(self):
        """L_k per class: set 0's end-token position minus one, used for every set (Q4)."""
        return self.eot_indices.view(self.n_cls, self.n_sets)[:, 0] - 1

    def assemble(self):
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1, -1).flatten(0, 1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)

    def visual_prompts(self):
        """Depth-0 visual prompts proj(ctx) (N, b, D_vision) and the deeper ones, one set per row."""
        return coupled_visual_prompts(self)


class TextSide:
    """What the classes contribute: normalised global features (K, N, e), normalised token features
    (K, N, L_max, e; zero beyond each class's window) and the window lengths (K,)."""

    def __init__(self, features, tokens, lengths):
        self.features, self.tokens, self.lengths = features, tokens, lengths

    @property
    def token_mask(self):
        return torch.arange(self.tokens.shape[2], device=self.lengths.device) < self.lengths[:, None]

    def float(self):
        return TextSide(self.features.float(), self.tokens.float(), self.lengths)


class ALIGNCLIP(PromptedCLIP):
    def __init__(self, cfg, classnames, clip_model, encoder_options=None):
        super().__init__(clip_model, encoder_options)
        self.cfg = cfg
        self.prompt_learner = ALIGNPromptLearner(cfg, classnames, self.text_encoder, self.image_encoder.width)
        self.n_sets = cfg.TEXT_PROMPT_NUMBER
        self.ot_diagnostics = None  # TEST.OT_DIAGNOSTICS: set by OTDiagnosticsHooks during an evaluation

    # ----- encoders -----
    def text_side(self):
        pl = self.prompt_learner
        # the deep prompt sets are tiled over the K*N rows by the hook (or meet one shared prefix per set);
        # truncation keeps the token windows, which end before set 0's end token
        hook = deep_prompt_hook(list(pl.compound_prompts_text), at=1)
        pooled, tokens = self.text_encoder(pl.assemble(), pl.eot_indices, layer_hook=hook, return_tokens=True,
                                           length=pl.text_length, shared_prefix=pl.shared_prefix())
        lengths = pl.token_window
        window = tokens.view(pl.n_cls, pl.n_sets, *tokens.shape[1:])[:, :, :int(lengths.max())]
        outside = torch.arange(window.shape[2], device=lengths.device) >= lengths[:, None]
        return TextSide(normalize(pooled.view(pl.n_cls, pl.n_sets, -1)),
                        normalize(window).masked_fill(outside[:, None, :, None], 0), lengths)

    def image_side(self, image):
        """Normalised global features (B, M, e) and output tokens (B, M, T, e) with T = CLS + patches + prompts."""
        batch, m = image.shape[0], self.n_sets
        first, deep = self.prompt_learner.visual_prompts()
        copies = image.unsqueeze(1).expand(-1, m, *image.shape[1:]).flatten(0, 1)
        # image-major rows: row i*M + m uses prompt set m (the encoders tile the sets over the rows)
        pooled, tokens = self.image_encoder(copies.to(self.dtype), extra_tokens=first,
                                            layer_hook=deep_prompt_hook(deep, "tail"), return_tokens=True)
        return normalize(pooled.view(batch, m, -1)), normalize(tokens.view(batch, m, *tokens.shape[1:]))

    # ----- eval caching: the text side does not depend on the image (Q16) -----
    @torch.no_grad()
    def cache_text_features(self):
        self._text_cache = self.text_side()

    def current_text_side(self):
        cached = self.cached_text()
        return cached if cached is not None else self.text_side()

    # ----- scores -----
    def forward(self, image):
        text = self.current_text_side()
        image_features, image_tokens = self.image_side(image)
        if self.cfg.OT_FP32 or torch.is_autocast_enabled(image.device.type):
            # fp16 kernels exp(-cost / eps) are subnormal from cost 1 and vanish above ~1.7, and then the plans
            # fall back to raw kernels (Q10, Q12); official fp16 keeps that, OT_FP32 and amp run this in fp32
            with torch.autocast(image.device.type, enabled=False):
                return self.scores(image_features.float(), image_tokens.float(), text.float())
        return self.scores(image_features, image_tokens, text)

    def scores(self, image_features, image_tokens, text):
        cfg = self.cfg
        sim = torch.einsum("bmd,knd->bkmn", image_features, text.features)  # cos(f_m, g_n), (B, K, M, N)
        if cfg.USECT:
            return self.ct_scores(sim, image_tokens, text)
        cost = 1.0 - sim
        if cfg.HIERARCHICAL:
            tau = self.token_similarity(image_tokens[:, :, 1:].detach(), text.tokens.detach(), text.lengths)
            # §3.5 / Q1: official adds the token similarity tau; the paper adds the distance 1 - tau
            cost = cost + cfg.BETA * (tau if cfg.TOKEN_TERM == "similarity" else 1.0 - tau)
        b, k, m, n = sim.shape
        # one call for the whole batch: the official stopping rule is batch-global at this level (Q11)
        plan = self.solve(cost.reshape(b * k, m, n), 1.0 / m, 1.0 / n, stop_group_dims=1).view(b, k, m, n)
        return self.logit_scale.exp() * (plan * sim).sum(dim=(2, 3))

    def solve(self, cost, row_marginal, col_marginal, level="prompt level", **kwargs):
        cfg = self.cfg
        plan, iterations = sinkhorn(cost, row_marginal, col_marginal, cfg.EPS, max_iter=cfg.OT_MAX_ITER,
                                    threshold=cfg.OT_THRESHOLD, log_domain=cfg.OT_LOG_DOMAIN, grad=False,
                                    sync_every=cfg.OT_SYNC_EVERY, return_iterations=True, **kwargs)
        if self.ot_diagnostics is not None:
            self.ot_diagnostics.record(level, plan, iterations, kwargs.get("row_mask"), kwargs.get("col_mask"))
        return plan

    def _blocks(self, n_images, n_classes, per_pair):
        """(image slice, class slice) blocks holding at most TOKEN_OT_CHUNK similarity entries (>= one pair)."""
        budget = max(1, int(self.cfg.TOKEN_OT_CHUNK))
        if n_images * per_pair <= budget:
            bi, bk = n_images, max(1, min(n_classes, budget // (n_images * per_pair)))
        else:
            bi, bk = max(1, budget // per_pair), 1
        for i in range(0, n_images, bi):
            for k in range(0, n_classes, bk):
                yield slice(i, i + bi), slice(k, k + bk)

    @torch.no_grad()
    def token_similarity(self, visual, text_tokens, lengths):
        """tau (B, K, M, N) = sum(Pi * S) with Pi the token-level plan of each (image, class, m, n) (§3.4).

        visual (B, M, J, e), text_tokens (K, N, L, e) normalised. Each (image, class) is one stopping group
        of M*N problems, as one official call; padded text columns are masked.
        """
        b, m, j, _ = visual.shape
        k, n, length, _ = text_tokens.shape
        mask = torch.arange(length, device=lengths.device) < lengths[:, None]  # (K, L)
        col_marginal = (1.0 / lengths.double()).to(visual.dtype)[:, None].expand(k, length)
        tau = visual.new_empty(b, k, m, n)
        for bs, ks in self._blocks(b, k, m * n * j * length):
            s = torch.einsum("bmjd,knld->bkmnjl", visual[bs], text_tokens[ks])
            s = s.reshape(s.shape[0], s.shape[1], m * n, j, length)
            plan = self.solve(1.0 - s, 1.0 / j, col_marginal[ks, None, :], level="token level", stop_group_dims=1,
                              col_mask=mask[ks, None, :])
            tau[bs, ks] = (plan * s).sum(dim=(-2, -1)).view(s.shape[0], s.shape[1], m, n)
        return tau

    # ----- conditional transport (USECT; crashes officially, Q9) -----
    def ct_scores(self, sim, image_tokens, text):
        temperature = self.prompt_learner.phi.exp()
        cost, dis = 1.0 - sim, sim / temperature
        if self.cfg.HIERARCHICAL:
            token = self.token_ct(image_tokens, text, temperature)
            cost, dis = cost + token, (sim - token) / temperature
        forward, backward = _ct_costs(cost, dis)
        return -self.logit_scale.exp() * (forward + backward)

    def token_ct(self, visual, text, temperature):
        """Token-level CT cost (B, K, M, N) over all visual tokens (CLS included, as the official branch) and
        each class's text window (masked, so classes may differ in length where the official code fails)."""
        b, m, j, _ = visual.shape
        k, n, length, _ = text.tokens.shape
        mask = text.token_mask
        image_blocks = {}  # image-block start -> class-block results, in class order
        for bs, ks in self._blocks(b, k, m * n * j * length):
            s = torch.einsum("bmjd,knld->bkmnjl", visual[bs], text.tokens[ks])
            forward, backward = _ct_costs(1.0 - s, s / temperature, mask[ks][None, :, None, None, None, :])
            image_blocks.setdefault(bs.start, []).append(forward + backward)
        return torch.cat([torch.cat(parts, dim=1) for _, parts in sorted(image_blocks.items())], dim=0)


def _ct_costs(cost, dis, col_mask=None):
    """Forward (rows -> columns) and backward transport costs of CT over the last two dims; plans are
    softmaxes of -dis along each direction (as the official helper), the backward cost averaged over the
    valid columns."""
    if col_mask is None:
        forward_plan = torch.softmax(-dis, dim=-1)
        backward_plan = torch.softmax(-dis, dim=-2)
        return (forward_plan * cost).sum(-1).mean(-1), (backward_plan * cost).sum(-2).mean(-1)
    forward_plan = torch.softmax((-dis).masked_fill(~col_mask, float("-inf")), dim=-1)
    backward_plan = torch.softmax(-dis, dim=-2)
    forward = (forward_plan * cost).sum(-1).mean(-1)
    backward = ((backward_plan * cost).sum(-2) * col_mask.squeeze(-2)).sum(-1) / col_mask.sum(-1).squeeze(-1)
    return forward, backward


@TRAINER_REGISTRY.register()
class ALIGN(OTDiagnosticsHooks, PromptTrainer):
    config_node = "MMP"  # the official node name, so official yamls and command lines work (docs/design/align.md §5)
    config_defaults = {
        # official keys and defaults (docs/design/align.md §5.1), except USECT (official True crashes: Q9)
        "N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16", "TEXT_PROMPT_DEPTH": 1,
        "VISION_PROMPT_DEPTH": 1, "TEXT_PROMPT_NUMBER": 4, "VISION_PROMPT_NUMBER": 4, "HIERARCHICAL": True,
        "USECT": False,
        # ours (docs/ALIGN.md); the defaults are the official hard-coded values
        "TOKEN_TERM": "similarity", "BETA": 1.0, "EPS": 0.1, "OT_MAX_ITER": 100, "OT_THRESHOLD": 0.01,
        "OT_LOG_DOMAIN": False, "OT_FP32": False, "TOKEN_OT_CHUNK": 2 ** 24, "OT_SYNC_EVERY": 8,
        "CT_LOG_TEMPERATURE_INIT": 0.0,
        "FEWSHOT_EPOCH_OVERRIDE": True,
    }

    @classmethod
    def resolve_cfg(cls, cfg):
        """The official train.py sets the epochs from the shots for SUBSAMPLE_CLASSES 'all' (docs/design/align.md
        §5.1)."""
        c = cfg.TRAINER.MMP
        if c.FEWSHOT_EPOCH_OVERRIDE and cfg.DATASET.SUBSAMPLE_CLASSES == "all":
            epochs = fewshot_epochs(cfg.DATASET.NUM_SHOTS, cfg.DATASET.NAME)
            if epochs != cfg.OPTIM.MAX_EPOCH:
                warn(f"OPTIM.MAX_EPOCH {cfg.OPTIM.MAX_EPOCH} -> {epochs}: the official ALIGN train.py sets "
                     "the epochs from the shots when DATASET.SUBSAMPLE_CLASSES is 'all' "
                     "(TRAINER.MMP.FEWSHOT_EPOCH_OVERRIDE False keeps OPTIM.MAX_EPOCH)")
                cfg.OPTIM.MAX_EPOCH = epochs

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        c = cfg.TRAINER.MMP
        if c.TOKEN_TERM not in TOKEN_TERMS:
            raise UserError(f"TRAINER.MMP.TOKEN_TERM must be one of {', '.join(TOKEN_TERMS)}, got {c.TOKEN_TERM!r}")
        if c.VISION_PROMPT_NUMBER != c.TEXT_PROMPT_NUMBER:
            raise UserError("TRAINER.MMP.VISION_PROMPT_NUMBER must equal TEXT_PROMPT_NUMBER: visual set m is "
                            "projected from text set m (the official code fails with a shape error, Q7)")
        if min(c.TEXT_PROMPT_NUMBER, c.N_CTX, c.OT_MAX_ITER, c.TOKEN_OT_CHUNK, c.OT_SYNC_EVERY) < 1 or c.EPS <= 0:
            raise UserError("TRAINER.MMP: TEXT_PROMPT_NUMBER, N_CTX, EPS, OT_MAX_ITER, TOKEN_OT_CHUNK, OT_SYNC_EVERY "
                            "must be positive")
        if c.VISION_PROMPT_DEPTH != c.TEXT_PROMPT_DEPTH:
            print(f"Note: TRAINER.MMP.VISION_PROMPT_DEPTH ({c.VISION_PROMPT_DEPTH}) is ignored, as officially: "
                  f"visual prompts go as deep as TEXT_PROMPT_DEPTH ({c.TEXT_PROMPT_DEPTH})")

    def nonfinite_hint(self):
        if self.prec == "fp16" and not self.trainer_cfg.OT_FP32:
            return ("ALIGN's fp16 transport kernels exp(-cost/eps) underflow, as in the official fp16 code "
                    "(docs/design/align.md Q10, Q12): set TRAINER.MMP.OT_FP32 True (or PREC amp)")
        return super().nonfinite_hint()

    def build_model(self):
        cfg = self.trainer_cfg
        clip_model = self.load_clip()
        require_vit(clip_model, "ALIGN")
        check_depth("TRAINER.MMP.TEXT_PROMPT_DEPTH", cfg.TEXT_PROMPT_DEPTH,
                    min(len(clip_model.transformer.resblocks), len(clip_model.visual.transformer.resblocks)))
        self.build_custom_clip(ALIGNCLIP, cfg, self.dm.dataset.classnames, register_name="MultiModalPromptLearner",
                               clip_model=clip_model)

    def adapt_checkpoint(self, name, state_dict):
        return rename_official_keys(state_dict)


TRAINER_REGISTRY.register(name="MMP")(ALIGN)


def fewshot_epochs(shots, dataset):
    """The official train.py's epochs for DATASET.SUBSAMPLE_CLASSES 'all' (docs/design/align.md §5.1, Q22)."""
    if dataset == "ImageNet":
        return 20
    return {1: 30, 2: 50, 4: 50}.get(shots, 80)


__all__ = ["ALIGN", "ALIGNCLIP", "ALIGNPromptLearner", "fewshot_epochs"]
