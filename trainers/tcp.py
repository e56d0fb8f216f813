"""TCP, Textual-based Class-aware Prompt tuning (docs/design/tcp.md).

CoOp's unified context (M = 4 learned tokens, class name at the end) plus two pieces:
* Textual Knowledge Embedding (§2.5-2.6): a meta-net ``Linear(E, E/4) -> QuickGELU -> Linear(E/4, K*D)``
  maps each class's frozen hand-crafted text feature (the anchor) to K class tokens, which replace the
  hidden states at the context positions 1..K of that class's prompt before the text blocks of
  ``TRAINER.TCP.LAYERS`` (official: block 8, blend weight 1.0). New classes get their own tokens.
* KgCoOp's knowledge-guided term (§4): loss = CE + W * (1 - mean_c cos(learned feature_c, anchor_c)),
  W = ``TRAINER.TCP.W`` (official: the literal 8.0; ``TRAINER.COOP.W`` is read but unused, Q2).

The official keys stay under ``TRAINER.COOP`` (N_CTX, CSC, CTX_INIT, W, PREC, CLASS_TOKEN_POSITION; same
defaults as CoOp/KgCoOp), so the official yaml and command lines run unchanged; ours live under
``TRAINER.TCP``. The anchors come from the same frozen CLIP (upstream loads a second, always-fp16 copy: equal
values in fp16 mode; ``TRAINER.TCP.UPSTREAM_FP16_PARTS`` reproduces its fp16 anchors and meta-net under
PREC fp32, Q3). Class tokens are rewritten per class, so the prompts share no prefix after the injection
layer: the text encoder gets no ``shared_prefix`` (§12.5).
"""
import copy
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.model import convert_weights_to_lp
from open_clip.transformer import QuickGELU

from engine import TRAINER_REGISTRY
from engine.config import add_config_node
from engine.utils.tools import UserError, warn
from models.clip import bpe_length, tokenize
from models.prompted_clip import PromptedCLIP, consistency_loss, normalize, template_text_features
from models.prompts import ClassPromptLearner, init_context

from .base import PromptTrainer
from .kgcoop import CTX_INIT_FLAG, KG_CTX_INIT, KgCoOp

# §2.4: anchor sentences (the official CUSTOM_TEMPLATES_ori) and what follows the 4 context slots in the
# placeholder prompts (CUSTOM_TEMPLATES; UCF101 and the ImageNet family start with "a photo of a" there,
# the same token layout as "X X X X"). StanfordCars' placeholder has no final period (Q15).
TCP_ANCHOR_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.", "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of an aircraft {}.", "DescribableTextures": "a photo of a {}, a type of texture.",
    "EuroSAT": "a centered satellite photo of {}.", "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of a {}, a type of food.", "SUN397": "a photo of a {}.", "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.", "ImageNet": "a photo of a {}.", "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.", "ImageNetA": "a photo of a {}.", "ImageNetR": "a photo of a {}.",
}
TCP_PLACEHOLDER_TEMPLATES = {
    "OxfordPets": "{}, a type of pet.", "OxfordFlowers": "{}, a type of flower.",
    "FGVCAircraft": "{}, a type of aircraft.", "DescribableTextures": "{} texture.", "EuroSAT": "{}.",
    "StanfordCars": "{}, a type of car", "Food101": "{}, a type of food.", "SUN397": "{}.", "Caltech101": "{}.",
    "UCF101": "person doing {}.", "ImageNet": "{}.", "ImageNetSketch": "{}.", "ImageNetV2": "{}.",
    "ImageNetA": "{}.", "ImageNetR": "{}.",
}
# datasets outside the official tables (upstream: KeyError; Q19)
DEFAULT_ANCHOR, DEFAULT_PLACEHOLDER = "a photo of a {}.", "{}."
OFFICIAL_N_CTX = 4  # K: class tokens per prompt, hard-coded upstream (Q4)
EPOCH_OVERRIDE_DATASETS = {"ImageNet": 25, "SUN397": 25}  # the official train.py (§5.3, Q12)


def tcp_templates(dataset_name):
    """(anchor template, placeholder text after the context slots) of ``DATASET.NAME`` (§2.4)."""
    return (TCP_ANCHOR_TEMPLATES.get(dataset_name, DEFAULT_ANCHOR),
            TCP_PLACEHOLDER_TEMPLATES.get(dataset_name, DEFAULT_PLACEHOLDER))


