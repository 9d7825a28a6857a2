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


def save_scores(scores: ScoreDict, path: str | os.PathLike) -> Path:
    """Write ``{set: {detector: scores}}`` (``"id"`` holds the ID scores) to ``path`` atomically.

    The format follows the suffix: ``.npz`` (arrays ``ood_set``, ``is_ood``, ``detectors``
    and one array per detector) or ``.csv`` (columns ``ood_set,is_ood,<detector>…``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise RobustoodError(f"cannot write scores to {path}: use a .npz or .csv file name")
    if ID_SET not in scores:
        raise RobustoodError("no ID scores to save; run the evaluation with keep_scores=True")
    detectors, names, flags, cols = _columns(scores)
    with atomic_path(path) as tmp:
        if suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez(fh, ood_set=names, is_ood=flags, detectors=np.asarray(detectors), **cols)
        else:
            with open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["ood_set", "is_ood", *detectors])
                for i in range(len(names)):
                    writer.writerow([names[i], int(flags[i]), *(repr(float(cols[d][i])) for d in detectors)])
    return path


def load_scores(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a file written by :func:`save_scores`: ``{"ood_set", "is_ood", <detector>…}`` arrays."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as data:
            detectors = [str(d) for d in data["detectors"]]
            out = {"ood_set": data["ood_set"].astype(str), "is_ood": data["is_ood"].astype(np.int8)}
            out.update({d: data[d].astype(np.float64) for d in detectors})
            return out
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    out = {"ood_set": np.asarray([r[0] for r in body]), "is_ood": np.asarray([int(r[1]) for r in body], np.int8)}
    for j, d in enumerate(header[2:], start=2):
        out[d] = np.asarray([float(r[j]) for r in body], dtype=np.float64)
    return out
