"""Bring your own model: a hand-written ``nn.Module`` evaluated next to robustood's plain model.

What it shows:

* a classifier of your own (any ``nn.Module`` mapping images ``B×1×8×8`` in [0, 1] to
  logits ``B×10``; it does its own normalisation, so every eps stays in pixel units);
* training it on the embedded digits with :func:`robustood.fit` (seeded, validated,
  best epoch kept), or with any loop of your own;
* evaluating it as ``{"mine": model}`` next to robustood's ``"plain"`` recipe in one
  :func:`robustood.evaluate` call: accuracy, FGSM robust accuracy, MSP and max-logit vs noise;
* saving it to a file and evaluating it again *by path*: a TorchScript file for a custom
  architecture, and a safe checkpoint (:func:`robustood.models.save_checkpoint`, a
  safetensors file) for a zoo architecture trained in your own loop.

Run it offline, in about a minute on a 2-core CPU::

    python examples/bring_your_own_model.py
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import robustood as ro
from robustood.models import save_checkpoint

EVAL = dict(attacks=["fgsm:8/255"], detectors=["msp", "maxlogit"], ood=["noise"], seed=0, device="cpu")
HEADLINE = ["accuracy", "robust_accuracy", "auroc"]


class TinyMLP(nn.Module):
    """A two-layer perceptron for 8×8 grey images in [0, 1] → 10 logits.

    ``features`` / ``head`` are optional: with them, robustood's feature-based detectors
    (``mahalanobis``, ``vim``, ``knn``) can score the penultimate layer too.
    """

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - 0.3) / 0.4)  # normalisation inside the model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_by_hand(model: nn.Module, bundle: ro.DatasetBundle, epochs: int = 10) -> nn.Module:
    """The smallest possible training loop, to show robustood needs nothing special from it."""
    from robustood.inference import iter_batches

    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(epoch)
        for x, y in iter_batches(bundle.train, 64, shuffle=True, generator=gen):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def main() -> int:
    bundle = ro.load_dataset("digits")
    out = Path(tempfile.mkdtemp(prefix="robustood-byom-"))

    # 1. Your own architecture, trained with robustood's loop (seeded, keeps the best epoch).
    torch.manual_seed(0)
    mine = TinyMLP()
    result = ro.fit(mine, bundle, ro.TrainConfig(epochs=30, patience=5, seed=0), device="cpu")
    print(f"TinyMLP: best validation accuracy {result.best_val_accuracy:.3f} at epoch {result.best_epoch}")

    # 2. Evaluated next to robustood's plain CNN (trained once, then cached); the dict key is the row label.
    report = ro.evaluate({"mine": mine, "plain": "plain"}, bundle, **EVAL)
    print(report.to_markdown(HEADLINE))

    # 3a. A custom architecture goes to disk as TorchScript; evaluate() loads it by path.
    #     (PyTorch marks TorchScript deprecated in favour of torch.export, but it is still the
    #     portable format most trained models ship in, and robustood loads it safely.)
    script_path = out / "tiny_mlp.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(mine).save(str(script_path))

    # 3b. A zoo architecture trained in your own loop goes to disk as a safe checkpoint
    #     (safetensors + metadata: architecture, dataset, classes); loaded by path as well.
    cnn = train_by_hand(ro.build_model("small_cnn", bundle.info), bundle)
    ckpt_path = save_checkpoint(cnn, out / "small_cnn_by_hand.safetensors", bundle.info, "small_cnn", recipe="by hand")

    report = ro.evaluate({"mine (file)": script_path, "small_cnn (checkpoint)": ckpt_path}, bundle, **EVAL)
    print(report.to_markdown(HEADLINE))
    print(f"models saved in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
