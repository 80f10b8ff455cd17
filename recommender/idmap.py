"""Dense integer indices for string ids (users, items).

Matrices and factor arrays are addressed by row number, while events and Redis speak in
string ids. :class:`IdMap` is the one place that translates between the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice

import numpy as np
import numpy.typing as npt


class IdMap:
    """A growable bijection between string ids and the indices ``0 .. len-1``.

    Indices are handed out in first-seen order and never change once given, so an array
    row ``i`` keeps meaning ``id_of(i)`` for as long as the map lives.

    Parameters
    ----------
    ids
        Initial ids, indexed in iteration order; repeated ids keep their first index.
    """

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        for id_ in ids:
            self.add(id_)

    def index(self, id: str) -> int | None:
        """Return the index of ``id``, or ``None`` when it has never been added.

        Parameters
        ----------
        id
            The string id to look up.

        Returns
        -------
        int or None
            Its dense index, or ``None`` for an unknown id (lookups never grow the map).
        """
        return self._index.get(id)

    def add(self, id: str) -> int:
        """Return the index of ``id``, giving it the next free index if it is new.

        Parameters
        ----------
        id
            The string id to look up or add.

        Returns
        -------
        int
            Its dense index (``len(self) - 1`` when it was just added).
        """
        found = self._index.get(id)
        if found is not None:
            return found
        new = len(self._ids)
        self._index[id] = new
        self._ids.append(id)
        return new

    def add_all(self, ids: Iterable[str]) -> npt.NDArray[np.int64]:
        """The index of every id in ``ids``, new ones added in first-seen order: what
        :meth:`add` gives one by one, without a method call per id (the full retrain
        indexes two ids for each of a million events)."""
        index = self._index
        known = len(index)
        setdefault = index.setdefault
        # len(index) is read before setdefault inserts: a new id gets the next index.
        found = np.fromiter((setdefault(id_, len(index)) for id_ in ids), dtype=np.int64)
        # Dicts keep insertion order: the new ids are the last ones, read from the end
        # (skipping the known ones from the start would cost the map's size per call).
        added = list(islice(reversed(index), len(index) - known))
        self._ids.extend(reversed(added))
        return found

    def indices(self, ids: Iterable[str], add: bool = False) -> npt.NDArray[np.int64]:
        """Translate many ids at once, for building index arrays.

        Parameters
        ----------
        ids
            The string ids, in the order wanted in the result.
        add
            When true, unknown ids are added (the map grows); when false they become
            ``-1`` so callers can mask them without a second lookup.

        Returns
        -------
        numpy.ndarray
            ``int64`` array of the same length as ``ids``.
        """
        if add:
            return self.add_all(ids)
        get = self._index.get
        return np.fromiter((get(i, -1) for i in ids), dtype=np.int64)

    def id_of(self, index: int) -> str:
        """Return the string id at ``index``.

        Parameters
        ----------
        index
            A dense index in ``0 .. len(self) - 1``.

        Returns
        -------
        str
            The id that was given that index.

        Raises
        ------
        IndexError
            When ``index`` is negative or not yet assigned (negative indices are padding
            or "unknown" markers elsewhere in this package, never Python-style offsets).
        """
        i = int(index)
        if i < 0 or i >= len(self._ids):
            raise IndexError(f"no id at index {i} (map has {len(self._ids)})")
        return self._ids[i]

    def ids_of(self, indices: Iterable[int] | npt.NDArray[np.integer]) -> list[str]:
        """Translate index arrays (such as :func:`recommender.topn.top_n` rows) to ids.

        Negative indices are padding markers and are skipped, so a padded row of
        recommendations maps straight to the list of ids it holds.

        Parameters
        ----------
        indices
            Dense indices; values below zero are dropped.

        Returns
        -------
        list of str
            The ids, in the order of ``indices``.
        """
        ids = self._ids
        flat = np.asarray(indices, dtype=np.int64).ravel()
        return [ids[i] for i in flat[flat >= 0].tolist()]

    @property
    def ids(self) -> list[str]:
        """All ids in index order (a copy: changing it does not change the map)."""
        return list(self._ids)

    @property
    def id_list(self) -> Sequence[str]:
        """All ids in index order, the map's own list (read only: use :meth:`add` to grow
        the map); for callers that translate many indices in a tight loop, where a call
        of :meth:`id_of` each cost more than the lookups."""
        return self._ids

    @property
    def index_map(self) -> Mapping[str, int]:
        """The id → index mapping itself (read only: use :meth:`add` to grow the map);
        for callers that look up many ids in a tight loop."""
        return self._index

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __repr__(self) -> str:
        return f"IdMap(<{len(self._ids)} ids>)"
