"""Issue 18: predict.py on images with a trained run's prompts, prompt bundles (tools/export.py), and the cost
figures every run records. One short CoOp run on a small copy of the demo world (demo CLIP) serves the tests;
a second one with class-specific context checks the refusal of new class names."""
import json
import os
import shutil
import time
import types

import pytest
import torch

import predict
import train
from datasets import synthetic_world
from engine.trainer import TRAINER_REGISTRY
from meta.methods import method_of
from meta.runs import DONE, read_json
from tests.helpers import make_tiny_clip, run_train, saved_logits
from tools import export, parse_results, plot_results
from tools.sweeps import records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CLIP = os.path.join(REPO, "data", "demo_clip", "synthetic_clip.pt")
SHAPES = os.path.join(REPO, "configs", "datasets", "synthetic_shapes.yaml")
EPOCHS = 2


def _args(root, out, *extra, flags=(), trainer="CoOp"):
    return ["--root", root, "--trainer", trainer, "--output-dir", out, "--seed", "1", *flags,
            "--dataset-config-file", SHAPES, "--config-file", method_of(trainer).demo_config,
            "MODEL.BACKBONE.PATH", DEMO_CLIP, "DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", str(EPOCHS),
            "TRAIN.SAVE_RESUME_STATE", "False", "DATALOADER.TRAIN_X.BATCH_SIZE", "16", *extra]


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    synthetic_world.write_benchmark(root, counts=(4, 1, 4))
    return root


@pytest.fixture(scope="module")
def coop_run(shapes_root, tmp_path_factory):
    """CoOp trained on the base classes; its evaluation logits on base, and an evaluation on the new classes."""
    base = tmp_path_factory.mktemp("coop")
    out, new = str(base / "train"), str(base / "new")
    started = time.time()
    trainer = run_train(_args(shapes_root, out, "DATASET.SUBSAMPLE_CLASSES", "base", "TEST.SAVE_LOGITS", "True"))
    evaluated = run_train(_args(shapes_root, new, "DATASET.SUBSAMPLE_CLASSES", "new", "TEST.SAVE_LOGITS", "True",
                                flags=["--eval-only", "--model-dir", out, "--load-epoch", str(EPOCHS)]))
    return types.SimpleNamespace(out=out, new=new, trainer=trainer, started=started, base=str(base),
                                 new_classnames=list(evaluated.dm.dataset.classnames))


def _copy_images(paths, folder):
    """The images under new names in one folder; returns {new path: original path}."""
    os.makedirs(folder, exist_ok=True)
    copies = {}
    for i, path in enumerate(paths):
        copies[os.path.join(folder, f"{i:04d}{os.path.splitext(path)[1]}")] = path
        shutil.copyfile(path, os.path.join(folder, f"{i:04d}{os.path.splitext(path)[1]}"))
    return copies


