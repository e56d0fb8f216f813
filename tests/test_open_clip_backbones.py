"""open_clip's other CLIPs as backbones (MODEL.BACKBONE.NAME an open_clip model name, MODEL.BACKBONE.PRETRAINED a
tag of its registry or MODEL.BACKBONE.PATH a local checkpoint). Offline: random-weight models built from open_clip's
own configs shrunk to test size, and the download layer mocked."""
import os

import open_clip
import pytest
import torch
from open_clip import pretrained as oc_pretrained

import train  # noqa: F401  (registers trainers and datasets)
from datasets import synthetic_world
from engine.trainer import TRAINER_REGISTRY
from engine.utils.tools import UserError
from meta.methods import all_methods, method_of
from models import ImageEncoder, TextEncoder, load_clip, tokenize
from models.clip import activation_name, clip_weights_file, open_clip_backbone
from tests.helpers import (register_open_clip_config, save_open_clip_checkpoint, small_open_clip_config,
                           train_on_batch)
from tools.train_config import ConfigError, resolve_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# test name -> (open_clip config it shrinks, text context length (None: the config's), activation it must give)
SMALL = {"vlptest-ViT-B-16": ("ViT-B-16", 40, "GELU"), "vlptest-RN50": ("RN50", None, "GELU"),
         "vlptest-ViT-B-32-quickgelu": ("ViT-B-32-quickgelu", None, "QuickGELU")}
TRAINERS = sorted(m.trainer for m in all_methods().values())


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    """The SMALL configs registered in open_clip, each with a saved random open_clip checkpoint."""
    folder = tmp_path_factory.mktemp("open_clip")
    removers = [register_open_clip_config(name, small_open_clip_config(base, ctx))
                for name, (base, ctx, _) in SMALL.items()]
    paths = {name: save_open_clip_checkpoint(name, str(folder / f"{name}.pt")) for name in SMALL}
    yield paths
    for remove in removers:
        remove()


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    synthetic_world.write_benchmark(root, counts=(2, 1, 2))
    return root


def _run(trainer, backbone, path, root, out, *extra):
    cls = TRAINER_REGISTRY.get(trainer)
    opts = ["DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "1",
            "TRAIN.SAVE_RESUME_STATE", "False", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
            "MODEL.BACKBONE.NAME", backbone, "MODEL.BACKBONE.PATH", path, *extra]
    if cls.config_node:
        opts += [f"TRAINER.{cls.config_node}.PREC", "fp32"]
    args = ["--root", root, "--trainer", trainer, "--output-dir", out, "--seed", "1", "--no-train",
            "--dataset-config-file", os.path.join(REPO, "configs/datasets/synthetic_shapes.yaml"),
            "--config-file", method_of(trainer).demo_config, *opts]
    parsed = train.build_parser().parse_args(args)
    return train.main(parsed, train.setup_cfg(parsed))  # main, not run: a UserError stays an exception


CASES = [(t, b) for b in ("vlptest-ViT-B-16", "vlptest-RN50") for t in TRAINERS]


@pytest.mark.parametrize("trainer,backbone", CASES, ids=[f"{t}-{b.split('-', 1)[1]}" for t, b in CASES])
def test_every_trainer_trains_and_evaluates_on_open_clip_models(trainer, backbone, small_models, demo_root,
                                                                 tmp_path, one_torch_thread, monkeypatch):
    """One training step and an evaluation with each trainer's demo config on an open_clip checkpoint (PATH);
    a method that cannot fit the architecture refuses it in one line (ViT-only methods on a ResNet)."""
    monkeypatch.setattr(train, "collect_env_info", lambda: "(not collected here: pip's listing takes seconds)")
    try:
        built = _run(trainer, backbone, small_models[backbone], demo_root, str(tmp_path / "run"))
    except UserError as e:
        if "needs a ViT backbone" in str(e) and "RN" in backbone:
            pytest.skip(f"{trainer} prompts the ViT's tokens: {e}")
        raise
    model = built.model
    expected = SMALL[backbone][2]
    assert activation_name(model.text_encoder.transformer) == expected
    if model.image_encoder.is_vit:
        assert activation_name(model.image_encoder.visual.transformer) == expected
    assert model.text_encoder.context_length == (SMALL[backbone][1] or 77)
    if built.get_model_names():
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        before = {n: p.detach().clone() for n, p in trainable.items()}
        losses = train_on_batch(built, next(iter(built.train_loader_x)), 1)
        assert torch.isfinite(torch.tensor(losses)).all(), losses
        assert any(not torch.equal(before[n], p) for n, p in trainable.items()), "a step changed no prompt"
    assert 0.0 <= built.test() <= 100.0
    with torch.no_grad():
        images = next(iter(built.test_loader))["img"]
        logits = built.model_inference(images)
    assert logits.shape == (images.shape[0], built.num_classes) and torch.isfinite(logits).all()


