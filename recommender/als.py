"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) trained with the ``implicit`` library.

Confidence semantics, made explicit because ``implicit`` has its own: ``implicit`` 0.7
treats each stored matrix value ``v`` as the *confidence* ``c`` of a positive
preference (after multiplying by its own ``alpha``), and every unstored cell as
``c = 1, p = 0``. Its per-user normal equations are
``(YᵀY + Σ (c−1)·yᵢyᵢᵀ + λI) x = Σ c·yᵢ``.

We want the paper's ``c = 1 + alpha · w`` for an interaction weight ``w``, so this module
stores ``1 + alpha · w`` itself and passes ``alpha=1.0`` to ``implicit``. That keeps the
formula in one place and makes :func:`recommender.foldin.fold_in`, which solves the very
same equations, reproduce a trained user's factors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares


@dataclass(frozen=True)
class AlsModel:
    """Trained factors and the hyper-parameters fold-in must reuse.

    Attributes
    ----------
    user_factors
        ``float32`` array ``(n_users, factors)``, rows in the matrix's user order.
    item_factors
        ``float32`` array ``(n_items, factors)``, rows in the matrix's item order.
    regularization
        The L2 weight ``λ`` used in training.
    alpha
        The confidence slope: ``c = 1 + alpha · weight``.
    """

    user_factors: npt.NDArray[np.float32]
    item_factors: npt.NDArray[np.float32]
    regularization: float
    alpha: float

    @property
    def factors(self) -> int:
        """Number of latent factors."""
        return int(self.item_factors.shape[1])


def confidence_matrix(matrix: sp.spmatrix | sp.sparray, *, alpha: float) -> sp.csr_matrix:
    """Turn interaction weights into ALS confidences ``1 + alpha · w`` on stored cells.

    Non-positive weights are dropped first: they carry no positive preference, and a
    negative value would mean "disliked" to ``implicit``, a signal we do not model.

    Parameters
    ----------
    matrix
        Users × items weights.
    alpha
        Confidence slope (``Settings.als_alpha``).

    Returns
    -------
    scipy.sparse.csr_matrix
        ``float32`` confidences with only the positive-weight cells stored.
    """
    conf = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    conf.data[conf.data < 0.0] = 0.0
    conf.eliminate_zeros()
    conf.data = (1.0 + np.float32(alpha) * conf.data).astype(np.float32)
    conf.sort_indices()
    return conf


def train_als(
    matrix: sp.spmatrix | sp.sparray,
    *,
    factors: int = 128,
    iterations: int = 6,
    regularization: float = 10.0,
    alpha: float = 20.0,
    random_state: int = 0,
    num_threads: int = 1,
    use_cg: bool = True,
    cg_steps: int = 3,
    on_iteration: Callable[[int], None] | None = None,
) -> AlsModel:
    """Factorise a users × items weight matrix with implicit ALS.

    Runs ``implicit``'s CPU model with a fixed seed; with ``num_threads=1`` (the default)
    results are bit-for-bit repeatable, and training does not compete with the worker's
    event loop for cores. BLAS threading is not touched here (this package never reads or
    sets the environment); processes should run with ``OPENBLAS_NUM_THREADS=1``, without
    which ``implicit`` is many times slower.

    Parameters
    ----------
    matrix
        Users × items interaction weights (see :func:`recommender.interactions.build_matrix`).
    factors
        Latent dimensions.
    iterations
        ALS sweeps (each solves all users, then all items).
    regularization
        L2 weight ``λ``, applied unscaled to every row.
    alpha
        Confidence slope: ``c = 1 + alpha · weight``.
    random_state
        Seed of the initial factors.
    num_threads
        Solver threads; ``0`` means all cores.
    use_cg
        Conjugate-gradient solver (``implicit``'s default, faster) instead of exact
        Cholesky solves; both converge to the same fixed point.
    cg_steps
        Conjugate-gradient steps per row and iteration (``implicit``'s default 3), each
        started from the row's current factors.
    on_iteration
        Called with the number of iterations done after each one (a progress bar).

    Returns
    -------
    AlsModel
        ``float32`` user and item factors plus ``regularization`` and ``alpha``.

    Notes
    -----
    The defaults equal ``Settings.als_*`` and were chosen on validation splits of three
    datasets (``docs/quality.md``).

    Raises
    ------
    ValueError
        When the matrix has no users, no items or no positive entry.
    """
    conf = confidence_matrix(matrix, alpha=alpha)
    if conf.shape[0] == 0 or conf.shape[1] == 0 or conf.nnz == 0:
        raise ValueError(f"cannot train ALS on an empty matrix (shape {conf.shape})")
    model = AlternatingLeastSquares(
        factors=factors, regularization=regularization, alpha=1.0, dtype=np.float32,
        use_native=True, use_cg=use_cg, iterations=iterations,
        calculate_training_loss=False, num_threads=num_threads, random_state=random_state,
    )
    model.cg_steps = cg_steps  # not a constructor argument of implicit's CPU model
    model.fit(conf, show_progress=False, callback=_callback(on_iteration))
    return AlsModel(
        user_factors=np.ascontiguousarray(model.user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(model.item_factors, dtype=np.float32),
        regularization=float(regularization),
        alpha=float(alpha),
    )


def _callback(on_iteration: Callable[[int], None] | None
              ) -> Callable[..., None] | None:
    """``implicit``'s per-iteration ``callback(iteration, seconds, loss)`` reporting the
    iterations done to ``on_iteration``, or None."""
    if on_iteration is None:
        return None
    report = on_iteration

    def callback(iteration: int, *_: Any) -> None:
        report(iteration + 1)

    return callback
