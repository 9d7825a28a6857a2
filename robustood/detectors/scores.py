"""Per-sample scores on disk (``.npz`` or ``.csv``), so metrics can be recomputed elsewhere.

Long format, one record per scored image: ``ood_set`` (``"id"`` for the in-distribution
test images, else the OOD set's name), ``is_ood`` (0 / 1) and one score column per
detector (higher = more OOD). The ID records are written once and shared by every OOD set.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RobustoodError
from ..utils import atomic_path

__all__ = ["ID_SET", "load_scores", "save_scores"]

ID_SET = "id"
ScoreDict = Mapping[str, Mapping[str, np.ndarray]]


def _columns(scores: ScoreDict) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    sets = [ID_SET, *(s for s in scores if s != ID_SET)]
    detectors = list(scores[ID_SET])
    names, flags, cols = [], [], {d: [] for d in detectors}
    for s in sets:
        n = len(next(iter(scores[s].values())))
        names += [s] * n
        flags += [0 if s == ID_SET else 1] * n
        for d in detectors:
            cols[d].append(np.asarray(scores[s][d], dtype=np.float64))
    return (
        detectors,
        np.asarray(names),
        np.asarray(flags, dtype=np.int8),
        {d: np.concatenate(v) for d, v in cols.items()},
    )


def _attacked_columns(scores: ScoreDict, attacked: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Attacked-score columns ``DETECTOR@ATTACK@EPS`` in the long format's record order (sets
    without attacked scores, e.g. ``adv:…`` sets, get NaN)."""
    sets = [ID_SET, *(s for s in scores if s != ID_SET)]
    names = list(dict.fromkeys(n for s in sets for n in attacked.get(s, {}).get("scores", {})))
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for s in sets:
        size = len(next(iter(scores[s].values())))
        kept = attacked.get(s, {}).get("scores", {})
        for n in names:
            out[n].append(np.asarray(kept[n], dtype=np.float64) if n in kept else np.full(size, np.nan))
    return {n: np.concatenate(v) for n, v in out.items()}


def save_scores(scores: ScoreDict, path: str | os.PathLike, attacked: Mapping[str, Any] | None = None) -> Path:
    """Write ``{set: {detector: scores}}`` (``"id"`` holds the ID scores) to ``path`` atomically.

    The format follows the suffix: ``.npz`` (arrays ``ood_set``, ``is_ood``, ``detectors``
    and one array per detector) or ``.csv`` (columns ``ood_set,is_ood,<detector>…``).

    ``attacked`` (:attr:`~robustood.report.Report.attacked` of one model) adds, per record, the
    score after each detector attack (columns ``DETECTOR@ATTACK@EPS``, listed in the ``.npz``
    array ``attacked``) and, in a ``.npz``, per input set the clean inputs ``<set>__x`` and the
    attacked inputs ``<set>__DETECTOR@ATTACK@EPS__x_adv`` (``N×C×H×W`` float32), so every
    figure can be recomputed from the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise RobustoodError(f"cannot write scores to {path}: use a .npz or .csv file name")
    if ID_SET not in scores:
        raise RobustoodError("no ID scores to save; run the evaluation with keep_scores=True")
    detectors, names, flags, cols = _columns(scores)
    extra = _attacked_columns(scores, attacked) if attacked else {}
    clash = sorted(set(extra) & set(cols))
    if clash:
        raise RobustoodError(f"attacked score column {clash[0]!r} clashes with a detector name")
    cols = {**cols, **extra}
    header = [*detectors, *extra]
    with atomic_path(path) as tmp:
        if suffix == ".npz":
            arrays: dict[str, np.ndarray] = {}
            for s, kept in (attacked or {}).items():
                if "x" in kept:
                    arrays[f"{s}__x"] = np.asarray(kept["x"], dtype=np.float32)
                for n, x_adv in kept.get("x_adv", {}).items():
                    arrays[f"{s}__{n}__x_adv"] = np.asarray(x_adv, dtype=np.float32)
            if extra:
                arrays["attacked"] = np.asarray(list(extra))
            with open(tmp, "wb") as fh:
                np.savez(fh, ood_set=names, is_ood=flags, detectors=np.asarray(detectors), **cols, **arrays)
        else:
            with open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["ood_set", "is_ood", *header])
                for i in range(len(names)):
                    writer.writerow([names[i], int(flags[i]), *(repr(float(cols[d][i])) for d in header)])
    return path


def load_scores(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a file written by :func:`save_scores`: ``{"ood_set", "is_ood", <detector>…}`` arrays
    (and the attacked-score columns; the inputs of a ``.npz`` are read with ``np.load``)."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as data:
            detectors = [str(d) for d in data["detectors"]]
            out = {"ood_set": data["ood_set"].astype(str), "is_ood": data["is_ood"].astype(np.int8)}
            out.update({d: data[d].astype(np.float64) for d in detectors})
            if "attacked" in data.files:
                out.update({d: data[d].astype(np.float64) for d in data["attacked"].astype(str)})
            return out
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    out = {"ood_set": np.asarray([r[0] for r in body]), "is_ood": np.asarray([int(r[1]) for r in body], np.int8)}
    for j, d in enumerate(header[2:], start=2):
        out[d] = np.asarray([float(r[j]) for r in body], dtype=np.float64)
    return out
