"""ProGrad, prompt-aligned gradients (docs/design/prograd.md): CoOp's prompt trained on cross-entropy, with the
CE gradient's component along the zero-shot distillation gradient removed where the two conflict.

Per step (prograd.md §4-§5): one forward of the student (CoOp prompt) and of the frozen zero-shot teacher
(hand-written template, always fp32), two losses CE and KL = T^2 * soft-label cross-entropy to the teacher.
The KL gradient b is taken here (``torch.autograd.grad``, keeping the graph); the engine back-propagates CE
(gradient a) and calls ``adjust_gradients``, where per trainable tensor a becomes a - LAMBDA (a.b^) b^ when
cos(a, b) < 0 and stays a otherwise; weight decay and momentum follow in the optimiser, as upstream.

One frozen CLIP serves student and teacher. In fp32 the teacher reuses the student's image features
(bit-identical to upstream's second fp32 CLIP); under PREC fp16 it keeps an fp32 copy of the image tower
(the values of upstream's fp32 teacher), or reuses the upcast fp16 features with
TRAINER.PROGRAD.TEACHER_SHARES_IMAGE_FEATURES True; under amp it runs the same fp32 tower outside autocast.
Keys as upstream: TRAINER.COOP.* (CoOp's node; CTX_INIT a flag, True = the dataset's phrase) and LOSS.*.
"""
import copy

import torch
import torch.nn.functional as F

from engine import TRAINER_REGISTRY
from engine.config import add_config_node
from engine.utils.tools import UserError
from models.clip import tokenize
from models.prompted_clip import PromptedCLIP, normalize, template_text_features
from models.prompts import ClassPromptLearner, init_context
from models.templates import dataset_template

from .coop import CoOp, CoOpCLIP, CoOpPromptLearner

