"""One grammar for the short option strings used across robustood: ``NAME:ARG:ARG:key=value``.

Attacks (``pgd:8/255:steps=20``), training recipes (``adv:fgsm:2/255:epochs=15``), OOD
sets (``heldout:3``, ``adv:pgd:8/255``) and distillation (``distill:20``) are all written
this way. :func:`parse_spec` splits such a string into a :class:`Spec` (the name, the
positional arguments, then the ``key=value`` options); the typed readers
(:func:`as_int`, :func:`as_float`, :func:`as_bool`) turn an option's text into a value,
raising :class:`~robustood.errors.RobustoodError` with a message a user can act on.

>>> spec = parse_spec("PGD:8/255:Step-Size=1/255")
>>> spec.name, spec.args, spec.opts
('pgd', ('8/255',), {'step_size': '1/255'})
>>> str(spec)
'pgd:8/255:step_size=1/255'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .errors import RobustoodError

__all__ = ["Spec", "as_bool", "as_float", "as_int", "parse_spec"]

_EXAMPLE = "pgd:8/255:steps=20"
_GRAMMAR = f"use NAME[:ARG…][:key=value…], e.g. {_EXAMPLE}"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Spec:
    """A parsed ``NAME:ARG…:key=value…`` string: lowercase ``name``, positional ``args`` and
    ``options`` as ``(key, value)`` pairs in the order given (keys lowercase, ``-`` → ``_``)."""

    name: str
    args: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()

    def option(self, key: str, default: str | None = None) -> str | None:
        """The text of option ``key`` (``-`` and ``_`` alike, any case), else ``default``."""
        return self.opts.get(_key(key), default)

    @property
    def opts(self) -> dict[str, str]:
        """The options as a dict, in the order given."""
        return dict(self.options)

    def __str__(self) -> str:
        """The canonical text: name, arguments, then ``key=value`` options in the given order."""
        return ":".join([self.name, *self.args, *(f"{k}={v}" for k, v in self.options)])


def _key(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def parse_spec(text: str, *, what: str = "spec") -> Spec:
    """Split ``text`` on ``:`` into a :class:`Spec`.

    Whitespace around every part is dropped; the name is lowercased (arguments and values
    keep their case); option keys are lowercased with ``-`` read as ``_``. Positional
    arguments come before the ``key=value`` options. ``what`` names the kind of string in
    error messages (``"attack"``, ``"OOD set"``).

    Raises :class:`RobustoodError` for an empty string, name or part, an option without a
    key or value, a positional argument after an option, and a key given twice.
    """
    raw = str(text)
    shown = f"{what} {raw.strip()!r}"
    if not raw.strip():
        raise RobustoodError(f"empty {what}; {_GRAMMAR}")
    parts = [p.strip() for p in raw.split(":")]
    if not parts[0]:
        raise RobustoodError(f"{shown} has no name; {_GRAMMAR}")
    if "=" in parts[0]:
        raise RobustoodError(f"{shown} starts with an option, not a name; {_GRAMMAR}")
    args: list[str] = []
    options: dict[str, str] = {}
    for part in parts[1:]:
        if not part:
            raise RobustoodError(f"{shown} has an empty part between ':'; {_GRAMMAR}")
        if "=" not in part:
            if options:
                raise RobustoodError(
                    f"{shown}: argument {part!r} comes after an option; put the arguments first, e.g. {_EXAMPLE}"
                )
            args.append(part)
            continue
        key, value = (s.strip() for s in part.split("=", 1))
        key = _key(key)
        if not key:
            raise RobustoodError(f"{shown}: option {part!r} has no key; {_GRAMMAR}")
        if not value:
            raise RobustoodError(f"{shown}: option {key}= has no value; {_GRAMMAR}")
        if key in options:
            raise RobustoodError(f"{shown}: option {key}= is given twice; give each option once, e.g. {_EXAMPLE}")
        options[key] = value
    return Spec(parts[0].lower(), tuple(args), tuple(options.items()))


# --------------------------------------------------------------------------- typed option readers
#
# ``spec_text`` is the spec as shown in messages, e.g. ``f"attack {text!r}"`` gives
# "option gamma= of attack 'ddn:0.5:gamma=abc' must be a number, got 'abc'".


def _need(kind: str, minimum: float | None, maximum: float | None = None, open_min: bool = False) -> str:
    """What a value must be, e.g. ``a positive integer``, ``a number in (0, 1]``."""
    if maximum is None and minimum is not None:
        if (minimum == 0 and open_min) or (kind == "integer" and minimum == 1):
            return f"a positive {kind}"
        if minimum == 0:
            return f"a non-negative {kind}"
        bound = f"{kind} {'>' if open_min else '≥'} {minimum:g}"
    elif minimum is None:
        bound = kind if maximum is None else f"{kind} ≤ {maximum:g}"
    else:
        bound = f"{kind} in {'(' if open_min else '['}{minimum:g}, {maximum:g}]"
    return f"{'an' if bound[0] in 'aeiou' else 'a'} {bound}"


def as_int(value: str, key: str, spec_text: str, *, minimum: int | None = None) -> int:
    """``value`` as an integer of at least ``minimum`` (``"2.7"`` is refused, not truncated)."""
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is None or (minimum is not None and number < minimum):
        raise RobustoodError(f"option {key}= of {spec_text} must be {_need('integer', minimum)}, got {text!r}")
    return number


def as_float(
    value: str,
    key: str,
    spec_text: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_min: bool = False,
) -> float:
    """``value`` (a decimal or a fraction such as ``1/255``) as a finite float in the bounds;
    ``minimum`` itself is refused when ``open_min``; ``inf`` and ``nan`` are refused."""
    text = str(value).strip()
    try:
        number = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        try:
            number = float(text)  # inf, nan: parsed here to be refused with a clear message
        except ValueError:
            raise RobustoodError(f"option {key}= of {spec_text} must be a number, got {text!r}") from None
    if not math.isfinite(number):
        raise RobustoodError(f"option {key}= of {spec_text} must be a finite number, got {text!r}")
    low_ok = minimum is None or (number > minimum if open_min else number >= minimum)
    if not low_ok or (maximum is not None and number > maximum):
        need = _need("number", minimum, maximum, open_min)
        raise RobustoodError(f"option {key}= of {spec_text} must be {need}, got {text!r}")
    return number


def as_bool(value: str, key: str, spec_text: str) -> bool:
    """``1/true/yes/on`` → ``True``, ``0/false/no/off`` → ``False`` (any case); anything else is refused."""
    text = str(value).strip()
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise RobustoodError(f"option {key}= of {spec_text} must be true or false, got {text!r}")
