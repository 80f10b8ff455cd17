"""The unit experiment revenue travels in, apart from :mod:`recommender.experiments`:
the worker writes revenue in it (``stream.experiments``) and must not import the report's
module, which loads ``scipy.stats`` for its chi-square test (~400 modules, ~50 MB more
per worker process, ~30,000 more objects for every full garbage collection)."""

from __future__ import annotations

#: Revenue travels in integer micro-units, a millionth of the price's currency unit
#: (exact sums; squares as floats): the worker writes them (``stream.experiments``), the
#: report reads them (:mod:`recommender.experiments`).
MICRO = 1_000_000
