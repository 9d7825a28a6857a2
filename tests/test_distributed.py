"""Evaluation under torch.distributed: shards, gathers, and ``torchrun`` jobs on CPU (gloo, 2 processes)
that must give the single-process numbers, sample by sample, with rank 0 alone writing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

from robustood.distributed import World, shard_batches

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with gloo"
)

TIMING = ("seconds", "images_per_second")


# --------------------------------------------------------------------------- shards (no processes)
@pytest.mark.parametrize("n", [0, 1, 7, 100, 101, 360])
@pytest.mark.parametrize("batch_size", [1, 7, 64, 500])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_cover_every_input_once_in_whole_batches(n, batch_size, size):
    blocks = [shard_batches(n, batch_size, World(rank, size)) for rank in range(size)]
    assert [i for b in blocks for i in b] == list(range(n))  # in order, no input twice, none missing
    for b in blocks:
        if len(b):
            assert b.start % batch_size == 0  # a rank's batches are the batches one process makes
    sizes = [-(-len(b) // batch_size) for b in blocks]
    assert max(sizes) - min(sizes) <= 1  # balanced to one batch


# --------------------------------------------------------------------------- torchrun jobs
def _env(tmp_path) -> dict[str, str]:
    env = dict(os.environ)
    # torchrun gives each process one thread; the single-process runs here use one too, so
    # both compute every float the same way
    env.update(OMP_NUM_THREADS="1", ROBUSTOOD_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200")
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def _torchrun(args: list[str], tmp_path, *, nproc: int = 2, module: bool = True, timeout: float = 300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "robustood", *args] if module else args
    return subprocess.run(cmd, env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def _single(args: list[str], tmp_path, timeout: float = 300):
    cmd = [sys.executable, "-m", "robustood", *args]
    return subprocess.run(cmd, env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def _metrics(path) -> dict:
    (row,) = json.loads(path.read_text())
    return {k: v for k, v in row.items() if not any(k.startswith(t) for t in TIMING)}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from robustood.data import load_dataset
    from robustood.models import save_checkpoint
    from robustood.resolve import pretrained
    from robustood.train import TrainConfig

    root = tmp_path_factory.mktemp("dist-model")
    bundle = load_dataset("digits")
    model, _ = pretrained(
        bundle, "small_cnn", seed=0, cache=root, config=TrainConfig(epochs=8, seed=0), progress=False, device="cpu"
    )
    return save_checkpoint(model, root / "digits.safetensors", bundle.info, "small_cnn")


COMPARE = [
    "compare",
    "--attack",
    "fgsm,pgd",
    "--eps",
    "4/255,16/255",
    "--detector",
    "msp,maxlogit,mahalanobis,knn",
    "--ood",
    "noise,adv:fgsm:16/255",
    "--defense",
    "squeeze",
    "--batch-size",
    "64",
    "--all-metrics",
    "--format",
    "json",
    "-q",
]


@pytest.fixture(scope="module")
def compare_job(ckpt, tmp_path_factory):
    """:data:`COMPARE` once in one process and once under torchrun with a store, shared by the test
    that the two agree and the test that a torn store resumes."""
    root = tmp_path_factory.mktemp("compare-job")
    args = [*COMPARE, "--model", str(ckpt)]
    one = _single([*args, "--out", "one.json", "--report", "one-report.json"], root)
    job = root / "job"
    job.mkdir()
    two = _torchrun([*args, "--out", "two.json", "--report", "two-report.json", "--store", "two.jsonl"], job)
    return root, one, two


def test_compare_under_torchrun_equals_one_process_and_rank0_alone_writes(compare_job):
    root, one, two = compare_job
    job = root / "job"
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr[-3000:]
    assert _metrics(job / "two.json") == _metrics(root / "one.json")
    assert sorted(p.name for p in job.iterdir()) == ["two-report.json", "two.json", "two.jsonl"]  # no stray files
    assert two.stderr.count("wrote two.json") == 1  # one rank reports
    units = [json.loads(line)["unit"] for line in (job / "two.jsonl").read_text().splitlines()]
    assert len(units) == len(set(units))  # each unit written once, by rank 0


def test_a_table_is_printed_once(ckpt, tmp_path):
    out = _torchrun(["attack", "--model", str(ckpt), "--eps", "8/255", "--limit", "100", "-q"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("robust_accuracy") == 1


@pytest.mark.slow  # AutoAttack in full on 48 inputs, twice: about 100 s on 2 cores
def test_autoattack_and_random_starts_do_not_depend_on_the_split(ckpt, tmp_path):
    """Random starts (PGD), random targets and AutoAttack's draws are keyed by input index, so two
    ranks with batches of 16 give what one process with batches of 16 gives, sample by sample."""
    args = [
        "attack",
        "--model",
        str(ckpt),
        "--attack",
        "pgd,autoattack",
        "--eps",
        "16/255",
        "--limit",
        "48",
        "--batch-size",
        "16",
        "--format",
        "json",
        "-q",
        "--save-adv",
    ]
    one = _single([*args, "one.npz", "--out", "one.json"], tmp_path)
    assert one.returncode == 0, one.stderr
    two = _torchrun([*args, "two.npz", "--out", "two.json"], tmp_path, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    import numpy as np

    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in json.loads((tmp_path / "one.json").read_text())]
    assert strip == [
        {k: v for k, v in r.items() if k not in TIMING} for r in json.loads((tmp_path / "two.json").read_text())
    ]


def test_an_interrupted_job_resumes_from_its_store(ckpt, compare_job, tmp_path):
    root, _, full = compare_job
    assert full.returncode == 0, full.stderr[-3000:]
    lines = (root / "job" / "two.jsonl").read_text().splitlines()
    # a job stopped after its first units: the finished ones are on disk, the last one torn
    store = tmp_path / "run.jsonl"
    store.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    again = _torchrun([*COMPARE, "--model", str(ckpt), "--store", "run.jsonl", "--out", "again.json"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _metrics(tmp_path / "again.json") == _metrics(root / "job" / "two.json")
    after = store.read_text().splitlines()
    assert after[3] == lines[3][: len(lines[3]) // 2]  # the torn line is left as it was, and ignored
    units = [json.loads(line)["unit"] for line in after[:3] + after[4:]]
    done = [json.loads(line)["unit"] for line in lines]
    assert units == done  # the 3 kept units were not computed again; the rest were, once each


def test_a_failing_rank_stops_the_job_with_its_error(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import torch
            from torch import nn
            import robustood

            class Fails(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

                def forward(self, x):
                    if os.environ["RANK"] == "1":
                        raise RuntimeError("rank one cannot go on")
                    return self.net(x)

            robustood.evaluate({"m": Fails()}, "digits", attacks=["fgsm:8/255"], store="store.jsonl", progress=False)
            """
        )
    )
    out = _torchrun([str(script)], tmp_path, module=False, timeout=240)
    assert out.returncode != 0
    assert "rank one cannot go on" in out.stderr
    assert not (tmp_path / "store.jsonl").exists() or (tmp_path / "store.jsonl").read_text() == ""


