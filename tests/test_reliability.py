"""Reliability: each test covers one cause of wrong numbers, lost work or a traceback (issue 14).

Faults of the environment (full disk, read-only file system, no permission) are simulated with
``/dev/full`` and by patching ``os.replace`` / ``tempfile.mkstemp``: the tests run as root, for
whom a read-only directory mode stops nothing.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from robustood.cli import main
from robustood.data import DatasetBundle, load_dataset, stack_dataset
from robustood.errors import (
    EXIT_CODES,
    IncompatibleModelError,
    RobustoodError,
    UnsafeCheckpointError,
    WriteError,
)
from robustood.evaluate import evaluate, run_attack
from robustood.models import build_model, load_checkpoint, load_model, save_checkpoint
from robustood.report import write_rendered
from robustood.store import ResultStore
from robustood.train import TrainConfig, fit
from robustood.utils import check_seed, select_device, write_target

FAST = ["--limit", "20", "-q", "--attack", "fgsm"]


def _png(path: Path, value: int, size: int = 12) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = np.clip(rng.normal(value, 20, (size, size, 3)), 0, 255).astype("uint8")
    Image.fromarray(pixels).save(path)


def _folder(root: Path, classes: dict[str, int], per_class: int = 4) -> Path:
    """``root/<class>/<i>.png`` images whose brightness depends on the class."""
    for name, value in classes.items():
        for i in range(per_class):
            _png(root / name / f"{i}.png", value + i)
    return root


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def _error_line(result) -> str:
    _no_traceback(result)
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


# --------------------------------------------------------------------------- 1. imagefolder cache key


def test_cause01_imagefolder_cache_key_is_the_resolved_folder_and_its_files(tmp_path, monkeypatch):
    from robustood.resolve import cached_model_path

    _folder(tmp_path / "a" / "data", {"cat": 40, "dog": 200})
    _folder(tmp_path / "b" / "data", {"fox": 40, "owl": 200})
    keys = []
    for project in ("a", "b"):
        monkeypatch.chdir(tmp_path / project)
        bundle = load_dataset("imagefolder:data")  # the same text in two projects
        keys.append(cached_model_path(bundle, "cifar_cnn", cache=tmp_path / "cache"))
        assert str(tmp_path / project / "data") in bundle.info.name
    assert keys[0] != keys[1]
    # the same folder with another file list is another dataset
    monkeypatch.chdir(tmp_path / "a")
    _png(tmp_path / "a" / "data" / "dog" / "extra.png", 90)
    assert cached_model_path(load_dataset("imagefolder:data"), "cifar_cnn", cache=tmp_path / "cache") != keys[0]


# --------------------------------------------------------------------------- 2. store keyed by model content


def test_cause02_store_reuses_rows_only_for_the_same_model_file_content(tmp_path, digits, digits_model):
    path = tmp_path / "model.safetensors"
    store = tmp_path / "study.jsonl"
    bundle = digits.limited(60)
    save_checkpoint(digits_model, path, digits.info, "small_cnn")
    first = evaluate({"m": str(path)}, bundle, store=store, device="cpu", progress=False).value("m", "accuracy")
    assert first > 0.8
    with torch.no_grad():  # same path, other weights: a model that predicts one class
        other = build_model("small_cnn", digits.info)
        for p in other.parameters():
            p.zero_()
        other.head.bias[3] = 1.0
    save_checkpoint(other, path, digits.info, "small_cnn")
    second = evaluate({"m": str(path)}, bundle, store=store, device="cpu", progress=False).value("m", "accuracy")
    labels = stack_dataset(bundle.test)[1]
    assert second == pytest.approx(float((labels == 3).float().mean()))
    assert second < 0.5


# --------------------------------------------------------------------------- 3. imagefolder classes by name


def test_cause03_imagefolder_train_and_test_classes_are_matched_by_name(tmp_path):
    root = tmp_path / "pets"
    _folder(root / "train", {"cat": 40, "dog": 200})
    _folder(root / "test", {"dog": 200})  # only the second training class
    bundle = load_dataset(f"imagefolder:{root}")
    assert bundle.info.class_names == ("cat", "dog")
    assert set(stack_dataset(bundle.test)[1].tolist()) == {1}
    _folder(root / "test", {"fox": 120})
    with pytest.raises(RobustoodError, match="fox"):
        load_dataset(f"imagefolder:{root}")


# --------------------------------------------------------------------------- 4. NaN and Inf


class _NaNModel(nn.Module):
    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) * float("nan")


def test_cause04_nan_outputs_and_nan_inputs_are_refused_everywhere(digits, digits_model, runner, tmp_path):
    bundle = digits.limited(20)
    with pytest.raises(RobustoodError, match="NaN"):
        evaluate({"m": _NaNModel(digits_model)}, bundle, attacks=["fgsm:2/255"], device="cpu", progress=False)
    with pytest.raises(RobustoodError, match="NaN"):
        evaluate({"m": _NaNModel(digits_model)}, bundle, detectors=["msp"], ood=["noise"], progress=False)
    x, y = stack_dataset(bundle.test)
    x[3, 0, 2, 2] = float("nan")
    with pytest.raises(RobustoodError, match="NaN"):
        run_attack(digits_model, (x, y), _fgsm(), device="cpu", progress=False)
    nan_bundle = DatasetBundle(digits.info, digits.train, digits.val, TensorDataset(x, y))
    with pytest.raises(RobustoodError, match="NaN"):
        evaluate({"m": digits_model}, nan_bundle, device="cpu", progress=False)
    train = TensorDataset(x, y)
    with pytest.raises(RobustoodError, match="NaN"):
        fit(
            build_model("small_cnn", digits.info),
            DatasetBundle(digits.info, train, train, train),
            TrainConfig(epochs=1),
        )
    # a checkpoint with NaN weights, on the command line
    broken = build_model("small_cnn", digits.info)
    with torch.no_grad():
        broken.head.weight[0, 0] = float("nan")
    ckpt = save_checkpoint(broken, tmp_path / "nan.safetensors", digits.info, "small_cnn")
    result = runner.invoke(main, ["attack", "-m", str(ckpt), *FAST])
    assert result.exit_code == 2 and "NaN" in _error_line(result)


def _fgsm():
    from robustood.attacks import build_attack

    return build_attack("fgsm", eps=2 / 255)


# --------------------------------------------------------------------------- 5. at least two classes


def test_cause05_one_class_folders_and_heldout_leaving_one_class_are_refused(tmp_path, runner):
    _folder(tmp_path / "one", {"cat": 40})
    with pytest.raises(RobustoodError, match="at least two"):
        load_dataset(f"imagefolder:{tmp_path / 'one'}")
    with pytest.raises(RobustoodError, match="at least two classes"):
        load_dataset("digits", heldout=9)
    result = runner.invoke(main, ["ood", "--ood", "heldout:9", "-q", "--limit", "20"])
    assert result.exit_code == 2 and "at least two classes" in _error_line(result)


# --------------------------------------------------------------------------- 6. special files and symlinks


def test_cause06_special_files_are_written_directly_and_symlinks_followed(tmp_path, runner, checkpoint):
    for dev in ("/dev/null", "/dev/stdout", "/dev/fd/1"):
        assert write_target(dev)[1] is True
    write_rendered("x\n", "/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(WriteError, match="No space left on device"):
        write_rendered("x\n", "/dev/full")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    # a symbolic link: its target is written, the link stays a link
    (tmp_path / "real.txt").write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to("real.txt")
    write_rendered("new\n", link)
    assert link.is_symlink() and (tmp_path / "real.txt").read_text() == "new\n"
    # a FIFO (a process substitution >(cat)) is written, not replaced
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    write_rendered("through the pipe\n", fifo)
    reader.join(10)
    assert got == [b"through the pipe\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    # on the command line: a full device is reported, not replaced by a regular file
    result = runner.invoke(main, ["attack", "-m", str(checkpoint), *FAST, "--out", "/dev/full"])
    assert result.exit_code == 1
    line = _error_line(result)
    assert "/dev/full" in line and "No space left" in line and "attacks finished" in line
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


# --------------------------------------------------------------------------- 7. failed writes


def _fail_replace(monkeypatch, code: int) -> None:
    real = os.replace

    def replace(src, dst, *a, **k):
        if ".robustood-check" not in str(src):
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)


def test_cause07_failed_writes_are_one_error_line_and_keep_the_work(tmp_path, runner, checkpoint, monkeypatch):
    # an empty name and a directory are refused before any work
    result = runner.invoke(main, ["attack", "-m", str(checkpoint), *FAST, "--out", ""])
    assert result.exit_code == 2 and "directory" in _error_line(result)
    result = runner.invoke(main, ["attack", "-m", str(checkpoint), *FAST, "--plots", str(checkpoint)])
    assert result.exit_code == 2 and "is a file" in _error_line(result)
    result = runner.invoke(main, ["attack", "-m", str(checkpoint), *FAST, "--plots", str(checkpoint / "sub")])
    assert result.exit_code == 1 and "not a directory" in _error_line(result)

    # no permission to create files: refused before any work
    import tempfile

    def no_temp(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkstemp", no_temp)
        result = runner.invoke(main, ["attack", "-m", str(checkpoint), *FAST, "--save-adv", str(tmp_path / "a.npz")])
    assert result.exit_code == 1 and "Permission denied" in _error_line(result) and "a.npz" in result.output

    # a read-only file system at the end: every output is tried, the work is said to be done
    with monkeypatch.context() as m:
        _fail_replace(m, errno.EROFS)
        out = tmp_path / "table.txt"
        result = runner.invoke(main, ["attack", "-m", str(checkpoint), *FAST, "--out", str(out)])
        assert result.exit_code == 1
        line = _error_line(result)
        assert str(out) in line and "Read-only file system" in line and "finished" in line
        assert not out.exists() and not list(tmp_path.glob(".table.txt.*"))  # nothing half-written

    # the store: finished units are kept when a later unit cannot be written
    store = ResultStore(tmp_path / "s.jsonl")
    store.put("unit-1", [])
    store.path = Path("/dev/full")
    with pytest.raises(WriteError, match="kept"):
        store.put("unit-2", [])
    assert "unit-1" in ResultStore(tmp_path / "s.jsonl")

    # train --save on a full disk: the model is trained and cached, only the copy failed
    result = runner.invoke(main, ["train", "--epochs", "1", "-q", "--save", "/dev/full"])
    assert result.exit_code == 1
    line = _error_line(result)
    assert "/dev/full" in line and "cached at" in line


def test_cause07_environment_faults_inside_a_command_give_exit_1_and_no_traceback(runner, monkeypatch):
    import robustood.data as data

    def broken(*a, **k):
        raise OSError(errno.EIO, "Input/output error", "/data/digits")

    monkeypatch.setattr(data, "load_dataset", broken)
    result = runner.invoke(main, ["attack", *FAST])
    assert result.exit_code == 1 and "Input/output error" in _error_line(result)


# --------------------------------------------------------------------------- 8. file modes


def test_cause08_new_files_follow_the_umask_and_existing_files_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        new = write_rendered("a\n", tmp_path / "new.txt")
        assert stat.S_IMODE(os.stat(new).st_mode) == 0o644
        os.umask(0o077)
        private = write_rendered("a\n", tmp_path / "private.txt")
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
        shared = tmp_path / "shared.txt"
        shared.write_text("old")
        os.chmod(shared, 0o664)
        write_rendered("b\n", shared)
        assert stat.S_IMODE(os.stat(shared).st_mode) == 0o664 and shared.read_text() == "b\n"
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- 9. devices


@pytest.mark.parametrize("device", ["tpu", "cuda:abc", "", "meta", "xpu", "gpu", "cuda:99"])
def test_cause09_bad_devices_are_refused(device, runner, digits, digits_model):
    if device == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(RobustoodError):
        select_device(device)
    with pytest.raises(RobustoodError):
        evaluate({"m": digits_model}, digits.limited(10), device=device, progress=False)
    result = runner.invoke(main, ["attack", *FAST, "--device", device])
    assert result.exit_code == 2 and "device" in _error_line(result)


# --------------------------------------------------------------------------- 10. seeds


@pytest.mark.parametrize("seed", [-1, 2**32, 18446744073709551616])
def test_cause10_seeds_outside_0_to_2_32_are_refused(seed, runner, digits, digits_model):
    result = runner.invoke(main, ["attack", *FAST, "--seed", str(seed)])
    assert result.exit_code == 2 and "seed" in _error_line(result)
    with pytest.raises(RobustoodError, match="seed"):
        evaluate({"m": digits_model}, digits.limited(10), seed=seed, progress=False)
    with pytest.raises(RobustoodError, match="seed"):
        TrainConfig(seed=seed)
    with pytest.raises(RobustoodError, match="seed"):
        load_dataset("digits", seed=seed)
    assert check_seed(2**32 - 1) == 2**32 - 1


# --------------------------------------------------------------------------- 11. unreadable images


def test_cause11_unreadable_images_are_skipped_by_name_and_a_trained_model_is_never_lost(tmp_path, monkeypatch):
    root = _folder(tmp_path / "imgs", {"cat": 40, "dog": 200}, per_class=5)
    data = (root / "cat" / "0.png").read_bytes()
    (root / "cat" / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "dog" / "fake.png").write_text("not an image")
    from PIL import Image

    Image.open(root / "dog" / "0.png").convert("RGB").save(root / "dog" / "photo.jpg")
    jpg = (root / "dog" / "photo.jpg").read_bytes()
    (root / "dog" / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    with pytest.warns(UserWarning, match="skipped 3 unreadable") as record:
        bundle = load_dataset(f"imagefolder:{root}")
    message = str(record[0].message)
    assert "truncated.png" in message and "fake.png" in message and "cut.jpg" in message
    n = sum(len(s) for s in (bundle.train, bundle.val, bundle.test))
    assert n == 11
    stack_dataset(bundle.train)  # every kept image decodes

    # a file damaged after loading is named, not a traceback
    first = bundle.test.dataset.samples[bundle.test.indices[0]][0]  # type: ignore[attr-defined]
    Path(first).write_text("damaged since")
    with pytest.raises(RobustoodError, match=Path(first).name):
        stack_dataset(bundle.test)

    # an evaluation error after training keeps the trained model in the cache
    import robustood.resolve as resolve

    def failing_accuracy(*a, **k):
        raise RobustoodError("test split unreadable")

    monkeypatch.setattr(resolve, "accuracy", failing_accuracy)
    train_only = DatasetBundle(bundle.info, bundle.train, bundle.val, bundle.train)
    with pytest.raises(RobustoodError, match="unreadable"):
        resolve.pretrained(
            train_only, "cifar_cnn", cache=tmp_path / "cache", config=TrainConfig(epochs=1), progress=False
        )
    path = resolve.cached_model_path(train_only, "cifar_cnn", cache=tmp_path / "cache", config=TrainConfig(epochs=1))
    assert path.is_file() and load_checkpoint(path)[1]["test_accuracy"] is None


# --------------------------------------------------------------------------- 12. tiny folders


def test_cause12_folders_with_one_or_two_images_are_refused_clearly(tmp_path):
    _folder(tmp_path / "tiny", {"cat": 40, "dog": 200}, per_class=1)
    with pytest.raises(RobustoodError, match="too few readable images"):
        load_dataset(f"imagefolder:{tmp_path / 'tiny'}")


# --------------------------------------------------------------------------- 13. malformed checkpoints


def test_cause13_malformed_checkpoints_are_refused_by_name(tmp_path, runner, digits, digits_model):
    from safetensors.torch import save_file

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    text = tmp_path / "text.pt"
    text.write_text("hello, not a checkpoint\n")
    no_dataset = tmp_path / "nodataset.safetensors"
    state = {k: v.contiguous() for k, v in digits_model.state_dict().items()}
    save_file(state, str(no_dataset), metadata={"robustood": json.dumps({"arch": "small_cnn"})})
    wrong = tmp_path / "wrong.pt"
    bad_state = dict(state)
    bad_state["head.weight"] = torch.zeros(3, 3)
    torch.save(bad_state, wrong)
    torch.save({"state_dict": bad_state, "robustood": json.dumps({"arch": "small_cnn", "dataset": {}})}, wrong)
    wrong_shape = tmp_path / "wrong_shape.safetensors"
    meta = json.loads(json.dumps({"arch": "small_cnn", "dataset": {**_info_dict(digits)}}))
    save_file(bad_state, str(wrong_shape), metadata={"robustood": json.dumps(meta)})
    for path, what in [
        (empty, "empty"),
        (text, "not a"),
        (no_dataset, "dataset"),
        (wrong, "dataset"),
        (wrong_shape, "does not fit"),
    ]:
        with pytest.raises(RobustoodError, match=what) as info:
            load_model(path, digits.info)
        assert not isinstance(info.value, UnsafeCheckpointError)
        assert path.name in str(info.value)
        result = runner.invoke(main, ["attack", "-m", str(path), *FAST])
        assert result.exit_code == 2 and path.name in _error_line(result)


def _info_dict(digits) -> dict:
    from dataclasses import asdict

    return asdict(digits.info)


# --------------------------------------------------------------------------- 14. odd model outputs


class _Wrap(nn.Module):
    def __init__(self, base: nn.Module, how: str) -> None:
        super().__init__()
        self.base, self.how = base, how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "int":
            return self.base(x).round().long()
        if self.how == "nograd":
            with torch.no_grad():
                return self.base(x)
        return self.base(x).double()


def test_cause14_integer_gradient_free_meta_and_float64_models_get_a_clear_message(digits, digits_model):
    import copy

    bundle = digits.limited(20)
    with pytest.raises(IncompatibleModelError, match="int64"):
        evaluate({"m": _Wrap(digits_model, "int")}, bundle, progress=False)
    with pytest.raises(IncompatibleModelError, match="no gradient"):
        evaluate({"m": _Wrap(digits_model, "nograd")}, bundle, attacks=["fgsm:2/255"], progress=False)
    # float64 outputs of a float32 model are fine: cast once
    report = evaluate({"m": _Wrap(digits_model, "double")}, bundle, attacks=["fgsm:2/255"], progress=False)
    assert report.value("m", "accuracy") > 0.5
    with pytest.raises(IncompatibleModelError, match="float64") as info:
        evaluate({"m": copy.deepcopy(digits_model).double()}, bundle, progress=False)
    assert "shape" not in str(info.value)
    with pytest.raises(IncompatibleModelError, match="meta"):
        evaluate({"m": copy.deepcopy(digits_model).to("meta")}, bundle, progress=False)


# --------------------------------------------------------------------------- 15. non-numbers in specs


@pytest.mark.parametrize(
    "spec, option",
    [
        ("ddn:0.5:l2:gamma=abc", "gamma="),
        ("pgd:8/255:step_size=abc", "step_size="),
        ("pgd:8/255:steps=abc", "steps="),
        ("ddn:0.5:l2:init_norm=", "init_norm="),
        ("ddn:0.5:l2:init_norm=nan", "init_norm="),
    ],
)
def test_cause15_non_numbers_in_spec_options_name_the_option(spec, option, runner):
    from robustood.attacks import parse_attack_spec

    with pytest.raises(RobustoodError, match=option):
        parse_attack_spec(spec)
    result = runner.invoke(main, ["compare", "-m", f"adv:{spec}", "--attack", "none", "--detector", "none", "-q"])
    assert result.exit_code == 2 and option in _error_line(result)


@pytest.mark.parametrize(
    "recipe, named",
    [("adv:pgd:8/255:step=abc", "step="), ("adv:pgd:8/255:step_size=x", "step="), ("oe:adv:eps=abc", "eps=")],
)
def test_cause15_non_numbers_in_recipe_options_name_the_option(recipe, named, runner):
    result = runner.invoke(main, ["compare", "-m", recipe, "--attack", "none", "--detector", "none", "-q"])
    line = _error_line(result)
    assert result.exit_code == 2 and named in line and recipe in line


# --------------------------------------------------------------------------- 16. library arguments


def test_cause16_library_argument_gaps_are_refused(digits, digits_model):
    from robustood.attacks import build_attack

    bundle = digits.limited(20)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(RobustoodError, match="batch_size"):
            evaluate({"m": digits_model}, bundle, batch_size=bad, progress=False)
        with pytest.raises(RobustoodError, match="batch_size"):
            run_attack(digits_model, bundle, _fgsm(), batch_size=bad, progress=False)
    x, y = stack_dataset(bundle.test)
    too_high = DatasetBundle(digits.info, digits.train, digits.val, TensorDataset(x, torch.full_like(y, 10)))
    with pytest.raises(IncompatibleModelError, match="labels"):
        evaluate({"m": digits_model}, too_high, attacks=["fgsm:2/255"], progress=False)
    with pytest.raises(RobustoodError, match="labels"):
        run_attack(digits_model, (x, torch.full_like(y, 10)), _fgsm(), progress=False)
    in_255 = DatasetBundle(digits.info, digits.train, digits.val, TensorDataset(x * 255, y))
    with pytest.raises(RobustoodError, match="255"):
        evaluate({"m": digits_model}, in_255, progress=False)
    with pytest.raises(RobustoodError, match="uint8"):
        run_attack(digits_model, ((x * 255).to(torch.uint8), y), _fgsm(), progress=False)
    with pytest.raises(RobustoodError, match="steps"):
        build_attack("pgd", eps=8 / 255, steps=2.7)


# --------------------------------------------------------------------------- 17. corrupt cache and store files


def test_cause17_corrupt_state_cache_and_store_files_are_named_and_ignored(tmp_path, digits):
    import robustood.resolve as resolve

    small = DatasetBundle(digits.info, torch.utils.data.Subset(digits.train, range(64)), digits.val, digits.test)
    state = tmp_path / "run.state.pt"
    state.write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="run.state.pt"):
        result = fit(build_model("small_cnn", digits.info), small, TrainConfig(epochs=1), state_path=state)
    assert len(result.history) == 1 and not state.exists()

    cfg = TrainConfig(epochs=1)
    cached = resolve.cached_model_path(small, "small_cnn", cache=tmp_path / "cache", config=cfg)
    cached.parent.mkdir(parents=True)
    cached.write_text("not safetensors")
    with pytest.warns(UserWarning, match=cached.name):
        resolve.pretrained(small, "small_cnn", cache=tmp_path / "cache", config=cfg, progress=False)
    assert load_checkpoint(cached)[1]["epochs"] == 1  # replaced by the retrained model

    store = tmp_path / "study.jsonl"
    store.write_bytes(b"\xff\xfe not utf-8 \x80\n\x00\x01\x02\n")
    with pytest.warns(UserWarning, match="study.jsonl"):
        assert len(ResultStore(store)) == 0


# --------------------------------------------------------------------------- 18. misleading messages, exit codes


def test_cause18_messages_name_the_real_problem_and_exit_codes_are_documented(runner):
    from robustood.recipes import objective_for
    from robustood.resolve import parse_model_spec

    digits = load_dataset("digits")
    with pytest.raises(RobustoodError) as info:
        objective_for("adv:pgd:8/255:step_size=-1", digits)
    assert "step" in str(info.value) and "eps must" not in str(info.value)
    with pytest.raises(RobustoodError, match="finite"):
        parse_model_spec("distill:inf")
    result = runner.invoke(main, ["attack", "--step-size", "-1", *FAST])
    assert result.exit_code == 2 and "step size must" in _error_line(result) and "eps must" not in result.output
    # one definition of the exit codes: the code, --help, the README and the CLI docs agree
    help_text = runner.invoke(main, ["--help"]).output
    root = Path(__file__).resolve().parents[1]
    docs = [(root / "README.md").read_text(), (root / "docs" / "cli.md").read_text()]
    for code in EXIT_CODES:
        assert f"{code}  " in help_text
        for text in docs:
            assert f"`{code}`" in text
    assert result.exit_code == 2  # bad input
    missing = runner.invoke(main, ["attack", "--dataset", "cifar10", "--no-download", "-q"])
    assert missing.exit_code == 1 and "CIFAR-10" in _error_line(missing)


def test_no_warning_or_error_for_a_plain_run(tmp_path, runner, checkpoint):
    """The checks above cost nothing in a normal run: no warning, exit 0, the output written."""
    out = tmp_path / "o.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = runner.invoke(main, ["attack", "-m", str(checkpoint), *FAST, "--format", "json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())[0]["attack"] == "fgsm-linf"


def test_cause16_library_misuse_is_one_clear_error(digits, digits_model, tmp_path):
    from robustood.train import TrainConfig as Config

    bundle = digits.limited(20)
    x, y = stack_dataset(bundle.test)
    calls = [
        lambda: evaluate(None, bundle),
        lambda: evaluate(123, bundle),
        lambda: evaluate({"m": digits_model}, bundle, detectors=["msp"], ood={"x": 5}),
        lambda: evaluate({"m": digits_model}, bundle, limit=2.5),
        lambda: evaluate(["plain"], bundle, config=5),
        lambda: run_attack(digits_model, (x[:, 0], y), "fgsm:2/255"),
        lambda: run_attack(digits_model, (x, y[:-1]), "fgsm:2/255"),
        lambda: run_attack(digits_model, (x.expand(-1, 3, -1, -1), y), "fgsm:2/255"),
        lambda: Config(epochs=2.5),
        lambda: Config(lr=float("inf")),
        lambda: evaluate({"m": digits_model}, bundle).plot(tmp_path / "file"),
    ]
    (tmp_path / "file").write_text("a file where a folder is expected")
    for call in calls:
        with pytest.raises(RobustoodError):
            call()
    assert run_attack(digits_model, (x, y), "fgsm:2/255").clean_accuracy > 0.8  # spec strings work too


def test_cause05_an_ood_image_folder_may_hold_one_class(tmp_path, digits, digits_model):
    _folder(tmp_path / "outliers" / "train", {"things": 120})
    _folder(tmp_path / "outliers" / "test", {"things": 30})
    report = evaluate(
        {"m": digits_model},
        digits.limited(20),
        detectors=["msp"],
        ood=[f"imagefolder:{tmp_path / 'outliers'}"],
        progress=False,
    )
    assert 0 <= report.value("m", "auroc") <= 1


def test_cause17_warnings_on_the_command_line_are_one_line(tmp_path, checkpoint):
    import subprocess
    import sys

    store = tmp_path / "study.jsonl"
    store.write_bytes(b"\xff\xfe not utf-8\n\x00\x01\n")
    args = ["compare", "-m", str(checkpoint), "--attack", "none", "--detector", "none", "-q", "--limit", "20"]
    code = "import sys; from robustood.cli import main; sys.exit(main())"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code, *args, "--store", str(store)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "study.jsonl" in line]
    assert len(warning) == 1 and warning[0].startswith("Warning:"), result.stderr
    assert "ResultStore(" not in result.stderr


def test_cause07_a_store_in_a_read_only_folder_is_still_appended_to(tmp_path, runner, checkpoint, monkeypatch):
    import tempfile

    store = tmp_path / "study.jsonl"
    store.write_text("")
    args = ["compare", "-m", str(checkpoint), "--attack", "none", "--detector", "none", "-q", "--limit", "20"]

    def no_new_files(*a, **k):  # the folder takes no new files; the store itself is writable
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", no_new_files)
    result = runner.invoke(main, [*args, "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert len(ResultStore(store)) == 1
    result = runner.invoke(main, [*args, "--store", str(store), "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and "r.json" in _error_line(result)
