"""Training under ``torchrun``: two CPU processes (gloo) on the embedded digits set.

Each test starts ``python -m torch.distributed.run --nproc_per_node 2`` as a subprocess, as
a user would, and checks what the job left behind from one process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from robustood.inference import accuracy
from robustood.models import load_checkpoint
from robustood.train import TrainConfig, fit, rank_batches

dist = pytest.importorskip("torch.distributed")
pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc_per_node 2 ARGS`` on the loopback interface, CPU only."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "ROBUSTOOD_DIST_TIMEOUT_MIN": "2",
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cmd += ["--master_port", str(_free_port()), *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def _seven(digits):
    """Digits with a training split of 7 images: one global batch, split 4 + 3 over two ranks."""
    from robustood.data import stack_dataset

    x, y = stack_dataset(digits.train)
    return replace(digits, train=TensorDataset(x[:7], y[:7]))


WORKER = """
import sys, torch
from pathlib import Path
from torch import nn
from robustood import distributed
from robustood.data import load_dataset
from robustood.resolve import distilled_pretrained, pretrained
from robustood.train import TrainConfig, fit
sys.path.insert(0, {tests!r})
from test_distributed_train import _linear, _seven

out = Path({out!r})
digits = load_dataset("digits")
net = _linear()
fit(net, _seven(digits), TrainConfig(epochs=1, lr=0.5, batch_size=7, optimizer="sgd", patience=None), progress=False)
rank = distributed.world().rank
model, meta = pretrained(digits, "small_cnn", cache=out / "cache", config=TrainConfig(epochs=2, patience=None))
_, student, _ = distilled_pretrained(digits, "small_cnn", temperature=20, cache=out / "cache",
                                     config=TrainConfig(epochs=1, patience=None))


class Stop(Exception):
    pass


def stop_after_first(epoch, record):
    if epoch == 1:
        raise Stop


two = TrainConfig(epochs=2, patience=None)
resumed = _linear()
try:
    fit(resumed, digits, two, state_path=out / "state.pt", on_epoch_end=stop_after_first)
except Stop:
    pass
fit(resumed, digits, two, state_path=out / "state.pt")
whole = _linear()
fit(whole, digits, two)
torch.save(
    {{"linear": net.state_dict(), "cnn": model.state_dict(), "meta": meta, "student": student.state_dict(),
      "resumed": resumed.state_dict(), "whole": whole.state_dict()}},
    out / f"rank{{rank}}.pt",
)
"""


def test_rank_batches_split_each_global_batch_and_pad_only_a_tiny_last_one():
    from robustood.distributed import World

    parts = [list(rank_batches(10, 8, torch.Generator().manual_seed(0), World(r, 3))) for r in range(3)]
    first = torch.cat([p[0][0] for p in parts])
    assert [len(p[0][0]) for p in parts] == [3, 3, 2] and sorted(first.tolist()) == sorted(set(first.tolist()))
    last = [p[1][0] for p in parts]  # 2 samples left for 3 ranks: one of the epoch's first samples is repeated
    assert [len(t) for t in last] == [1, 1, 1] and all(p[1][1] == 3 for p in parts)
    everything = torch.cat([*[p[0][0] for p in parts], *last]).tolist()
    assert set(everything) == set(range(10)) and len(everything) == 11


def test_torchrun_training_matches_one_process_and_rank_0_alone_writes(digits, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER.format(tests=str(Path(__file__).parent), out=str(tmp_path))))
    _torchrun([str(script)], cwd=tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]

    # known answer: one SGD step on a global batch of 7 (4 + 3 per rank) equals one process's step on all 7
    single = _linear()
    fit(single, _seven(digits), TrainConfig(epochs=1, lr=0.5, batch_size=7, optimizer="sgd", patience=None))
    for r in ranks:
        for k, v in single.state_dict().items():
            assert torch.allclose(r["linear"][k], v, atol=1e-6, rtol=0), k
    assert not torch.equal(single.state_dict()["1.weight"], _linear().state_dict()["1.weight"])

    # identical weights and metadata on both ranks; a run resumed from rank 0's state ends like a whole one
    for net in ("cnn", "student", "resumed"):
        for k, v in ranks[0][net].items():
            assert torch.equal(v, ranks[1][net][k]), (net, k)
    for k, v in ranks[0]["whole"].items():
        assert torch.equal(v, ranks[0]["resumed"][k]), k
    assert ranks[0]["meta"] == ranks[1]["meta"] and ranks[0]["meta"]["epochs"] == 2

    # rank 0 wrote one entry per trained network (plain, distilled teacher and student), no state or temp files
    files = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert len(files) == 3 and Path(ranks[0]["meta"]["path"]).name in files
    assert not (tmp_path / "state.pt").exists()
    model, meta = load_checkpoint(ranks[0]["meta"]["path"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, ranks[0]["cnn"][k]), k
    assert accuracy(model, digits.test) == pytest.approx(meta["test_accuracy"]) and meta["test_accuracy"] > 0.8


def test_torchrun_cli_adversarial_training_writes_one_loadable_checkpoint(digits, tmp_path):
    cache = tmp_path / "cache"
    save = tmp_path / "copy.safetensors"
    args = ["train", "--recipe", "adv:fgsm:2/255", "--epochs", "2", "--patience", "1", "--cache-dir", str(cache)]
    done = _torchrun(["-m", "robustood", *args, "--save", str(save), "--format", "json", "--quiet"], cwd=tmp_path)
    assert done.stdout.count('"recipe": "adv:fgsm:2/255"') == 1  # one report, from rank 0
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted(["copy.safetensors", "digits-small_cnn-adv_fgsm_2_255-epochs2_patience1-s0.safetensors"])
    model, meta = load_checkpoint(save)
    assert meta["recipe"] == "adv:fgsm:2/255" and accuracy(model, digits.test) > 0.8
