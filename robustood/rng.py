"""Per-input random streams: every draw is a function of the seed, a stream name, the input's
index in its dataset and the element's position, never of batch order.

An attack that draws a random start from one generator for the whole pass gives input 7 a
different start when the batch size or the number of processes changes. :class:`Keys`
instead derives each input's numbers from ``(seed, stream, index, element)`` with a
counter-based hash (two rounds of the ``lowbias32`` integer mixer, computed in int64 on
the inputs' device), so a result depends only on the seed and the inputs themselves: the
same on one process or eight, with batches of 50 or 500, on the CPU or a GPU.

>>> keys = Keys(seed=0, index=torch.arange(4))
>>> a = keys.uniform((3,), "start")
>>> b = Keys(seed=0, index=torch.arange(2, 4)).uniform((3,), "start")
>>> torch.equal(a[2:], b)
True
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable, Sequence

import torch

__all__ = ["Keys", "accepts_keys", "stream_seed"]

_MASK = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(x: torch.Tensor, m: int) -> torch.Tensor:
    """``x · m mod 2³²`` for ``x`` holding values in [0, 2³²) (int64), without int64 overflow."""
    lo, hi = m & 0xFFFF, m >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK


def _mix(x: torch.Tensor) -> torch.Tensor:
    """The ``lowbias32`` mixer (C. Wellons): a bijection of 32-bit values with strong avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _mix_int(value: int) -> int:
    return int(_mix(torch.tensor([value & _MASK], dtype=torch.int64))[0])


def stream_seed(seed: int, *stream: object) -> int:
    """A 32-bit number naming ``stream`` (strings and integers) under ``seed``, e.g. to seed a
    ``torch.Generator`` for draws a whole batch shares (Square's window positions)."""
    text = "\x1f".join(str(s) for s in stream).encode()
    name = int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "little")
    h = _mix_int((int(seed) & _MASK) ^ _GOLDEN)
    h = _mix_int(h ^ ((int(seed) >> 32) & _MASK))
    return _mix_int(h ^ name)


def accepts_keys(fn: Callable[..., object]) -> bool:
    """Whether ``fn`` names a ``keys`` parameter: attack objects written before keys existed
    are called without them."""
    try:
        return "keys" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class Keys:
    """The random streams of a batch of inputs: ``seed`` and the inputs' dataset ``index`` ``[B]``.

    Draws are ``[B, *shape]`` tensors on ``index``'s device; ``stream`` (any strings and
    integers, e.g. ``("apgd-start", restart)``) names a draw, so different draws never share
    numbers and the same draw repeats exactly. ``keys[ind]`` selects inputs (a mask or
    positions), keeping each input's streams.
    """

    def __init__(self, seed: int, index: torch.Tensor | Sequence[int]) -> None:
        self.seed = int(seed)
        self.index = torch.as_tensor(index, dtype=torch.int64)
        if self.index.dim() != 1:
            raise ValueError(f"index must be one number per input, got shape {tuple(self.index.shape)}")

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, ind: torch.Tensor | slice) -> Keys:
        return Keys(self.seed, self.index[ind])

    def __repr__(self) -> str:
        return f"Keys(seed={self.seed}, n={len(self)})"

    def to(self, device: torch.device | str) -> Keys:
        return Keys(self.seed, self.index.to(device))

    @property
    def device(self) -> torch.device:
        return self.index.device

    def _bits(self, shape: Sequence[int], stream: tuple[object, ...]) -> torch.Tensor:
        """Uniform 32-bit values ``[B, *shape]`` (int64) for ``stream``."""
        idx = self.index
        k = _mix((idx & _MASK) ^ stream_seed(self.seed, *stream))
        k = _mix(k ^ ((idx >> 32) & _MASK))
        count = math.prod(shape)
        j = _mul32(torch.arange(count, device=idx.device, dtype=torch.int64), _GOLDEN)
        bits = _mix(_mix(k[:, None] ^ j[None, :]) ^ k[:, None])
        return bits.view(len(idx), *shape)

    def uniform(self, shape: Sequence[int], *stream: object, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform numbers in [0, 1), ``[B, *shape]`` (24 random bits each, exact in float32)."""
        return (self._bits(shape, stream) >> 8).to(dtype) * (2.0**-24)

    def normal(self, shape: Sequence[int], *stream: object, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal numbers ``[B, *shape]`` (Box–Muller on two uniform streams, in float64)."""
        u1 = ((self._bits(shape, (*stream, "u1")) >> 8) + 1).double() * (2.0**-24)  # (0, 1]
        u2 = (self._bits(shape, (*stream, "u2")) >> 8).double() * (2.0**-24)
        return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)).to(dtype)

    def integers(self, low: int, high: int, *stream: object, shape: Sequence[int] = ()) -> torch.Tensor:
        """Uniform integers in ``[low, high)``, ``[B, *shape]`` (int64; Lemire's multiply-shift)."""
        span = int(high) - int(low)
        if span < 1:
            raise ValueError(f"empty range [{low}, {high})")
        if span >= 2**31:
            raise ValueError("integers() draws from ranges shorter than 2**31")
        bits = self._bits(tuple(shape) or (1,), stream)
        out = ((bits * span) >> 32) + int(low)
        return out.view(len(self), *shape)

    def signs(self, shape: Sequence[int], *stream: object, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Random ±1 values ``[B, *shape]``."""
        return ((self._bits(shape, stream) >> 31) * 2 - 1).to(dtype)

    def generator(self, *stream: object, device: torch.device | str = "cpu") -> torch.Generator:
        """A ``torch.Generator`` for draws a whole batch shares, seeded by ``seed`` and ``stream``
        only (so it is the same generator in every batch and on every process)."""
        return torch.Generator(device=device).manual_seed(stream_seed(self.seed, *stream))
