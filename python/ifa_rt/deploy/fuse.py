"""The exact, cheaper inference form of an IFA segmentor (docs/model.md §4).

Algorithm (eval mode only):
  1. Fold every BatchNorm into the convolution before it (pairs found by one hooked run).
  2. Split the folded first MLP layer W (hidden × in) by columns, per level i, into A_i (the
     26 PE columns) and P_i (the feature columns). Because the MLP input is a concatenation,
     z(q) = b' + Σ_i (P_i f_i)[nearest_i(q)] + Σ_i A_i · PE_i(rel_i(q)).
  3. Run P_i as a 1×1 convolution (3×3 with `unfold`) at each level's *source* resolution,
     then gather with the reference's nearest indices (round half to even, as grid_sample).
  4. b' + Σ_i A_i · PE_i depends only on the shapes and the learned `emb`: compute it once
     per (shape, dtype, device) and cache it in the module, with the gather indices; the
     cache keeps planned sizes and a small LRU of others (``configure_cache``).
  5. The rest of the MLP runs as 1×1 convolutions on a [B, hidden, h, w] map; the
     1128-channel query tensor of the reference is never built.
  6. Memory layout: channels-last weights and activations; the first layer is summed in NHWC
     with one row gather per level (see ``_first_layer``).
"""

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..model.config import POS_DIM
from ..model.head import ensemble_weights, source_geometry, spatial_encoding

__all__ = ["DEFAULT_CACHE_SHAPES", "FusedIFA", "fold_batchnorms", "fuse_model"]

# Unplanned input sizes whose geometry stays cached: 4 covers a video's frame size plus a few
# others; each size costs hidden x (H/4) x (W/4) floats (11 MB at 360x480 for camvid-lite0).
DEFAULT_CACHE_SHAPES = 4


def fold_batchnorms(model: nn.Module, example: Tensor) -> list[str]:
    """Fold, in place, every BatchNorm whose input is exactly a Conv's output; return their names.

    The pairs are found by running ``example`` once with hooks (a BN consumes the very tensor a
    conv produced), so any architecture works without a table of attribute names.
    """
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, tuple] = {}
    pairs: list[tuple] = []

    def after_conv(conv: nn.Module, _inputs, output: Tensor) -> None:
        produced[id(output)] = (conv, output)  # keep the tensor alive so its id stays unique

    def before_bn(bn: nn.Module, inputs) -> None:
        entry = produced.get(id(inputs[0]))
        if entry is not None and entry[1] is inputs[0] and (entry[0], bn) not in pairs:
            pairs.append((entry[0], bn))

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            hooks.append(m.register_forward_hook(after_conv))
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            hooks.append(m.register_forward_pre_hook(before_bn))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    for conv, bn in pairs:
        _replace(model, names[conv], fuse_conv_bn_eval(conv, bn))
        _replace(model, names[bn], nn.Identity())
    return [names[bn] for _, bn in pairs]


def _replace(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _mlp_layers(imnet: nn.Sequential) -> list[tuple[Tensor, Tensor]]:
    """The (BN-folded) imnet MLP as (weight [out, in], bias) pairs, in order."""
    return [
        (m.weight[:, :, 0].detach(), m.bias.detach()) for m in imnet if isinstance(m, nn.Conv1d)
    ]


def _conv1x1(weight: Tensor, bias: Tensor | None) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=bias is not None)
    conv.weight.data.copy_(weight[:, :, None, None])
    if bias is not None:
        conv.bias.data.copy_(bias)
    return conv


