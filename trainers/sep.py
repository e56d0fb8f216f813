"""SEP, Self-Enhanced Prompt Tuning (docs/design/sep.md).

Text context ``ctx`` and visual prompts ``ctx_visual`` at the encoder inputs; before each block of the
layer list (``TRAINER.COOP.L_IND``, docs/design/sep.md §3.5) a Token Fusion Module (TFM) replaces the prompt slots by
a fusion of their current states with "pre-trained" tokens of the same layer. Final features are the
re-normalised sum of the SEP and the frozen-CLIP features (§3.6); the loss adds text/image consistency
and a prototype classifier (§4-5).

Default = the official release (what produced the published numbers), including its quirks:
* the TFM's attention runs across the classes (text) / the images of the batch (vision), separately per
  prompt slot (§3.4, Q1), so an image's logits depend on the rest of its batch;
* visual pre-trained tokens are the top-k tokens by batch-mean squared activation, one index set for
  the whole batch (Q2); text ones are the n positions after the context (Q4).
The paper's per-input behaviour: ``TRAINER.SEP.PER_SAMPLE_ATTENTION`` (attention within each sample over its
own k tokens) and ``TRAINER.SEP.PER_INPUT_SELECTION`` (top-k per image and per class prompt);
``configs/trainers/SEP/*_paper.yaml`` set both.
Keys the official release reads stay under ``TRAINER.COOP`` (N_CTX, N_CTX_V, L_IND, W, W_V, PREC, CTX_INIT),
so its yamls and command lines run unchanged.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.transformer import LayerNormFp32, QuickGELU

from engine import TRAINER_REGISTRY
from engine.config import add_config_node
from engine.utils.tools import UserError
from models.clip import require_vit
from models.prompted_clip import PromptedCLIP, consistency_loss, normalize, template_text_features
from models.prompts import ClassPromptLearner, init_context, normal_prompt
from models.templates import dataset_template

from .base import PromptTrainer
from .kgcoop import CTX_INIT_FLAG

# docs/design/sep.md §3.5: TRAINER.COOP.L_IND -> block indices whose input gets a TFM (the j-th listed uses TFM j)
LAYER_LISTS = [
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [1, 2, 3, 4, 5, 6, 7, 8], [5, 6, 7, 8, 9, 10, 11], [1, 3, 5, 7, 9, 11],
    [2, 4, 6, 8, 10], [3, 6, 9], [4, 8, 10], [4, 8], [4, 10], [4, 6], [8, 10], [2], [6], [1], [3], [5], [7], [9],
    [10], [11],
]
# frozen-CLIP templates of the official SEP (docs/design/sep.md §7.4); other datasets use the zero-shot ones
SEP_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.", "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of an aircraft {}.", "DescribableTextures": "a photo of a {}, a type of texture.",
    "EuroSAT": "a centered satellite photo of {}.", "StanfordCars": "a photo of a {}, a type of car.",
    "Food101": "a photo of a {}, a type of food.", "SUN397": "a photo of a {}.", "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
}
PROTO_SCALE = 10.0  # fixed logit scale of the prototype classifier (§4)


def layer_list(l_ind, num_layers):
    if not 0 <= l_ind < len(LAYER_LISTS):
        raise UserError(f"TRAINER.COOP.L_IND must be 0..{len(LAYER_LISTS) - 1} (docs/design/sep.md §3.5), got {l_ind}")
    return [layer for layer in LAYER_LISTS[l_ind] if layer < num_layers]


class TokenFusion(nn.Module):
    """TFM (docs/design/sep.md §3.4): Z = s1*P + (1-s1)*Attn(LN1(C), LN1(P)); O = s2*Z + (1-s2)*MLP(LN2(Z)).

    P: pre-trained tokens, C: current prompt states, both (N, k, d) with N = classes or images.
    ``per_sample`` False (official): attention over the N axis, separately for each of the k slots.
    ``per_sample`` True (paper): attention within each sample over its k tokens.
    """

    def __init__(self, width, hidden, per_sample=False):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, max(1, width // 64), batch_first=True)
        self.ln_1 = LayerNormFp32(width)  # shared by queries and keys/values, as upstream (Q6)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, hidden, bias=False))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(hidden, width, bias=False))
        self.ln_2 = LayerNormFp32(width)
        self.scale1 = nn.Parameter(torch.full((1,), 0.75))
        self.scale2 = nn.Parameter(torch.full((1,), 0.75))
        self.per_sample = per_sample

    def forward(self, pretrained, current):
        q, kv = self.ln_1(current), self.ln_1(pretrained)
        if self.per_sample:
            attended = self.attn(q, kv, kv, need_weights=False)[0]
        else:  # slots as the batch, classes/images as the sequence
            q, kv = q.transpose(0, 1), kv.transpose(0, 1)
            attended = self.attn(q, kv, kv, need_weights=False)[0].transpose(0, 1)
        s1, s2 = self.scale1.to(pretrained.dtype), self.scale2.to(pretrained.dtype)
        z = s1 * pretrained + (1 - s1) * attended
        return s2 * z + (1 - s2) * self.mlp(self.ln_2(z))


def to_model_dtype(module, dtype):
    """Linear/attention weights in the model dtype, LayerNorms and blend scales fp32 (upstream fp16 map)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.MultiheadAttention)):
            for p in m.parameters(recurse=False):
                p.data = p.data.to(dtype)
    return module


