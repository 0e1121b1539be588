"""Device selection: CUDA that cannot be honoured raises (or falls back with one warning); simulated CUDA.

There is no GPU here, so the CUDA EP is simulated: onnxruntime's provider list and InferenceSession are
patched so that a session reports the CUDA EP (working GPU) or silently the CPU EP (what onnxruntime-gpu does
when the CUDA libraries are missing, onnxruntime#23372). Inference itself runs on the real CPU session.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgexfer.errors import DeviceError
from edgexfer.runtime import backends, load, select

pytestmark = pytest.mark.runtime
X = np.zeros((2, 32, 32, 3), np.uint8)
CUDA, CPU, TRT = "CUDAExecutionProvider", "CPUExecutionProvider", "TensorrtExecutionProvider"


def test_cuda_on_this_machine_raises_naming_what_is_missing(bundle_dir):
    with pytest.raises(DeviceError, match=CUDA) as info:
        load(bundle_dir, format="onnx", device="cuda")
    assert "edgexfer[gpu]" in str(info.value) and "fallback=True" in str(info.value)


def test_cuda_fallback_warns_once_and_runs_on_cpu(bundle_dir):
    with pytest.warns(RuntimeWarning, match="Falling back to the CPU"):
        m = load(bundle_dir, format="onnx", device="cuda", fallback=True)
    assert m.device == "cpu" and m.predict(X).shape[0] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(bundle_dir, format="onnx", device="cuda", fallback=True).close()  # no second warning
    m.close()


def test_cuda_on_cpu_only_backends(bundle_dir, artifact_backend):
    name, backend = artifact_backend
    if "cuda" in backends.get(backend).devices:
        pytest.skip(f"{backend} runs CUDA (tested with a simulated GPU below)")
    with pytest.raises(DeviceError, match="cuda"):
        load(bundle_dir, format=name, backend=backend, device="cuda")
    with pytest.warns(RuntimeWarning):
        with load(bundle_dir, format=name, backend=backend, device="cuda", fallback=True) as m:
            assert m.device == "cpu"


def test_openvino_missing_device(bundle_dir):
    with pytest.raises(DeviceError, match="NPU"):
        load(bundle_dir, format="openvino", device="npu")


def test_auto_on_cpu_machine_is_silent(bundle_dir, capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with load(bundle_dir, format="onnx") as m:
            assert m.device == "cpu"
    assert "CUDA" not in capfd.readouterr().err


# -- simulated onnxruntime-gpu ------------------------------------------------------------------------------
@pytest.fixture
def fake_gpu(monkeypatch):
    """Patch onnxruntime to list the CUDA EP; `state["works"]` says whether sessions really get it."""
    import onnxruntime as ort

    real_session = ort.InferenceSession
    state = {"works": True, "preloaded": 0, "requested": []}

    class FakeSession:
        def __init__(self, path, sess_options=None, providers=None):
            names = [p[0] if isinstance(p, tuple) else p for p in providers]
            state["requested"].append(names)
            self._real = real_session(path, sess_options=sess_options, providers=[CPU])
            gpu = [n for n in names if n in (CUDA, TRT)]
            self._providers = (gpu + [CPU]) if gpu and state["works"] else [CPU]

        def get_providers(self):
            return self._providers

        def __getattr__(self, name):
            return getattr(self._real, name)

    def preload():
        state["preloaded"] += 1

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    monkeypatch.setattr(ort, "preload_dlls", preload)
    return state


def test_cuda_works(bundle_dir, fake_gpu, images, reference):
    with load(bundle_dir, device="cuda") as m:
        assert (m.format, m.backend, m.device) == ("onnx", "onnxruntime", "cuda")
        assert m.details["providers"][0] == CUDA and fake_gpu["preloaded"] == 1
        np.testing.assert_allclose(m.predict(images), reference, atol=1e-6)
    assert fake_gpu["requested"][-1] == [CUDA, CPU]  # no TensorRT unless asked


def test_auto_picks_working_cuda(bundle_dir, fake_gpu):
    with load(bundle_dir) as m:
        assert (m.format, m.device, m.details["rule"]) == ("onnx", "cuda", "cuda")


def test_tensorrt_when_asked(bundle_dir, fake_gpu):
    with load(bundle_dir, format="onnx", device="tensorrt") as m:
        assert m.device == "cuda" and m.details["providers"][0] == TRT
    assert fake_gpu["requested"][-1] == [TRT, CUDA, CPU]


def test_broken_cuda_required_raises(bundle_dir, fake_gpu):
    fake_gpu["works"] = False
    with pytest.raises(DeviceError, match="could not initialise CUDAExecutionProvider"):
        load(bundle_dir, format="onnx", device="cuda")
    with pytest.warns(RuntimeWarning, match="Falling back"):
        with load(bundle_dir, format="onnx", device="cuda", fallback=True) as m:
            assert m.device == "cpu" and m.details["providers"] == [CPU]


def test_broken_cuda_auto_warns_once_and_uses_cpu_rule(bundle_dir, fake_gpu, monkeypatch):
    fake_gpu["works"] = False
    monkeypatch.setattr(select.platform, "machine", lambda: "aarch64")
    with pytest.warns(RuntimeWarning, match="Running on the CPU"):
        m = load(bundle_dir)
    assert m.device == "cpu" and (m.format, m.backend) == ("tflite", "litert")  # the CPU rule decided
    m.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(bundle_dir, format="onnx").close()


def test_gpu_wheel_without_gpu_never_spams(bundle_dir, fake_gpu, capfd):
    fake_gpu["works"] = False
    with pytest.warns(RuntimeWarning):
        load(bundle_dir, format="onnx").close()
    out = capfd.readouterr()
    assert "CUDA" not in out.out
