"""``robustood defend``: a defense measured against the undefended model under the same attacks.

One :func:`robustood.evaluate` call: ``squeeze`` adds the feature-squeezing detector to the
clean and attack passes of one model; ``distill`` evaluates the undefended model and the
distilled student, attacked through its softmax and through its logits / T.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..names import ZOO
from ..utils import format_eps, is_writer
from .app import main
from .attack import build_attacks
from .options import (
    ModelSource,
    Outputs,
    attack_option,
    attack_settings,
    check_outputs,
    columns_option,
    common_options,
    emit,
    eps_option,
    load_model_option,
    plots_option,
    progress_flag,
    with_logging,
)

if TYPE_CHECKING:
    from ..report import Report

#: Columns that name a row per defense: repeated in every block when a wide table is wrapped.
KEYS = {"squeeze": ("attack", "eps"), "distill": ("model", "attacked_through", "attack", "eps")}

#: What ``table`` / ``markdown`` show per defense (header → row key); ``csv`` / ``json`` keep every column.
HEADLINE = {
    "squeeze": {
        k: k
        for k in (
            "attack",
            "eps",
            "adaptive",
            "threshold",
            "false_positive_rate",
            "detection_rate",
            "clean_accuracy",
            "squeezed_clean_accuracy",
            "robust_accuracy",
            "squeezed_robust_accuracy",
            "misclassified_undetected",
        )
    },
    "distill": {k: k for k in ("model", "attacked_through", "attack", "eps", "clean_accuracy", "robust_accuracy")},
}

EPILOG = """\b
Examples:
  robustood defend --defense squeeze --attack fgsm --eps 2/255,8/255,32/255 --bit-depth 2 --median-window 0
  robustood defend --defense squeeze --threshold 1.0 --plots plots/
  robustood defend --defense squeeze --attack pgd --steps 20 --norm 2 --eps 0.5
  robustood defend --defense squeeze --attack pgd --eps 8/255 --adaptive
  robustood defend --defense distill --temperature 20 --eps 8/255,32/255
