"""Backend settings from the environment: defaults, precedence and precise errors."""

import pytest

from hw5kit.serving.settings import ServingSettings, SettingsError, serving_port


def test_defaults_are_the_offline_models():
    v1 = ServingSettings.from_env("v1", {})
    assert v1.models == ("efficientnet_lite0",) and v1.port == 8000
    assert not v1.fetch.allow_loopback
    v2 = ServingSettings.from_env("v2", {})
    assert v2.models == ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
    assert v2.default_model == "efficientnet_lite0"


def test_port_precedence():
    assert serving_port({"PORT": "9000", "SERVING_PORT": "8001"}) == 9000
    assert serving_port({"SERVING_PORT": "8001"}) == 8001
    assert serving_port({}) == 8000
    with pytest.raises(SettingsError, match="PORT must be a port number"):
        serving_port({"PORT": "http"})
    with pytest.raises(SettingsError, match="SERVING_PORT"):
        serving_port({"SERVING_PORT": "70000"})


def test_model_variables():
    s = ServingSettings.from_env("v2", {"MODELS": "efficientnet_lite2, efficientnet_lite0"})
    assert s.models == ("efficientnet_lite2", "efficientnet_lite0")
    assert s.default_model == "efficientnet_lite2"
    s = ServingSettings.from_env(
        "v2",
        {"MODELS": "efficientnet_lite2,efficientnet_lite0", "DEFAULT_MODEL": "efficientnet_lite0"},
    )
    assert s.default_model == "efficientnet_lite0"
    assert ServingSettings.from_env("v1", {"MODEL_NAME": "resnet152"}).models == ("resnet152",)


@pytest.mark.parametrize(
    ("version", "env", "message"),
    [
        (
            "v1",
            {"MODEL_NAME": "nope"},
            r"MODEL_NAME: unknown model 'nope' \(known: efficientnet_lite0",
        ),
        (
            "v1",
            {"MODEL_NAME": "efficientnet_lite0,efficientnet_lite1"},
            "MODEL_NAME names one model",
        ),
        ("v2", {"MODELS": "efficientnet_lite0,,x"}, "MODELS: expected a comma-separated list"),
        ("v2", {"MODELS": "efficientnet_lite0,efficientnet_lite0"}, "MODELS: model listed twice"),
        ("v2", {"DEFAULT_MODEL": "resnet152"}, "DEFAULT_MODEL: 'resnet152' is not one of MODELS"),
        ("v1", {"HW5_ALLOW_LOOPBACK": "maybe"}, "HW5_ALLOW_LOOPBACK must be 1/0"),
        ("v1", {"HW5_MAX_UPLOAD_MB": "lots"}, "HW5_MAX_UPLOAD_MB must be a number"),
        ("v1", {"HW5_FETCH_TOTAL_TIMEOUT": "-1"}, "HW5_FETCH_TOTAL_TIMEOUT must be positive"),
        ("v1", {"HW5_LOAD": "lazy"}, "HW5_LOAD must be 'background' or 'sync'"),
        ("v1", {"HW5_RUNTIME": "tpu"}, "HW5_RUNTIME must be one of auto, openvino, onnx, torch"),
        ("v1", {"HW5_PRECISION": "int4"}, "HW5_PRECISION must be one of auto, bf16, fp32"),
        ("v1", {"HW5_BATCH_MAX": "0"}, "HW5_BATCH_MAX must be a whole number of at least 1"),
        ("v1", {"HW5_BATCH_MAX": "2.5"}, "HW5_BATCH_MAX must be a whole number"),
        ("v1", {"HW5_BATCH_WAIT_MS": "-1"}, "HW5_BATCH_WAIT_MS must be zero or more"),
        ("v1", {"HW5_BATCH_WAIT_MS": "soon"}, "HW5_BATCH_WAIT_MS must be a number"),
        ("v1", {"HW5_TORCH_THREADS": "0"}, "HW5_TORCH_THREADS must be a whole number"),
        ("v1", {"HW5_STREAMS": "0"}, "HW5_STREAMS must be a whole number"),
    ],
)
def test_bad_values_name_the_variable(version, env, message):
    with pytest.raises(SettingsError, match=message):
        ServingSettings.from_env(version, env)


def test_limits_and_flags():
    s = ServingSettings.from_env(
        "v1",
        {
            "HW5_ALLOW_LOOPBACK": "1",
            "HW5_MAX_UPLOAD_MB": "2",
            "HW5_MAX_DOWNLOAD_MB": "0.5",
            "SECRET_KEY": "k",
        },
    )
    assert s.fetch.allow_loopback
    assert s.max_upload_bytes == 2 * 1024 * 1024
    assert s.fetch.max_bytes == 512 * 1024
    assert s.secret_key == "k"


def test_inference_settings():
    default = ServingSettings.from_env("v1", {})
    assert (default.runtime, default.batch_max, default.batch_wait_ms) == ("auto", 8, 2.0)
    assert default.torch_threads >= 1
    s = ServingSettings.from_env(
        "v1",
        {
            "HW5_RUNTIME": "Torch",
            "HW5_BATCH_MAX": "16",
            "HW5_BATCH_WAIT_MS": "0",
            "HW5_TORCH_THREADS": "1",
        },
    )
    assert (s.runtime, s.batch_max, s.batch_wait_ms, s.torch_threads) == ("torch", 16, 0.0, 1)
    # one forward pass at a time, on every core
    cpus = default.torch_threads
    assert default.streams == 1 and cpus >= 1
    # several gunicorn workers share the cores: each gets its share of intra-op threads
    workers = ServingSettings.from_env("v1", {"HW5_WORKERS": str(cpus * 2)})
    assert (workers.streams, workers.torch_threads) == (1, 1)
    # passes at once share the cores too
    streams = ServingSettings.from_env("v1", {"HW5_STREAMS": str(cpus)})
    assert (streams.streams, streams.torch_threads) == (cpus, 1)
