"""KgCoOp (docs/design/baselines.md §8): CoOp prompts kept close to the hand-crafted prompt's text feature.

loss = CE + W * (1 - mean over all task classes of cos(learned class feature, hand-crafted feature)).
Keys live under TRAINER.COOP as in the official release (which adds W and ALPHA to that node).
The hand-crafted features come from the same frozen CLIP (the official code loads a second one;
identical values in fp16 mode, docs/design/baselines.md Q10).
"""
import torch.nn.functional as F

from engine import TRAINER_REGISTRY
from engine.utils.tools import warn
from models.prompted_clip import consistency_loss, normalize, template_text_features
from models.templates import dataset_template

from .coop import CoOp, CoOpCLIP

# KgCoOp's own template table differs from zero-shot CLIP's for DTD only
KG_TEMPLATE_OVERRIDES = {"DescribableTextures": "a photo of a {}, a type of texture."}
KG_CTX_INIT = "a photo of a"  # upstream: any truthy CTX_INIT means this phrase (docs/design/baselines.md Q9)
# the official KgCoOp/SEP yamls write CTX_INIT: True/False (a bool); True means the phrase above
CTX_INIT_FLAG = {"TRAINER.COOP.CTX_INIT": lambda v: (KG_CTX_INIT if v else "") if isinstance(v, bool) else None}


class KgCoOpCLIP(CoOpCLIP):
    def __init__(self, cfg, classnames, template, clip_model, encoder_options=None):
        super().__init__(cfg, classnames, clip_model, encoder_options)
        self.register_buffer("anchor_text_features", template_text_features(self.text_encoder, classnames, [template]),
                             persistent=False)


@TRAINER_REGISTRY.register()
class KgCoOp(CoOp):
    config_node = "COOP"
    config_defaults = {**CoOp.config_defaults, "W": 1.0, "ALPHA": 1.0}
    checkpoint_ignored_keys = ("token_prefix", "token_suffix", "token_midfix")
    legacy_values = CTX_INIT_FLAG

    @classmethod
    def resolve_cfg(cls, cfg):
        """As upstream: any CTX_INIT means "a photo of a", and the class token is always at the end."""
        node = cfg.TRAINER.COOP
        if node.CTX_INIT and node.CTX_INIT != KG_CTX_INIT:
            warn(f"TRAINER.COOP.CTX_INIT {node.CTX_INIT!r} -> {KG_CTX_INIT!r}: KgCoOp initialises from "
                 "this phrase whenever CTX_INIT is set (docs/design/baselines.md Q9)")
            node.CTX_INIT = KG_CTX_INIT
        if node.CLASS_TOKEN_POSITION != "end":
            warn(f"TRAINER.COOP.CLASS_TOKEN_POSITION {node.CLASS_TOKEN_POSITION!r} -> 'end': KgCoOp "
                 "ignores the key")
            node.CLASS_TOKEN_POSITION = "end"

    def build_model(self):
        template = KG_TEMPLATE_OVERRIDES.get(self.cfg.DATASET.NAME, dataset_template(self.cfg.DATASET.NAME))
        self.build_custom_clip(KgCoOpCLIP, self.trainer_cfg, self.dm.dataset.classnames, template, trainable="ctx")

    def compute_loss(self, image, label):
        model = self.model
        class_features = normalize(model.text_features())
        logits = model(image, class_features)
        knowledge = consistency_loss(class_features, model.anchor_text_features)
        return F.cross_entropy(logits, label) + self.trainer_cfg.W * knowledge, logits
