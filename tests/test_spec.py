"""The ``NAME:ARG:key=value`` grammar shared by attacks, training recipes, OOD sets and distillation."""

from __future__ import annotations

import pytest

from robustood.errors import RobustoodError
from robustood.spec import Spec, as_bool, as_float, as_int, parse_spec


@pytest.mark.parametrize(
    "text",
    ["pgd", "pgd:8/255", "pgd:8/255:l2", "adv:fgsm:2/255:epochs=15", "heldout:3", "distill:20", "x:a=1:b=2"],
)
def test_round_trip(text):
    spec = parse_spec(text)
    assert str(spec) == text
    assert parse_spec(str(spec)) == spec


def test_parts():
    spec = parse_spec("adv:fgsm:2/255:epochs=15:adv-share=0.5")
    assert spec == Spec("adv", ("fgsm", "2/255"), (("epochs", "15"), ("adv_share", "0.5")))
    assert spec.opts == {"epochs": "15", "adv_share": "0.5"}
    assert list(spec.opts) == ["epochs", "adv_share"]  # order kept
    assert spec.option("epochs") == "15" and spec.option("adv-share") == "0.5" and spec.option("ADV_SHARE") == "0.5"
    assert spec.option("lr") is None and spec.option("lr", "0.1") == "0.1"
    assert hash(spec) == hash(parse_spec("adv:fgsm:2/255:epochs=15:adv_share=0.5"))


def test_whitespace_and_case():
    spec = parse_spec("  PGD : 8/255 : L2 : Step-Size = 1/255 : Targeted = Cat ")
    assert spec.name == "pgd"  # the name only is lowercased
    assert spec.args == ("8/255", "L2")
    assert spec.options == (("step_size", "1/255"), ("targeted", "Cat"))
    assert str(spec) == "pgd:8/255:L2:step_size=1/255:targeted=Cat"


def test_value_may_hold_an_equals_sign():
    assert parse_spec("x:expr=a=b").opts == {"expr": "a=b"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"empty attack; use NAME\[:ARG…\]\[:key=value…\], e\.g\. pgd:8/255:steps=20"),
        ("   ", "empty attack"),
        (":8/255", r"attack ':8/255' has no name; use .*e\.g\. "),
        ("pgd::8/255", "attack 'pgd::8/255' has an empty part between ':'; use .*e\\.g\\. "),
        ("pgd:8/255:", "empty part"),
        ("pgd:8/255: :steps=3", "empty part"),
        ("pgd:steps=", r"attack 'pgd:steps=': option steps= has no value; use .*e\.g\. "),
        ("pgd:steps= ", "option steps= has no value"),
        ("pgd:=3", "option '=3' has no key"),
        ("steps=3:pgd", "starts with an option, not a name"),
        ("pgd:steps=3:Steps=4", r"option steps= is given twice; .*e\.g\. "),
        ("pgd:steps=3:step-size=1:step_size=2", "option step_size= is given twice"),
        ("pgd:steps=3:8/255", r"argument '8/255' comes after an option; put the arguments first, e\.g\. "),
    ],
)
def test_errors(text, match):
    with pytest.raises(RobustoodError, match=match) as info:
        parse_spec(text, what="attack")
    assert "\n" not in str(info.value)


def test_what_names_the_kind_of_string():
    with pytest.raises(RobustoodError, match=r"^OOD set 'heldout::3' has an empty part"):
        parse_spec("heldout::3", what="OOD set")
    with pytest.raises(RobustoodError, match=r"^empty spec"):
        parse_spec("")


WHERE = "attack 'ddn:0.5:gamma=abc'"


def test_as_int():
    assert as_int("20", "steps", WHERE) == 20
    assert as_int(" -3 ", "seed", WHERE) == -3
    assert as_int("1", "steps", WHERE, minimum=1) == 1
    for bad, match in (
        ("2.7", r"option steps= of attack 'ddn:0\.5:gamma=abc' must be a positive integer, got '2\.7'"),
        ("abc", "must be a positive integer, got 'abc'"),
        ("inf", "must be a positive integer, got 'inf'"),
        ("0", "must be a positive integer, got '0'"),
        ("", "got ''"),
    ):
        with pytest.raises(RobustoodError, match=match):
            as_int(bad, "steps", WHERE, minimum=1)
    with pytest.raises(RobustoodError, match="must be a non-negative integer"):
        as_int("-1", "count", WHERE, minimum=0)
    with pytest.raises(RobustoodError, match="must be an integer ≥ 2"):
        as_int("1", "k", WHERE, minimum=2)
    with pytest.raises(RobustoodError, match=r"must be an integer, got '1\.5'"):
        as_int("1.5", "seed", WHERE)


def test_as_float():
    assert as_float("0.05", "gamma", WHERE) == 0.05
    assert as_float("1/255", "step_size", WHERE) == 1 / 255
    assert as_float(" 1e-3 ", "step_size", WHERE, minimum=0, open_min=True) == 1e-3
    assert as_float("1", "gamma", WHERE, minimum=0, maximum=1, open_min=True) == 1.0
    assert as_float("0", "x", WHERE, minimum=0) == 0.0
    cases = [
        ("abc", {}, r"^option gamma= of attack 'ddn:0\.5:gamma=abc' must be a number, got 'abc'$"),
        ("1/0", {}, "must be a number, got '1/0'"),
        ("inf", {}, "must be a finite number, got 'inf'"),
        ("-inf", {"minimum": 0}, "must be a finite number"),
        ("nan", {}, "must be a finite number, got 'nan'"),
        ("-1", {"minimum": 0, "open_min": True}, "must be a positive number, got '-1'"),
        ("0", {"minimum": 0, "open_min": True}, "must be a positive number, got '0'"),
        ("-0.5", {"minimum": 0}, "must be a non-negative number"),
        ("1.5", {"minimum": 0, "maximum": 1, "open_min": True}, r"must be a number in \(0, 1\], got '1\.5'"),
        ("0", {"minimum": 0, "maximum": 1, "open_min": True}, r"in \(0, 1\]"),
        ("-1", {"minimum": 0, "maximum": 1}, r"in \[0, 1\]"),
        ("2", {"maximum": 1}, "must be a number ≤ 1"),
        ("0.5", {"minimum": 1}, "must be a number ≥ 1"),
    ]
    for value, bounds, match in cases:
        with pytest.raises(RobustoodError, match=match):
            as_float(value, "gamma", WHERE, **bounds)


def test_as_bool():
    for text in ("1", "true", "True", "YES", "on", " on "):
        assert as_bool(text, "random_start", WHERE) is True
    for text in ("0", "false", "No", "OFF"):
        assert as_bool(text, "random_start", WHERE) is False
    with pytest.raises(RobustoodError, match=r"option random_start= of .* must be true or false, got 'maybe'"):
        as_bool("maybe", "random_start", WHERE)
