import pytest

from engine.config import get_cfg_default, merge_from_file, merge_from_list
from engine.utils.tools import UserError
import train


def _cfg():
    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    return cfg


def test_merge_order_dataset_then_trainer_yaml_then_flags_then_opts(tmp_path):
    ds = tmp_path / "ds.yaml"
    ds.write_text('DATASET:\n  NAME: "Caltech101"\nOPTIM:\n  LR: 0.5\n  MAX_EPOCH: 3\n')
    tr = tmp_path / "tr.yaml"
    tr.write_text("OPTIM:\n  LR: 0.25\nSEED: 7\n")
    args = train.build_parser().parse_args(
        ["--dataset-config-file", str(ds), "--config-file", str(tr), "--trainer", "CoOp", "--seed", "3",
         "OPTIM.MAX_EPOCH", "9"])
    cfg = train.setup_cfg(args)
    assert cfg.DATASET.NAME == "Caltech101"
    assert cfg.OPTIM.LR == 0.25  # trainer yaml wins over the dataset yaml
    assert cfg.SEED == 3  # CLI flag wins over the yaml
    assert cfg.OPTIM.MAX_EPOCH == 9  # trailing opts win over everything
    assert cfg.is_frozen()


def test_seed_zero_is_honoured_and_absent_seed_keeps_yaml(tmp_path):
    tr = tmp_path / "tr.yaml"
    tr.write_text("SEED: 7\n")
    cfg = train.setup_cfg(train.build_parser().parse_args(["--trainer", "CoOp", "--seed", "0"]))
    assert cfg.SEED == 0
    cfg = train.setup_cfg(train.build_parser().parse_args(["--trainer", "CoOp", "--config-file", str(tr)]))
    assert cfg.SEED == 7


def test_unknown_key_names_closest_valid_keys():
    with pytest.raises(UserError) as e:
        merge_from_list(_cfg(), ["OPTIM.MAX_EPOHC", "3"])
    assert "OPTIM.MAX_EPOCH" in str(e.value) and "OPTIM.MAX_EPOHC" in str(e.value)


def test_unknown_key_in_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("TRAINER:\n  COOP:\n    N_CTXX: 4\n")
    with pytest.raises(UserError) as e:
        merge_from_file(_cfg(), str(bad))
    assert "TRAINER.COOP.N_CTXX" in str(e.value) and "TRAINER.COOP.N_CTX" in str(e.value)
    assert str(bad) in str(e.value)


def test_type_mismatch_is_explained():
    with pytest.raises(UserError) as e:
        merge_from_list(_cfg(), ["OPTIM.LR", "1"])
    assert "OPTIM.LR expects a float" in str(e.value) and "1.0" in str(e.value)
    with pytest.raises(UserError):
        merge_from_list(_cfg(), ["TRAINER.COOP.N_CTX", "abc"])


def test_odd_opts_and_swallowed_flag():
    with pytest.raises(UserError, match="KEY VALUE pairs"):
        merge_from_list(_cfg(), ["OPTIM.LR"])
    with pytest.raises(UserError, match="flag --seed"):
        merge_from_list(_cfg(), ["--seed", "1"])


def test_yacs_decoding_rules():
    cfg = _cfg()
    merge_from_list(cfg, ["INPUT.SIZE", "(32, 32)", "OPTIM.WARMUP_CONS_LR", "1e-4", "TRAINER.COOP.CTX_INIT",
                          "a photo of a", "TRAINER.COOP.CSC", "True", "INPUT.TRANSFORMS", "['normalize']"])
    assert cfg.INPUT.SIZE == (32, 32) and cfg.OPTIM.WARMUP_CONS_LR == 1e-4
    assert cfg.TRAINER.COOP.CTX_INIT == "a photo of a" and cfg.TRAINER.COOP.CSC is True
    assert cfg.INPUT.TRANSFORMS == ("normalize",)  # list -> the default's tuple type


def test_unknown_trainer_suggests_closest():
    with pytest.raises(ValueError) as e:
        train.setup_cfg(train.build_parser().parse_args(["--trainer", "Coop"]))
    assert "CoOp" in str(e.value)


def test_every_trainer_node_and_dassl_nodes_present():
    cfg = _cfg()
    assert cfg.TRAINER.COOP.N_CTX == 16 and cfg.TRAINER.COOP.PREC == "fp16"
    assert cfg.TRAINER.FIXMATCH.CONF_THRE == 0.95 and cfg.OPTIM.WEIGHT_DECAY == 5e-4
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all" and cfg.TEST.SAVE_LOGITS is False


def test_two_trainers_declaring_one_key_with_different_defaults_stop_at_start_up(monkeypatch):
    from engine.trainer import TRAINER_REGISTRY
    from trainers.coop import CoOp

    class Clash(CoOp):  # shares TRAINER.COOP, but disagrees on N_CTX's default
        config_defaults = {**CoOp.config_defaults, "N_CTX": 4}

    monkeypatch.setitem(TRAINER_REGISTRY._map, "Clash", Clash)
    with pytest.raises(UserError, match=r"Clash and CoOp both declare TRAINER\.COOP\.N_CTX, with defaults 4 and 16"):
        _cfg()


def test_trainers_sharing_a_node_with_equal_defaults_are_fine():
    cfg = _cfg()
    assert cfg.TRAINER.COOP.N_CTX == 16 and cfg.TRAINER.COOP.W == 1.0 and cfg.TRAINER.COOP.N_CTX_V == 16


def test_resolve_step_sets_derived_values_before_freezing(tmp_path, capsys):
    """ALIGN's official epoch rule is applied by the resolve step (what the sweep's --dry-run shows), with a
    warning, and the frozen result is what the trainer reads."""
    args = ["--trainer", "ALIGN", "--config-file", "configs/trainers/ALIGN/vit_b16_c2_ep5_batch4_2ctx.yaml",
            "--dataset-config-file", "configs/datasets/caltech101.yaml", "DATASET.NUM_SHOTS", "4"]
    cfg = train.resolve_config(args)
    assert cfg.OPTIM.MAX_EPOCH == 50 and cfg.is_frozen()
    assert "Warning: OPTIM.MAX_EPOCH" in capsys.readouterr().out
    kept = train.resolve_config(args + ["TRAINER.MMP.FEWSHOT_EPOCH_OVERRIDE", "False"])
    assert kept.OPTIM.MAX_EPOCH != 50
    assert train.resolve_config(args + ["DATASET.SUBSAMPLE_CLASSES", "base"]).OPTIM.MAX_EPOCH != 50


def test_official_value_readers_apply_only_to_their_trainer(tmp_path):
    """KgCoOp's yamls write CTX_INIT: True; that reading must not leak into other trainers' runs."""
    yaml_file = tmp_path / "kg.yaml"
    yaml_file.write_text("TRAINER:\n  COOP:\n    CTX_INIT: True\n")
    kg = train.resolve_config(["--trainer", "KgCoOp", "--config-file", str(yaml_file)])
    assert kg.TRAINER.COOP.CTX_INIT == "a photo of a"
    with pytest.raises(UserError, match="CTX_INIT"):
        train.resolve_config(["--trainer", "CoOp", "--config-file", str(yaml_file)])


def test_kgcoop_resolves_what_it_ignores():
    cfg = train.resolve_config(["--trainer", "KgCoOp", "TRAINER.COOP.CTX_INIT", "a_photo_of",
                                "TRAINER.COOP.CLASS_TOKEN_POSITION", "front"])
    assert cfg.TRAINER.COOP.CTX_INIT == "a photo of a" and cfg.TRAINER.COOP.CLASS_TOKEN_POSITION == "end"
