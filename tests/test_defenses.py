"""Feature squeezing and defensive distillation: known answers, detection on digits, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn
from torch.utils.data import DataLoader

from robustood.attacks import build_attack
from robustood.cli import main
from robustood.cli.defend import distillation_rows, squeezing_rows
from robustood.defenses import (
    BitDepth,
    FeatureSqueezingDetector,
    MedianFilter,
    Resample,
    TemperatureScaled,
    distil,
    softmax_sharpness,
    temperature_cross_entropy,
)
from robustood.detectors import DETECTORS, BaseDetector, make_detector
from robustood.errors import NotFittedError, RobustoodError
from robustood.evaluate import evaluate
from robustood.train import TrainConfig

from test_report import shown_as

# ----------------------------------------------------------------------------- squeezers


def test_bit_depth_rounds_to_levels_like_numpy():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for bits in (1, 3, 8):
        levels = 2**bits - 1
        expected = np.rint(x.numpy() * levels) / levels
        np.testing.assert_allclose(BitDepth(bits)(x).numpy(), expected, atol=1e-6)
    assert set(BitDepth(1)(x).unique().tolist()) <= {0.0, 1.0}


def test_bit_depth_8_leaves_8_bit_images_unchanged():
    x = torch.randint(0, 256, (2, 1, 8, 8), generator=torch.Generator().manual_seed(1)).float() / 255
    assert torch.allclose(BitDepth(8)(x), x, atol=1e-6)


SHAPES = [(4, 1, 8, 8), (2, 3, 9, 7), (1, 3, 2, 3), (3, 1, 5, 1), (2, 3, 16, 16)]


def _images(shape, seed: int, *, levels: int | None = None) -> torch.Tensor:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    return x if levels is None else torch.round(x * levels) / levels  # ties and repeated values


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bits", range(1, 9))
def test_bit_depth_equals_art_feature_squeezing(shape, bits):
    from art.defences.preprocessor import FeatureSqueezing

    art = FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=bits)
    # random pixels, pixels on the levels' midpoints (ties: half to even) and 8-bit pixels
    ties = (torch.randint(0, 2**bits, shape, generator=torch.Generator().manual_seed(bits)) + 0.5) / (2**bits - 1)
    for x in (_images(shape, bits), ties.clamp(0, 1), _images(shape, bits, levels=255)):
        expected, _ = art(x.numpy())
        got = BitDepth(bits)(x)
        assert got.dtype == x.dtype and got.device == x.device
        np.testing.assert_array_equal(got.numpy(), expected.astype(np.float32))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("window", range(1, 6))
def test_median_filter_equals_art_spatial_smoothing(shape, window):
    from art.defences.preprocessor import SpatialSmoothing

    art = SpatialSmoothing(window_size=window, channels_first=True, clip_values=(0.0, 1.0))
    for x in (_images(shape, window), _images(shape, window + 10, levels=3)):
        expected, _ = art(x.numpy())
        got = MedianFilter(window)(x)
        assert got.shape == x.shape and got.dtype == x.dtype
        np.testing.assert_array_equal(got.numpy(), expected)


def test_median_filter_even_window_takes_the_upper_median_of_the_window_up_and_left():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]) / 4
    # pixel (1, 1) sees rows/columns 0-1 → {1, 2, 3, 4}: the upper median 3; pixel (0, 0) sees the edge
    # repeated (scipy's "reflect") → {1, 1, 1, 1}
    assert (MedianFilter(2)(x) * 4).tolist() == [[[[1.0, 2.0], [3.0, 3.0]]]]


def test_median_filter_and_resample_keep_constant_images_and_shapes():
    x = torch.full((2, 3, 8, 8), 0.25)
    x_img = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(2))
    for squeezer in (MedianFilter(2), MedianFilter(3), Resample(0.5)):
        assert torch.allclose(squeezer(x), x, atol=1e-6), squeezer
        out = squeezer(x_img)
        assert out.shape == x_img.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    # a single bright pixel is an outlier in every 3×3 window: the median removes it
    spike = torch.zeros(1, 1, 5, 5)
    spike[0, 0, 2, 2] = 1.0
    assert float(MedianFilter(3)(spike).abs().max()) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bit_depth": 0},
        {"bit_depth": 9},
        {"bit_depth": 2.5},
        {"threshold": -0.1},
        {"threshold": 2.5},
        {"fpr": 0.0},
        {"fpr": 1.0},
        {"resample": 1.5},
        {"bit_depth": None, "median_window": None},
    ],
)
def test_detector_rejects_bad_settings(kwargs):
    with pytest.raises(RobustoodError) as err:
        FeatureSqueezingDetector(**kwargs)
    assert len(str(err.value).splitlines()) == 1


def test_detector_use_before_fit_raises(digits_model, digits_tensors):
    det = FeatureSqueezingDetector()
    x = digits_tensors[0][:4]
    assert not det.is_fitted
    for use in (det.predict, det.flag, det.classify, lambda x: det.score(digits_model, x)):
        with pytest.raises(NotFittedError, match="fit"):
            use(x)


def test_detector_follows_the_detector_interface(digits, digits_model, digits_tensors):
    det = make_detector("squeeze", bit_depth=3)
    assert isinstance(det, (BaseDetector, FeatureSqueezingDetector))
    assert (det.name, det.kind, det.requires_fit) == ("squeeze", "input", True)
    assert DETECTORS["squeeze"].defaults == FeatureSqueezingDetector.__init__.__kwdefaults__  # one set of defaults
    assert det.fit(digits_model, digits.val) is det and det.is_fitted
    assert det.device_ == torch.device("cpu") and det.model_ is digits_model
    x = digits_tensors[0][:50]
    scores = det.predict(x)
    assert scores.dtype == torch.float32 and scores.shape == (50,) and torch.isfinite(scores).all()
    torch.testing.assert_close(scores, det.score(digits_model, x), rtol=0, atol=0)
    flags = det.flag(x)
    assert flags.dtype == torch.bool and torch.equal(flags, scores > det.threshold_)
    # a loader works as well as a dataset, batch by batch on the batches' device
    again = FeatureSqueezingDetector(bit_depth=3).fit(digits_model, DataLoader(digits.val, batch_size=32))
    assert again.threshold_ == det.threshold_
    torch.testing.assert_close(again.calibration_scores_, det.calibration_scores_, rtol=1e-5, atol=1e-6)


class _Counting(nn.Module):
    """Counts forward passes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


