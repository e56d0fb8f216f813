"""The README's "Adding a trainer" example, as written: its trainer file and config folder, added to a copy of
the repository with nothing else edited, give a method that trains, gets sweep scripts, a table label, a
benchmark row and the registry smoke test."""
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_files():
    """{relative path: content} of the README's code blocks that start with a ``# <path>`` line."""
    text = open(os.path.join(REPO, "README.md")).read()
    section = text[text.index("## Adding a trainer"):text.index("## Layout")]
    files = {}
    for lang, body in re.findall(r"```(python|yaml)\n(.*?)```", section, re.S):
        first = body.splitlines()[0]
        m = re.match(r"# ((?:trainers|configs)/\S+)", first)
        if m:
            files[m.group(1)] = body
    return files


def test_readme_describes_a_complete_method():
    files = _readme_files()
    assert set(files) == {"trainers/textprobe.py", "configs/trainers/TextProbe/method.yaml",
                          "configs/trainers/TextProbe/vit_b16.yaml", "configs/trainers/TextProbe/demo.yaml"}


@pytest.fixture(scope="module")
def repo_with_textprobe(tmp_path_factory):
    copy = str(tmp_path_factory.mktemp("repo") / "vlprompt")
    shutil.copytree(REPO, copy, symlinks=True, ignore=shutil.ignore_patterns(".git", "output", "__pycache__", ".pytest_cache"))
    for rel, content in _readme_files().items():
        path = os.path.join(copy, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
    init = os.path.join(copy, "trainers", "__init__.py")
    text = open(init).read()
    with open(init, "w") as f:  # the one import line the README asks for
        f.write(re.sub(r"from \. import (.*)  #", r"from . import \1, textprobe  #", text))
    return copy


def _run(repo, *args, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_new_method_gets_scripts_label_benchmark_and_registry_tests(repo_with_textprobe):
    repo = repo_with_textprobe
    r = _run(repo, "tools/sweep.py", "--write-scripts")
    assert r.returncode == 0, r.stderr
    for protocol in ("base2new", "few_shot", "cross_dataset", "domain_gen"):
        script = os.path.join(repo, "scripts", "textprobe", f"{protocol}.sh")
        assert os.path.isfile(script) and "textprobe" in open(script).read()
    r = _run(repo, "tools/sweep.py", "base2new", "textprobe", "caltech101", "--dry-run", "--root", "/nonexistent")
    assert r.returncode == 0 and "TextProbe" in r.stdout, r.stdout + r.stderr
    r = _run(repo, "-c", "from meta.methods import label_for, table_order; "
             "print(label_for('TextProbe', 'vit_b16'), 'TextProbe' in table_order())")
    assert r.stdout.split() == ["TextProbe", "True"], r.stderr
    r = _run(repo, "tools/benchmark.py", "--help")
    assert r.returncode == 0 and "TextProbe" in r.stdout, r.stderr
    r = _run(repo, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_registry.py", "-k", "TextProbe")
    assert r.returncode == 0 and re.search(r"\b4 passed", r.stdout), r.stdout[-2000:]  # fp32, fp16, amp-fp16, amp-bf16
    r = _run(repo, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_predict.py", "-k", "TextProbe")
    assert r.returncode == 0 and re.search(r"\b1 passed", r.stdout), r.stdout[-2000:]  # bundle; class-specific