@torch.no_grad()
def embed_prompt_texts(text_encoder, texts, n_ctx):
    """Tokens (N, L), start-token embedding (N, 1, D) and the embedding after the ``n_ctx`` context slots
    (N, L-1-n_ctx, D) of whole placeholder sentences (``models.prompts.embed_class_prompts`` for sentences
    that are not ``<prefix> <name>.``)."""
    tokens = tokenize(texts, text_encoder.context_length)
    embedding = text_encoder.embed(tokens.to(text_encoder.token_embedding.weight.device))
    return tokens, embedding[:, :1, :], embedding[:, 1 + n_ctx:, :]


@torch.no_grad()
def fp16_anchor_features(text_encoder, classnames, template):
    """Anchors as upstream's second CLIP computes them: the same weights in OpenAI's fp16 storage (fp16
    matmul weights and projection, fp32 LayerNorm and embeddings), on a temporary copy (Q3)."""
    half = copy.deepcopy(text_encoder)
    convert_weights_to_lp(half, torch.float16)
    half.text_projection.data = half.text_projection.data.half()
    return template_text_features(half, classnames, [template])


class TCPPromptLearner(ClassPromptLearner):
    """Keys as official (§8): ``ctx`` (M, D), ``meta_net.linear1/linear2``, buffers ``token_prefix`` and
    ``token_suffix`` (rebuilt from the class names, never loaded). ``anchor_features`` (C, E): the normalised
    hand-crafted features, rebuilt for every class set, not saved."""

    def __init__(self, cfg, tcp_cfg, classnames, text_encoder, anchors, placeholder, meta_dtype):
        ctx, _ = init_context(text_encoder, cfg.CTX_INIT, cfg.N_CTX)  # drawn before the meta-net, as upstream
        n_ctx = ctx.shape[0]
        print(f'Initial context: "{cfg.CTX_INIT or " ".join(["X"] * n_ctx)}"')
        print(f"Number of context words (tokens): {n_ctx}")
        super().__init__(text_encoder, classnames, ctx, " ".join(["X"] * n_ctx))
        # TCP's placeholder sentences replace CoOp's "<prefix> <name>." (same slots: start token, n_ctx, rest)
        names = [name.replace("_", " ") for name in classnames]
        texts = [" ".join(["X"] * n_ctx) + " " + placeholder.format(name) for name in names]
        tokens, prefix, suffix = embed_prompt_texts(text_encoder, texts, n_ctx)
        self.token_prefix, self.token_suffix, self.tokenized_prompts = prefix, suffix, tokens.to(prefix.device)
        self.name_lens = [bpe_length(name) for name in names]
        self.text_length = int(tokens.argmax(dim=-1).max()) + 1
        self.shared_prefix_length = 0  # the class tokens make every prompt differ from the injection layer on

        self.n_tokens = n_ctx  # K class tokens; 4 = M in the official setting (Q4)
        width, embed_dim = text_encoder.width, anchors.shape[-1]
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(embed_dim, embed_dim // 4)), ("relu", QuickGELU()),
            ("linear2", nn.Linear(embed_dim // 4, self.n_tokens * width))]))  # Q5: the model's text width
        self.meta_net.to(device=ctx.device, dtype=meta_dtype)
        self.register_buffer("anchor_features", anchors, persistent=False)
        self.layers = [int(i) for i in tcp_cfg.LAYERS]
        self.layer_weights = [float(w) for w in tcp_cfg.LAYER_WEIGHTS]

    def shared_prefix(self):
        return None  # context positions are rewritten per class (§12.5)

    def class_tokens(self):
        """(C, K, D) class-aware tokens from the anchors (§2.6 step 3)."""
        weight = self.meta_net.linear1.weight
        out = self.meta_net(self.anchor_features.to(weight.dtype))
        return out.reshape(self.n_cls, self.n_tokens, -1)

    def text_hook(self, tokens):
        """Before each listed block: positions 1..K <- w * class tokens + (1 - w) * current states (§2.5)."""
        k = self.n_tokens

        def hook(layer, x):
            if layer not in self.layers:
                return x
            w = self.layer_weights[self.layers.index(layer)]
            mixed = w * tokens.to(x.dtype) + (1 - w) * x[:, 1:1 + k]
            return torch.cat([x[:, :1], mixed, x[:, 1 + k:]], dim=1)

        return hook


class TCPCLIP(PromptedCLIP):
    """``fp16_parts``: False, "fp16" (fp16 anchors and meta-net) or "anchors" (fp16 anchors only), Q3."""

    def __init__(self, cfg, tcp_cfg, classnames, dataset_name, fp16_parts, clip_model, encoder_options=None):
        super().__init__(clip_model, encoder_options)
        anchor_template, placeholder = tcp_templates(dataset_name)
        if fp16_parts:
            anchors = fp16_anchor_features(self.text_encoder, classnames, anchor_template)
            meta_dtype = torch.float16 if fp16_parts == "fp16" else self.dtype
        else:
            anchors = template_text_features(self.text_encoder, classnames, [anchor_template])
            meta_dtype = self.dtype
        self.prompt_learner = TCPPromptLearner(cfg, tcp_cfg, classnames, self.text_encoder, anchors, placeholder,
                                               meta_dtype)

    @property
    def anchor_text_features(self):
        """ŵ: the anchors re-normalised in their own dtype, as the official forward does (§2.6 step 2)."""
        return normalize(self.prompt_learner.anchor_features)

    def text_features(self):
        pl = self.prompt_learner
        hook = pl.text_hook(pl.class_tokens())
        return self.text_encoder(pl.assemble(), pl.eot_indices, layer_hook=hook, length=pl.text_length)


def _int_list(value):
    return isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


@TRAINER_REGISTRY.register()
class TCP(PromptTrainer):
    config_node = "COOP"  # the official keys (docs/design/tcp.md §6.1), shared with CoOp/KgCoOp/SEP as upstream
    config_defaults = dict(KgCoOp.config_defaults)  # N_CTX, CSC, CTX_INIT, PREC, CLASS_TOKEN_POSITION, W, ALPHA
    # ours (docs/design/tcp.md §10); the defaults are the official hard-coded values
    tcp_defaults = {
        "W": 8.0,                     # weight of the knowledge-guided term (official literal, Q2)
        "LAYERS": [8],                # text blocks before which the class tokens enter (Q1)
        "LAYER_WEIGHTS": [1.0],       # blend weight per listed block; 1.0 = replacement (Q1)
        "UPSTREAM_FP16_PARTS": False,  # PREC fp32: fp16 anchors, meta-net fp16 iff TRAINER.COCOOP.PREC fp16 (Q3)
        "EPOCH_OVERRIDE": True,       # ImageNet and SUN397 train 25 epochs whatever OPTIM.MAX_EPOCH says (Q12)
        "GENERAL_N_CTX": False,       # N_CTX other than 4: M "X" slots and M class tokens (extension, Q4)
    }
    legacy_values = CTX_INIT_FLAG  # official yaml: CTX_INIT False/True (Q7)
    checkpoint_ignored_keys = ("token_prefix", "token_suffix", "token_midfix")

    @classmethod
    def extend_cfg(cls, cfg):
        super().extend_cfg(cfg)
        add_config_node(cfg, "TRAINER.TCP", cls.tcp_defaults)

    @classmethod
    def resolve_cfg(cls, cfg):
        node = cfg.TRAINER.COOP
        if node.CLASS_TOKEN_POSITION != "end":
            warn(f"TRAINER.COOP.CLASS_TOKEN_POSITION {node.CLASS_TOKEN_POSITION!r} -> 'end': TCP ignores "
                 "the key (docs/design/tcp.md Q8)")
            node.CLASS_TOKEN_POSITION = "end"
        epochs = EPOCH_OVERRIDE_DATASETS.get(cfg.DATASET.NAME)
        if cfg.TRAINER.TCP.EPOCH_OVERRIDE and epochs is not None and cfg.OPTIM.MAX_EPOCH != epochs:
            warn(f"OPTIM.MAX_EPOCH {cfg.OPTIM.MAX_EPOCH} -> {epochs}: the official TCP train.py trains "
                 f"{cfg.DATASET.NAME} for {epochs} epochs (TRAINER.TCP.EPOCH_OVERRIDE False keeps OPTIM.MAX_EPOCH)")
            cfg.OPTIM.MAX_EPOCH = epochs

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node, tcp = cfg.TRAINER.COOP, cfg.TRAINER.TCP
        if node.CSC:
            raise UserError("TCP has no class-specific context: set TRAINER.COOP.CSC False (CSC True crashes "
                            "upstream, docs/design/tcp.md Q9)")
        if node.CTX_INIT and node.CTX_INIT.replace("_", " ") != KG_CTX_INIT:
            raise UserError(f"TRAINER.COOP.CTX_INIT {node.CTX_INIT!r}: TCP initialises from {KG_CTX_INIT!r} whenever "
                            "CTX_INIT is set (docs/design/tcp.md Q7); use True, 'a photo of a' or '' (random)")
        if not node.CTX_INIT and node.N_CTX != OFFICIAL_N_CTX and not tcp.GENERAL_N_CTX:
            raise UserError(f"TRAINER.COOP.N_CTX {node.N_CTX}: TCP's prompts have {OFFICIAL_N_CTX} context slots (the "
                            "official script passes 4; other values misalign upstream, docs/design/tcp.md Q4); set "
                            "TRAINER.COOP.N_CTX 4, or TRAINER.TCP.GENERAL_N_CTX True for M slots and M class tokens")
        if node.N_CTX < 1:
            raise UserError(f"TRAINER.COOP.N_CTX must be positive, got {node.N_CTX}")
        if not _int_list(tcp.LAYERS) or not tcp.LAYERS or min(tcp.LAYERS) < 0 or len(set(tcp.LAYERS)) < len(tcp.LAYERS):
            raise UserError(f"TRAINER.TCP.LAYERS must be a list of distinct block indices >= 0, got {tcp.LAYERS!r}")
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in tcp.LAYER_WEIGHTS):
            raise UserError(f"TRAINER.TCP.LAYER_WEIGHTS must be numbers, got {tcp.LAYER_WEIGHTS!r}")
        if len(tcp.LAYER_WEIGHTS) != len(tcp.LAYERS):
            raise UserError(f"TRAINER.TCP.LAYER_WEIGHTS needs one weight per layer of TRAINER.TCP.LAYERS "
                            f"{list(tcp.LAYERS)}, got {list(tcp.LAYER_WEIGHTS)}")
        if node.W != KgCoOp.config_defaults["W"]:
            print(f"Note: TRAINER.COOP.W {node.W} has no effect on TCP, as officially; the loss weight is "
                  f"TRAINER.TCP.W ({tcp.W}) (docs/design/tcp.md Q2)")
        if tcp.UPSTREAM_FP16_PARTS and node.PREC != "fp32":
            print("Note: TRAINER.TCP.UPSTREAM_FP16_PARTS only applies to TRAINER.COOP.PREC fp32 "
                  "(docs/design/tcp.md Q3)")

    def build_model(self):
        cfg, tcp = self.trainer_cfg, self.cfg.TRAINER.TCP
        clip_model = self.load_clip()
        n_blocks = len(clip_model.transformer.resblocks)
        if max(tcp.LAYERS) >= n_blocks:
            raise UserError(f"TRAINER.TCP.LAYERS {list(tcp.LAYERS)}: this CLIP's text encoder has {n_blocks} blocks "
                            f"(indices 0..{n_blocks - 1}); the class tokens would never enter (docs/design/tcp.md Q6)")
        fp16_parts = False
        if tcp.UPSTREAM_FP16_PARTS and self.prec == "fp32":
            fp16_parts = "fp16" if self.cfg.TRAINER.COCOOP.PREC == "fp16" else "anchors"
        self.build_custom_clip(TCPCLIP, cfg, tcp, self.dm.dataset.classnames, self.cfg.DATASET.NAME, fp16_parts,
                               clip_model=clip_model)

    def compute_loss(self, image, label):
        """L = CE + W * (1 - mean over the task's classes of cos(learned feature, anchor)) (§4)."""
        model = self.model
        class_features = normalize(model.text_features())
        logits = model(image, class_features)
        knowledge = consistency_loss(class_features, model.anchor_text_features)
        return F.cross_entropy(logits, label) + self.cfg.TRAINER.TCP.W * knowledge, logits


__all__ = ["TCP", "TCPCLIP", "TCPPromptLearner", "tcp_templates"]