@pytest.mark.parametrize(
    "kwargs", [{}, {"bit_depth": 2, "median_window": None}, {"bit_depth": 5, "median_window": 3, "resample": 0.5}]
)
def test_squeeze_outputs_reuse_the_logits_one_pass_per_squeezer(kwargs, digits, digits_model, digits_tensors):
    det = FeatureSqueezingDetector(**kwargs).fit(digits_model, digits.val)
    counting = _Counting(digits_model).eval()
    x = digits_tensors[0][:64]
    with torch.no_grad():
        logits = digits_model(x)
    scores, squeezed = det.squeeze_outputs(counting, x, logits)
    assert counting.calls == len(det.squeezers)
    torch.testing.assert_close(scores, det.score(digits_model, x), rtol=0, atol=0)
    assert torch.equal(squeezed, det.classify(x))


def test_the_engine_makes_one_pass_per_squeezer_beside_the_plain_ones(digits, digits_model):
    """Per clean batch: 1 plain pass + 1 per squeezer; per attacked batch: FGSM's gradient pass,
    1 plain pass on the adversarial batch + 1 per squeezer (the clean logits are reused)."""
    counting = _Counting(digits_model).eval()
    small = digits.limited(100)
    report = evaluate(
        {"m": counting},
        small,
        attacks=[build_attack("fgsm", eps=8 / 255)],
        defenses=[FeatureSqueezingDetector()],
        device="cpu",
        batch_size=50,
        progress=False,
    )
    val_batches = -(-len(digits.val) // 50)
    check = 1  # the model is checked against the dataset with one dummy batch
    masking = 2  # the gradient-masking checks: two forward passes on one batch
    assert counting.calls == check + val_batches * 3 + 2 * 3 + 2 * 4 + masking
    assert 0 <= report.value("m", "detection_rate", detector="squeeze") <= 1


def test_scores_are_l1_softmax_distances(digits, digits_model, digits_tensors):
    x = digits_tensors[0][:64]
    det = FeatureSqueezingDetector(bit_depth=3, median_window=2, threshold=1.0).fit(digits_model, digits.val)
    scores = det.score(digits_model, x)
    assert scores.shape == (64,) and float(scores.min()) >= 0 and float(scores.max()) <= 2 + 1e-6
    assert torch.equal(scores, det.predict(x))
    with torch.no_grad():
        p = F.softmax(digits_model(x), 1)
        expected = torch.stack(
            [(p - F.softmax(digits_model(s(x)), 1)).abs().sum(1) for s in (BitDepth(3), MedianFilter(2))]
        ).amax(0)
    assert torch.allclose(scores, expected, atol=1e-5)
    # a fixed threshold is kept as given; fpr_ is what it does on the fitting data
    assert det.threshold_ == 1.0
    assert det.fpr_ == pytest.approx(float((det.calibration_scores_ > 1.0).float().mean()))


def test_detector_flags_fgsm_with_calibrated_false_positive_rate(digits, digits_model):
    """Calibrated on the validation split for 5 % false positives; on the test split the false-positive
    rate stays within a few points of it, and most FGSM examples at a generous eps are flagged."""
    det = FeatureSqueezingDetector(bit_depth=2, median_window=None, fpr=0.05).fit(digits_model, digits.val)
    assert det.fpr_ <= 0.05
    report = evaluate(
        {"m": digits_model}, digits, attacks=["fgsm:32/255"], defenses=[det], device="cpu", progress=False
    )
    (row,) = squeezing_rows(report, "m", [("fgsm", 32 / 255)], "squeeze")
    assert abs(row["false_positive_rate"] - 0.05) <= 0.04
    assert row["robust_accuracy"] < 0.5  # the attack works on the undefended model …
    assert row["detection_rate"] > 0.5  # … and the detector flags most of its examples
    assert row["detection_rate_successful"] > 0.5
    assert row["squeezed_robust_accuracy"] > row["robust_accuracy"]
    assert row["eps"] == "32/255" and row["attack"] == "fgsm"


# ----------------------------------------------------------------------------- distillation


def test_temperature_objective_is_cross_entropy_of_scaled_logits(digits_model, digits_tensors):
    x, y = digits_tensors[0][:32], digits_tensors[1][:32]
    loss, logits = temperature_cross_entropy(20)(digits_model, x, y)
    assert torch.allclose(loss, F.cross_entropy(logits / 20, y))
    assert torch.allclose(TemperatureScaled(digits_model, 4)(x), digits_model(x) / 4)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "hot"])
