"""The torch-free name lists the command line shows equal the registries they stand for."""

from __future__ import annotations

from robustood import names


def test_names_match_the_registries():
    from robustood.attacks import ATTACKS, BACKENDS
    from robustood.attacks.metrics import PRECISIONS
    from robustood.detectors import DEFAULT_DETECTORS, DEFAULT_OOD, DETECTORS
    from robustood.models import ZOO
    from robustood.recipes import RECIPES

    assert tuple(ATTACKS) == names.ATTACKS
    assert tuple(BACKENDS) == names.BACKENDS
    assert tuple(PRECISIONS) == names.PRECISIONS
    assert set(DETECTORS) - {"squeeze"} == set(names.DETECTORS)
    assert tuple(DEFAULT_DETECTORS) == names.DEFAULT_DETECTORS
    assert tuple(DEFAULT_OOD) == names.DEFAULT_OOD
    assert tuple(ZOO) == names.ZOO
    assert tuple(RECIPES) == names.RECIPES
