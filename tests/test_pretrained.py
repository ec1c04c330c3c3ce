"""--pretrained: weights from the zoos' caches, a real download from a local server, bounded offline refusal."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import timm
import torch
import torchvision.models
from safetensors.torch import save_file

from ignite_app.errors import UsageError
from ignite_app.models import pretrained as hub
from ignite_app.models import zoo

RESNET18_FILE = "resnet18-f37072fd.pth"   # the file name of ResNet18_Weights.IMAGENET1K_V1's URL
TEST_RESNET_REPO = "timm/test_resnet.r160_in1k"


def plant_hf(cache: Path, repo: str, filename: str, state: dict[str, torch.Tensor]) -> Path:
    """Write ``state`` where huggingface_hub caches ``repo``'s ``filename`` on branch main."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    path = folder / "snapshots" / commit / filename
    path.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to resolve a host or connect fails the test: offline must mean no network use at all."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_torchvision_pretrained_loads_from_torch_home(caches: dict[str, Path], no_sockets: None) -> None:
    torch.manual_seed(0)
    source = torchvision.models.resnet18(num_classes=1000)  # random weights in the shape of the real file
    path = caches["torch"] / "hub" / "checkpoints" / RESNET18_FILE
    path.parent.mkdir(parents=True)
    torch.save(source.state_dict(), path)
    net, info = zoo.create_network("torchvision:resnet18", 5, 3, pretrained=True)
    saved, got = source.state_dict(), net.state_dict()
    assert all(torch.equal(saved[k], got[k]) for k in got if k not in info.head)
    assert net.fc.weight.shape == (5, 512) and not torch.equal(got["fc.bias"], saved["fc.bias"][:5])
    assert info.pretrained and info.weights_file == str(path)
    assert info.load_summary.startswith("loaded 120 tensors from ResNet18_Weights.IMAGENET1K_V1")
    assert "left out (the classes differ: freshly initialised): fc.weight, fc.bias" in info.load_summary


def test_timm_pretrained_loads_from_hf_cache_and_sums_first_layer_for_grayscale(
        caches: dict[str, Path], no_sockets: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # cached: offline does not matter
    torch.manual_seed(0)
    source = timm.create_model("test_resnet", num_classes=1000)
    path = plant_hf(caches["hf"], TEST_RESNET_REPO, "model.safetensors", source.state_dict())
    net, info = zoo.create_network("timm:test_resnet", 5, 1, pretrained=True)
    saved, got = source.state_dict(), net.state_dict()
    assert torch.allclose(got["conv1.0.weight"], saved["conv1.0.weight"].sum(dim=1, keepdim=True))
    others = [k for k in got if k not in info.head and k != "conv1.0.weight"]
    assert others and all(torch.equal(saved[k], got[k]) for k in others)
    assert net.fc.weight.shape[0] == 5
    assert info.weights_file == str(path) and "first layer adapted to 1 channel" in info.load_summary


@pytest.mark.parametrize(("name", "cache_key", "looked_for"), [
    ("torchvision:resnet18", "torch", f"hub/checkpoints/{RESNET18_FILE}"),
    ("timm:test_resnet", "hf", "models--timm--test_resnet.r160_in1k/snapshots/<commit>/model.safetensors"),
])
def test_offline_without_cached_copy_is_refused_without_using_the_network(
        caches: dict[str, Path], no_sockets: None, monkeypatch: pytest.MonkeyPatch,
        name: str, cache_key: str, looked_for: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = caches["torch"] / "hub" / "checkpoints" if cache_key == "torch" else caches["hf"]
    with pytest.raises(UsageError) as err:
        zoo.create_network(name, 5, 3, pretrained=True)
    message = str(err.value)
    assert f"not in the cache folder {folder} " in message and looked_for in message
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in message and "--weights FILE" in message


@pytest.fixture
def silent_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A proxy that accepts connections and never answers: the network hangs rather than failing fast."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # connections complete in the kernel's backlog; nothing is ever read or written
    address = f"http://127.0.0.1:{server.getsockname()[1]}"
    for name in ("http_proxy", "https_proxy"):
        monkeypatch.setenv(name, address)
    yield address
    server.close()


@pytest.mark.parametrize("name", ["torchvision:resnet18", "timm:test_resnet"])
def test_unreachable_network_gives_up_within_the_timeout(
        caches: dict[str, Path], silent_proxy: str, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(hub, "DEFAULT_TIMEOUT_S", 1.0)
    start = time.monotonic()
    with pytest.raises(UsageError, match=r"could not be reached within 1 s .*--weights FILE"):
        zoo.create_network(name, 5, 3, pretrained=True)
    assert time.monotonic() - start < 6  # the bound is the feature: 1 s for the check, plus building


@pytest.fixture
def weights_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server for files in a folder: a download that really happens, without the internet."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(folder))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


def served_weights(folder: Path, stem: str, wrong_hash: bool = False) -> str:
    """Save a small state dict named like torch.hub's files (``stem-<sha256 prefix>.pth``); returns the name."""
    data = folder / "tmp.pth"
    torch.save({"w": torch.arange(6.0)}, data)
    digest = hashlib.sha256(data.read_bytes()).hexdigest()[:8]
    name = f"{stem}-{'00000000' if wrong_hash else digest}.pth"
    data.rename(folder / name)
    return name


def test_url_weights_are_downloaded_into_torch_home_once(
        caches: dict[str, Path], weights_server: tuple[str, Path]) -> None:
    url, folder = weights_server
    name = served_weights(folder, "tiny")
    source = hub.WeightsSource("url", f"{url}/{name}")
    path = hub.fetch(source, "tiny", timeout_s=5)
    assert path == caches["torch"] / "hub" / "checkpoints" / name
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(6.0))
    (folder / name).unlink()  # gone from the server: the next fetch must use the cache
    assert hub.fetch(source, "tiny", timeout_s=5) == path


def test_download_with_wrong_hash_is_refused_and_not_cached(
        caches: dict[str, Path], weights_server: tuple[str, Path]) -> None:
    url, folder = weights_server
    name = served_weights(folder, "tiny", wrong_hash=True)
    with pytest.raises(UsageError, match=r"the download failed \(RuntimeError: invalid hash value"):
        hub.fetch(hub.WeightsSource("url", f"{url}/{name}"), "tiny", timeout_s=5)
    assert hub.cached_file(hub.WeightsSource("url", f"{url}/{name}")) is None


def test_timm_source_prefers_safetensors_on_the_hub() -> None:
    source = hub.timm_source(timm.get_pretrained_cfg("test_resnet").to_dict())
    assert source == hub.WeightsSource("hf-hub", TEST_RESNET_REPO, ("model.safetensors", "pytorch_model.bin"))
    assert hub.timm_source({"url": "https://example.org/w-1234abcd.pth"}).kind == "url"
    assert hub.timm_source({}) is None


def test_hf_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.hf_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub.hf_cache_dir() == tmp_path / "cache"
