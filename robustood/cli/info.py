"""``robustood datasets`` and ``robustood models``: what is available."""

from __future__ import annotations

from pathlib import Path

from .app import main
from .options import cache_dir_option, data_dir_option, emit, output_options


@main.command()
@data_dir_option
@output_options
def datasets(data_dir: Path | None, fmt: str, out: Path | None) -> None:
    """List the datasets and OOD sources robustood can load."""
    from ..data import OOD_SOURCES, catalogue

    rows = [{"kind": "dataset", **r, "description": ""} for r in catalogue(data_dir)]
    rows += [{"kind": "ood source", "name": k, "description": v} for k, v in OOD_SOURCES.items()]
    rows.append(
        {
            "kind": "ood source",
            "name": "adv:ATTACK:EPS",
            "description": "adversarial versions of the ID test set (e.g. adv:fgsm:2/255)",
        }
    )
    emit(rows, fmt, out)


@main.command()
@cache_dir_option
@output_options
def models(cache_dir: Path | None, fmt: str, out: Path | None) -> None:
    """List zoo architectures and the trained models in the cache."""
    from .. import utils
    from ..data import DatasetInfo
    from ..models import ZOO, build_model, load_checkpoint

    cifar = DatasetInfo("cifar10", (3, 32, 32), tuple("0123456789"), (0.5,) * 3, (0.25,) * 3)
    rows: list[dict[str, object]] = []
    for name, entry in ZOO.items():
        n_params = sum(p.numel() for p in build_model(name, cifar).parameters())
        rows.append({"kind": "zoo", "name": name, "description": entry.description, "parameters_cifar10": n_params})
    folder = utils.cache_dir(cache_dir) / "models"
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        try:
            _, meta = load_checkpoint(path)
        except ValueError:
            continue
        rows.append(
            {
                "kind": "cached",
                "name": path.name,
                "description": f"{meta['arch']} on {meta['dataset']['name']}, recipe {meta.get('recipe', '?')}",
                "test_accuracy": meta.get("test_accuracy"),
            }
        )
    emit(rows, fmt, out)