def top_tokens(x, k, per_input):
    """Indices of the k tokens with the largest mean squared activation (in the activation dtype, Q11):
    one set for the batch (scores averaged over it, Q2) or one per input. Returns (k,) or (N, k)."""
    score = x.pow(2).mean(dim=-1)
    if not per_input:
        score = score.mean(dim=0)
    return score.topk(k, dim=-1, largest=True, sorted=True).indices


def gather_tokens(x, index):
    if index.dim() == 1:
        return x[:, index]
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class SEPPromptLearner(ClassPromptLearner):
    """``ctx``, ``ctx_visual``, TFM banks ``text_fusion``/``visual_fusion`` (one per listed layer) and the
    prototype classifier ``VPT_fc`` (class-dependent; rebuilt, never loaded)."""

    def __init__(self, cfg, sep_cfg, classnames, text_encoder, image_encoder, embed_dim):
        if cfg.CSC:
            raise UserError("SEP has no class-specific context (TRAINER.COOP.CSC True crashes upstream)")
        ctx, prompt_prefix = init_context(text_encoder, cfg.CTX_INIT, cfg.N_CTX)
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {ctx.shape[0]}; visual prompts: {cfg.N_CTX_V}")
        super().__init__(text_encoder, classnames, ctx, prompt_prefix)
        dtype, device = text_encoder.dtype, ctx.device
        self.ctx_visual = nn.Parameter(normal_prompt(cfg.N_CTX_V, image_encoder.width, dtype=dtype, device=device))
        self.layers = layer_list(cfg.L_IND, min(text_encoder.num_layers, image_encoder.num_layers))
        print(f"Token fusion before blocks {self.layers}")
        per_sample = sep_cfg.PER_SAMPLE_ATTENTION
        # every TFM of a bank starts from the same initialisation, as upstream's clones (Q16)
        text_tfm = TokenFusion(text_encoder.width, sep_cfg.TFM_HIDDEN, per_sample)
        visual_tfm = TokenFusion(image_encoder.width, sep_cfg.TFM_HIDDEN, per_sample)
        self.text_fusion = nn.ModuleList([copy.deepcopy(text_tfm) for _ in self.layers])
        self.visual_fusion = nn.ModuleList([copy.deepcopy(visual_tfm) for _ in self.layers])
        to_model_dtype(self.text_fusion.to(device), dtype)
        to_model_dtype(self.visual_fusion.to(device), dtype)
        self.VPT_fc = nn.Linear(embed_dim, self.n_cls, bias=False).to(device=device, dtype=dtype)
        self.per_input_selection = sep_cfg.PER_INPUT_SELECTION

    def text_hook(self, eot_indices):
        n = self.n_ctx
        positions = torch.arange(self.token_suffix.shape[1] + 1 + n, device=self.ctx.device)

        def hook(layer, x):
            if layer not in self.layers:
                return x
            current = x[:, 1:1 + n]
            if self.per_input_selection:
                # each class prompt's own top-n among SOS and its tokens up to EOT (context slots excluded)
                # a prompt with fewer such tokens than n takes the padding right after its end token, which
                # lies within the first 1 + 2n positions like the official slice
                pos = positions[: x.shape[1]]
                valid = (pos > n) & (pos.unsqueeze(0) <= eot_indices.unsqueeze(1))
                valid[:, 0] = True
                score = torch.where(valid, x.float().pow(2).mean(dim=-1), -1e4 - pos.float())
                pretrained = gather_tokens(x, score.topk(n, dim=-1).indices)
            else:  # official: the n positions right after the context (Q4)
                pretrained = x[:, 1 + n:1 + 2 * n]
            fused = self.text_fusion[self.layers.index(layer)](pretrained, current)
            return torch.cat([x[:, :1], fused, x[:, 1 + n:]], dim=1)

        return hook

    def visual_hook(self):
        m = self.ctx_visual.shape[0]

        def hook(layer, x):
            if layer not in self.layers:
                return x
            tokens, current = x[:, :-m], x[:, -m:]
            pretrained = gather_tokens(tokens, top_tokens(tokens, m, self.per_input_selection))
            fused = self.visual_fusion[self.layers.index(layer)](pretrained, current)
            return torch.cat([tokens, fused], dim=1)

        return hook