# ProGrad's own template table (prograd.md §2.3): the teacher's prompts and the context init phrases.
# It differs from zero-shot CLIP's (models/templates.py) for Pets, Flowers, Aircraft, DTD and Food101.
PROGRAD_TEMPLATES = {
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a type of food, a photo of {}.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

# TRAINER.COOP.CTX_INIT is a flag for ProGrad (its yamls write True): True means "the dataset's phrase" (Q1)
CTX_INIT_DATASET = "<dataset phrase>"
CTX_INIT_FLAG = {"TRAINER.COOP.CTX_INIT": lambda v: (CTX_INIT_DATASET if v else "") if isinstance(v, bool) else None}

# ProGrad's LOSS node (upstream extend_cfg; TCP's and KgCoOp's releases declare the same defaults)
LOSS_DEFAULTS = {"GM": False, "NAME": "", "ALPHA": 0.0, "T": 1.0, "LAMBDA": 1.0}
# vlprompt switches (prograd.md §11)
PROGRAD_DEFAULTS = {
    "CTX_INIT_PHRASE": "",  # Q1: with CTX_INIT True, this phrase instead of the dataset's (same zero-padded layout)
    "TEACHER_SHARES_IMAGE_FEATURES": False,  # Q2: under fp16/amp, the teacher reuses the student's image features
}


def template_for(dataset_name):
    """The teacher's template: ProGrad's table, else zero-shot CLIP's for datasets outside it (upstream: KeyError)."""
    return PROGRAD_TEMPLATES.get(dataset_name) or dataset_template(dataset_name)


def phrase_of(template):
    """The init phrase of a template: the template without its trailing " {}." (prograd.md §2.4)."""
    phrase = template.replace(" {}.", "").replace("_", " ")
    if "{}" in phrase:
        raise UserError(f"template {template!r} does not end with ' {{}}.'; set TRAINER.PROGRAD.CTX_INIT_PHRASE")
    return phrase


@torch.no_grad()
def zero_padded_context(text_encoder, phrase, n_ctx):
    """ProGrad's word init (prograd.md §2.4, Q1): n_ctx slots, zero vectors in front and the embeddings of the
    phrase's first w BPE tokens (w = its space-separated words) in the last w slots. Returns (ctx, placeholder
    prefix): (n_ctx - w) "X" and the whole phrase, so tokens beyond the w-th stay fixed text after the context."""
    n_words = len(phrase.split(" "))
    if n_ctx < n_words:
        raise UserError(f"TRAINER.COOP.N_CTX is {n_ctx} but the init phrase {phrase!r} has {n_words} words; "
                        f"ProGrad needs N_CTX >= {n_words}")
    device = text_encoder.token_embedding.weight.device
    embedding = text_encoder.embed(tokenize(phrase, text_encoder.context_length).to(device))
    ctx = torch.zeros(n_ctx, text_encoder.width, dtype=text_encoder.dtype, device=device)
    ctx[n_ctx - n_words:] = embedding[0, 1:1 + n_words]
    return ctx, " ".join(["X"] * (n_ctx - n_words) + [phrase])


class ProGradPromptLearner(CoOpPromptLearner):
    """CoOp's prompt (end / middle / front, unified or class-specific) with ProGrad's zero-padded phrase init."""

    def __init__(self, cfg, classnames, text_encoder, phrase=None):
        if phrase and cfg.CSC:
            raise UserError("TRAINER.COOP.CSC True cannot be combined with CTX_INIT True (the official code "
                            "silently ignores CSC there); set CTX_INIT False for class-specific context")
        if phrase:
            ctx, prompt_prefix = zero_padded_context(text_encoder, phrase, cfg.N_CTX)
        else:
            print("Initializing class-specific contexts" if cfg.CSC else "Initializing a generic context")
            ctx, prompt_prefix = init_context(text_encoder, "", cfg.N_CTX, len(classnames) if cfg.CSC else None)
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {ctx.shape[-2]}")
        ClassPromptLearner.__init__(self, text_encoder, classnames, ctx, prompt_prefix)
        self.class_token_position = cfg.CLASS_TOKEN_POSITION


class ProGradCLIP(CoOpCLIP):
    """The student (CoOp prompt on the frozen CLIP) and what the zero-shot teacher needs: the template's class
    features (computed in fp32, normalised) and, when the CLIP is stored in fp16 and the features are not shared,
    an fp32 copy of the image tower."""

    def __init__(self, cfg, classnames, template, phrase, share_teacher_features, clip_model, encoder_options=None):
        PromptedCLIP.__init__(self, clip_model, encoder_options)
        self.prompt_learner = ProGradPromptLearner(cfg, classnames, self.text_encoder, phrase)
        # upstream's teacher is its own CLIP, .float()-ed: the fp16-rounded weights in fp32 (prograd.md §2.1)
        self.register_buffer("teacher_text_features",
                             template_text_features(self.text_encoder, classnames, [template], fp32=True),
                             persistent=False)
        fp32 = self.image_encoder.dtype == torch.float32
        self.teacher_image_encoder = None
        if not fp32 and not share_teacher_features:
            self.teacher_image_encoder = copy.deepcopy(self.image_encoder).float().eval()

    def student_logits(self, image):
        """(logits, image features before normalisation): the forward of evaluation, keeping the features."""
        features = self.image_features(image)
        return self.logits(normalize(features), normalize(self.text_features())), features

    @torch.no_grad()
    def teacher_logits(self, image, image_features=None):
        """Zero-shot logits in fp32, outside autocast (prograd.md §2.5 step 4); ``image_features`` (the student's)
        are used instead of an image forward when given."""
        with torch.autocast(image.device.type, enabled=False):
            if image_features is None:
                tower = self.image_encoder if self.teacher_image_encoder is None else self.teacher_image_encoder
                image_features = tower(image.float())
            scale = self.logit_scale.exp().float()
            return scale * normalize(image_features.float()) @ self.teacher_text_features.t()


def distillation_loss(student_logits, teacher_logits, T):
    """T^2 * batch mean of the cross-entropy from softmax(teacher/T) to log_softmax(student/T) (prograd.md §4, Q5:
    KL plus the teacher's entropy, logged as upstream's kl_loss). fp32 teacher x fp16 student promotes to fp32."""
    teacher_prob = F.softmax(teacher_logits / T, dim=-1)
    per_class = -teacher_prob * F.log_softmax(student_logits / T, dim=-1) * T * T
    return per_class.sum(1).mean()


def project_conflicting(a, b, lam):
    """ProGrad's rule for one gradient tensor (prograd.md §5 step 6, Q6), in the gradient's dtype: a when
    cos(a, b) >= 0 (or is NaN: a or b zero), else a - lam * (a . b^) b^ with b^ = b/|b| over all elements.
    Returns (gradient, projected?)."""
    b_unit = b / torch.linalg.norm(b)
    a_unit = a / torch.linalg.norm(a)
    if torch.dot(a_unit.flatten(), b_unit.flatten()) < 0:
        return a - lam * torch.dot(a.flatten(), b_unit.flatten()) * b_unit, True
    return a, False


@TRAINER_REGISTRY.register()
class ProGrad(CoOp):
    config_node = "COOP"
    config_defaults = {**CoOp.config_defaults, "ALPHA": 1.0}  # ALPHA: declared upstream, unused (Q7)
    legacy_values = CTX_INIT_FLAG

    @classmethod
    def extend_cfg(cls, cfg):
        super().extend_cfg(cfg)
        add_config_node(cfg, "LOSS", LOSS_DEFAULTS)
        add_config_node(cfg, "TRAINER.PROGRAD", PROGRAD_DEFAULTS)

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        if cfg.LOSS.NAME != "prograd":
            raise UserError(f"ProGrad needs LOSS.NAME prograd (set by its yamls, configs/trainers/ProGrad/), got "
                            f"{cfg.LOSS.NAME!r}")
        if not cfg.LOSS.T > 0:
            raise UserError(f"LOSS.T (the distillation temperature) must be positive, got {cfg.LOSS.T}")
        if not 0.0 <= cfg.LOSS.LAMBDA <= 1.0:
            raise UserError(f"LOSS.LAMBDA (the share of the conflicting component removed) must lie in [0, 1], "
                            f"got {cfg.LOSS.LAMBDA}")
        ctx_init = cfg.TRAINER.COOP.CTX_INIT
        if ctx_init not in ("", CTX_INIT_DATASET):
            raise UserError(f"TRAINER.COOP.CTX_INIT is a flag for ProGrad (True: the dataset's phrase, False: random "
                            f"context), got {ctx_init!r}; for another phrase set CTX_INIT True and "
                            "TRAINER.PROGRAD.CTX_INIT_PHRASE")

    def build_model(self):
        cfg = self.cfg
        template = template_for(cfg.DATASET.NAME)
        phrase = None
        if cfg.TRAINER.COOP.CTX_INIT:
            phrase = cfg.TRAINER.PROGRAD.CTX_INIT_PHRASE.replace("_", " ") or phrase_of(template)
        print(f"Zero-shot teacher template: {template!r}")
        self.build_custom_clip(ProGradCLIP, self.trainer_cfg, self.dm.dataset.classnames, template, phrase,
                               cfg.TRAINER.PROGRAD.TEACHER_SHARES_IMAGE_FEATURES)
        self._kl_grads = None  # [(parameter, KL gradient)] of the current step, consumed by adjust_gradients
        self._reset_epoch_stats()

    # ----- the step: compute_loss (both losses, the KL gradient), the engine's CE backward, adjust_gradients -----
    def trainable_parameters(self):
        return [p for name in self.get_model_names() for p in self._models[name].parameters() if p.requires_grad]

    def compute_loss(self, image, label):
        model = self.model
        logits, features = model.student_logits(image)
        # fp32: the teacher's image features are the student's (same frozen tower, same input); otherwise
        # they are the fp32 tower's unless TEACHER_SHARES_IMAGE_FEATURES (prograd.md Q2)
        share = (self.prec != "amp" and features.dtype == torch.float32) or \
            self.cfg.TRAINER.PROGRAD.TEACHER_SHARES_IMAGE_FEATURES
        teacher_logits = model.teacher_logits(image, features.detach() if share else None)
        ce = F.cross_entropy(logits, label)
        kl = distillation_loss(logits, teacher_logits, self.cfg.LOSS.T)
        self.detect_anomaly(kl, "the distillation (KL) loss")  # upstream checks it first, then CE (the engine)
        self._kl_grads = None
        if self.cfg.LOSS.LAMBDA != 0 and kl.requires_grad:  # lambda 0: a - 0 = a exactly, b is not needed
            params = self.trainable_parameters()
            scaled = self.scaler.scale(kl) if self.scaler is not None else kl  # a and b at the same loss scale
            with torch.autocast(self.device.type, enabled=False):
                grads = torch.autograd.grad(scaled, params, retain_graph=True, allow_unused=True)
            self._kl_grads = list(zip(params, grads))
        self._record(kl)
        return ce, logits

    def adjust_gradients(self):
        pairs, self._kl_grads = self._kl_grads, None
        if not pairs:
            return
        for p, b in pairs:  # paired by parameter, not by position (Q14)
            a = p.grad
            if a is None or b is None:
                continue
            if self.scaler is not None and not torch.isfinite(b).all():
                # the KL gradient overflowed at this loss scale: let the scaler skip the step and lower its scale
                p.grad = torch.full_like(a, float("nan"))
                continue
            p.grad, projected = project_conflicting(a, b, self.cfg.LOSS.LAMBDA)
            self._projected += int(projected)
            self._checked += 1

    # ----- what upstream logs besides the CE loss and accuracy: kl_loss; also how often the projection fired -----
    def _reset_epoch_stats(self):
        self._kl_sum, self._kl_count, self._projected, self._checked = 0.0, 0, 0, 0

    def _record(self, kl):
        value = kl.item()
        self._kl_sum += value
        self._kl_count += 1
        if getattr(self, "batch_idx", None) is not None and getattr(self, "num_batches", None):
            self.write_scalar("train/kl_loss", value, self.epoch * self.num_batches + self.batch_idx)

    def before_epoch(self):
        super().before_epoch()
        self._reset_epoch_stats()

    def after_epoch(self):
        if self._kl_count:
            projected = (f"; CE gradient projected (conflicting with the KL gradient) for {self._projected} of "
                         f"{self._checked} tensor updates" if self._checked else "")
            print(f"epoch [{self.epoch + 1}/{self.max_epoch}] kl_loss {self._kl_sum / self._kl_count:.4f}{projected}")
        super().after_epoch()
