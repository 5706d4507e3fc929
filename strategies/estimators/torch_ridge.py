"""The heavy products of :class:`~strategies.estimators.feature_ridge.RandomFeatureRidge` on a
torch device (a GPU), with the NumPy path as the reference.

Each function takes and returns NumPy arrays; inside, the inputs, the random projection and
the products live on ``device`` in the projection's dtype. Their results equal the NumPy
path's to rounding (tested on the CPU device).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import lapack


def _on(device: str, *arrays: np.ndarray, dtype: torch.dtype) -> list[torch.Tensor]:
    return [torch.as_tensor(np.ascontiguousarray(a), device=device).to(dtype) for a in arrays]


def relu_gram(A: np.ndarray, B: np.ndarray | None, W: np.ndarray, device: str,
              width: int) -> np.ndarray:
    """``relu(A·W) relu(B·W)ᵀ`` (len(A), len(B)) (``B=None``: ``B = A``), over column blocks.

    ``A`` (n_a, D), ``B`` (n_b, D), ``W`` (D, M); ``width`` feature columns per block.
    """
    dtype = torch.float64 if W.dtype == np.float64 else torch.float32
    a, w = _on(device, A, W, dtype=dtype)
    b = a if B is None else _on(device, B, dtype=dtype)[0]
    out = torch.zeros(len(a), len(b), dtype=dtype, device=device)
    for s in range(0, w.shape[1], width):
        ha = torch.relu(a @ w[:, s:s + width])
        out += ha @ (ha if B is None else torch.relu(b @ w[:, s:s + width])).T
    return out.cpu().numpy()


def relu_transpose_product(X: np.ndarray, W: np.ndarray, alpha: np.ndarray, device: str,
                           width: int) -> np.ndarray:
    """``relu(X·W)ᵀ α`` (M, C) for ``X`` (n, D), ``W`` (D, M), ``alpha`` (n, C)."""
    dtype = torch.float64 if W.dtype == np.float64 else torch.float32
    x, w, a = _on(device, X, W, alpha, dtype=dtype)
    out = torch.empty(w.shape[1], a.shape[1], dtype=dtype, device=device)
    for s in range(0, w.shape[1], width):
        out[s:s + width] = torch.relu(x @ w[:, s:s + width]).T @ a
    return out.cpu().numpy()


def cholesky_solve_upper(G: np.ndarray, Q: np.ndarray, lam: float,
                         device: str) -> tuple[np.ndarray, float]:
    """Solve ``(G + λI) B = Q`` on ``device`` for ``G`` (M, M) given by its upper triangle.

    Returns ``(B, condition number)``; the 1-norm condition number is LAPACK's ``?pocon``
    estimate from the factor (brought back to the CPU). Raises
    ``numpy.linalg.LinAlgError`` when ``G + λI`` is not positive definite at this precision.
    """
    dtype = torch.float64 if G.dtype == np.float64 else torch.float32
    g, q = _on(device, G, Q, dtype=dtype)
    A = torch.triu(g) + torch.triu(g, 1).T
    del g
    anorm = float(A.abs().sum(dim=0).max()) + lam
    A.diagonal().add_(lam)
    L, info = torch.linalg.cholesky_ex(A)
    del A
    if int(info) != 0:
        raise np.linalg.LinAlgError(f"G + λI is not positive definite (leading minor {int(info)}).")
    B = torch.cholesky_solve(q, L)
    factor = L.cpu().numpy()
    pocon = lapack.get_lapack_funcs("pocon", (factor,))
    rcond, _ = pocon(np.asfortranarray(factor), anorm, uplo="L")
    return B.cpu().numpy(), (float("inf") if rcond == 0 else 1.0 / float(rcond))