def test_evaluate_in_a_script_under_torchrun_returns_the_pooled_report_on_every_rank(ckpt, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os
            import numpy as np
            import robustood
            from robustood.models import load_checkpoint

            model, _ = load_checkpoint({str(ckpt)!r})
            report = robustood.evaluate(
                {{"m": model}}, "digits", attacks=["pgd:8/255"], detectors=["msp", "mahalanobis", "knn"],
                ood=["noise"], batch_size=50, progress=False, keep=True, keep_scores=True,
            )
            rows = sorted((r.input_set, r.attack, r.metric, r.detector, r.value) for r in report.rows
                          if r.metric not in ("seconds", "images_per_second"))
            rank = os.environ.get("RANK", "single")
            with open(f"rows-{{rank}}.json", "w") as fh:
                json.dump(rows, fh)
            samples = report.attacks["m"]["pgd-linf@8/255"].samples
            scores = {{f"{{s}}-{{d}}": v for s, per in report.scores["m"].items() for d, v in per.items()}}
            np.savez(f"samples-{{rank}}.npz", x_adv=samples.x_adv, pred_adv=samples.pred_adv, **scores)
            """
        )
    )
    two = _torchrun([str(script)], tmp_path, module=False)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, str(script)], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr[-3000:]
    single = json.loads((tmp_path / "rows-single.json").read_text())
    assert json.loads((tmp_path / "rows-0.json").read_text()) == single
    assert json.loads((tmp_path / "rows-1.json").read_text()) == single
    import numpy as np

    one_samples = np.load(tmp_path / "samples-single.npz")
    assert len(one_samples["pred_adv"]) == 360  # every test input, each once
    for rank in (0, 1):  # per-sample adversarial examples, predictions and scores, in index order
        got = np.load(tmp_path / f"samples-{rank}.npz")
        assert sorted(got.files) == sorted(one_samples.files)
        for key in one_samples.files:
            np.testing.assert_array_equal(got[key], one_samples[key], err_msg=key)


def test_gathers_pool_uneven_and_empty_shards(tmp_path):
    script = tmp_path / "gather.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch
            from robustood import distributed as d

            w = d.init_from_env("cpu")
            block = d.shard_batches(5, 4, w)  # 2 batches, 3 ranks: one rank holds none
            mine = torch.arange(block.start, block.stop)
            x = mine[:, None].float().repeat(1, 3) if len(block) else torch.empty(0)
            flags = mine % 2 == 0
            assert d.all_gather_cat(x).tolist() == [[float(i)] * 3 for i in range(5)]
            assert d.all_gather_cat(flags).tolist() == [i % 2 == 0 for i in range(5)]
            assert d.all_reduce_sum([len(block), 1]) == [5.0, 3.0]
            assert d.broadcast_object({"r": w.rank}) == {"r": 0}
            open(f"ok-{w.rank}", "w").close()
            d.shutdown()
            """
        )
    )
    out = _torchrun([str(script)], tmp_path, nproc=3, module=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("ok-*")) == ["ok-0", "ok-1", "ok-2"]


