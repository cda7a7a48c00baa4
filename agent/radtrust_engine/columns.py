"""Per-case columns held as a few arrays instead of one Python object per cell.

A manifest held as lists kept about 330 bytes per row alive (a string or a float object per cell,
a pointer per list entry), and reading it peaked near 800 bytes per row, every row held as a dict. These columns read like the lists they replace (``len``, indexing, iteration, equality
with a list), so code that reads one cell is unchanged, while whole-run code takes the arrays:

- ``TextColumn``: distinct strings (image paths) packed into one string and an array of ends;
- ``CodedColumn``: repeated values (patients, dates, attributes) as integer codes into the
  distinct values, ``MISSING`` for None, so a subgroup's values are computed once per value.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np

MISSING = -1  # the code of None in a ``CodedColumn``


class StringView(Sequence[str]):
    """Strings made one at a time (``_at``), read like a list: ints, negative ints and slices."""

    __slots__ = ()

    def _at(self, i: int) -> str:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(len(self)))]
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("column index out of range")
        return self._at(i)


class TextColumn(StringView):
    """Strings packed into one ``str``; ``ends[i]`` is where string ``i`` stops in it."""

    __slots__ = ("_ends", "_text")

    def __init__(self, text: str, ends: np.ndarray):
        self._text = text
        self._ends = ends

    @classmethod
    def of(cls, values: Iterable[str]) -> TextColumn:
        builder = TextBuilder()
        for value in values:
            builder.append(value)
        return builder.column()

    def __len__(self) -> int:
        return int(self._ends.size)

    def _at(self, i: int) -> str:
        start = int(self._ends[i - 1]) if i else 0
        return self._text[start : int(self._ends[i])]

    def __iter__(self) -> Iterator[str]:
        start = 0
        for end in self._ends.tolist():
            yield self._text[start:end]
            start = end

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so unhashable like one

    def __repr__(self) -> str:
        return f"TextColumn({list(self)!r})"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.array(list(self), dtype=dtype)


class TextBuilder:
    """Appends strings to a ``TextColumn`` a few thousand at a time, so a manifest being read never
    holds one object per row."""

    _BLOCK = 4096

    def __init__(self) -> None:
        self._blocks: list[str] = []
        self._pending: list[str] = []
        self._ends: list[np.ndarray] = []
        self._lengths: list[int] = []
        self._length = 0

    def append(self, value: str) -> None:
        self._pending.append(value)
        self._lengths.append(len(value))
        if len(self._pending) == self._BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            ends = np.cumsum(np.asarray(self._lengths, dtype=np.int64)) + self._length
            self._length = int(ends[-1])
            self._ends.append(ends)
            self._blocks.append("".join(self._pending))
            self._pending, self._lengths = [], []

    def column(self) -> TextColumn:
        self._flush()
        ends = np.concatenate(self._ends) if self._ends else np.zeros(0, dtype=np.int64)
        return TextColumn("".join(self._blocks), ends)


class CodedColumn(Sequence[Any]):
    """Values as ``codes`` (int32, ``MISSING`` for None) into ``categories``, the distinct values in
    the order they first appear (a ``TextColumn`` when they are all text)."""

    __slots__ = ("categories", "codes")

    def __init__(self, codes: np.ndarray, categories: Sequence[Any]):
        self.codes = codes
        self.categories = categories

    @classmethod
    def of(cls, values: Iterable[Hashable]) -> CodedColumn:
        builder = CodeBuilder()
        for value in values:
            builder.append(value)
        return builder.column()

    def __len__(self) -> int:
        return int(self.codes.size)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        code = int(self.codes[index])
        return None if code == MISSING else self.categories[code]

    def __iter__(self) -> Iterator[Any]:
        categories = list(self.categories)
        return (None if code == MISSING else categories[code] for code in self.codes.tolist())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CodedColumn({list(self)!r})"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """What ``np.asarray`` of the values as a list gives: text, or objects where a value is missing."""
        if dtype is None and (self.codes == MISSING).any():
            dtype = object
        return np.array(list(self), dtype=dtype)

    def missing(self, rows: np.ndarray) -> bool:
        """Whether every one of ``rows`` is None."""
        return bool((self.codes[rows] == MISSING).all())

    def mapped(self, rows: np.ndarray, convert: Callable[[list[Any]], Sequence[Any]]) -> np.ndarray:
        """``convert`` applied to the distinct values once (None included, last), then spread to
        ``rows``: what converting each row's value would give, as an array."""
        converted = np.asarray(convert([*self.categories, None]))
        return converted[self.codes[rows]]  # MISSING (-1) picks the converted None

    def values(self, rows: np.ndarray) -> np.ndarray:
        """The values of ``rows`` as an array: what ``np.asarray`` of them as a list gives."""
        codes = self.codes[rows]
        if (codes == MISSING).any():
            return np.asarray([None if c == MISSING else self.categories[c] for c in codes.tolist()], dtype=object)
        return np.asarray(list(self.categories))[codes]


class CodeBuilder:
    """Codes values as they come; ``column`` packs the distinct values."""

    def __init__(self) -> None:
        self._codes: dict[Hashable, int] = {}
        self._values = array("i")  # machine integers: no object per row

    def append(self, value: Hashable) -> None:
        if value is None:
            self._values.append(MISSING)
            return
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self._codes)
        self._values.append(code)

    def column(self) -> CodedColumn:
        distinct = list(self._codes)
        categories: Sequence[Any] = TextColumn.of(distinct) if all(type(v) is str for v in distinct) else tuple(distinct)
        return CodedColumn(np.frombuffer(self._values, dtype=np.intc).astype(np.int32), categories)


def as_text(values: Sequence[str]) -> TextColumn:
    """``values`` as a ``TextColumn`` (itself when it is one)."""
    return values if isinstance(values, TextColumn) else TextColumn.of(values)


def as_coded(values: Sequence[Any]) -> CodedColumn:
    """``values`` as a ``CodedColumn`` (itself when it is one)."""
    return values if isinstance(values, CodedColumn) else CodedColumn.of(values)


class FloatRows:
    """Rows of ``width`` floats appended one at a time (an image's statistics per case) into one
    flat array; they read back as tuples, or all at once as an ``(n, width)`` array."""

    __slots__ = ("_flat", "width")

    def __init__(self, width: int):
        self.width = width
        self._flat = array("d")

    @classmethod
    def of(cls, values: np.ndarray) -> FloatRows:
        """From an ``(n, width)`` array."""
        rows = cls(int(values.shape[1]))
        rows._flat.frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        return rows

    def append(self, row: Sequence[float]) -> None:
        if len(row) != self.width:
            raise ValueError(f"a row of {len(row)} values where {self.width} are expected")
        self._flat.extend(row)

    def __len__(self) -> int:
        return len(self._flat) // self.width

    def __iter__(self) -> Iterator[tuple[float, ...]]:
        values = self._flat.tolist()
        return (tuple(values[i : i + self.width]) for i in range(0, len(values), self.width))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FloatRows) and self.width == other.width and self._flat == other._flat

    __hash__ = None  # type: ignore[assignment]

    def array(self) -> np.ndarray:
        """The rows as an ``(n, width)`` float64 array (a copy)."""
        return np.frombuffer(self._flat, dtype=np.float64).reshape(-1, self.width).copy()
