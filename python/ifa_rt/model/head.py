"""The IFA head: nearest-source gather + positional encoding + one shared MLP (model.md §1, §3).

LIIF-shaped (yinboc/liif ``models/liif.py``): features are encoded once by the neck, then
``IFAHead.query`` predicts logits at every point of the query grid. All geometry is computed
per axis, because the query grid and every source grid are separable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import POS_DIM, mlp_in_channels

__all__ = [
    "IFAHead",
    "ensemble_weights",
    "SpatialEncoding",
    "make_coord",
    "nearest_source_index",
    "source_geometry",
    "spatial_encoding",
]

# Constants are literals below because TorchScript cannot close over module-level floats:
# the reference clamps sampling coordinates to ±(1 − 1e-6); LIIF shifts by 1e-6 to break ties
# and adds 1e-9 to every ensemble area.


def make_coord(n: int, device: torch.device | None = None) -> Tensor:
    """Pixel-centre coordinates of an n-pixel axis in [-1, 1] — the align_corners=False convention.

    v_k = -1 + (2k+1)/n, computed with the reference's exact fp32 op sequence (docs/model.md §1),
    because nearest-pixel ties are decided by the last bit of these values.
    """
    r = 1.0 / n
    return (-1.0 + r) + (2.0 * r) * torch.arange(n, dtype=torch.float32, device=device)


def _query_coord(n: int, device: torch.device | None) -> Tensor:
    # The reference maps the query grid to [0, 1] and back; in fp32 that round trip can move a
    # coordinate by one ulp, so it is kept to reproduce the reference's tie decisions.
    return ((make_coord(n, device) + 1.0) / 2.0) * 2.0 - 1.0


def source_geometry(
    n_query: int, n_source: int, shift: float = 0.0, device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Per-axis nearest source index [n_query] (int64) and relative offset [n_query] (fp32).

    Reproduces ``F.grid_sample(mode='nearest', align_corners=False)`` on coordinates clamped to
    ±(1 − 1e-6), bit for bit (docs/model.md §1):
      1. q = query pixel centre (+ ``shift``, in [-1, 1] units), clamped;
      2. u = fma(q + 1, n_source / 2, −0.5) in fp32 — the x86 CPU kernel's unnormalisation,
         which the compiler contracts into one fused multiply-add (without the FMA, 1 pair in
         45k differs); CUDA's ((q+1)·n − 1)/2 contracted to an FMA is the same number (not yet
         checked on a GPU). Emulated exactly in fp64, where a product of two fp32 is exact;
      3. index = round-half-to-even(u), i.e. nearbyint((k+0.5)·n_source/n_query − 0.5) up to the
         fp32 rounding of q, which decides the exact ties (e.g. 126 → 251: query 125 → 62).
    The offset is (q_unshifted − source centre) · n_source: 2 × the offset in source pixels.
    """
    q = _query_coord(n_query, device)
    qs = (q + shift).clamp(-1.0 + 1e-6, 1.0 - 1e-6)
    u = ((qs + 1.0).double() * (n_source / 2.0) - 0.5).float()
    idx = torch.round(u).long().clamp(0, n_source - 1)
    rel = (q - make_coord(n_source, device)[idx]) * float(n_source)
    return idx, rel


def nearest_source_index(n_query: int, n_source: int, device: torch.device | None = None) -> Tensor:
    """Nearest n_source-grid pixel of each n_query-grid pixel, as grid_sample picks (§1)."""
    return source_geometry(n_query, n_source, 0.0, device)[0]


def spatial_encoding(rel: Tensor, emb: Tensor) -> Tensor:
    """[rel, sin(rel @ emb.T), cos(rel @ emb.T)] along the last dim — no π (docs/model.md §1)."""
    y = torch.matmul(rel, emb.t())
    return torch.cat([rel, torch.sin(y), torch.cos(y)], dim=-1)


def ensemble_weights(feats: list[Tensor], h: int, w: int) -> Tensor:
    """LIIF ensemble weights [4, h·w] for shifts (−,−), (−,+), (+,−), (+,+); they sum to 1.

    Each shift's weight is the area of the *opposite* diagonal rectangle (LIIF's bilinear
    rule); across the 4 levels the per-level weights multiply, which keeps the prediction
    continuous wherever any level's nearest pixel switches. Done in log space, then softmax.
    """
    logs: list[Tensor] = []
    for vy, vx in [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)]:
        acc = torch.zeros(h, w, dtype=torch.float32, device=feats[0].device)
        for f in feats:
            hh, ww = f.shape[2], f.shape[3]
            ry = source_geometry(h, hh, vy / hh + 1e-6, f.device)[1]
            rx = source_geometry(w, ww, vx / ww + 1e-6, f.device)[1]
            acc = acc + torch.log((ry[:, None] * rx[None, :]).abs() + 1e-9)
        logs.append(acc.reshape(-1))
    # The weight of shift s is the area of shift 3 − s (the opposite corner).
    opposite = torch.stack([logs[3], logs[2], logs[1], logs[0]], dim=0)
    return torch.softmax(opposite, dim=0)