class SEPCLIP(PromptedCLIP):
    def __init__(self, cfg, sep_cfg, classnames, template, clip_model, encoder_options=None):
        super().__init__(clip_model, encoder_options)
        self.prompt_learner = SEPPromptLearner(cfg, sep_cfg, classnames, self.text_encoder, self.image_encoder,
                                               self.image_encoder.output_dim)
        # from the same frozen CLIP (upstream loads a second copy, Q13)
        self.register_buffer("frozen_text_features", template_text_features(self.text_encoder, classnames, [template]),
                             persistent=False)

    def text_features(self):
        """f_txt = norm(norm(t_sep) + t_clip) (§3.6)."""
        pl = self.prompt_learner
        # the fusion reads the n positions after the context, padding included: keep them (1 + 2n)
        length = max(pl.text_length, 1 + 2 * pl.n_ctx)
        t_sep = self.text_encoder(pl.assemble(), pl.eot_indices, layer_hook=pl.text_hook(pl.eot_indices),
                                  length=length)
        return normalize(normalize(t_sep) + self.frozen_text_features.to(t_sep.dtype))

    @torch.no_grad()
    def frozen_image_features(self, image):
        return normalize(self.image_encoder(image.to(self.dtype)))

    def encode_image(self, image):
        """(f_img, v_clip): combined and frozen normalised image features (§3.6)."""
        pl = self.prompt_learner
        v_sep = self.image_encoder(image.to(self.dtype), extra_tokens=pl.ctx_visual.unsqueeze(0),
                                   layer_hook=pl.visual_hook())
        v_clip = self.frozen_image_features(image)
        return normalize(normalize(v_sep) + v_clip), v_clip

    def forward(self, image, class_embeddings=None):
        """Logits from the combined features (already normalised, §3.6)."""
        if class_embeddings is None:
            cached = self.cached_text()
            class_embeddings = cached if cached is not None else self.text_features()
        return self.logits(self.encode_image(image)[0], class_embeddings)


