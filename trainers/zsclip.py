"""Zero-shot CLIP (baselines.md §2): one template per dataset, or the 7(+1)-template ensemble."""
import torch

from engine import TRAINER_REGISTRY
from models import tokenize
from models.prompted_clip import PromptedCLIP, normalize
from models.templates import IMAGENET_TEMPLATES_SELECT, dataset_template

from .base import PromptTrainer


class FixedPromptCLIP(PromptedCLIP):
    """Class embeddings = mean over templates of the normalised template features, renormalised."""

    def __init__(self, clip_model, classnames, templates):
        super().__init__(clip_model)
        names = [c.replace("_", " ") for c in classnames]
        with torch.no_grad():
            per_template = [normalize(self.text_encoder.encode_tokens(
                tokenize([t.format(c) for c in names]).to(clip_model.logit_scale.device))) for t in templates]
            self.register_buffer("fixed_text_features", torch.stack(per_template).mean(0), persistent=False)

    def text_features(self):
        return self.fixed_text_features


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(PromptTrainer):
    """The official zero-shot trainers run CLIP in fp16 on a GPU (fp32 on a CPU); nothing is trained."""

    prec = "fp16"

    def check_cfg(self, cfg):
        pass

    def templates(self):
        return [dataset_template(self.cfg.DATASET.NAME)]

    def build_model(self):
        clip_model = self.load_clip()
        templates = self.templates()
        for t in templates:
            print(f"Prompt template: {t!r}")
        self.model = FixedPromptCLIP(clip_model, self.dm.dataset.classnames, templates).to(self.device)

    def train(self):
        print("ZeroshotCLIP has nothing to train; use --eval-only")


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Ensemble of IMAGENET_TEMPLATES_SELECT, plus the dataset's own template unless the dataset is ImageNet."""

    def templates(self):
        templates = list(IMAGENET_TEMPLATES_SELECT)  # a copy: the official code mutates the shared list (Z1)
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(dataset_template(self.cfg.DATASET.NAME))
        return templates