def test_temperature_must_be_positive(bad, digits):
    with pytest.raises(RobustoodError, match="temperature"):
        temperature_cross_entropy(bad)
    with pytest.raises(RobustoodError, match="temperature"):
        distil(digits, temperature=bad)


@pytest.fixture(scope="module")
def distilled(digits):
    return distil(digits, temperature=20, config=TrainConfig(epochs=6, patience=None), device="cpu", progress=False)


def test_distilled_student_is_sharper_at_t1(distilled, digits_model, digits_tensors):
    """The student learns the teacher's soft labels at T = 20 and answers at T = 1: its softmax is much
    sharper than the soft labels it learnt from and than the plainly trained model's."""
    x = digits_tensors[0]
    student = softmax_sharpness(distilled.student, x, 1.0)
    soft_labels = softmax_sharpness(distilled.teacher, x, distilled.temperature)
    plain = softmax_sharpness(digits_model, x, 1.0)
    assert student["mean_entropy"] < soft_labels["mean_entropy"] / 5
    assert student["mean_entropy"] < plain["mean_entropy"]
    assert student["mean_max_prob"] > max(soft_labels["mean_max_prob"], plain["mean_max_prob"])
    # the student did learn the task from soft labels alone
    with torch.no_grad():
        acc = float((distilled.student(x).argmax(1) == digits_tensors[1]).float().mean())
    assert acc > 0.8


