"""Triton model repository export: a config the model-config protobuf accepts, a loadable model."""

from __future__ import annotations

import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from ifa_rt.bundled import resolve
from ifa_rt.cli import main as cli_main
from ifa_rt.deploy.export import export
from ifa_rt.deploy.triton import triton_config, write_triton_repository
from ifa_rt.model import build_model


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """A small real camvid-r18 artifact."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("triton") / "r18.ifa.pt"
    export(build_model("camvid-r18").eval(), path)
    return path


def _parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_repository_layout_and_config(artifact, tmp_path, real_image):
    model_dir = write_triton_repository(
        artifact, tmp_path / "repo", name="camvid", max_batch_size=4, instances=2
    )
    assert model_dir == tmp_path / "repo" / "camvid"
    config = _parse((model_dir / "config.pbtxt").read_text())
    assert config.name == "camvid" and config.platform == "pytorch_libtorch"
    assert config.max_batch_size == 4
    (inp,) = config.input
    (out,) = config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == (
        "INPUT__0",
        model_config_pb2.TYPE_UINT8,
        [-1, -1, 3],
    )
    assert (out.name, out.data_type, list(out.dims)) == (
        "OUTPUT__0",
        model_config_pb2.TYPE_UINT8,
        [-1, -1],
    )
    assert list(config.dynamic_batching.preferred_batch_size) == [1, 2, 4]
    assert config.instance_group[0].count == 2
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    # What the backend will do: load model.pt and call forward on a batch of the config's dims.
    module = torch.jit.load(str(model_dir / "1" / "model.pt"))
    batch = torch.from_numpy(real_image(0, (96, 128)))[None].repeat(2, 1, 1, 1)
    with torch.no_grad():
        labels = module(batch)
    assert labels.dtype == torch.uint8 and labels.shape == (2, 96, 128)


def test_name_defaults_to_the_preset(artifact, tmp_path):
    assert write_triton_repository(artifact, tmp_path).name == "camvid-r18"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "a b"}, r"^triton: 'name': expected letters, digits, '_', '\.', '-', got 'a b'$"),
        ({"max_batch_size": 0}, r"^triton: 'max_batch_size': expected >= 1, got 0$"),
        ({"instances": 0}, r"^triton: 'instances': expected >= 1, got 0$"),
        ({"kind": "tpu"}, r"^triton: 'kind': expected one of \['cpu', 'gpu'\], got 'tpu'$"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message):
    kwargs = {"name": "m", **kwargs}
    with pytest.raises(ValueError, match=message):
        triton_config(kwargs.pop("name"), **kwargs)


def test_gpu_kind_config_parses():
    config = _parse(triton_config("m", kind="gpu", max_batch_size=8))
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(config.dynamic_batching.preferred_batch_size) == [1, 2, 4, 8]


def test_not_an_artifact_is_refused(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        write_triton_repository(tmp_path / "junk.pt", tmp_path / "repo")


def test_cli_export_to_triton(tmp_path, capsys):
    repo = tmp_path / "repo"
    assert cli_main(["export", "--preset", "camvid-r18", "--triton", str(repo)]) == 0
    assert "wrote Triton model" in capsys.readouterr().out
    assert sorted(p.name for p in repo.iterdir()) == ["camvid-r18"]
    assert (repo / "camvid-r18" / "1" / "model.pt").is_file()


@pytest.mark.slow
def test_torch_aoti_repository_runs_like_the_backend(tmp_path, real_image, capsys):
    """`--format aoti --triton`: platform torch_aoti, model.pt2 whose default model takes any
    batch up to max_batch_size, labels equal to the TorchScript artifact's."""
    repo = tmp_path / "repo"
    args = ["export", "--model", "camvid", "--format", "aoti", "--shapes", "64x96"]
    args += ["--triton", str(repo), "--max-batch", "2", "--threads", "1"]
    assert cli_main(args) == 0
    assert "1/model.pt2" in capsys.readouterr().out
    model_dir = repo / "camvid"
    config = _parse((model_dir / "config.pbtxt").read_text())
    assert config.platform == "torch_aoti" and config.max_batch_size == 2
    assert list(config.input[0].dims) == [64, 96, 3] and list(config.output[0].dims) == [64, 96]
    # What Triton's PyTorch backend does for torch_aoti: load the package's default model.
    compiled = torch._inductor.aoti_load_package(str(model_dir / "1" / "model.pt2"))
    module = torch.jit.load(str(resolve("camvid")))
    images = torch.stack([torch.from_numpy(real_image(i, (64, 96))) for i in range(2)])
    with torch.no_grad():
        for batch in (images[:1], images):
            got = compiled(batch)
            got = got[0] if isinstance(got, (list, tuple)) else got
            assert torch.equal(got, module(batch))
