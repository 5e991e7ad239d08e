# ruff: noqa: E501  (exact error messages are asserted verbatim)
"""Device-memory I/O: DLPack and CUDA tensors in, labels/logits out without a host round trip
on a CUDA engine, ordered on the caller's stream; host engines take host DLPack arrays as
views and refuse device-memory calls with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ifa_rt
from _reliability import rand_images
from ifa_rt import Segmenter, _core


class HostDLPack:
    """A foreign array exporting host memory through DLPack only (no numpy/torch type)."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def test_host_dlpack_arrays_are_segmented_like_numpy(tiny):
    seg = Segmenter(tiny, shapes=[(32, 48)], max_batch=2, threads=1)
    batch = rand_images(3, 32, 48, seed=11)
    want = seg(batch)
    np.testing.assert_array_equal(seg(HostDLPack(batch)), want)
    listed = seg([HostDLPack(batch[0]), batch[1]])
    np.testing.assert_array_equal(np.stack(listed), want[:2])
    np.testing.assert_allclose(seg.logits(HostDLPack(batch)), seg.logits(batch))


def test_other_objects_are_refused_by_type(tiny):
    seg = Segmenter(tiny, shapes=[(32, 48)], threads=1)
    with pytest.raises(TypeError) as err:
        seg(object())
    assert str(err.value) == (
        "Segmenter.segment: input 'images': expected a numpy array, PIL image, torch tensor or "
        "DLPack array in host or CUDA memory (or a list of them), got object"
    )


def test_device_memory_calls_need_the_cuda_engine(tiny):
    """The extension's device-memory entry points refuse a CPU engine before reading memory,
    after the same input checks as a host call, and the engine still serves."""
    seg = Segmenter(tiny, shapes=[(32, 48)], threads=1)
    batch = rand_images(2, 32, 48, seed=12)
    labels = np.empty((2, 32, 48), np.uint8)
    view = _core.DeviceArray(
        batch.ctypes.data, list(batch.shape), [32 * 48 * 3, 48 * 3, 3, 1], "uint8"
    )
    with pytest.raises(ValueError) as err:
        seg._engine.segment_device(view, labels.ctypes.data, labels.size, 0)
    assert str(err.value) == (
        "Segmenter.segment_on_device: option 'device': expected a CUDA device (device-memory "
        "calls run on the CUDA engine), got 'cpu'"
    )
    bad = _core.DeviceArray(
        batch.ctypes.data, list(batch.shape), [32 * 48 * 3, 48 * 3, 3, 1], "float32"
    )
    with pytest.raises(
        ValueError,
        match=r"^Segmenter.segment_on_device: input 'images': expected dtype uint8, got float32$",
    ):
        seg._engine.segment_device(bad, labels.ctypes.data, labels.size, 0)
    with pytest.raises(
        ValueError,
        match=r"^Segmenter.segment_on_device: output 'labels': expected 3072 uint8 elements, got 7$",
    ):
        seg._engine.segment_device(view, labels.ctypes.data, 7, 0)
    np.testing.assert_array_equal(seg(batch), Segmenter(tiny, shapes=[(32, 48)], threads=1)(batch))


# --- CUDA (skips without a GPU) ---------------------------------------------------------------

cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or not ifa_rt._core.has_cuda_engine(),
    reason="needs a CUDA device and the CUDA engine",
)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("plan_logits", [False, True])
def test_cuda_tensors_stay_on_the_device(tiny, plan_logits):
    seg = Segmenter(tiny, device="cuda", shapes=[(32, 48)], max_batch=4, plan_logits=plan_logits)
    batch = rand_images(6, 32, 48, seed=13)
    host = seg(batch)
    host_logits = seg.logits(batch)
    before = seg.stats()
    on_device = torch.from_numpy(batch).cuda()
    labels = seg(on_device)
    assert labels.is_cuda and labels.dtype == torch.uint8 and tuple(labels.shape) == (6, 32, 48)
    np.testing.assert_array_equal(labels.cpu().numpy(), host)
    logits = seg.logits(on_device)
    assert logits.is_cuda and logits.dtype == torch.float32
    np.testing.assert_allclose(logits.cpu().numpy(), host_logits, rtol=1e-4, atol=1e-4)
    # Strided views (a crop of a wider batch, channels-first memory seen as HWC) and lists.
    wide = torch.from_numpy(rand_images(2, 32, 96, seed=14)).cuda()
    crop = wide[:, :, 10:58]
    np.testing.assert_array_equal(seg(crop).cpu().numpy(), seg(crop.cpu().numpy()))
    chw = on_device[0].permute(2, 0, 1).contiguous().permute(1, 2, 0)
    np.testing.assert_array_equal(seg(chw).cpu().numpy(), host[0])
    listed = seg([on_device[0], on_device[1]])
    assert all(t.is_cuda for t in listed)
    np.testing.assert_array_equal(torch.stack(listed).cpu().numpy(), host[:2])
    # An unplanned size goes through the fallback path, still on the device.
    odd = torch.from_numpy(rand_images(1, 40, 56, seed=15)).cuda()
    np.testing.assert_array_equal(seg(odd).cpu().numpy(), seg(odd.cpu().numpy()))
    stats = seg.stats()
    assert stats["calls"] > before["calls"] and stats["allocations_after_warmup"] in (0, -1)


