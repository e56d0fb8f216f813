"""The README's "Adding a trainer" example works as written."""
import re

from tests.helpers import coop_args, run_train


def test_readme_trainer_example_trains(caltech_root, tiny_clip, tmp_path):
    import os

    text = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    block = re.search(r"```python\n(# trainers/textprobe\.py.*?)```", text, re.S)
    assert block, "README lost its worked trainer example"
    code = block.group(1).replace("from .base import", "from trainers.base import")
    exec(compile(code, "README-example", "exec"), {"__name__": "readme_textprobe"})
    trainer = run_train(coop_args(caltech_root, tiny_clip, str(tmp_path / "probe"), "TRAINER.TEXTPROBE.PREC", "fp32",
                                  trainer="TextProbe", config=None, epochs=1))
    assert {n for n, p in trainer.model.named_parameters() if p.requires_grad} == {"delta"}
    assert trainer.model.delta.abs().sum() > 0  # it was trained