def test_distillation_table_exposes_gradient_masking(distilled, digits, digits_model):
    t = distilled.temperature
    through = {
        "undefended": ("undefended", "softmax (T=1)"),
        "distilled": ("distilled", "softmax (T=1)"),
        "logits": ("distilled", f"logits / T (T={t:g})"),
    }
    models = {
        "undefended": digits_model,
        "distilled": distilled.student,
        "logits": TemperatureScaled(distilled.student, t),
    }
    report = evaluate(models, digits, attacks=["fgsm:32/255"], device="cpu", progress=False)
    rows = distillation_rows(report, through, [("fgsm", 32 / 255)])
    by = {(r["model"], r["attacked_through"].split(" ")[0]): r for r in rows}
    assert len(rows) == 3
    masked, exposed = by[("distilled", "softmax")], by[("distilled", "logits")]
    assert masked["clean_accuracy"] == exposed["clean_accuracy"]  # same deployed student
    # through its saturated softmax the student looks robust; through logits / T it is not
    assert exposed["robust_accuracy"] < masked["robust_accuracy"] - 0.1


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    "args",
    [
        ["defend", "--defense", "distill", "--temperature", "0"],
        ["defend", "--defense", "distill", "--temperature", "-3"],
        ["defend", "--defense", "squeeze", "--bit-depth", "0"],
        ["defend", "--defense", "squeeze", "--bit-depth", "9"],
        ["defend", "--defense", "squeeze", "--threshold", "2.5"],
        ["defend", "--defense", "squeeze", "--threshold", "1", "--fpr", "0.05"],
        ["defend", "--defense", "squeeze", "--fpr", "5"],
        ["defend", "--defense", "squeeze", "--attack", "nope"],
        ["defend", "--defense", "squeeze", "--eps", "8"],
        ["defend", "--defense", "mystery"],
    ],
)
def test_defend_bad_input_exits_2_with_one_error_line(args):
    result = CliRunner(env={"COLUMNS": "400"}).invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert sum(line.startswith("Error:") for line in result.output.splitlines()) == 1


def test_defend_squeeze_prints_a_row_per_attack_and_eps(digits, digits_model, tmp_path):
    from robustood.models import save_checkpoint

    ckpt = save_checkpoint(digits_model, tmp_path / "digits.safetensors", digits.info, "small_cnn")
    args = [
        *("defend", "--defense", "squeeze", "--eps", "8/255,32/255", "--bit-depth", "2", "--median-window", "0"),
        *("--model", str(ckpt), "--limit", "100", "--device", "cpu", "--quiet"),
    ]
    result = CliRunner(env={"COLUMNS": "400"}).invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(result.output)
    assert [r["eps"] for r in rows] == ["8/255", "32/255"]
    assert all(0 <= r["detection_rate"] <= 1 and 0 <= r["false_positive_rate"] <= 1 for r in rows)
    assert rows[1]["detection_rate"] >= rows[0]["detection_rate"]
    assert {"dataset", "base_model", "defense", "detection_rate_successful"} <= set(rows[0])
    # the table shows the headline columns with json's numbers
    table = CliRunner(env={"COLUMNS": "400"}).invoke(main, args)
    assert table.exit_code == 0, table.output
    header, _, *lines = table.output.splitlines()
    numbers = ["threshold", "false_positive_rate", "detection_rate", "clean_accuracy", "squeezed_clean_accuracy"]
    numbers += ["robust_accuracy", "squeezed_robust_accuracy"]
    assert header.split() == ["attack", "eps", *numbers]
    for line, r in zip(lines, rows, strict=True):
        cells = line.split()
        assert cells[:2] == [r["attack"], r["eps"]]
        assert all(shown_as(c, r[k]) for c, k in zip(cells[2:], numbers, strict=True)), (cells, r)
