"""Speed-up of a sharded evaluation for world sizes 1, 2, … on the machine at hand.

For each world size the same :func:`robustood.evaluate` job (a CIFAR-shaped model on random
images, or the digits model; PGD and max-logit / Mahalanobis detection against noise) runs
under ``torchrun --standalone --nproc_per_node K``; rank 0 reports the job's wall time
after a barrier, so every rank's share is included. On CPUs each process gets
``cores // K`` threads (torch would otherwise oversubscribe the cores), so every world size
uses the whole machine and the speed-up is what splitting adds to torch's own threads;
``--threads 1`` gives each process one core instead. On GPUs each process takes one GPU.
Prints medians of ``--repeats`` runs, the speed-up over world size 1, and the parallel
efficiency (speed-up / K). Every world size gives the same numbers (checked here).

    python benchmarks/bench_distributed.py                       # CPU: world sizes 1, 2 on 2 cores
    python benchmarks/bench_distributed.py --threads 1           # one core per process
    python benchmarks/bench_distributed.py --device cuda --images 10000 --world-sizes 1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _worker(args: argparse.Namespace) -> None:
    """One rank of one timed job (started by torchrun)."""
    import torch

    import robustood
    from robustood import distributed

    sys.path.insert(0, str(Path(__file__).parent))
    from _timing import CIFAR_INFO, cifar_model

    w = distributed.init_from_env(args.device)
    if args.data == "digits":
        from robustood.data import load_dataset

        data = load_dataset("digits").limited(args.images)
        model = robustood.load_model("small_cnn", data, device=robustood.utils.select_device(args.device))
    else:
        model, _, _ = cifar_model(None, args.device)
        g = torch.Generator().manual_seed(0)
        x = torch.rand((args.images, *CIFAR_INFO.input_shape), generator=g)
        data = (x, torch.randint(0, 10, (args.images,), generator=g))
    run = dict(
        attacks=[f"pgd:8/255:steps={args.steps}"],
        detectors=["maxlogit", "mahalanobis"],
        ood=["noise"],
        ood_size=args.images,
        batch_size=args.batch_size,
        device=args.device,
        progress=False,
    )
    if args.data != "digits":
        run["train"] = data  # Mahalanobis fits on these
    distributed.barrier(w)
    t0 = time.perf_counter()
    report = robustood.evaluate({"m": model}, data, **run)
    distributed.barrier(w)
    seconds = time.perf_counter() - t0
    if w.is_main:
        values = sorted(
            (r.metric, r.input_set, r.attack, r.detector, round(r.value, 12))
            for r in report.rows
            if r.metric not in ("seconds", "images_per_second")
        )
        Path(args.result).write_text(json.dumps({"seconds": seconds, "values": values}))


def _job(args: argparse.Namespace, k: int, result: Path) -> dict:
    env = dict(os.environ)
    if args.device == "cpu":
        env["OMP_NUM_THREADS"] = str(args.threads or max((os.cpu_count() or 1) // k, 1))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={k}", __file__]
    cmd += ["--worker", "--result", str(result), "--device", args.device, "--data", args.data]
    cmd += ["--images", str(args.images), "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"world size {k} failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per process)")
    parser.add_argument("--data", default="cifar", choices=["cifar", "digits"], help="[default: cifar]")
    parser.add_argument("--images", type=int, default=1000, help="test images (and noise images) [1000]")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps [10]")
    parser.add_argument("--world-sizes", default=None, help="comma-separated [1,2,… up to the cores or GPUs]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per process [cores // world size: every world size uses the whole machine; "
        "1: one core per process, to see how the sharding itself scales]",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    import torch

    most = torch.cuda.device_count() if args.device.startswith("cuda") else (os.cpu_count() or 1)
    sizes = (
        [int(k) for k in args.world_sizes.split(",")]
        if args.world_sizes
        else [1 << i for i in range(8) if 1 << i <= most]
    )
    times: dict[int, list[float]] = {k: [] for k in sizes}
    values: dict[int, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):  # interleaved: load from elsewhere hits every world size alike
            for k in sizes:
                out = _job(args, k, Path(tmp) / f"w{k}.json")
                times[k].append(out["seconds"])
                values[k] = out["values"]
    base = statistics.median(times[sizes[0]])
    threads = f", {args.threads or 'cores // world size'} threads per process" if args.device == "cpu" else ""
    print(f"{args.data}, n={args.images}, batch {args.batch_size}, PGD-{args.steps} + maxlogit + mahalanobis vs noise, "
          f"device {args.device}{threads}, medians of {args.repeats}")  # fmt: skip
    print(f"{'world size':>10}  {'seconds':>8}  {'speed-up':>8}  {'efficiency':>10}  same numbers")
    for k in sizes:
        med = statistics.median(times[k])
        same = "yes" if values[k] == values[sizes[0]] else "NO"
        print(f"{k:>10}  {med:>8.2f}  {base / med:>7.2f}×  {base / med / k * sizes[0]:>9.0%}  {same}")


if __name__ == "__main__":
    main()
