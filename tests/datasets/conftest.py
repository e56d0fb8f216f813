"""Fixtures for the dataset tests: a DATA root in a temporary folder."""
import pytest

import datasets  # noqa: F401  (registers the dataset classes)


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "DATA"
    path.mkdir()
    return str(path)
