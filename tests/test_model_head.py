"""IFA head facts (docs/model.md §1, §3): nearest index, positional encoding, parity, ensemble."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ifa_rt.model import (
    IFAConfig,
    IFAHead,
    SpatialEncoding,
    make_coord,
    nearest_source_index,
    source_geometry,
)
from ifa_rt.model.segmentor import IFADecoder


# ---- oracle: the reference's coordinate code (hzhupku/IFA ifa_utils.py) without `.cuda()` ----
def _ref_make_coord(shape, flatten=True):
    seqs = []
    for n in shape:
        r = (1 - (-1)) / (2 * n)
        seqs.append(-1 + r + (2 * r) * torch.arange(n).float())
    ret = torch.stack(torch.meshgrid(*seqs, indexing="ij"), dim=-1)
    return ret.view(-1, ret.shape[-1]) if flatten else ret


def _ref_ifa_feat(res, size):
    bs, hh, ww = res.shape[0], res.shape[-2], res.shape[-1]
    h, w = size
    coords = (_ref_make_coord((h, w)).flip(-1) + 1) / 2
    coords = coords.unsqueeze(0).expand(bs, *coords.shape)
    coords = (coords * 2 - 1).flip(-1)
    feat_coords = (
        _ref_make_coord((hh, ww), flatten=False).permute(2, 0, 1).unsqueeze(0).expand(bs, 2, hh, ww)
    )
    coords_ = coords.clone()
    coords_[:, :, 0] += 0
    coords_[:, :, 1] += 0
    coords_.clamp_(-1 + 1e-6, 1 - 1e-6)
    grid = coords_.flip(-1).unsqueeze(1)
    q_feat = F.grid_sample(res, grid, mode="nearest", align_corners=False)[:, :, 0, :].permute(
        0, 2, 1
    )
    q_coord = F.grid_sample(feat_coords, grid, mode="nearest", align_corners=False)[
        :, :, 0, :
    ].permute(0, 2, 1)
    rel = coords - q_coord
    rel[:, :, 0] *= hh
    rel[:, :, 1] *= ww
    return rel, q_feat


def _ref_context(head: IFAHead, feats, h, w):
    pos = [head.pos1, head.pos2, head.pos3, head.pos4]
    parts = []
    for i, f in enumerate(feats):
        rel, q = _ref_ifa_feat(f, [h, w])
        parts.append(torch.cat([pos[i](rel), q], dim=-1))
    return torch.cat(parts, dim=-1).permute(0, 2, 1)


def _grid_sample_index(n_query: int, n_source: int) -> torch.Tensor:
    c = (((make_coord(n_query) + 1) / 2) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)
    src = torch.arange(n_source, dtype=torch.float32).view(1, 1, n_source, 1)
    grid = torch.stack([torch.zeros_like(c), c], dim=-1).view(1, n_query, 1, 2)
    return F.grid_sample(src, grid, mode="nearest", align_corners=False).view(n_query).long()


def _exact_rational_index(n_query: int, n_source: int) -> list:
    from fractions import Fraction

    return [
        min(max(round(Fraction((2 * q + 1) * n_source - n_query, 2 * n_query)), 0), n_source - 1)
        for q in range(n_query)
    ]


def _feature_chain(n: int) -> list:
    """Per-axis sizes of layer1..4 for an n-pixel input (stride-2 convs, ceil-mode pool)."""
    s = (n - 1) // 2 + 1
    s = math.ceil((s + 2 - 3) / 2) + 1
    out = [s]
    for _ in range(3):
        s = (s - 1) // 2 + 1
        out.append(s)
    return out


def test_nearest_index_matches_grid_sample_over_many_pairs():
    rng = random.Random(0)
    pairs = {(251, 126), (3, 2), (14, 4), (291, 194)}
    for n in list(range(17, 1100, 13)) + [769, 1024, 2048, 513, 1025]:
        chain = _feature_chain(n)
        pairs.update((chain[0], s) for s in chain)
    pairs.update((rng.randint(1, 600), rng.randint(1, 600)) for _ in range(300))
    pairs.update((q, s) for q in range(1, 40) for s in range(1, q + 2))
    for nq, ns in sorted(pairs):
        assert torch.equal(nearest_source_index(nq, ns), _grid_sample_index(nq, ns)), (nq, ns)


def test_nearest_index_ties_round_half_to_even():
    # 126 → 251: query 125 sits exactly between source pixels 62 and 63; grid_sample picks 62.
    assert nearest_source_index(251, 126)[125].item() == 62
    # 2 → 3: the middle query ties between 0 and 1 and goes to the even one.
    assert nearest_source_index(3, 2).tolist() == [0, 0, 1]
    # 'nearest-exact' rounds half up at the same tie, so it is not the rule.
    exact = F.interpolate(torch.arange(126.0).view(1, 1, 126), size=251, mode="nearest-exact")
    assert exact[0, 0, 125].item() == 63


def test_nearest_index_fp32_decides_some_exact_ties():
    # In exact arithmetic 14 → 4 query 3 ties at 0.5 (→ 0); the fp32 coordinate lands just above.
    assert _exact_rational_index(14, 4)[3] == 0
    assert nearest_source_index(14, 4)[3].item() == 1 == _grid_sample_index(14, 4)[3].item()


def test_relative_offset_is_twice_source_pixel_offset():
    idx, rel = source_geometry(251, 126)
    assert rel.dtype == torch.float32
    q = (make_coord(251) + 1) / 2 * 2 - 1
    assert torch.equal(rel, (q - make_coord(126)[idx]) * 126.0)
    assert rel.abs().max().item() <= 1.0 + 1e-6
    assert rel[125].item() == pytest.approx(1.0, abs=1e-4)  # the tie: exactly half a source pixel


def test_make_coord_is_pixel_centres():
    assert torch.allclose(make_coord(4), torch.tensor([-0.75, -0.25, 0.25, 0.75]))


def test_spatial_encoding_init_and_values():
    pe = SpatialEncoding()
    m = (2 ** np.linspace(0, 6, 6)).astype(np.float32)
    expected = np.concatenate(
        [np.stack([m, np.zeros(6, np.float32)], -1), np.stack([np.zeros(6, np.float32), m], -1)]
    )
    assert pe.emb.shape == (12, 2) and pe.emb.requires_grad
    assert np.array_equal(pe.emb.detach().numpy(), expected)
    assert pe.emb[:6, 0].tolist() == pytest.approx(
        [1.0, 2.2973967, 5.2780316, 12.125733, 27.857618, 64.0]
    )
    rel = torch.tensor([[0.5, -0.25]])
    out = pe(rel)[0]
    assert out.shape == (26,)
    assert out[:2].tolist() == [0.5, -0.25]
    y = [0.5 * v for v in m] + [-0.25 * v for v in m]
    assert out[2:14].tolist() == pytest.approx([math.sin(v) for v in y], abs=1e-6)  # no π
    assert out[14:].tolist() == pytest.approx([math.cos(v) for v in y], abs=1e-6)


def _feats(sizes, channels=8, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, h, w, generator=g) for h, w in sizes]


SIZES = [(25, 33), (13, 17), (7, 9), (4, 5)]


def test_context_matches_reference_bit_for_bit():
    head = IFAHead(8, 5, (16, 8, 8)).eval()
    with torch.no_grad():
        head.pos2.emb.add_(0.1 * torch.randn(12, 2))  # trained emb may mix the axes
        feats = _feats(SIZES, batch=2)
        ours = head.context(feats, 25, 33)
        ref = _ref_context(head, feats, 25, 33)
    assert ours.shape == (2, head.in_channels, 25 * 33) == ref.shape
    assert torch.equal(ours, ref)


def test_decoder_matches_reference_forward():
    cfg = IFAConfig(backbone="resnet18", num_classes=5, neck_channels=8, mlp_hidden=(16, 8, 8))
    dec = IFADecoder([64, 128, 256, 512], cfg).eval()
    feats = [torch.randn(1, c, h, w) for c, (h, w) in zip([64, 128, 256, 512], SIZES, strict=False)]
    with torch.no_grad():
        ours = dec.decode(feats)
        enc = dec.encode(feats)
        ref = dec.ifa.imnet(_ref_context(dec.ifa, enc, 25, 33)).view(1, -1, 25, 33)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)


def test_unfold_widens_features_nine_times():
    head = IFAHead(8, 5, (16,), unfold=True).eval()
    assert head.in_channels == 4 * (26 + 8 * 9)
    with torch.no_grad():
        feats = _feats(SIZES)
        ctx = head.context(feats, 25, 33)
        assert ctx.shape[1] == head.in_channels
        # The centre tap of the 3×3 neighbourhood is the plain nearest feature.
        plain = IFAHead(8, 5, (16,)).eval().context(feats, 25, 33)
        centre = ctx[:, 26 : 26 + 72].view(1, 8, 9, -1)[:, :, 4]
        assert torch.equal(centre, plain[:, 26:34])


def test_local_ensemble_weights_sum_to_one_and_match_liif_for_one_level():
    head = IFAHead(8, 5, (16,), local_ensemble=True)
    f = torch.zeros(1, 8, 7, 9)
    w = head.ensemble_weights([f], 25, 33)
    assert w.shape == (4, 25 * 33)
    assert torch.allclose(w.sum(0), torch.ones(25 * 33), atol=1e-6)
    # LIIF (models/liif.py): area of each shift, then swap 0↔3, 1↔2, normalise by the total.
    areas = []
    for vy in (-1, 1):
        for vx in (-1, 1):
            ry = source_geometry(25, 7, vy / 7 + 1e-6)[1]
            rx = source_geometry(33, 9, vx / 9 + 1e-6)[1]
            areas.append((ry[:, None] * rx[None, :]).abs().reshape(-1) + 1e-9)
    tot = sum(areas)
    liif = torch.stack([areas[3], areas[2], areas[1], areas[0]]) / tot
    assert torch.allclose(w, liif, atol=1e-5)


def test_local_ensemble_equals_plain_when_all_shifts_hit_one_pixel():
    plain = IFAHead(8, 5, (16, 8)).eval()
    ens = IFAHead(8, 5, (16, 8), local_ensemble=True).eval()
    ens.load_state_dict(plain.state_dict())
    feats = _feats([(1, 1)] * 4)  # 1×1 sources: every shift selects the same pixel
    with torch.no_grad():
        a = plain.query(feats, 5, 7)
        b = ens.query(feats, 5, 7)
    assert torch.allclose(a, b, atol=1e-6)


def test_local_ensemble_differs_from_plain_and_is_finite():
    plain = IFAHead(8, 5, (16, 8)).eval()
    ens = IFAHead(8, 5, (16, 8), local_ensemble=True).eval()
    ens.load_state_dict(plain.state_dict())
    feats = _feats(SIZES)
    with torch.no_grad():
        a, b = plain(feats), ens(feats)
    assert a.shape == b.shape == (1, 5, 25, 33)
    assert torch.isfinite(b).all() and not torch.allclose(a, b)


def test_emb_gets_gradients():
    head = IFAHead(8, 5, (16,)).train()
    head(_feats(SIZES, batch=2)).sum().backward()
    for pos in (head.pos1, head.pos2, head.pos3, head.pos4):
        assert pos.emb.grad is not None and pos.emb.grad.abs().sum() > 0