@cuda
@pytest.mark.cuda
def test_cuda_calls_follow_the_callers_stream(tiny):
    """Input written on a side stream is read after that write; the labels are ready for the
    side stream's next op, with no host synchronisation in between."""
    seg = Segmenter(tiny, device="cuda", shapes=[(32, 48)], max_batch=2)
    batch = rand_images(2, 32, 48, seed=16)
    want = seg(batch)
    side = torch.cuda.Stream()
    source = torch.from_numpy(batch).pin_memory()
    for _ in range(20):
        with torch.cuda.stream(side):
            images = torch.empty((2, 32, 48, 3), dtype=torch.uint8, device="cuda")
            torch.cuda._sleep(2_000_000)  # a slow producer: the engine must wait for it
            images.copy_(source, non_blocking=True)
            labels = seg(images)
            checksum = labels.to(torch.int64).sum()
        side.synchronize()
        assert int(checksum) == int(want.astype(np.int64).sum())
        np.testing.assert_array_equal(labels.cpu().numpy(), want)


@cuda
@pytest.mark.cuda
def test_cuda_engine_refuses_memory_in_the_wrong_place(tiny):
    seg = Segmenter(tiny, device="cuda", shapes=[(32, 48)])
    batch = rand_images(1, 32, 48, seed=17)
    labels = torch.empty((1, 32, 48), dtype=torch.uint8, device="cuda")
    host_view = _core.DeviceArray(
        batch.ctypes.data, list(batch.shape), [32 * 48 * 3, 48 * 3, 3, 1], "uint8"
    )
    with pytest.raises(ValueError) as err:
        seg._engine.segment_device(host_view, labels.data_ptr(), labels.numel(), 0)
    assert str(err.value) == (
        "Segmenter.segment_on_device: input 'images': expected memory on cuda:0, got host memory"
    )
    on_device = torch.from_numpy(batch).cuda()
    host_labels = np.empty((1, 32, 48), np.uint8)
    device_view = _core.DeviceArray(
        on_device.data_ptr(), list(on_device.shape), list(on_device.stride()), "uint8"
    )
    with pytest.raises(ValueError) as err:
        seg._engine.segment_device(device_view, host_labels.ctypes.data, host_labels.size, 0)
    assert str(err.value) == (
        "Segmenter.segment_on_device: output 'labels': expected memory on cuda:0, got host memory"
    )
    with pytest.raises(ValueError) as err:
        seg([on_device[0], batch[0]])
    assert str(err.value) == (
        "Segmenter.segment: input 'images': expected every image in host memory or every image "
        "in CUDA memory, got a mix"
    )
    np.testing.assert_array_equal(seg(on_device).cpu().numpy(), seg(batch))


@cuda
@pytest.mark.cuda
def test_cuda_staging_is_pinned_at_its_planned_size(tiny):
    """Pinned staging is allocated at exactly the planned bytes, not by torch's pinned caching
    allocator (which rounds each block up to a power of two): building the engine takes
    nothing from that allocator, and the plan's pinned bytes are the slots' exact sizes."""
    stats = getattr(torch.cuda, "host_memory_stats", None)
    if stats is None:
        pytest.skip("torch.cuda.host_memory_stats needs torch >= 2.6")
    before = stats()["allocated_bytes.allocated"]
    seg = Segmenter(tiny, device="cuda", shapes=[(37, 53)], max_batch=3, batch_invariant=False)
    assert stats()["allocated_bytes.allocated"] == before
    pinned = [b for b in seg.plan["buffers"] if b["device"] == "cpu-pinned"]
    assert sum(b["bytes"] for b in pinned) == 2 * (3 * 37 * 53 * 3 + 3 * 37 * 53)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("fuser", ["on", "off"])
def test_cuda_fuser_on_and_off_give_the_same_labels(tiny, fuser):
    batch = rand_images(3, 32, 48, seed=16)
    want = Segmenter(tiny, shapes=[(32, 48)])(batch)
    seg = Segmenter(tiny, device="cuda", shapes=[(32, 48)], fuser=fuser)
    assert seg.options.fuser == fuser
    np.testing.assert_array_equal(seg(batch), want)


@cuda
@pytest.mark.cuda
def test_cuda_graphs_survive_more_unplanned_sizes_than_the_shape_cache(tiny):
    """The captured graphs read the artifact's cached per-shape tensors of the planned size;
    serving more unplanned sizes than `shape_cache` holds must not evict those."""
    batch = rand_images(2, 32, 48, seed=17)
    seg = Segmenter(tiny, device="cuda", shapes=[(32, 48)], max_batch=2, shape_cache=1)
    want = seg(batch)
    for k, (h, w) in enumerate([(40, 56), (24, 40), (48, 64)]):
        seg(rand_images(1, h, w, seed=20 + k))
    np.testing.assert_array_equal(seg(batch), want)
