from __future__ import annotations

import pytest
import torch

from robustood.errors import RobustoodError
from robustood.utils import atomic_path, cache_dir, format_eps, parse_eps, parse_eps_list, select_device


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2/255", 2 / 255), ("0.03", 0.03), ("0", 0.0), ("1", 1.0), (" 8/255 ", 8 / 255), ("1e-2", 0.01), (0.5, 0.5)],
)
def test_parse_eps_accepts_decimals_and_fractions(text, expected):
    assert parse_eps(text) == pytest.approx(expected, abs=0, rel=1e-15)


@pytest.mark.parametrize("text", ["abc", "-1", "1/0", "2", "", "nan", "inf", "-1/255", "1/2/3"])
def test_parse_eps_rejects_bad_values(text):
    with pytest.raises(RobustoodError, match="eps"):
        parse_eps(text)


def test_parse_eps_hints_at_255_scale():
    with pytest.raises(RobustoodError, match=r"did you mean 8/255\?"):
        parse_eps("8")


def test_parse_eps_list_keeps_order_and_drops_duplicates():
    assert parse_eps_list("0,1/255,2/255,1/255") == [0.0, 1 / 255, 2 / 255]
    with pytest.raises(RobustoodError):
        parse_eps_list("1/255,,2/255")
    with pytest.raises(RobustoodError):
        parse_eps_list("1/255,x")


@pytest.mark.parametrize(
    ("eps", "text"),
    [
        (0.0, "0"),
        (2 / 255, "2/255"),
        (8 / 255, "8/255"),
        (64 / 255, "64/255"),
        (0.03, "0.03"),
        (0.2, "0.2"),  # also 51/255, but an L2 budget people write as a decimal
        (0.5, "0.5"),
        (1.0, "1"),
    ],
)
def test_format_eps_round_trips(eps, text):
    assert format_eps(eps) == text
    assert parse_eps(format_eps(eps)) == pytest.approx(eps)


def test_atomic_path_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTOOD_CACHE_DIR", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv("ROBUSTOOD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "robustood"


def test_select_device(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    # the automatic choice: CUDA first, then MPS, then the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device(None) == torch.device("cuda") == select_device("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device(None) == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device(None) == torch.device("cpu")
    monkeypatch.undo()
    if not torch.cuda.is_available():
        with pytest.raises(RobustoodError, match="CUDA is not available"):
            select_device("cuda")