def test_one_process_is_untouched():
    from robustood.distributed import all_gather_cat, all_reduce_sum, broadcast_object, world

    assert world() == World()
    t = torch.arange(3)
    assert all_gather_cat(t) is t
    assert all_reduce_sum([1, 2]) == [1.0, 2.0]
    assert broadcast_object("x") == "x"


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf"])
def test_a_bad_timeout_is_one_clear_error_before_joining(monkeypatch, value):
    from robustood.distributed import init_from_env
    from robustood.errors import RobustoodError

    monkeypatch.setenv("ROBUSTOOD_DIST_TIMEOUT_MIN", value)
    for key, v in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(key, v)
    with pytest.raises(RobustoodError, match="ROBUSTOOD_DIST_TIMEOUT_MIN must be a positive number"):
        init_from_env("cpu")
    assert not dist.is_initialized()


@pytest.mark.parametrize(
    ("size", "rank", "prefix"), [("2", "1", "[rank 1] "), ("abc", "1", ""), ("2", "", ""), ("1", "0", "")]
)
def test_cli_errors_name_the_rank_and_never_trip_on_the_environment(runner, monkeypatch, size, rank, prefix):
    from robustood.cli import main

    monkeypatch.setenv("WORLD_SIZE", size)
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setattr("robustood.cli.app.quiet_other_ranks", lambda: None)  # keep this process's stdout
    result = runner.invoke(main, ["attack", "--dataset", "imagefolder:/no/such/folder"])
    assert result.exit_code == 1
    assert f"Error: {prefix}imagefolder" in result.output
    assert "Traceback" not in result.output