"""


@main.command(epilog=EPILOG)
@click.option(
    "--defense",
    type=click.Choice(["squeeze", "distill"], case_sensitive=False),
    required=True,
    help="squeeze: feature-squeezing detector; distill: defensive distillation.",
)
@attack_option(("fgsm",))
@eps_option()
@attack_settings
@plots_option("squeeze: write the score histogram (clean vs adversarial, threshold) and detection rates (PNG).")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 2),
    default=None,
    help="squeeze: fixed score threshold in [0, 2] (the labs use 1.0) instead of calibrating one.",
)
@click.option(
    "--fpr",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="squeeze: calibrate the threshold for this false-positive rate on the validation split [default: 0.05].",
)
@click.option(
    "--bit-depth", type=click.IntRange(1, 8), default=4, show_default=True, help="squeeze: bits per pixel (1–8)."
)
@click.option(
    "--median-window",
    type=click.IntRange(0, 32),
    default=2,
    show_default=True,
    help="squeeze: median-filter window in pixels (0: no median squeezer).",
)
@click.option(
    "--resample",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="squeeze: add a down-then-up resampling squeezer with this scale, e.g. 0.5.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(0, min_open=True),
    default=20.0,
    show_default=True,
    help="distill: softmax temperature T > 0 of the teacher and the soft labels.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="distill: most epochs of the teacher (the student trains as many).",
)
@columns_option()
@click.option(
    "--adaptive",
    is_flag=True,
    help="squeeze: also run each attack adaptively (fooling the classifier and the squeezers at once) "
    "and report, next to the plain rows, detection and the share misclassified and undetected.",
)
@common_options
@with_logging
def defend(
    defense: str,
    attack_names: list[str],
    eps_list: list[float],
    norm: str,
    steps: int | None,
    step_size: float | None,
    targeted: str | None,
    no_random_start: bool,
    backend: str,
    precision: str,
    plots: Path | None,
    threshold: float | None,
    fpr: float | None,
    bit_depth: int,
    median_window: int,
    resample: float | None,
    temperature: float,
    epochs: int,
    columns: list[str],
    adaptive: bool,
    dataset: str,
    data_dir: Path | None,
    no_download: bool,
    limit: int | None,
    models: list[str],
    arch: str | None,
    cache_dir: Path | None,
    device: str,
    seed: int,
    batch_size: int,
    quiet: bool,
    fmt: str,
    out: Path | None,
    source: ModelSource,
) -> None:
    """Measure a defense next to the undefended model under the chosen attacks (one row per attack × eps).

    squeeze: detection rate on adversarial inputs, false-positive rate on clean ones, and
    accuracy when the squeezed input is classified instead. distill: clean and robust
    accuracy of the undefended model and of the distilled student, the student attacked
    through its softmax (as deployed) and through its logits / T (gradient masking exposed).
    --format csv or json adds dataset, base model, the squeezers and the detection rate
    on successful adversarial inputs only. --adaptive (squeeze) adds, per attack, the
    adaptive attack (He et al., WOOT 2017) next to the plain one, with the share of inputs
    both misclassified and undetected.
    """
    from ..defenses import FeatureSqueezingDetector, TemperatureScaled
    from ..evaluate import evaluate
    from ..resolve import distilled_pretrained
    from ..train import TrainConfig
    from ..utils import select_device

    if len(models) > 1:
        raise click.BadParameter("defend measures one model; use robustood compare for several", param_hint="--model")
    model = models[0] if models else None
    if threshold is not None and fpr is not None:
        raise click.UsageError("give either --threshold (fixed) or --fpr (calibrated), not both")
    if adaptive and defense != "squeeze":
        raise click.BadParameter(
            "adapts attacks to feature squeezing; use it with --defense squeeze", param_hint="--adaptive"
        )
    if defense == "distill" and model is not None and model.strip().lower() not in ZOO:
        raise click.BadParameter(
            "distillation trains a zoo architecture; name it with --arch (or leave it out)", param_hint="--model"
        )
    check_outputs(out, folders=[plots])
    bundle = source.load_dataset(dataset, data_dir=data_dir, no_download=no_download, seed=seed)
    attack_objects = build_attacks(
        attack_names,
        eps_list,
        norm=norm,
        steps=steps,
        step_size=step_size,
        no_random_start=no_random_start,
        targeted=targeted,
        backend=backend,
        seed=seed,
        class_names=bundle.info.class_names,
    )
    dev = select_device(device)
    if precision == "bf16" and dev.type != "cuda":
        raise click.BadParameter(
            f"bf16 needs a CUDA device, got {dev.type}; use --precision fp32", param_hint="--precision"
        )
    progress = progress_flag(quiet)
    net, _, label = load_model_option(
        model, bundle, arch=arch, seed=seed, device=dev, cache=cache_dir, progress=progress, source=source
    )
    specs = [(a.label, float(a.eps)) for a in attack_objects]
    outputs = Outputs("the evaluation finished; only writing the output failed")
    run = dict(
        attacks=attack_objects,
        seed=seed,
        device=dev,
        batch_size=batch_size,
        limit=limit,
        progress=progress,
        precision=precision,
    )
    if defense == "squeeze":
        detector = FeatureSqueezingDetector(
            bit_depth=bit_depth,
            median_window=median_window or None,
            resample=resample,
            threshold=threshold,
            fpr=0.05 if fpr is None else fpr,
        )
        if adaptive:
            from ..defenses import adaptive_squeeze_attack

            run["attacks"] = [*attack_objects, *(adaptive_squeeze_attack(a, detector) for a in attack_objects)]
        report = evaluate({label: net}, bundle, defenses=[detector], **run)
        name = f"squeeze({', '.join(s.name for s in detector.squeezers)})"
        rows = squeezing_rows(report, label, specs, name, adaptive=adaptive)
        if plots is not None and is_writer():
            from ..plots.defenses import plot_squeezing

            with outputs.write():
                written = plot_squeezing(report, label, plots, dataset=bundle.info.name, defense=name)
                click.echo(f"wrote {len(written)} plots to {plots}", err=True)
    else:
        _, student, meta = distilled_pretrained(
            bundle,
            label,
            temperature=temperature,
            seed=seed,
            device=dev,
            cache=cache_dir,
            config=TrainConfig(epochs=epochs, seed=seed),
            progress=progress,
        )
        t = float(meta["temperature"])
        through = {
            "undefended": ("undefended", "softmax (T=1)", net),
            "distilled": ("distilled", "softmax (T=1)", student),
            "distilled@logits": ("distilled", f"logits / T (T={t:g})", TemperatureScaled(student, t)),
        }
        report = evaluate({key: m for key, (_, _, m) in through.items()}, bundle, **run)
        rows = distillation_rows(report, {key: (lab, how) for key, (lab, how, _) in through.items()}, specs)
        if plots is not None and is_writer():
            with outputs.write():
                written = report.plot(plots, dataset=bundle.info.name)
                click.echo(f"wrote {len(written)} plots to {plots}", err=True)
    rows = [{"dataset": bundle.info.key, "base_model": label, **r} for r in rows]
    if not is_writer():
        return  # under torchrun, rank 0 writes the job's table and files
    with outputs.write():
        emit(rows, fmt, out, headline=HEADLINE[defense], columns=columns, keys=KEYS[defense])
    outputs.finish()


def _value(report: Report, model: str, metric: str, *, attack: str = "", eps: float | None = None, detector=""):
    hits = [
        r.value
        for r in report.rows
        if r.model == model
        and r.metric == metric
        and r.detector == detector
        and (r.attack == attack or (attack and r.attack.startswith(f"{attack}-")))  # a label or a bare name
        and (eps is None or r.eps == eps)
    ]
    return hits[0]


def squeezing_rows(
    report: Report, model: str, specs: Sequence[tuple[str, float]], defense: str, *, adaptive: bool = False
) -> list[dict]:
    """One row per attack × eps: the squeezing detector's threshold, false positives and detection rates,
    next to the undefended accuracy and the accuracy when the squeezed input is classified.

    ``adaptive``: two rows per attack × eps, the plain attack and its adaptive version
    (``adaptive-pgd-linf`` rows), each with ``misclassified_undetected``."""
    base = {
        "defense": defense,
        "threshold": _value(report, model, "threshold", detector="squeeze"),
        "false_positive_rate": _value(report, model, "false_positive_rate", detector="squeeze"),
        "clean_accuracy": _value(report, model, "accuracy"),
        "squeezed_clean_accuracy": _value(report, model, "squeezed_clean_accuracy", detector="squeeze"),
    }
    rows = []
    for name, eps in specs:
        for prefix in ("", "adaptive-") if adaptive else ("",):
            at = {"attack": f"{prefix}{name}", "eps": eps}
            row = {
                "attack": name,
                "eps": format_eps(eps),
                **base,
                "detection_rate": _value(report, model, "detection_rate", detector="squeeze", **at),
                "detection_rate_successful": _value(
                    report, model, "detection_rate_successful", detector="squeeze", **at
                ),
                "robust_accuracy": _value(report, model, "robust_accuracy", **at),
                "squeezed_robust_accuracy": _value(report, model, "squeezed_robust_accuracy", detector="squeeze", **at),
            }
            if adaptive:
                row["adaptive"] = bool(prefix)
                row["misclassified_undetected"] = _value(
                    report, model, "misclassified_undetected", detector="squeeze", **at
                )
            rows.append(row)
    return rows


def distillation_rows(
    report: Report, models: dict[str, tuple[str, str]], specs: Sequence[tuple[str, float]]
) -> list[dict[str, Any]]:
    """One row per attack × eps × (model, attacked through): clean and robust accuracy."""
    rows = []
    for name, eps in specs:
        for key, (label, through) in models.items():
            rows.append(
                {
                    "model": label,
                    "attacked_through": through,
                    "attack": name,
                    "eps": format_eps(eps),
                    "clean_accuracy": _value(report, key, "accuracy"),
                    "robust_accuracy": _value(report, key, "robust_accuracy", attack=name, eps=eps),
                }
            )
    return rows
