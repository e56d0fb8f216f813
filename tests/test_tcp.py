"""TCP on tiny CLIPs: class-aware tokens, where they enter, the loss, the trainable set, official
checkpoints and configs, the switches (docs/design/tcp.md)."""
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import train
from engine.checkpoint import load_checkpoint
from models import load_clip
from models.clip import tokenize
from models.prompted_clip import template_text_features
from tests.helpers import (assert_unchanged, coop_args, frozen_state, make_tiny_clip, run_train, saved_logits,
                           train_on_batch, with_flags)
from trainers.tcp import TCPCLIP, tcp_templates

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFICIAL_YAML = "vit_b16_ep100_ctxv1.yaml"
# the official command line's TRAINER.COOP options (scripts/base2new_train.sh), fp32
OFFICIAL_OPTS = ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "1.0",
                 "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "TRAINER.COOP.PREC", "fp32", "TEST.SAVE_LOGITS", "True"]
TRAINABLE = {"prompt_learner.ctx", "prompt_learner.meta_net.linear1.weight", "prompt_learner.meta_net.linear1.bias",
             "prompt_learner.meta_net.linear2.weight", "prompt_learner.meta_net.linear2.bias"}


@pytest.fixture(scope="module")
def clip12(tmp_path_factory):
    """12 text blocks, so the official injection before block 8 happens (Q6)."""
    return make_tiny_clip(str(tmp_path_factory.mktemp("clip12") / "tiny_vit_l12.pt"), layers=12)


def _args(root, clip, out, *extra, epochs=1):
    return coop_args(root, clip, out, *OFFICIAL_OPTS, *extra, trainer="TCP", epochs=epochs, config=OFFICIAL_YAML)


def _build(root, clip, tmp_path, *extra):
    return run_train(with_flags(_args(root, clip, str(tmp_path / "b"), *extra), "--no-train"))


