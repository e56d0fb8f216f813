import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.helpers import make_caltech, make_tiny_clip  # noqa: E402


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    return make_tiny_clip(str(tmp_path_factory.mktemp("clip") / "tiny_vit.pt"))


@pytest.fixture(scope="session")
def tiny_rn_clip(tmp_path_factory):
    return make_tiny_clip(str(tmp_path_factory.mktemp("clip") / "tiny_rn.pt"), vit=False)


@pytest.fixture()
def caltech_root(tmp_path):
    return make_caltech(str(tmp_path / "data"))


@pytest.fixture(autouse=True)
def _restore_stdout():
    yield
    from engine.utils.logger import restore_stdout

    restore_stdout()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: threads only add overhead (and stall badly when another process holds a core)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