class FusedIFA(nn.Module):
    """IFA in its exact decomposed inference form (docs/model.md §4): same logits, far less work.

    Built from a trained ``IFASegmentor`` by ``fuse_model``; scriptable; ``forward`` maps
    normalised float [B,3,H,W] to logits [B,C,H,W] at the input size, like the original.
    """

    cache: dict[str, Tensor]
    pinned: list[str]
    recent: list[str]
    cache_capacity: int
    pe_weight: list[list[list[float]]]
    emb: list[list[list[float]]]
    first_bias: list[float]

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        model = copy.deepcopy(model).eval()
        fold_batchnorms(model, torch.zeros(1, 3, 64, 64))
        head = model.decoder.ifa
        self.encoder = model.encoder
        neck = model.decoder
        self.enc1 = neck.enc1
        self.enc2 = neck.enc2
        self.enc3 = neck.enc3
        self.aspp = neck.aspp
        self.head = neck.head
        self.unfold = bool(head.unfold)
        self.local_ensemble = bool(head.local_ensemble)

        layers = _mlp_layers(head.imnet)
        first_w, first_b = layers[0]
        c = neck.channels
        feat_in = c * (9 if self.unfold else 1)
        per_level = POS_DIM + feat_in
        projections = []
        pe_weights = []
        for i in range(4):
            cols = first_w[:, i * per_level : (i + 1) * per_level]
            pe_weights.append(cols[:, :POS_DIM].clone())
            p = cols[:, POS_DIM:]
            if self.unfold:
                # F.unfold orders channels as c*9 + (ky*3 + kx): a 3×3 conv with padding 1.
                conv = nn.Conv2d(c, p.shape[0], 3, padding=1, bias=False)
                conv.weight.data.copy_(p.reshape(p.shape[0], c, 3, 3))
            else:
                conv = _conv1x1(p, None)
            projections.append(conv)
        self.proj = nn.ModuleList(projections)
        # PE weights and the learned frequencies stay fp32 (a buffer would be cast by .to(bf16),
        # and sin() of arguments up to ~64 needs fp32): the cached term is cast once per shape.
        self.pe_weight = [w.tolist() for w in pe_weights]
        self.emb = [getattr(head, f"pos{i + 1}").emb.detach().tolist() for i in range(4)]
        self.first_bias = first_b.tolist()
        self.mlp = nn.ModuleList([_conv1x1(w, b) for w, b in layers[1:]])
        # Per-shape constants; a shape group is kept while pinned (a planned input size, see
        # configure_cache) or among the `cache_capacity` most recently used other sizes, so
        # memory stays bounded whatever sizes a service is sent.
        self.cache = {}
        self.pinned = []
        self.recent = []
        self.cache_capacity = DEFAULT_CACHE_SHAPES

    def _neck(self, feats: list[Tensor]) -> list[Tensor]:
        return [
            self.enc1(feats[0]),
            self.enc2(feats[1]),
            self.enc3(feats[2]),
            self.head(self.aspp(feats[3])),
        ]

    def configure_cache(
        self, planned: list[list[int]], capacity: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        """Keep the geometry of the `planned` [H, W] input sizes for good, and of at most
        `capacity` other sizes (least recently used evicted first)."""
        if capacity < 0:
            raise ValueError(f"configure_cache: 'capacity': expected >= 0, got {capacity}")
        self.pinned = [self._group(hw[0], hw[1], dtype, device) for hw in planned]
        self.cache_capacity = capacity
        self._evict(capacity)

    def _group(self, height: int, width: int, dtype: torch.dtype, device: torch.device) -> str:
        """The cache prefix of one input size: every per-shape entry starts with it."""
        return f"{height}x{width}:{dtype}:{device}|"

    def _touch(self, group: str) -> None:
        """Mark `group` as just used; evict the least recently used unpinned ones over capacity
        (never `group` itself: its entries are made during this call)."""
        if group in self.pinned:
            return
        if group in self.recent:
            self.recent.remove(group)
        self.recent.append(group)
        self._evict(max(self.cache_capacity, 1))

    def _evict(self, keep: int) -> None:
        """Drop the least recently used unpinned groups until `keep` remain."""
        while len(self.recent) > keep:
            old = self.recent.pop(0)
            for key in list(self.cache.keys()):
                if key.startswith(old):
                    del self.cache[key]

    def _geometry(
        self, group: str, projected: list[Tensor], h: int, w: int, vy: float, vx: float
    ) -> str:
        """Fill the cache for one shift: "<key>" = [h, w, hidden] NHWC term bias + Σ A_i·PE_i
        (cast to the compute dtype), "<key>:rows<i>" = flat source-row indices per level."""
        key = f"{group}geo:{vy},{vx}"
        if key in self.cache:
            return key
        device = projected[0].device
        term = torch.tensor(self.first_bias, dtype=torch.float32, device=device).view(1, 1, -1)
        for i in range(4):
            hh, ww = projected[i].shape[2], projected[i].shape[3]
            sy = 0.0 if vy == 0.0 else vy / hh + 1e-6
            sx = 0.0 if vx == 0.0 else vx / ww + 1e-6
            iy, ry = source_geometry(h, hh, sy, device)
            ix, rx = source_geometry(w, ww, sx, device)
            rel = torch.stack([ry[:, None].expand(h, w), rx[None, :].expand(h, w)], dim=-1)
            emb = torch.tensor(self.emb[i], dtype=torch.float32, device=device)
            a = torch.tensor(self.pe_weight[i], dtype=torch.float32, device=device)
            term = term + torch.matmul(spatial_encoding(rel, emb), a.t())
            self.cache[key + f":rows{i}"] = (iy[:, None] * ww + ix[None, :]).reshape(-1)
        self.cache[key] = term.contiguous().to(projected[0].dtype)
        return key

    def _first_layer(
        self, group: str, projected: list[Tensor], h: int, w: int, vy: float, vx: float
    ) -> Tensor:
        """Pre-activation of the first MLP layer, [B, hidden, h, w] (channels-last memory).

        The sum runs in NHWC: each level's gather is one `index_select` of whole C-vectors on
        the rows of its [B·hh·ww, C] view, where gathering dims 2 and 3 of an NCHW map copied
        single floats (27 % of the frozen graph at 512×1024). The indices are the reference's
        (round half to even, as grid_sample), so the same values are summed in the same order.
        """
        key = self._geometry(group, projected, h, w, vy, vx)
        b = projected[0].shape[0]
        z = self.cache[key].unsqueeze(0)
        for i in range(4):
            p = projected[i].permute(0, 2, 3, 1)  # [B, hh, ww, C]: a view when channels-last
            hh, ww, c = p.shape[1], p.shape[2], p.shape[3]
            if not (hh == h and ww == w and vy == 0.0 and vx == 0.0):
                # (Same grid without a shift maps every query to its own pixel: no gather.)
                # Row offsets per image, also for b == 1: no branch on the batch size, so
                # traced exports (ONNX) keep a dynamic batch.
                offsets = torch.arange(b, device=p.device)[:, None] * (hh * ww)
                rows = (self.cache[key + f":rows{i}"][None, :] + offsets).reshape(-1)
                p = p.reshape(b * hh * ww, c).index_select(0, rows).view(b, h, w, c)
            z = z + p
        return z.permute(0, 3, 1, 2)

    def _mlp_rest(self, z: Tensor) -> Tensor:
        for conv in self.mlp:
            z = conv(torch.relu(z))
        # Back to NCHW for the upsample: its channels-last kernel rounds differently.
        return z.contiguous()

    def _ensemble_weights(
        self, group: str, feats: list[Tensor], h: int, w: int, dtype: torch.dtype
    ) -> Tensor:
        """LIIF area weights [4, 1, h, w] of the reference head, cached per shape."""
        key = f"{group}ens"
        if key not in self.cache:
            weights = ensemble_weights(feats, h, w).view(4, 1, h, w)
            self.cache[key] = weights.to(dtype)
        return self.cache[key]

    def forward(self, x: Tensor) -> Tensor:
        """Logits [B, C, H, W] for normalised float images [B, 3, H, W]."""
        return F.interpolate(
            self.coarse(x), size=[x.shape[2], x.shape[3]], mode="bilinear", align_corners=True
        )

    def coarse(self, x: Tensor) -> Tensor:
        """Logits [B, C, h, w] at the head's resolution (a quarter of the input's), before
        `forward`'s final bilinear upsample (align_corners=True)."""
        height, width = x.shape[2], x.shape[3]
        group = self._group(height, width, x.dtype, x.device)
        self._touch(group)
        feats = self._neck(self.encoder(x))
        h, w = feats[0].shape[2], feats[0].shape[3]
        projected: list[Tensor] = []
        for i, proj in enumerate(self.proj):
            projected.append(proj(feats[i]))
        if not self.local_ensemble:
            logits = self._mlp_rest(self._first_layer(group, projected, h, w, 0.0, 0.0))
        else:
            weights = self._ensemble_weights(group, feats, h, w, x.dtype)
            logits = torch.zeros(0)
            k = 0
            for vy, vx in [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)]:
                pred = self._mlp_rest(self._first_layer(group, projected, h, w, vy, vx))
                pred = pred * weights[k]
                logits = pred if k == 0 else logits + pred
                k += 1
        self._evict(self.cache_capacity)  # capacity 0: the size just served is not kept
        return logits


def fuse_model(model: nn.Module) -> FusedIFA:
    """The exact fused inference form of an eval-mode IFASegmentor (docs/model.md §4).

    Its convolution weights are channels-last: the artifact's input already is NHWC, and
    weights stay channels-last through scripting, saving and freezing, so no convolution
    reorders its weights or activations per call.
    """
    if model.training:
        raise ValueError(
            "fuse_model: 'model': expected eval mode (BatchNorm folding), got training mode"
        )
    return FusedIFA(model).to(memory_format=torch.channels_last)