class SpatialEncoding(nn.Module):
    """Learned Fourier encoding of a 2-D offset: 2 + 2·12 = 26 outputs (docs/model.md §1).

    ``emb`` [12, 2] starts as rows 0–5 = [m_k, 0], rows 6–11 = [0, m_k], m = 2**linspace(0, 6, 6),
    and is trained, so after training it may mix the axes.
    """

    def __init__(self, n_freq: int = 6, sigma: float = 6.0) -> None:
        super().__init__()
        m = torch.pow(2.0, torch.linspace(0.0, sigma, n_freq, dtype=torch.float64))
        z = torch.zeros_like(m)
        emb = torch.cat([torch.stack([m, z], dim=-1), torch.stack([z, m], dim=-1)], dim=0)
        self.emb = nn.Parameter(emb.float())
        self.out_dim = 2 + 2 * emb.shape[0]

    def forward(self, rel: Tensor) -> Tensor:
        return spatial_encoding(rel, self.emb)


def _mlp(cin: int, hidden: Sequence[int], num_classes: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for h in hidden:
        mods += [nn.Conv1d(cin, h, 1), nn.BatchNorm1d(h), nn.ReLU()]
        cin = h
    mods.append(nn.Conv1d(cin, num_classes, 1))
    return nn.Sequential(*mods)


class IFAHead(nn.Module):
    """Implicit feature alignment: per query, 4 levels of [PE(offset) | nearest feature] → MLP.

    Keys ``pos1..pos4`` (``emb``) and ``imnet`` (Conv1d/BN1d, indices 0,1,3,4,6,7,9 for 3 hidden
    layers) as in the reference (docs/model.md §1–2).

    Args:
        channels: feature channels per level (the neck width).
        num_classes: logits per query.
        mlp_hidden: hidden widths of ``imnet``.
        unfold: LIIF feature unfolding — each level's feature becomes its 3×3 neighbourhood (×9).
        local_ensemble: LIIF local ensemble, done correctly (docs/model.md §3): see ``query``.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        mlp_hidden: Sequence[int] = (512, 256, 256),
        unfold: bool = False,
        local_ensemble: bool = False,
    ) -> None:
        super().__init__()
        self.pos1 = SpatialEncoding()
        self.pos2 = SpatialEncoding()
        self.pos3 = SpatialEncoding()
        self.pos4 = SpatialEncoding()
        self.unfold = unfold
        self.local_ensemble = local_ensemble
        if self.pos1.out_dim != POS_DIM:
            raise ValueError(
                f"IFAHead: positional encoding width: expected {POS_DIM}, got {self.pos1.out_dim}"
            )
        self.in_channels = mlp_in_channels(channels, unfold)
        self.imnet = _mlp(self.in_channels, mlp_hidden, num_classes)
        self.num_classes = num_classes

    def context(
        self, feats: list[Tensor], h: int, w: int, vy: float = 0.0, vx: float = 0.0
    ) -> Tensor:
        """MLP input [B, in_channels, h·w] for queries shifted by (vy, vx) source half-pixels.

        Level order and per-level layout [PE (26) | feature] follow the reference's concat.
        """
        embs = [self.pos1.emb, self.pos2.emb, self.pos3.emb, self.pos4.emb]
        parts: list[Tensor] = []
        for i, f in enumerate(feats):
            b, c, hh, ww = f.shape[0], f.shape[1], f.shape[2], f.shape[3]
            if self.unfold:
                f = F.unfold(f, 3, padding=1).view(b, c * 9, hh, ww)
            sy = 0.0 if vy == 0.0 else vy / hh + 1e-6
            sx = 0.0 if vx == 0.0 else vx / ww + 1e-6
            iy, ry = source_geometry(h, hh, sy, f.device)
            ix, rx = source_geometry(w, ww, sx, f.device)
            flat = (iy[:, None] * ww + ix[None, :]).reshape(-1)
            rel = torch.stack([ry[:, None].expand(h, w), rx[None, :].expand(h, w)], dim=-1).reshape(
                -1, 2
            )
            pe = spatial_encoding(rel, embs[i]).t().to(f.dtype)
            parts.append(pe.unsqueeze(0).expand(b, pe.shape[0], pe.shape[1]))
            parts.append(f.flatten(2).index_select(2, flat))
        return torch.cat(parts, dim=1)

    def ensemble_weights(self, feats: list[Tensor], h: int, w: int) -> Tensor:
        """LIIF ensemble weights [4, h·w] (see ``ensemble_weights``)."""
        return ensemble_weights(feats, h, w)

    def query(self, feats: list[Tensor], h: int, w: int) -> Tensor:
        """Logits [B, num_classes, h, w] at the pixel centres of an h×w query grid (model.md §1)."""
        b = feats[0].shape[0]
        if not self.local_ensemble:
            return self.imnet(self.context(feats, h, w)).view(b, -1, h, w)
        weights = self.ensemble_weights(feats, h, w)
        out = torch.zeros(0)
        k = 0
        for vy, vx in [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)]:
            pred = self.imnet(self.context(feats, h, w, vy, vx)) * weights[k].to(feats[0].dtype)
            out = pred if k == 0 else out + pred
            k += 1
        return out.view(b, -1, h, w)

    def forward(self, feats: list[Tensor]) -> Tensor:
        # The query grid is the finest level's grid (layer1, stride 4) as in the reference.
        return self.query(feats, feats[0].shape[2], feats[0].shape[3])