def test_activation_comes_from_the_config_and_the_tag(small_models, monkeypatch):
    """GELU where the config says so, QuickGELU for a -quickgelu config, and for a GELU config whose tag's
    weights were trained with QuickGELU (open_clip registers MetaCLIP/DFN weights so and only warns)."""
    for name in ("vlptest-ViT-B-16", "vlptest-ViT-B-32-quickgelu"):
        model = load_clip(name, small_models[name], "fp32")
        for encoder in (TextEncoder(model).transformer, ImageEncoder(model).visual.transformer):
            assert activation_name(encoder) == SMALL[name][2]
    assert open_clip_backbone("ViT-B-16", "laion2b_s34b_b88k").quick_gelu is False
    assert open_clip_backbone("ViT-B-16", "metaclip_fullcc").quick_gelu is True
    assert open_clip_backbone("ViT-B-16-quickgelu", "dfn2b").quick_gelu is True


def test_fp16_is_openai_mixed_storage_and_matches_fp32(small_models):
    path = small_models["vlptest-ViT-B-16"]
    half, full = load_clip("vlptest-ViT-B-16", path, "fp16"), load_clip("vlptest-ViT-B-16", path, "fp32")
    assert half.visual.conv1.weight.dtype == torch.float16 and half.text_projection.dtype == torch.float16
    assert half.ln_final.weight.dtype == torch.float32 and half.token_embedding.weight.dtype == torch.float32
    tokens = tokenize(["a photo of a dog."], 40)
    reference = TextEncoder(full).encode_tokens(tokens)
    assert torch.allclose(TextEncoder(half).encode_tokens(tokens).float(), reference,
                          atol=5e-3 * reference.abs().max())
    # our encoders give open_clip's own features (fast path through the GELU blocks included)
    assert torch.allclose(reference, full.encode_text(tokens), atol=1e-5)
    images = torch.randn(2, 3, 32, 32)
    assert torch.allclose(ImageEncoder(full)(images), full.encode_image(images), atol=1e-5)


def test_local_checkpoint_loads_its_weights(small_models):
    path = small_models["vlptest-RN50"]
    saved = torch.load(path, weights_only=True)["state_dict"]
    model = load_clip("vlptest-RN50", path, "fp32")
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_wrong_or_missing_checkpoint_is_one_line(small_models, tmp_path):
    with pytest.raises(UserError) as e:
        load_clip("vlptest-ViT-B-16", small_models["vlptest-RN50"], "fp32")
    assert "as vlptest-ViT-B-16 weights" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="does not exist"):
        load_clip("vlptest-ViT-B-16", str(tmp_path / "missing.pt"), "fp32")
    with pytest.raises(UserError, match="needs its weights: MODEL.BACKBONE.PRETRAINED TAG"):
        load_clip("vlptest-ViT-B-16", "", "fp32")