def _run_predict(argv, capsys):
    capsys.readouterr()  # what the test printed before
    code = predict.run(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_known_classes_give_the_evaluation_accuracy_and_logits(coop_run, tmp_path, capsys):
    evaluated = saved_logits(coop_run.out)
    copies = _copy_images(evaluated["impaths"], str(tmp_path / "images"))
    label_of = dict(zip(evaluated["impaths"], evaluated["labels"].tolist()))
    result = str(tmp_path / "p.json")
    code, _, err = _run_predict(["--model-dir", coop_run.out, "--load-epoch", str(EPOCHS), str(tmp_path / "images"),
                                 "--format", "json", "-o", result, "--topk", "3"], capsys)
    assert code == 0, err
    data = json.load(open(result))
    names = coop_run.trainer.dm.dataset.classnames
    assert data["summary"] == {"classified": len(copies), "unreadable": 0} and data["classes"] == len(names)
    assert all(len(p["top"]) == 3 and p["top"][0]["probability"] >= p["top"][1]["probability"]
               for p in data["predictions"])
    correct = sum(p["top"][0]["class"] == names[label_of[copies[p["image"]]]] for p in data["predictions"])
    eval_correct = int((evaluated["logits"].argmax(1) == evaluated["labels"]).sum())
    assert correct == eval_correct and 0 < correct < len(copies) + 1
    log = open(os.path.join(coop_run.out, "log.txt")).read()
    assert f"* correct: {eval_correct:,}" in log
    # the logits themselves, through the same batching and cached class features
    predictor = predict.load_predictor(coop_run.out, EPOCHS)
    got = predict.classify(predictor, evaluated["impaths"])
    assert got.paths == evaluated["impaths"]
    torch.testing.assert_close(got.logits, evaluated["logits"], rtol=0, atol=1e-5)


def test_new_class_names_work_for_coop_as_its_evaluation_on_new_classes(coop_run, tmp_path, capsys):
    new = saved_logits(coop_run.new)
    names = tmp_path / "names.txt"
    names.write_text("# the new classes\n" + "\n".join(coop_run.new_classnames) + "\n\n")
    predictor = predict.load_predictor(coop_run.out, EPOCHS, predict.read_classnames(str(names)))
    got = predict.classify(predictor, new["impaths"], batch_size=7)  # batching does not change a logit
    torch.testing.assert_close(got.logits, new["logits"], rtol=0, atol=1e-5)
    code, out, err = _run_predict(["--model-dir", coop_run.out, "--load-epoch", str(EPOCHS), new["impaths"][0],
                                   "--classnames", str(names), "--topk", "2"], capsys)
    assert code == 0, err
    line = out.splitlines()[1]
    assert line.startswith(new["impaths"][0]) and "1 image(s) classified" in out
    assert any(line[len(new["impaths"][0]):].strip().startswith(f"{n} (") for n in coop_run.new_classnames), line


def test_class_specific_context_refuses_new_class_names(coop_run, shapes_root, tmp_path, capsys):
    out = str(tmp_path / "csc")
    run_train(_args(shapes_root, out, "DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.COOP.CSC", "True",
                    "TRAINER.COOP.CTX_INIT", "", "OPTIM.MAX_EPOCH", "1"))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(coop_run.new_classnames) + "\n")
    image = saved_logits(coop_run.new)["impaths"][0]
    code, stdout, err = _run_predict(["--model-dir", out, "--load-epoch", "1", image, "--classnames", str(names)],
                                     capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and not stdout and len(lines) == 1 and lines[0].startswith("error: ")
    assert "TRAINER.COOP.CSC" in lines[0] and "Traceback" not in err
    code, stdout, err = _run_predict(["--model-dir", out, "--load-epoch", "1", image], capsys)  # its own classes
    assert code == 0 and "1 image(s) classified" in stdout, err


def test_an_unreadable_image_is_reported_skipped_and_counted(coop_run, tmp_path, capsys):
    folder = tmp_path / "mixed"
    _copy_images(saved_logits(coop_run.out)["impaths"][:2], str(folder))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    (folder / "notes.txt").write_text("not an image file: not looked at")
    missing = str(tmp_path / "missing.jpg")
    code, out, err = _run_predict(["--model-dir", coop_run.out, "--load-epoch", str(EPOCHS), str(folder), missing,
                                   "--format", "csv"], capsys)
    assert code == 0, err
    assert str(folder / "broken.png") in err and missing in err
    assert "2 image(s) classified, 2 unreadable skipped" in err
    rows = out.splitlines()
    assert rows[0] == "image,rank,class,probability,error" and len(rows) == 1 + 2 * 5 + 2
    assert {r.split(",")[0] for r in rows[-2:]} == {str(folder / "broken.png"), missing}


def test_bundle_round_trip_and_other_weights_refused(coop_run, shapes_root, tmp_path, capsys):
    bundle = str(tmp_path / "bundle.pt")
    assert export.main([coop_run.out, "--load-epoch", str(EPOCHS), "-o", bundle]) == 0
    data = torch.load(bundle, weights_only=True)  # plain data: tensors, strings, numbers
    assert data["trainer"] == "CoOp" and data["backbone"] == "custom" and data["epoch"] == EPOCHS
    assert data["classnames"] == coop_run.trainer.dm.dataset.classnames
    assert set(data["state_dicts"]) == {"prompt_learner"} and set(data["state_dicts"]["prompt_learner"]) == {"ctx"}
    assert data["clip_sha256"] == coop_run.trainer.clip_sha256 and len(data["clip_sha256"]) == 64
    assert os.path.getsize(bundle) < os.path.getsize(DEMO_CLIP) / 50
    assert data["config"]["TRAINER"]["COOP"]["N_CTX"] == 4 and data["config"]["MODEL"]["INIT_WEIGHTS"] == ""

    # train.py --eval-only takes the bundle (its config is the base) and gives the training run's logits
    ev = str(tmp_path / "eval")
    run_train(["--root", shapes_root, "--output-dir", ev, "--eval-only", "--model-dir", bundle,
               "--dataset-config-file", SHAPES, "TEST.SAVE_LOGITS", "True"])
    trained = saved_logits(coop_run.out)
    assert torch.equal(saved_logits(ev)["logits"], trained["logits"])
    got = predict.classify(predict.load_predictor(bundle), trained["impaths"])
    torch.testing.assert_close(got.logits, trained["logits"], rtol=0, atol=1e-5)

    # on other CLIP weights: refused in one line with both hashes
    other = make_tiny_clip(str(tmp_path / "other.pt"))
    code, _, err = _run_predict(["--model-dir", bundle, trained["impaths"][0], "--", "MODEL.BACKBONE.PATH", other],
                                capsys)
    assert code == 2 and data["clip_sha256"] in err and predict_sha(other) in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as stop:
        run_train(["--root", shapes_root, "--output-dir", str(tmp_path / "ev2"), "--eval-only", "--model-dir", bundle,
                   "--dataset-config-file", SHAPES, "MODEL.BACKBONE.PATH", other])
    assert stop.value.code == 2 and data["clip_sha256"] in capsys.readouterr().err


def predict_sha(path):
    import hashlib

    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_cost_figures_in_the_log_cost_json_done_json_and_tables(coop_run, tmp_path):
    cost = read_json(os.path.join(coop_run.out, "cost.json"))
    model = coop_run.trainer.model
    assert cost["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert cost["trainable_params"] == model.prompt_learner.ctx.numel()
    assert cost["epochs_timed"] == EPOCHS and cost["device"] == "cpu" and cost["precision"] == "fp32"
    assert 0 < cost["seconds_per_epoch"] * EPOCHS <= cost["train_seconds"]
    loader = coop_run.trainer.train_loader_x
    images_per_epoch = sum(len(b["label"]) for b in loader)
    assert cost["train_images_per_second"] * cost["seconds_per_epoch"] == pytest.approx(images_per_epoch, rel=0.01)
    assert cost["test_images"] == len(coop_run.trainer.test_loader.dataset) and cost["test_images_per_second"] > 0
    assert cost["peak_memory_mib"] > 10 and cost["peak_memory_kind"] == "max_rss"
    log = open(os.path.join(coop_run.out, "log.txt")).read()
    assert json.loads(log.split("=> cost ")[1].splitlines()[0]) == cost
    evaluated = read_json(os.path.join(coop_run.new, "cost.json"))
    assert evaluated["train_seconds"] is None and evaluated["test_images"] > 0
    assert evaluated["trainable_params"] == cost["trainable_params"]

    # the sweep's marker holds the figures of the attempt that wrote it
    tree = tmp_path / "output" / "few_shot" / "synthetic_shapes"
    run = str(tree / "seed1")
    shutil.copytree(coop_run.out, run)
    ok, _ = records.finalize(types.SimpleNamespace(out=run, kind="train"), {}, coop_run.started)
    assert ok and read_json(os.path.join(run, DONE))["cost"] == cost
    os.remove(os.path.join(run, "cost.json"))  # the table reads done.json first
    csv_path = str(tmp_path / "cost.csv")
    assert parse_results.main([str(tmp_path / "output"), "--cost", "--format", "csv", "-o", csv_path]) == 0
    rows = [line.split(",") for line in open(csv_path).read().splitlines()]
    params = [r for r in rows if r[4] == "trainable_params"]
    assert len(params) == 1 and params[0][5] == str(cost["trainable_params"])
    text_path = str(tmp_path / "cost.md")
    assert parse_results.main([str(tmp_path / "output"), "--cost", "--format", "markdown", "-o", text_path]) == 0
    assert "| Params |" in open(text_path).read()
    assert plot_results.main([str(tmp_path / "output"), "--kind", "cost", "--out", str(tmp_path / "plots")]) == 0
    assert os.path.isfile(str(tmp_path / "plots" / "accuracy_vs_time.png"))


def _built(trainer, classnames, *opts):
    cfg = train.setup_cfg(train.build_parser().parse_args(
        ["--trainer", trainer, "--config-file", method_of(trainer).demo_config, "--dataset-config-file", SHAPES,
         "MODEL.BACKBONE.PATH", DEMO_CLIP, *opts]))
    return cfg, TRAINER_REGISTRY.get(trainer)(cfg, classnames=classnames)


def _learned_shapes(built):
    return {(name, k): tuple(v.shape) for name, sd in built.bundle_state_dicts().items() for k, v in sd.items()}


THREE = ["red striped circle", "blue plain square", "green dotted triangle"]
FIVE = ["a sunflower", "a rusty old bicycle", "the sea at night", "an owl", "a violin"]


@pytest.mark.parametrize("trainer", sorted({TRAINER_REGISTRY.get(n).__name__ for n in
                                            TRAINER_REGISTRY.registered_names()}))
def test_every_trainer_round_trips_a_bundle_and_declares_its_class_specific_state(trainer, shapes_root, tmp_path,
                                                                                  one_torch_thread):
    """Learned tensors (moved off their initial values) survive checkpoint -> bundle -> predict.py for every
    trainer. A trainer declared class-agnostic (for its demo config) learns the same tensors whatever the
    classes, so predict.py may give it new names; a config key it declares (CSC) makes them depend on them."""
    out = str(tmp_path / "run")
    cfg, three = _built(trainer, THREE, "OUTPUT_DIR", out)
    cls = TRAINER_REGISTRY.get(trainer)
    images = sorted(os.path.join(folder, f) for folder, _, files in os.walk(shapes_root) for f in files
                    if f.endswith(".png"))[:4]
    if three.get_model_names():
        torch.manual_seed(0)
        for p in three.model.parameters():
            if p.requires_grad:
                p.data.add_(0.05 * torch.randn_like(p))
        three.save_model(0, out)
        with open(os.path.join(out, "config.yaml"), "w") as f:
            f.write(cfg.dump())
        expected = predict.classify(predict.Predictor(cfg, three, THREE, out), images).logits
        export.export(out, 1, str(tmp_path / "bundle.pt"))
        got = predict.classify(predict.load_predictor(str(tmp_path / "bundle.pt")), images).logits
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    if cls.class_specific_reason(cfg) is None:
        assert _learned_shapes(three) == _learned_shapes(_built(trainer, FIVE)[1])
    key = cls.class_specific_state
    if isinstance(key, str):
        try:
            cfg_on, on = _built(trainer, THREE, key, "True", f"TRAINER.{cls.config_node}.CTX_INIT", "")
        except train.UserError:
            return  # the trainer refuses the setting (TCP, SEP: no class-specific context)
        assert cls.class_specific_reason(cfg_on) and key in cls.class_specific_reason(cfg_on)
        assert _learned_shapes(on) != _learned_shapes(_built(trainer, FIVE, key, "True",
                                                             f"TRAINER.{cls.config_node}.CTX_INIT", "")[1])
