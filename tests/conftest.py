"""Shared fixtures: the digits bundle, a small trained digits model, an isolated cache dir.

Nothing here touches the network; models are trained on the embedded digits set in seconds.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from robustood.data import load_dataset
from robustood.models import save_checkpoint
from robustood.resolve import pretrained
from robustood.train import TrainConfig


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Keep every test's cache and data dirs out of the user's home."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("ROBUSTOOD_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("ROBUSTOOD_DATA_DIR", str(root / "data"))


@pytest.fixture(scope="session")
def one_thread_cache(tmp_path_factory):
    """A model cache only the pinned-output tests write (``test_golden.py``, ``test_docs.py``): the
    models in it are trained afresh on one torch thread, whatever other tests trained before, so
    the pinned numbers do not depend on the order tests run in or on the machine's cores."""
    return tmp_path_factory.mktemp("one-thread-cache")


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_model(digits, tmp_path_factory):
    """A small CNN trained on digits (≈ 97 % test accuracy), shared by the whole session."""
    model, _ = pretrained(
        digits,
        "small_cnn",
        seed=0,
        cache=tmp_path_factory.mktemp("models"),
        config=TrainConfig(epochs=50, patience=10, seed=0),
        progress=False,
        device="cpu",
    )
    return model.eval()


@pytest.fixture(scope="session")
def digits_tensors(digits):
    """The digits test split as tensors ``(x, y)``."""
    from robustood.data import stack_dataset

    return stack_dataset(digits.test)


@pytest.fixture(scope="session")
def checkpoint(digits, digits_model, tmp_path_factory):
    """The session's digits model as a safetensors checkpoint, for ``--model PATH``."""
    return save_checkpoint(
        digits_model, tmp_path_factory.mktemp("ckpt") / "digits.safetensors", digits.info, "small_cnn"
    )


@pytest.fixture
def runner():
    """A click test runner on a wide terminal (tables are not wrapped; tests of wrapping set COLUMNS)."""
    return CliRunner(env={"COLUMNS": "400"})