def _user_error(capsys, argv):
    """train.py's one-line error (exit status 2) for ``argv``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_train(argv)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, errors
    return errors[0]


def _model(clip_path, classnames, dataset="Caltech101", layers=(8,), n_ctx=4):
    cfg = SimpleNamespace(N_CTX=n_ctx, CSC=False, CTX_INIT="")
    tcp = SimpleNamespace(LAYERS=list(layers), LAYER_WEIGHTS=[1.0] * len(layers))
    return TCPCLIP(cfg, tcp, classnames, dataset, False, load_clip("custom", clip_path, "fp32"))


def test_class_tokens_follow_the_class_names(clip12):
    torch.manual_seed(0)
    a = _model(clip12, ["dog", "cat", "bus"])
    torch.manual_seed(0)  # same ctx and meta-net
    b = _model(clip12, ["bus", "tree", "dog"])
    pa, pb = a.prompt_learner, b.prompt_learner
    assert torch.equal(pa.ctx, pb.ctx) and torch.equal(pa.meta_net.linear2.weight, pb.meta_net.linear2.weight)
    ta, tb = pa.class_tokens(), pb.class_tokens()
    assert ta.shape == (3, 4, 64)  # K = 4 tokens of the text width (Q5: from the model)
    # a class's tokens depend on its name only: "dog" and "bus" keep theirs in another class list
    assert torch.allclose(ta[0], tb[2], atol=1e-6) and torch.allclose(ta[2], tb[0], atol=1e-6)
    assert not torch.allclose(ta[1], tb[1], atol=1e-3)  # "cat" vs "tree"
    assert (ta[0] - ta[1]).abs().max() > 1e-3
    # from the normalised hand-crafted features (§2.3), and the text features follow them
    anchors = template_text_features(a.text_encoder, ["dog", "cat", "bus"], ["a photo of a {}."])
    assert torch.allclose(pa.anchor_features, anchors)
    with torch.no_grad():
        fa, fb = a.text_features(), b.text_features()
    assert torch.allclose(fa[0], fb[2], atol=1e-5) and not torch.allclose(fa[1], fb[1], atol=1e-3)


def test_class_tokens_replace_the_context_positions_before_the_listed_block(clip12):
    model = _model(clip12, ["dog", "cat"])
    pl, seen = model.prompt_learner, {}
    blocks = model.text_encoder.transformer.resblocks
    handles = [blocks[i].register_forward_pre_hook(lambda m, inp, i=i: seen.__setitem__(i, inp[0].clone()))
               for i in (7, 8)]
    try:
        with torch.no_grad():
            tokens = pl.class_tokens()
            model.text_features()
    finally:
        for h in handles:
            h.remove()
    # the hook's result is what block 8 gets; block 7's input still carries the shared context there
    hook = pl.text_hook(tokens)
    x7 = torch.randn(2, 10, 64)
    out = hook(8, x7)
    assert torch.equal(out[:, 1:5], tokens)
    assert torch.equal(out[:, :1], x7[:, :1]) and torch.equal(out[:, 5:], x7[:, 5:])
    assert torch.equal(hook(7, x7), x7)
    # without the injection the features differ (the control of docs/design/tcp.md §12)
    with torch.no_grad():
        with_tokens = model.text_features()
        pl.layers = []
        without = model.text_features()
    assert (with_tokens - without).abs().max() > 1e-3


def test_placeholders_follow_the_official_tables(clip12):
    assert tcp_templates("FGVCAircraft") == ("a photo of an aircraft {}.", "{}, a type of aircraft.")
    assert tcp_templates("StanfordCars")[1] == "{}, a type of car"  # no final period (Q15)
    assert tcp_templates("MyDataset") == ("a photo of a {}.", "{}.")  # outside the tables (Q19)
    pl = _model(clip12, ["Apply_Eye_Makeup"], dataset="UCF101").prompt_learner
    # UCF101's official placeholder "a photo of a person doing {}.": the 4 slots cover "a photo of a"
    official = tokenize(["a photo of a person doing Apply Eye Makeup."])
    assert torch.equal(pl.tokenized_prompts[:, 5:], official[:, 5:])
    assert pl.tokenized_prompts[0, 0] == official[0, 0] and pl.token_suffix.shape[1] == 77 - 5


def test_loss_trainable_set_and_training_keep_clip(caltech_root, clip12, tmp_path):
    trainer = _build(caltech_root, clip12, tmp_path, "INPUT.TRANSFORMS", "['normalize']", "OPTIM.WARMUP_EPOCH", "0",
                     "OPTIM.LR", "0.01")
    model = trainer.model
    assert {n for n, p in model.named_parameters() if p.requires_grad} == TRAINABLE
    batch = next(iter(trainer.train_loader_x))
    image, label = batch["img"], batch["label"]
    loss, logits = trainer.compute_loss(image, label)
    with torch.no_grad():  # §4: CE + 8 (1 - mean cos), over all classes of the task
        g = F.normalize(model.text_features(), dim=-1)
        f = F.normalize(model.image_encoder(image), dim=-1)
        w = F.normalize(model.prompt_learner.anchor_features, dim=-1)
        expected = F.cross_entropy(model.logit_scale.exp() * f @ g.t(), label) + 8.0 * (1 - (g * w).sum(-1).mean())
    assert torch.allclose(loss, expected, atol=1e-5) and logits.shape == (len(label), 6)

    frozen = frozen_state(model)
    losses = train_on_batch(trainer, batch, 6)
    assert losses[-1] < losses[0], losses
    assert {n for n, p in model.named_parameters() if p.grad is not None} == TRAINABLE  # meta-net reached
    assert_unchanged(model, frozen)


def test_official_checkpoint_loads_and_init_weights(caltech_root, clip12, tmp_path, capsys):
    out = str(tmp_path / "train")
    run_train(_args(caltech_root, clip12, out))
    ours = load_checkpoint(os.path.join(out, "prompt_learner", "model.pth.tar-1"))["state_dict"]
    # the official file's seven keys (§8); buffers of another class set must be ignored
    assert set(ours) == {k.split(".", 1)[1] for k in TRAINABLE} | {"token_prefix", "token_suffix"}
    official = dict(ours, token_prefix=torch.zeros(9, 1, 64), token_suffix=torch.zeros(9, 72, 64))
    folder = tmp_path / "official" / "prompt_learner"
    os.makedirs(folder)
    torch.save({"state_dict": official, "epoch": 1, "optimizer": None, "scheduler": None},
               folder / "model.pth.tar-1")
    ev = str(tmp_path / "eval")
    run_train(with_flags(_args(caltech_root, clip12, ev), "--eval-only", "--model-dir", str(tmp_path / "official"),
                         "--load-epoch", "1"))
    assert torch.equal(saved_logits(ev)["logits"], saved_logits(out)["logits"])

    # MODEL.INIT_WEIGHTS: training starts from the file's prompt weights
    init = run_train(with_flags(_args(caltech_root, clip12, str(tmp_path / "init"), "MODEL.INIT_WEIGHTS",
                                      str(folder / "model.pth.tar-1")), "--no-train"))
    for k in ("ctx", "meta_net.linear2.weight"):
        assert torch.equal(init.model.prompt_learner.state_dict()[k], ours[k])

    # a checkpoint without the meta-net (e.g. a CoOp one) is refused in one line
    del official["meta_net.linear1.weight"]
    torch.save({"state_dict": official, "epoch": 1}, folder / "model.pth.tar-1")
    error = _user_error(capsys, with_flags(_args(caltech_root, clip12, str(tmp_path / "bad")), "--eval-only",
                                           "--model-dir", str(tmp_path / "official"), "--load-epoch", "1"))
    assert "lacks trainable tensors meta_net.linear1.weight" in error


@pytest.mark.parametrize("opts,match", [
    (["TRAINER.TCP.LAYERS", "[12]"], "has 12 blocks"),
    (["TRAINER.TCP.LAYERS", "[-1]"], "block indices >= 0"),
    (["TRAINER.TCP.LAYERS", "[4, 8]"], "one weight per layer"),
    (["TRAINER.COOP.N_CTX", "16"], "4 context slots"),
    (["TRAINER.COOP.CSC", "True"], "no class-specific context"),
    (["TRAINER.COOP.CTX_INIT", "a photo of"], "initialises from 'a photo of a'"),
])
def test_bad_configs_fail_in_one_line(opts, match, caltech_root, clip12, tmp_path, capsys):
    argv = with_flags(_args(caltech_root, clip12, str(tmp_path / "b"), *opts), "--no-train")
    assert match in _user_error(capsys, argv)


def test_shallow_clip_needs_a_layer_it_has_and_resnets_work(caltech_root, tiny_clip, tiny_rn_clip, tmp_path, capsys):
    argv = with_flags(_args(caltech_root, tiny_clip, str(tmp_path / "b")), "--no-train")
    assert "TRAINER.TCP.LAYERS [8]: this CLIP's text encoder has 2 blocks" in _user_error(capsys, argv)
    # the image tower is plain CLIP: a ResNet backbone works (TCP needs no ViT)
    out = str(tmp_path / "rn")
    run_train(_args(caltech_root, tiny_rn_clip, out, "TRAINER.TCP.LAYERS", "[1]"))
    assert torch.isfinite(saved_logits(out)["logits"]).all()


def _resolved(*argv):
    return train.resolve_config(["--trainer", "TCP", "--config-file",
                                 os.path.join(REPO, "configs/trainers/TCP", OFFICIAL_YAML), *argv])


def test_official_yaml_command_line_and_epoch_override():
    dataset = lambda name: ["--dataset-config-file", os.path.join(REPO, "configs/datasets", name)]  # noqa: E731
    cfg = _resolved(*dataset("caltech101.yaml"), "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.W", "1.0")
    assert cfg.OPTIM.MAX_EPOCH == 50 and cfg.OPTIM.EPS == 1e-3 and cfg.OPTIM.NAME == "adam"
    assert cfg.TRAINER.COOP.CTX_INIT == "" and cfg.TRAINER.TCP.W == 8.0 and cfg.TRAINER.TCP.LAYERS == [8]
    for name in ("imagenet.yaml", "sun397.yaml"):  # forced after every merge, command line included (Q12)
        assert _resolved(*dataset(name), "OPTIM.MAX_EPOCH", "7").OPTIM.MAX_EPOCH == 25
    assert _resolved(*dataset("imagenet.yaml"), "TRAINER.TCP.EPOCH_OVERRIDE", "False").OPTIM.MAX_EPOCH == 50
    assert _resolved(*dataset("caltech101.yaml"), "TRAINER.COOP.CTX_INIT", "True").TRAINER.COOP.CTX_INIT == \
        "a photo of a"


def test_upstream_fp16_parts_and_general_n_ctx(caltech_root, clip12, tmp_path):
    mixed = _build(caltech_root, clip12, tmp_path, "TRAINER.TCP.UPSTREAM_FP16_PARTS", "True").model
    pl = mixed.prompt_learner
    assert pl.anchor_features.dtype == torch.float16 and pl.meta_net.linear1.weight.dtype == torch.float16
    assert pl.ctx.dtype == torch.float32
    fp32 = _build(caltech_root, clip12, tmp_path).model.prompt_learner
    assert torch.allclose(pl.anchor_features.float(), fp32.anchor_features, atol=5e-3)
    out = str(tmp_path / "mixed")
    run_train(_args(caltech_root, clip12, out, "TRAINER.TCP.UPSTREAM_FP16_PARTS", "True"))
    assert torch.isfinite(saved_logits(out)["logits"]).all()

    general = _build(caltech_root, clip12, tmp_path, "TRAINER.COOP.N_CTX", "2", "TRAINER.TCP.GENERAL_N_CTX", "True")
    g = general.model.prompt_learner
    assert g.ctx.shape == (2, 64) and g.class_tokens().shape == (6, 2, 64) and g.token_suffix.shape[1] == 77 - 3


@pytest.mark.parametrize("prec", ["amp", "fp16"])
def test_other_precisions_train_and_evaluate(prec, caltech_root, clip12, tmp_path):
    """amp: fp32 masters under autocast (upstream crashes, Q10); fp16: OpenAI's storage, ctx and meta-net fp16
    with Adam eps 1e-3 as upstream (§2.7)."""
    out = str(tmp_path / prec)
    trainer = run_train(_args(caltech_root, clip12, out, "TRAINER.COOP.PREC", prec, epochs=2))
    assert torch.isfinite(saved_logits(out)["logits"]).all()
    dtype = torch.float32 if prec == "amp" else torch.float16
    assert all(p.dtype == dtype for p in trainer.model.prompt_learner.parameters())


def test_no_shared_prefix_and_truncation_is_exact(caltech_root, clip12, tmp_path):
    model = _build(caltech_root, clip12, tmp_path).model
    assert model.prompt_learner.shared_prefix() is None
    with torch.no_grad():
        cut = model.text_features()
        model.text_encoder.truncate = False
        full = model.text_features()
    assert torch.allclose(cut, full, atol=1e-5)