def test_image_size_comes_from_the_model(small_models, demo_root, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "collect_env_info", lambda: "")
    with pytest.raises(UserError, match=r"takes 32x32 images; set INPUT.SIZE \(32, 32\)"):
        _run("CoOp", "vlptest-ViT-B-16", small_models["vlptest-ViT-B-16"], demo_root, str(tmp_path / "run"),
             "INPUT.SIZE", "(64, 64)")


def test_runs_record_the_hash_of_the_open_clip_weights(small_models, demo_root, tmp_path, monkeypatch):
    from engine.utils.download import sha256sum

    monkeypatch.setattr(train, "collect_env_info", lambda: "")
    path = small_models["vlptest-ViT-B-16"]
    built = _run("CoOp", "vlptest-ViT-B-16", path, demo_root, str(tmp_path / "run"))
    assert built.clip_weights_path == path and built.clip_sha256 == sha256sum(path)


def _mock_hub(monkeypatch, serve=None):
    """open_clip's Hugging Face download function, recording what was asked; ``serve`` (a file) answers for
    open_clip's default weights name, everything else fails as without network."""
    calls = []

    def hf_hub_download(repo_id, filename, revision=None, cache_dir=None, **_):
        calls.append((repo_id, filename))
        if serve and filename == "open_clip_pytorch_model.bin":
            return serve
        raise OSError(f"offline: {repo_id}/{filename}")

    monkeypatch.setattr(oc_pretrained, "hf_hub_download", hf_hub_download)
    return calls


