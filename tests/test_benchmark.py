"""tools/benchmark.py runs end to end (upstream and our path of each trainer, floor, memory) on the tiny CLIP.
It asserts no timings: only that every measurement is made and reported."""
import re

from tools import benchmark


def test_benchmark_measures_every_trainer_both_ways(tiny_clip, capsys, one_torch_thread):
    rows = benchmark.main([
        "--backbone", "custom", "--clip-path", tiny_clip, "--trainers", "CoOp", "CoCoOp", "SEP", "ALIGN",
        "--classes", "3", "12", "--max-train-classes", "3", "--steps", "1", "--eval-batch", "2",
        "--eval-repeat", "1", "--test-images", "10", "--threads", "1",
        "--opts", "TRAINER.MMP.TEXT_PROMPT_DEPTH", "2", "TRAINER.COOP.N_CTX", "4"])
    out = capsys.readouterr().out
    assert [(r[0], r[1]) for r in rows] == [(t, c) for t in ("CoOp", "CoCoOp", "SEP", "ALIGN") for c in (3, 12)]
    for row in rows:
        trained = row[1] == 3
        train_cells, eval_cells = row[2:6], row[6:10]
        assert (train_cells[0] != "-") == trained
        numbers = [float(x) for cell in (train_cells if trained else []) + eval_cells
                   for x in re.findall(r"[\d.]+", cell)]
        assert numbers and all(x > 0 for x in numbers), row
        assert row[-1].count("/") == 1  # eval peak memory, upstream / ours
    assert "| trainer | classes |" in out and "TOKEN_OT_CHUNK" in out
