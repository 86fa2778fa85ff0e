"""N:M structured-sparse storage format (version 1), in pure PyTorch.

A weight ``w[rows, K]`` (``K % m == 0``) that holds at most ``n`` nonzeros in
every group of ``m`` consecutive elements of a row is stored as

* ``values[rows, K * n // m]`` in ``w``'s dtype: the kept elements of each
  group in ascending column order. A group with fewer than ``n`` nonzeros keeps
  explicit zeros at its lowest-index zero positions.
* ``meta[rows, ceil(K / 8)]`` uint8: the dense keep-mask, bit ``c`` of a row at
  byte ``c // 8``, bit ``c % 8``. Exactly ``n`` bits are set per group, so 2:4
  costs 4 bits per group (2 bits per kept value) and N:M costs ``m`` bits per
  group.

The kernels (``torch.ops.effdl.nm_compress`` / ``nm_decompress`` / ``nm_linear``)
and the references here implement the same format; it is what ``state_dict``
holds, so it is the same on every device.
"""

from __future__ import annotations

import torch

FORMAT_VERSION = 1
MAX_M = 16


def check_pattern(n: int, m: int) -> None:
    """Raise ``ValueError`` unless ``1 <= n < m <= 16``."""
    if not (isinstance(n, int) and isinstance(m, int) and 1 <= n < m <= MAX_M):
        raise ValueError(f"the N:M pattern needs 1 <= n < m <= {MAX_M}, got n={n}, m={m}")


def meta_bytes(K: int) -> int:
    """Bytes of metadata per row for ``K`` dense columns."""
    return (K + 7) // 8


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Pack a bool mask ``[rows, K]`` into uint8 ``[rows, ceil(K/8)]`` (bit c at byte c//8, bit c%8)."""
    rows, K = mask.shape
    pad = meta_bytes(K) * 8 - K
    bits = torch.nn.functional.pad(mask.to(torch.uint8), (0, pad)).reshape(rows, meta_bytes(K), 8)
    weights = (2 ** torch.arange(8, device=mask.device, dtype=torch.int32)).to(torch.uint8)
    return (bits * weights).sum(-1, dtype=torch.int32).to(torch.uint8)


def unpack_mask(meta: torch.Tensor, K: int) -> torch.Tensor:
    """Inverse of :func:`pack_mask`: uint8 ``[rows, ceil(K/8)]`` -> bool ``[rows, K]``."""
    shifts = torch.arange(8, device=meta.device, dtype=torch.int32)
    bits = (meta.to(torch.int32).unsqueeze(-1) >> shifts) & 1
    return bits.reshape(meta.shape[0], meta.shape[1] * 8)[:, :K].bool()


def nm_mask(w: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """The magnitude mask that makes ``w`` N:M sparse.

    Args:
        w: ``[rows, K]`` float weight, ``K % m == 0``.
    Returns:
        bool ``[rows, K]``: for each group of ``m`` consecutive elements of a row,
        True at the ``n`` largest ``|w|`` (ties broken towards the lower column).
    """
    check_pattern(n, m)
    if w.dim() != 2 or w.shape[1] % m:
        raise ValueError(f"nm_mask: w must be 2-D with K % m == 0 (m={m}), got shape {tuple(w.shape)}")
    rows, K = w.shape
    groups = w.detach().abs().float().reshape(rows, K // m, m)  # reshape: w may be strided
    # stable descending sort keeps the lower column first among equal magnitudes
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices[..., :n]
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, order, True)
    return mask.reshape(rows, K)


def keep_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The stored keep-mask of an already N:M-sparse ``w``: its nonzeros plus, in
    groups with fewer than ``n`` of them, the lowest-index zeros. Raises
    ``RuntimeError`` naming the first row and group with more than ``n`` nonzeros."""
    rows, K = w.shape
    nz = (w != 0).reshape(rows, K // m, m)
    count = nz.sum(-1)
    bad = count > n
    if bool(bad.any()):
        first = int(torch.nonzero(bad.flatten())[0])
        r, g = divmod(first, K // m)
        raise RuntimeError(
            f"effdl.nm_compress: w is not {n}:{m} sparse: row {r}, group {g} "
            f"(columns {g * m}..{g * m + m - 1}) has {int(count[r, g])} nonzeros, at most {n} allowed; "
            "prune it first (effdl.formats.nm_mask)"
        )
    zero_rank = torch.cumsum((~nz).to(torch.int32), -1)
    keep = nz | (~nz & (zero_rank <= (n - count).unsqueeze(-1)))
    return keep.reshape(rows, K)


def kept_columns(meta: torch.Tensor, K: int, n: int, m: int) -> torch.Tensor:
    """Column index of every stored value: int64 ``[rows, K*n/m]`` from ``meta``.

    Assumes a valid mask (exactly ``n`` bits per group); see :func:`validate`.
    """
    rows = meta.shape[0]
    mask = unpack_mask(meta, K).reshape(rows, K // m, m)
    # a stable sort of (not kept) puts the kept positions first, in ascending order
    pos = torch.sort((~mask).to(torch.uint8), dim=-1, stable=True).indices[..., :n]
    base = torch.arange(0, K, m, device=meta.device).reshape(1, K // m, 1)
    return (pos + base).reshape(rows, K // m * n)


def validate(values: torch.Tensor, meta: torch.Tensor, n: int, m: int) -> int:
    """Check an N:M pair and return ``K``; raises ``ValueError`` on any mismatch."""
    check_pattern(n, m)
    if values.dim() != 2 or values.shape[1] % n:
        raise ValueError(f"values must be 2-D [rows, K*n/m], got shape {tuple(values.shape)}")
    K = values.shape[1] // n * m
    if meta.dtype != torch.uint8 or tuple(meta.shape) != (values.shape[0], meta_bytes(K)):
        raise ValueError(
            f"meta must be uint8 of shape {(values.shape[0], meta_bytes(K))}, got {meta.dtype} {tuple(meta.shape)}"
        )
    mask = unpack_mask(meta, K)
    counts = mask.reshape(values.shape[0], K // m, m).sum(-1)
    if bool((counts != n).any()):
        first = int(torch.nonzero((counts != n).flatten())[0])
        r, g = divmod(first, K // m)
        raise ValueError(f"meta row {r}, group {g} has {int(counts[r, g])} kept positions, expected {n}")
    tail = unpack_mask(meta, meta_bytes(K) * 8)[:, K:]
    if bool(tail.any()):
        raise ValueError(f"meta has bits set past K={K}")
    return K
