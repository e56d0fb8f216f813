"""Zero-shot CLIP (docs/design/baselines.md §2): one template per dataset, or the 7(+1)-template ensemble."""
from engine import TRAINER_REGISTRY
from models.prompted_clip import FixedPromptCLIP
from models.templates import IMAGENET_TEMPLATES_SELECT, dataset_template

from .base import PromptTrainer


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(PromptTrainer):
    """The official zero-shot trainers run CLIP in fp16 on a GPU; nothing is trained."""

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
        self.model = FixedPromptCLIP(clip_model, self.dm.dataset.classnames, templates,
                                     encoder_options=self.encoder_options).to(self.device)

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