def test_pretrained_tag_downloads_through_open_clips_registry(small_models, monkeypatch):
    """A tag is resolved by open_clip's registry and fetched by its download function (mocked), whose cached file
    is what loads; the tag's settings (QuickGELU here) apply."""
    monkeypatch.setitem(oc_pretrained._PRETRAINED, "vlptest-ViT-B-16",
                        {"vlptest_tag": oc_pretrained._pcfg(hf_hub="vlprompt-test/tiny-clip/", quick_gelu=True)})
    calls = _mock_hub(monkeypatch, serve=small_models["vlptest-ViT-B-16"])
    model = load_clip("vlptest-ViT-B-16", "", "fp32", pretrained="vlptest_tag")
    assert calls[-1] == ("vlprompt-test/tiny-clip", "open_clip_pytorch_model.bin")
    saved = torch.load(small_models["vlptest-ViT-B-16"], weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert activation_name(model.transformer) == "QuickGELU"
    assert clip_weights_file("vlptest-ViT-B-16", "vlptest_tag") == small_models["vlptest-ViT-B-16"]  # what loaded


def test_local_copy_of_a_tag_loads_offline_with_the_tags_settings(small_models, monkeypatch):
    monkeypatch.setitem(oc_pretrained._PRETRAINED, "vlptest-ViT-B-16",
                        {"vlptest_tag": oc_pretrained._pcfg(hf_hub="vlprompt-test/tiny-clip/", quick_gelu=True)})
    calls = _mock_hub(monkeypatch)
    model = load_clip("vlptest-ViT-B-16", small_models["vlptest-ViT-B-16"], "fp32", pretrained="vlptest_tag")
    assert not calls and activation_name(model.visual.transformer) == "QuickGELU"


def test_real_tag_asks_open_clip_for_its_weights_and_fails_in_one_line_offline(monkeypatch):
    calls = _mock_hub(monkeypatch)
    with pytest.raises(UserError) as e:
        load_clip("ViT-B-16", "", "fp32", pretrained="laion2b_s34b_b88k")
    assert {repo for repo, _ in calls} == {"laion/CLIP-ViT-B-16-laion2B-s34B-b88K"}
    message = str(e.value)
    assert "\n" not in message and "ViT-B-16 laion2b_s34b_b88k" in message and "MODEL.BACKBONE.PATH" in message


@pytest.mark.parametrize("name,reason", [("ViT-B-16-SigLIP", "not causal"), ("convnext_base", "timm model"),
                                         ("roberta-ViT-B-32", "Hugging Face model"), ("coca_ViT-B-32", "CoCa"),
                                         ("ViT-L-14-CLIPA", "tokenizer"), ("EVA02-B-16", "timm model")])
def test_unsupported_architectures_are_refused_in_one_line(name, reason):
    with pytest.raises(UserError) as e:
        open_clip_backbone(name, "")
    message = str(e.value)
    assert reason in message and "VisionTransformer or ModifiedResNet" in message and "\n" not in message


def test_tags_and_names_are_checked_before_any_work():
    with pytest.raises(UserError, match="not an open_clip tag of ViT-B-16; its tags: .*laion2b_s34b_b88k"):
        open_clip_backbone("ViT-B-16", "laion5b")
    with pytest.raises(UserError, match="MODEL.BACKBONE.NAME ViT-B/16 with MODEL.BACKBONE.PRETRAINED empty"):
        open_clip_backbone("ViT-B-16-quickgelu", "openai")
    with pytest.raises(UserError, match="Did you mean .*ViT-B-16"):
        open_clip_backbone("ViT-B-61", "")
    # OpenAI's paper names keep their loader; with another tag they are open_clip models
    assert open_clip_backbone("ViT-B/16", "") is None and open_clip_backbone("RN50", "openai") is None
    assert open_clip_backbone("RN50", "yfcc15m").model == "RN50"
    assert open_clip_backbone("ViT-B/16", "datacomp_xl_s13b_b90k").model == "ViT-B-16"


def _resolved(*opts):
    yaml = os.path.join(REPO, "configs/trainers/CoOp/vit_b16.yaml")
    return resolve_config(["--trainer", "CoOp", "--config-file", yaml, *opts])


def test_normalisation_follows_the_models_preprocessing_unless_chosen():
    laion = ["MODEL.BACKBONE.NAME", "ViT-L-14", "MODEL.BACKBONE.PRETRAINED", "laion2b_s32b_b82k"]
    cfg = _resolved(*laion)  # the yaml's OpenAI constants: not chosen for this model
    assert list(cfg.INPUT.PIXEL_MEAN) == [0.5] * 3 and list(cfg.INPUT.PIXEL_STD) == [0.5] * 3
    dassl = _resolved(*laion, "INPUT.PIXEL_MEAN", "[0.485, 0.456, 0.406]", "INPUT.PIXEL_STD", "[0.229, 0.224, 0.225]")
    assert list(dassl.INPUT.PIXEL_MEAN) == [0.5] * 3  # Dassl's (ImageNet) default is not a choice either
    chosen = [0.4, 0.4, 0.4]
    cfg = _resolved(*laion, "INPUT.PIXEL_MEAN", str(chosen))
    assert list(cfg.INPUT.PIXEL_MEAN) == chosen
    openai = _resolved("MODEL.BACKBONE.NAME", "ViT-B/16")  # OpenAI's path: the config as written
    assert list(openai.INPUT.PIXEL_MEAN) == list(open_clip.OPENAI_DATASET_MEAN)
    with pytest.raises(ConfigError, match="ViT-SO400M-14-SigLIP is not supported"):
        _resolved("MODEL.BACKBONE.NAME", "ViT-SO400M-14-SigLIP", "MODEL.BACKBONE.PRETRAINED", "webli")


def test_benchmark_takes_open_clip_names(small_models, capsys, one_torch_thread, monkeypatch):
    import trainers.base
    from tools import benchmark

    # without --clip-path the benchmark swaps the trainers' CLIP loader for random weights: restore it after
    monkeypatch.setattr(trainers.base, "load_clip", trainers.base.load_clip)

    rows = benchmark.main(["--backbone", "vlptest-ViT-B-16", "--trainers", "CoOp", "--classes", "3", "--steps", "1",
                           "--eval-batch", "2", "--eval-repeat", "1", "--test-images", "10", "--threads", "1",
                           "--opts", "TRAINER.COOP.N_CTX", "4"])
    assert [(r[0], r[1]) for r in rows] == [("CoOp", 3)]
    assert "vlptest-ViT-B-16" in capsys.readouterr().out
