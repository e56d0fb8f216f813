"""KgCoOp (baselines.md §8): CoOp prompts kept close to the hand-crafted prompt's text feature.

loss = CE + W * (1 - mean over all task classes of cos(learned class feature, hand-crafted feature)).
Keys live under TRAINER.COOP as in the official release (which adds W and ALPHA to that node).
The hand-crafted features come from the same frozen CLIP (the official code loads a second one;
identical values in fp16 mode, baselines.md Q10).
"""
import torch
import torch.nn.functional as F

from engine import TRAINER_REGISTRY
from engine.config import LEGACY_VALUE_READERS, add_config_node
from models import tokenize
from models.prompted_clip import normalize
from models.templates import dataset_template

from .coop import CoOp, CoOpCLIP

# KgCoOp's own template table differs from zero-shot CLIP's for DTD only
KG_TEMPLATE_OVERRIDES = {"DescribableTextures": "a photo of a {}, a type of texture."}
KG_CTX_INIT = "a photo of a"  # upstream: any truthy CTX_INIT means this phrase (baselines.md Q9)


class KgCoOpCLIP(CoOpCLIP):
    def __init__(self, cfg, classnames, clip_model, template):
        super().__init__(cfg, classnames, clip_model)
        names = [c.replace("_", " ") for c in classnames]
        with torch.no_grad():
            tokens = tokenize([template.format(c) for c in names]).to(clip_model.logit_scale.device)
            self.register_buffer("anchor_text_features", normalize(self.text_encoder.encode_tokens(tokens)),
                                 persistent=False)

    def knowledge_score(self, class_features):
        """1 - mean_c cos(g_c, w_c) over all classes (cosine eps 1e-7 as upstream)."""
        cos = F.cosine_similarity(class_features, self.anchor_text_features.to(class_features.dtype), dim=1,
                                  eps=1e-07)
        return 1.0 - cos.mean()


@TRAINER_REGISTRY.register()
class KgCoOp(CoOp):
    config_node = "COOP"
    checkpoint_ignored_keys = ("token_prefix", "token_suffix", "token_midfix")

    @classmethod
    def extend_cfg(cls, cfg):
        CoOp.extend_cfg(cfg)
        add_config_node(cfg, "TRAINER.COOP", {"W": 1.0, "ALPHA": 1.0})
        # KgCoOp's official yamls write CTX_INIT: True (a bool); it means the phrase below
        LEGACY_VALUE_READERS["TRAINER.COOP.CTX_INIT"] = (
            lambda v: (KG_CTX_INIT if v else "") if isinstance(v, bool) else None)

    def build_model(self):
        cfg = self.trainer_cfg.clone()
        cfg.defrost()
        if cfg.CTX_INIT:
            cfg.CTX_INIT = KG_CTX_INIT
        cfg.CLASS_TOKEN_POSITION = "end"  # KgCoOp ignores the key
        template = KG_TEMPLATE_OVERRIDES.get(self.cfg.DATASET.NAME, dataset_template(self.cfg.DATASET.NAME))
        self.build_custom_clip(lambda clip: KgCoOpCLIP(cfg, self.dm.dataset.classnames, clip, template),
                               "prompt_learner", trainable="ctx")

    def compute_loss(self, image, label):
        model = self.model
        class_features = normalize(model.text_features())
        logits = model(image, class_features)
        loss = F.cross_entropy(logits, label) + self.trainer_cfg.W * model.knowledge_score(class_features)
        return loss, logits
