"""The one evaluation API: every requested cell, shared passes, round trips, resume, reproducibility."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

import robustood.evaluate.engine as engine
from robustood import evaluate
from robustood.attacks import build_attack
from robustood.cli import main
from robustood.errors import RobustoodError
from robustood.evaluate import HEADLINE_METRICS, run_attack
from robustood.recipes import split_recipe
from robustood.report import Report
from robustood.resolve import resolve_model
from robustood.store import ResultStore
from robustood.train import TrainConfig

from test_report import markdown_cells, shown_as

LIMIT = 90
ARGS = dict(
    attacks=["fgsm:8/255", "pgd:8/255:steps=3"],
    detectors=["maxlogit", "msp"],
    ood=["noise", "adv:fgsm:8/255"],
    defenses=["squeeze"],
    limit=LIMIT,
    device="cpu",
    progress=False,
    batch_size=32,
)


@pytest.fixture(scope="module")
def second_model(digits):
    """A second, weaker digits model: the same CNN trained for two epochs only."""
    from robustood.models import build_model
    from robustood.train import fit

    torch.manual_seed(1)
    model = build_model("small_cnn", digits.info)
    fit(model, digits, TrainConfig(epochs=2, seed=1), device="cpu", progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def report(digits, digits_model, second_model):
    return evaluate({"good": digits_model, "weak": second_model}, digits, **ARGS)


def test_every_requested_cell_is_there_and_finite(report):
    assert report.models() == ["good", "weak"]
    for model in ("good", "weak"):
        assert 0.5 < report.value(model, "accuracy", input_set="test", attack="") <= 1
        for attack in ("fgsm-linf", "pgd-linf"):
            for metric in ("robust_accuracy", "success_rate", "linf_max", "detection_rate"):
                where = {"attack": attack, "eps": 8 / 255}
                if metric == "detection_rate":
                    where["detector"] = "squeeze"
                v = report.value(model, metric, **where)
                assert math.isfinite(v), (model, attack, metric)
            assert report.value(model, "linf_max", attack=attack) <= 8 / 255 + 1e-6
        for det in ("maxlogit", "msp"):
            for ood in ("noise", "adv:fgsm:8/255"):
                for metric in ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "detection_accuracy"):
                    assert 0 <= report.value(model, metric, detector=det, input_set=ood) <= 1
        assert 0 <= report.value(model, "false_positive_rate", detector="squeeze") <= 1
    for row in report.wide(HEADLINE_METRICS):
        assert all(not (isinstance(v, float) and math.isnan(v)) for v in row.values()), row
    assert report.value("good", "auroc", detector="maxlogit", input_set="noise") > 0.8


def test_attack_rows_equal_run_attack_on_its_own(report, digits, digits_model):
    alone = run_attack(
        digits_model, digits.limited(LIMIT), build_attack("fgsm", eps=8 / 255), device="cpu", batch_size=32
    )
    assert report.value("good", "robust_accuracy", attack="fgsm-linf") == alone.robust_accuracy
    assert report.value("good", "success_rate", attack="fgsm-linf") == alone.success_rate
    assert report.value("good", "accuracy", attack="") == alone.clean_accuracy


def test_attack_pass_reuses_given_clean_logits(digits_model, digits_tensors):
    from torch.utils.data import TensorDataset

    from robustood.evaluate.passes import attack_pass, clean_pass
    from robustood.evaluate.plan import AttackPass

    x, y = digits_tensors[0][:64], digits_tensors[1][:64]
    data = TensorDataset(x, y)
    attack = build_attack("pgd", eps=8 / 255, steps=3)
    a = run_attack(digits_model, (x, y), attack, device="cpu", batch_size=16)
    kw = dict(device=torch.device("cpu"), batch_size=16, progress=False)
    clean = clean_pass(digits_model, data, desc="clean", **kw)
    b = attack_pass(digits_model, data, AttackPass(attack, True), clean_logits=clean.logits, desc="pgd", **kw).result
    assert (a.clean_accuracy, a.robust_accuracy, a.success_rate) == (
        b.clean_accuracy,
        b.robust_accuracy,
        b.success_rate,
    )
    with pytest.raises(RobustoodError, match="rows"):
        attack_pass(digits_model, data, AttackPass(attack, True), clean_logits=clean.logits[:10], desc="pgd", **kw)


def test_one_attack_pass_serves_metrics_squeezing_and_the_adv_ood_set(digits, digits_model, monkeypatch):
    calls = []
    original = engine.attack_pass

    def counting(*args, **kwargs):
        calls.append(args[2].attack.label)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "attack_pass", counting)
    evaluate({"m": digits_model}, digits, **ARGS)
    assert sorted(calls) == ["fgsm-linf", "pgd-linf"]  # adv:fgsm:8/255 reused the fgsm pass


def test_renderings_round_trip_the_same_numbers(report):
    again = Report.from_json(report.to_json())
    assert [(r.model, r.metric, r.attack, r.detector, r.input_set) for r in again.rows] == [
        (r.model, r.metric, r.attack, r.detector, r.input_set) for r in report.rows
    ]
    same = lambda a, b: (math.isnan(a) and math.isnan(b)) or a == b  # noqa: E731
    assert all(same(a.value, b.value) for a, b in zip(again.rows, report.rows, strict=True))
    from_csv = Report.from_csv(report.to_csv())
    assert all(same(a.value, b.value) for a, b in zip(from_csv.rows, report.rows, strict=True))
    assert again.meta["seed"] == 0 and "torch" in again.meta["versions"] and again.meta["device"] == "cpu"
    wide = json.loads(report.table("json", HEADLINE_METRICS))
    header, *body = markdown_cells(report.to_markdown(HEADLINE_METRICS))
    assert header == list(wide[0]) and len(body) == len(wide) == 2
    for cells, row in zip(body, wide, strict=True):
        assert cells[0] == row["model"]
        assert all(shown_as(c, v) for c, v in zip(cells[1:], list(row.values())[1:], strict=True)), cells
    assert wide[0]["accuracy"] == report.value("good", "accuracy")
    columns = list(wide[0])
    assert columns[:2] == ["model", "accuracy"] and columns.index("robust_accuracy[fgsm-linf@8/255]") < columns.index(
        "auroc[maxlogit|noise]"
    )


def test_same_seed_same_numbers(report, digits, digits_model, second_model):
    again = evaluate({"good": digits_model, "weak": second_model}, digits, **ARGS)
    keep = lambda rs: [(r.model, r.metric, r.attack, r.detector, r.input_set, r.value) for r in rs]  # noqa: E731
    timing = {"images_per_second", "seconds"}
    assert keep(r for r in again.rows if r.metric not in timing) == keep(
        r for r in report.rows if r.metric not in timing
    )


def test_resume_after_a_crash_recomputes_nothing_already_written(digits, digits_model, tmp_path, monkeypatch):
    path = tmp_path / "store.jsonl"
    args = {**ARGS, "defenses": []}
    full = evaluate({"m": digits_model}, digits, store=path, **args)
    lines = path.read_text().splitlines()
    assert len(lines) == 6  # clean, noise, fgsm (with the adv OOD set), pgd, the worst case at 8/255, masking checks
    # a crash while writing the third unit: two finished units and a torn line stay on disk
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])
    calls = []
    original = engine.attack_pass

    def counting(*a, **k):
        calls.append(a[2].attack.label)
        return original(*a, **k)

    monkeypatch.setattr(engine, "attack_pass", counting)
    resumed = evaluate({"m": digits_model}, digits, store=path, **args)
    assert sorted(calls) == ["fgsm-linf", "pgd-linf"]  # the clean and noise units came from the store
    timing = {"images_per_second", "seconds"}
    pick = lambda rep: sorted(  # noqa: E731
        (r.metric, r.attack, r.detector, r.input_set, r.value) for r in rep.rows if r.metric not in timing
    )
    assert pick(resumed) == pick(full)
    assert len(ResultStore(path)) == 6
    calls.clear()
    evaluate({"m": digits_model}, digits, store=path, **args)
    assert calls == []  # everything is on disk now


def test_recipe_models_are_trained_once_and_labelled_by_their_spec(digits, tmp_path):
    config = TrainConfig(epochs=2, seed=0)
    kw = dict(attacks=["fgsm:8/255"], limit=40, device="cpu", progress=False, cache=tmp_path, config=config)
    rep = evaluate(["plain", "noise:8/255:epochs=1"], digits, **kw)
    assert rep.models() == ["plain", "noise:8/255:epochs=1"]
    assert rep.meta["models"]["noise:8/255:epochs=1"]["epochs"] == 1
    cached = sorted(p.name for p in (tmp_path / "models").glob("*.safetensors"))
    assert len(cached) == 2
    evaluate(["plain"], digits, **kw)
    assert sorted(p.name for p in (tmp_path / "models").glob("*.safetensors")) == cached


def test_split_recipe():
    assert split_recipe("adv:fgsm:2/255:epochs=15") == ("adv:fgsm:2/255", 15)
    assert split_recipe("plain") == ("plain", None)
    with pytest.raises(RobustoodError, match="positive integer"):
        split_recipe("plain:epochs=x")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(models=["nonsense"]), "unknown model 'nonsense'.*plain.*small_cnn"),
        (dict(models=["distill:hot"]), "distill:T"),
        (dict(models=["missing.safetensors"]), "does not exist"),
        (dict(models=[]), "no model"),
        (dict(models=["plain"], attacks=["fgsm"]), "fgsm:2/255"),
        (dict(models=["plain"], attacks=["nope:2/255"]), "known"),
        (dict(models=["plain"], detectors=["msp"]), "OOD set"),
        (dict(models=["plain"], ood=["noise"]), "detector"),
        (dict(models=["plain"], detectors=["nope"], ood=["noise"]), "unknown detector"),
        (dict(models=["plain"], defenses=["squeeze"]), "under attacks"),
        (dict(models=["plain"], defenses=["distill"], attacks=["fgsm:2/255"]), "distill:20"),
        (dict(models=["plain"], attacks=["fgsm:2/255", "fgsm:2/255"]), "twice"),
    ],
)
def test_bad_input_is_refused_before_any_training(digits, tmp_path, kwargs, message):
    models = kwargs.pop("models")
    with pytest.raises(RobustoodError, match=message):
        evaluate(models, digits, cache=tmp_path, device="cpu", **kwargs)
    assert not (tmp_path / "models").exists()


def test_resolve_model_accepts_modules_and_files(digits, digits_model, tmp_path):
    from robustood.models import save_checkpoint

    model, _ = resolve_model(digits_model, digits, device="cpu")
    assert model is digits_model
    path = save_checkpoint(digits_model, tmp_path / "mine.safetensors", digits.info, "small_cnn")
    loaded, _ = resolve_model(str(path), digits, device="cpu")
    x = torch.rand(4, *digits.info.input_shape)
    assert torch.allclose(loaded(x), digits_model(x), atol=1e-6)


def test_compare_cli_prints_the_library_table(digits, tmp_path):
    args = ["-m", "plain", "-m", "noise:8/255", "--epochs", "2", "--attack", "fgsm", "--eps", "8/255"]
    args += ["--detector", "maxlogit", "--ood", "noise", "--limit", "60", "--device", "cpu", "-q"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--plots", str(tmp_path / "plots")]
    args += ["--report", str(tmp_path / "report.json")]
    result = CliRunner().invoke(main, ["compare", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    cli_rows = json.loads(result.stdout)
    lib = evaluate(
        ["plain", "noise:8/255"],
        digits,
        attacks=["fgsm:8/255"],
        detectors=["maxlogit"],
        ood=["noise"],
        limit=60,
        device="cpu",
        progress=False,
        cache=tmp_path / "cache",
        config=TrainConfig(epochs=2, seed=0),
    )
    assert cli_rows == json.loads(lib.table("json", HEADLINE_METRICS))
    assert [r["model"] for r in cli_rows] == ["plain", "noise:8/255"]
    assert set(cli_rows[0]) == {"model", "accuracy", "robust_accuracy[fgsm-linf@8/255]"} | {
        "auroc[maxlogit|noise]",
        "fpr_at_95_tpr[maxlogit|noise]",
    }
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["ood_auroc.png", "robust_accuracy_vs_eps.png"]
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    full = Report.from_json((tmp_path / "report.json").read_text())
    assert full.value("plain", "accuracy") == cli_rows[0]["accuracy"]


@pytest.mark.parametrize(
    "args",
    [
        ["--attack", "nope"],
        ["--eps", "-1"],
        ["--defense", "magic"],
        ["--detector", ""],
        ["-m", "nonsense"],
        ["--epochs", "0"],
    ],
)
def test_compare_cli_bad_input_is_one_line_and_exit_2(args, tmp_path):
    result = CliRunner().invoke(main, ["compare", "--cache-dir", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Error" in result.output
