"""Layers import downward only: meta <- engine <- models <- trainers <- train.py <- predict.py <- tools (datasets
sit beside models, on the engine). Read from the source, so a new upward import fails here."""
import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("meta", "engine", "models", "datasets", "trainers", "train", "predict", "tools")
ALLOWED = {
    "meta": set(),  # torch-free project data
    "engine": {"meta"},
    "models": {"meta", "engine"},
    "datasets": {"meta", "engine"},
    "trainers": {"meta", "engine", "models"},
    "train": {"meta", "engine", "models", "datasets", "trainers"},
    "predict": {"meta", "engine", "models", "datasets", "trainers", "train"},
    "tools": {"meta", "engine", "models", "datasets", "trainers", "train", "predict"},
}


def _project_imports(path, package):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES and top != package:
                yield top, node.lineno


def _sources(package):
    if package in ("train", "predict"):  # the entry-point scripts
        yield os.path.join(REPO, f"{package}.py")
        return
    for folder, _, files in os.walk(os.path.join(REPO, package)):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(folder, f)


def test_imports_point_down_the_layers():
    wrong = []
    for package in PACKAGES:
        for path in _sources(package):
            for top, line in _project_imports(path, package):
                if top not in ALLOWED[package]:
                    wrong.append(f"{os.path.relpath(path, REPO)}:{line} imports {top}")
    assert not wrong, "; ".join(wrong)


def test_meta_imports_no_torch():
    for path in _sources("meta"):
        tops = {n.split(".")[0] for node in ast.walk(ast.parse(open(path).read()))
                for n in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                          [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])}
        assert "torch" not in tops, path


def test_no_tools_module_over_400_lines():
    long = [(os.path.relpath(p, REPO), n) for p in _sources("tools") for n in [len(open(p).readlines())] if n > 400]
    assert not long, long