@TRAINER_REGISTRY.register()
class SEP(PromptTrainer):
    config_node = "COOP"  # the official keys (docs/design/sep.md §7.1), shared with CoOp and KgCoOp as upstream
    config_defaults = {"N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16", "CLASS_TOKEN_POSITION": "end",
                       "ALPHA": 1.0, "W": 1.0, "N_CTX_V": 16, "L_IND": 0, "W_V": 1.0}
    # ours (docs/SEP.md)
    sep_defaults = {
        "PER_SAMPLE_ATTENTION": False,  # paper: TFM attention within each sample over its own tokens
        "PER_INPUT_SELECTION": False,  # paper: representative tokens chosen per image / per class prompt
        "TFM_HIDDEN": 256,  # TFM bottleneck width (upstream constant)
    }
    legacy_values = CTX_INIT_FLAG  # official yamls: CTX_INIT True/False (docs/design/sep.md Q8)
    train_drop_last = False  # SEP's Dassl keeps the last small batch (docs/design/sep.md §10.1, Q19)
    checkpoint_ignored_keys = ("token_prefix", "token_suffix", "token_midfix", "VPT_fc.weight")

    @classmethod
    def extend_cfg(cls, cfg):
        super().extend_cfg(cfg)
        add_config_node(cfg, "TRAINER.SEP", cls.sep_defaults)

    def build_model(self):
        cfg, sep_cfg = self.trainer_cfg, self.cfg.TRAINER.SEP
        clip_model = self.load_clip()
        require_vit(clip_model, "SEP")
        template = SEP_TEMPLATES.get(self.cfg.DATASET.NAME, dataset_template(self.cfg.DATASET.NAME))
        self.build_custom_clip(SEPCLIP, cfg, sep_cfg, self.dm.dataset.classnames, template, clip_model=clip_model)

    def adapt_checkpoint(self, name, state_dict):
        return rename_official_sep_keys(state_dict)

    def before_train(self):
        super().before_train()
        if self.start_epoch == 0:
            self.init_prototypes()

    @torch.no_grad()
    def init_prototypes(self):
        """VPT_fc rows = normalised class means of the frozen image features of one pass over the training
        loader, augmentations included (docs/design/sep.md §5); skipped in eval-only runs, where it is unused."""
        pl = self.model.prompt_learner
        was_training = pl.training
        pl.eval()
        features, labels = [], []
        for batch in self.train_loader_x:
            image, label = self.parse_batch_train(batch)[:2]
            features.append(self.model.frozen_image_features(image))
            labels.append(label)
        features, labels = torch.cat(features), torch.cat(labels)
        prototypes = torch.stack([features[labels == c].mean(dim=0) for c in range(int(labels.max()) + 1)])
        pl.VPT_fc.weight.data = normalize(prototypes).to(pl.VPT_fc.weight.dtype)
        pl.train(was_training)
        print(f"Prototype classifier initialised from {len(labels)} training images")

    def compute_loss(self, image, label):
        """L = CE + W*L_text + W_V*L_img + 1/2 [CE(10 cos(f_img, W)) + CE(10 cos(v_clip, W))] (docs/design/sep.md
        §4)."""
        model, cfg = self.model, self.trainer_cfg
        f_txt = model.text_features()
        f_img, v_clip = model.encode_image(image)
        logits = model.logits(f_img, f_txt)
        loss_text = consistency_loss(f_txt, model.frozen_text_features)
        loss_image = consistency_loss(v_clip, f_img)
        prototypes = F.normalize(model.prompt_learner.VPT_fc.weight, dim=-1)
        loss_proto = 0.5 * (F.cross_entropy(PROTO_SCALE * F.normalize(f_img, dim=-1) @ prototypes.t(), label)
                            + F.cross_entropy(PROTO_SCALE * F.normalize(v_clip, dim=-1) @ prototypes.t(), label))
        loss = F.cross_entropy(logits, label) + cfg.W * loss_text + cfg.W_V * loss_image + loss_proto
        return loss, logits


_OFFICIAL_TFM_PARTS = {"promt_attention_visual": "attn", "ln_pa_1_visual": "ln_1", "ln_pa_2_visual": "ln_2",
                       "mlp_pa_visual.c_fc1": "mlp.c_fc", "mlp_pa_visual.c_proj": "mlp.c_proj"}
_OFFICIAL_BANKS = {"prompt_projections.": "text_fusion.", "visual_prompts.": "visual_fusion."}


def rename_official_sep_keys(state_dict):
    """Official SEP names (misspelled attention, 12-clone banks, unused template TFMs) -> ours
    (docs/design/sep.md §9)."""
    if not any(k.startswith(tuple(_OFFICIAL_BANKS)) for k in state_dict):
        return state_dict
    out = {}
    for key, value in state_dict.items():
        if key.startswith(("meta_net_.", "visual_meta_net_.")) or ".ln_pa_1_token." in key:
            continue  # never used by the official forward
        for official, ours in _OFFICIAL_BANKS.items():
            if key.startswith(official):
                key = ours + key[len(official):]
                for part, new in _OFFICIAL_TFM_PARTS.items():
                    key = key.replace("." + part + ".", "." + new + ".")
        out[key] = value
    return out
