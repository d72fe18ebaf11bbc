"""GPU evaluation, as far as a machine without a GPU can check it (issue 7): --device parsing, finding
GPUs and their device nodes (a fake /dev and /proc in tmp_path), exactly those nodes bound into the
sandbox, the worker's CUDA environment, one submission per GPU at a time, recognising device
out-of-memory errors, halving the batch on them, streaming the hidden set, and the EvaluationRun
record that reaches results.json and the teacher's page. What needs a real GPU is in docs/gpu.md."""

from __future__ import annotations

import io
import json
import pickle
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from grader.worker import adapt, evaluate
from grader.sandbox import devices
from grader.cli import main
from grader.sandbox.devices import DeviceSlots, Gpu, choose_gpus, find_gpus, parse_device, visible
from grader.errors import GraderError
from grader.worker.evaluate import Batch, WorkerModel, WorkerRequest, _predict, evaluate_one
from grader.sandbox.isolation import _env, bwrap_base
from grader.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
STATS = adapt.Stats(0.286, 0.353)
UUIDS = ("GPU-1111aaaa-0000-0000-0000-000000000000", "GPU-2222bbbb-0000-0000-0000-000000000000",
         "GPU-3333cccc-0000-0000-0000-000000000000")
NODES = ("nvidia0", "nvidia1", "nvidia2", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset",
         "sda", "kvm", "fuse", "null")


def _fake_machine(root: Path, nodes: tuple[str, ...] = NODES) -> tuple[Path, Path]:
    """A /dev with NVIDIA nodes among others, and a /proc/driver/nvidia/gpus whose bus order differs
    from the minor numbers (as it can on a real machine), with one GPU that has no node here."""
    dev, proc = root / "dev", root / "proc"
    (dev / "dri").mkdir(parents=True)
    (dev / "nvidia-caps").mkdir()
    for name in nodes:
        (dev / name).write_text("")
    gpus = [("0000:01:00.0", 2, UUIDS[0], "NVIDIA H200"), ("0000:41:00.0", 0, UUIDS[1], "NVIDIA H200"),
            ("0000:81:00.0", 1, UUIDS[2], "NVIDIA A100-SXM4-80GB"), ("0000:c1:00.0", 7, "GPU-7777", "NVIDIA H200")]
    for bus, minor, uuid, model in gpus:
        folder = proc / "driver" / "nvidia" / "gpus" / bus
        folder.mkdir(parents=True)
        (folder / "information").write_text(f"Model: \t\t {model}\nIRQ:   \t\t 155\nGPU UUID: \t {uuid}\n"
                                            f"Video BIOS: \t 96.00.74.00.01\nBus Type: \t PCIe\nBus Location: \t {bus}\n"
                                            f"Device Minor: \t {minor}\nGPU Excluded:\t No\n")
    return dev, proc


# ------------------------------------------------------------------------------------------------
# --device


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("cpu", "cpu"), ("gpu", "gpu"), ("gpu:0", "gpu:0"),
                                                 ("GPU:01", "gpu:1"), (" gpu:12 ", "gpu:12")])
def test_device_values_are_normalised(value: str, expected: str) -> None:
    assert parse_device(value) == expected
    assert Settings(device=value).device == expected


@pytest.mark.parametrize("value", ["tpu", "gpu:", "gpu:x", "gpu:-1", "gpu:0,1", "cpu:0", "cuda", ""])
def test_a_bad_device_is_refused_with_what_is_allowed(value: str) -> None:
    with pytest.raises(ValueError, match=r"must be auto, cpu, gpu or gpu:N .*; got"):
        parse_device(value)


@pytest.mark.parametrize(("extra", "expected"), [
    (["--device", "gpu:x"], "--device: must be auto, cpu, gpu or gpu:N"),
    (["--gpu-share", "0"], "--gpu-share must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--gpu-memory-fraction", "1.5"], "--gpu-memory-fraction must be in (0, 1]"),
    (["--gpu-share", "2", "--gpu-memory-fraction", "0.6"], "is more than the whole GPU"),
])
def test_cli_device_errors_exit_4_with_one_line(tmp_path: Path, extra: list[str], expected: str) -> None:
    err = io.StringIO()
    code = main([str(tmp_path), "--assignment", "hw10", "--out", str(tmp_path / "o"), "-q", *extra],
                stdout=io.StringIO(), stderr=err)
    assert code == 4, err.getvalue()
    assert err.getvalue().startswith("error: ") and expected in err.getvalue() and "Traceback" not in err.getvalue()


def test_memory_fraction_defaults_to_a_share_of_the_gpu() -> None:
    assert Settings().gpu_fraction() == 0.9
    assert Settings(gpu_share=3).gpu_fraction() == pytest.approx(0.3)
    assert Settings(gpu_share=3, gpu_memory_fraction=0.25).gpu_fraction() == 0.25


# ------------------------------------------------------------------------------------------------
# Finding GPUs


def test_gpus_are_numbered_in_bus_order_with_their_nodes_and_uuids(tmp_path: Path) -> None:
    dev, proc = _fake_machine(tmp_path)
    gpus = find_gpus(dev, proc)
    assert [(g.index, g.minor, g.uuid, g.bus) for g in gpus] == [
        (0, 2, UUIDS[0], "0000:01:00.0"), (1, 0, UUIDS[1], "0000:41:00.0"), (2, 1, UUIDS[2], "0000:81:00.0")]  # no /dev/nvidia7
    assert gpus[2].name == "NVIDIA A100-SXM4-80GB" and gpus[0].device == "gpu:0" and gpus[0].node == "nvidia2"


def test_without_the_driver_s_proc_files_the_nodes_are_the_gpus(tmp_path: Path) -> None:
    dev, _ = _fake_machine(tmp_path)
    assert [(g.index, g.minor, g.uuid) for g in find_gpus(dev, tmp_path / "no-proc")] == [(0, 0, None), (1, 1, None), (2, 2, None)]
    assert find_gpus(tmp_path / "empty-dev", tmp_path / "no-proc") == []


@pytest.mark.parametrize(("value", "indices"), [
    (None, [0, 1, 2]), ("2,0", [2, 0]), ("1", [1]), ("-1", []), ("", []), ("0,-1,2", [0]), ("0,7", [0]),
    (UUIDS[2][:12], [2]), (f"{UUIDS[1]},0", [1, 0]), ("MIG-abc", []),
])
def test_the_grader_s_cuda_visible_devices_is_read_as_cuda_reads_it(tmp_path: Path, value: str | None,
                                                                     indices: list[int]) -> None:
    gpus = find_gpus(*_fake_machine(tmp_path))
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert [g.index for g in visible(gpus, env)] == indices


def test_choosing_a_device(tmp_path: Path) -> None:
    dev, proc = _fake_machine(tmp_path)
    assert [g.index for g in choose_gpus("auto", dev=dev, proc=proc, env={})] == [0, 1, 2]
    assert [g.index for g in choose_gpus("gpu:1", dev=dev, proc=proc, env={})] == [1]
    assert choose_gpus("cpu", dev=dev, proc=proc, env={}) == []
    assert choose_gpus("auto", dev=dev, proc=proc, env={"CUDA_VISIBLE_DEVICES": "-1"}) == []
    with pytest.raises(GraderError, match="no such GPU") as info:
        choose_gpus("gpu:5", dev=dev, proc=proc, env={})
    assert "gpu:0 (NVIDIA H200)" in info.value.hint
    with pytest.raises(GraderError, match=r"no NVIDIA GPU is visible.*CUDA_VISIBLE_DEVICES='-1'"):
        choose_gpus("gpu", dev=dev, proc=proc, env={"CUDA_VISIBLE_DEVICES": "-1"})
    slots = DeviceSlots.for_device("gpu:0,2", dev=dev, proc=proc, env={})
    assert slots.device == "gpu:0,2" and DeviceSlots.for_device("cpu").gpus == ()


def test_this_machine_without_a_gpu_evaluates_on_the_cpu() -> None:
    from grader.pipeline import _device

    if find_gpus():
        pytest.skip("this machine has a GPU")
    assert _device("auto") == "cpu" and _device("cpu") == "cpu"
    with pytest.raises(GraderError, match="--device gpu:0: no NVIDIA GPU is visible"):
        _device("gpu:0")


# ------------------------------------------------------------------------------------------------
# What the sandbox gets


_ARITY = {"--ro-bind": 2, "--bind": 2, "--dev-bind": 2, "--symlink": 2, "--setenv": 2, "--proc": 1, "--dev": 1,
          "--tmpfs": 1, "--dir": 1, "--chdir": 1, "--remount-ro": 1, "--cap-drop": 1, "--size": 1}


def _options(argv: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """bwrap's options with their arguments, up to the program."""
    out, i = [], 1
    while i < len(argv) and argv[i].startswith("--"):
        n = _ARITY.get(argv[i], 0)
        out.append((argv[i], tuple(argv[i + 1 : i + 1 + n])))
        i += 1 + n
    return out


def _dev_entries(argv: list[str], dev: Path) -> set[tuple[str, ...]]:
    """Every option that puts something of the host's /dev (here: `dev`) into the sandbox, or anything at /dev/..."""
    return {(opt, *args) for opt, args in _options(argv)
            if opt in ("--ro-bind", "--bind", "--dev-bind", "--symlink")
            and (args[0].startswith(str(dev)) or args[1].startswith("/dev"))}


def _expected(dev: Path, minor: int, control: tuple[str, ...] = devices.CONTROL_NODES) -> set[tuple[str, ...]]:
    return {("--dev-bind", str(dev / name), f"/dev/{name}") for name in (f"nvidia{minor}", *control)}


def _request(tmp_path: Path) -> WorkerRequest:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("hidden.npy", "public.npy", "labels.npy"):
        (inputs / name).write_bytes(b"")
    (tmp_path / "model.keras").write_bytes(b"")
    return WorkerRequest(models=(WorkerModel(index=0, path=str(tmp_path / "model.keras")),), hidden_images=str(inputs / "hidden.npy"),
                         public_images=str(inputs / "public.npy"), public_labels=str(inputs / "labels.npy"),
                         stats_mean=0.3, stats_std=0.35, out_dir=str(tmp_path / "out"))


def test_a_gpu_sandbox_binds_exactly_that_gpu_s_node_and_the_driver_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from grader.sandbox.zygote import Zygote

    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    dev, proc = _fake_machine(tmp_path)
    gpu = find_gpus(dev, proc)[1]  # gpu:1 is /dev/nvidia0
    one_off = Zygote(tmp_path / "inputs", tmp_path / "slot", gpu, dev, preload=False).command()  # grader.sandbox.zygote.run_once
    zygote = Zygote(tmp_path / "inputs", tmp_path / "slot", gpu, dev).command()
    for argv in (bwrap_base(None, {}, [gpu], dev), one_off, zygote):
        assert _dev_entries(argv, dev) == _expected(dev, 0), argv
        assert ("--dev", ("/dev",)) in _options(argv)  # bwrap's own minimal /dev under them
    assert ("--setenv", ("CUDA_VISIBLE_DEVICES", UUIDS[1])) in _options(one_off)
    assert ("--setenv", ("CUDA_VISIBLE_DEVICES", UUIDS[1])) in _options(zygote)
    # a driver without modeset (a compute-only install): what is not there is not bound
    (dev / "nvidia-modeset").unlink()
    assert _dev_entries(bwrap_base(None, {}, [gpu], dev), dev) == _expected(dev, 0, devices.CONTROL_NODES[:3])


def test_a_cpu_sandbox_binds_no_device_node(tmp_path: Path) -> None:
    from grader.sandbox.zygote import Zygote

    dev, _ = _fake_machine(tmp_path)
    one_off = Zygote(tmp_path / "inputs", tmp_path / "slot", None, dev, preload=False).command()
    zygote = Zygote(tmp_path / "inputs", tmp_path / "slot", None, dev).command()
    for argv in (bwrap_base(None, {}, (), dev), one_off, zygote):
        assert _dev_entries(argv, dev) == set() and "--dev-bind" not in argv
    assert ("--setenv", ("CUDA_VISIBLE_DEVICES", "-1")) in _options(one_off)


def test_cuda_libraries_outside_usr_are_bound_read_only_for_a_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = tmp_path / "opt" / "cuda" / "lib64"
    cuda.mkdir(parents=True)
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{cuda}:/usr/lib:{tmp_path / 'missing'}:")
    dev, proc = _fake_machine(tmp_path)
    gpu_args = _options(bwrap_base(None, {}, find_gpus(dev, proc)[:1], dev))
    assert ("--ro-bind", (str(cuda), str(cuda))) in gpu_args
    assert not any(args and args[0] in ("/usr/lib", str(tmp_path / "missing")) for _, args in gpu_args)
    assert ("--ro-bind", (str(cuda), str(cuda))) not in _options(bwrap_base(None, {}, (), dev))


def test_the_worker_sees_only_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # the grader's own: never what a worker gets
    assert _env("/out")["CUDA_VISIBLE_DEVICES"] == "-1"
    with_uuid = _env("/out", Gpu(index=3, minor=5, uuid=UUIDS[0]))
    assert with_uuid["CUDA_VISIBLE_DEVICES"] == UUIDS[0] and with_uuid["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    # without a UUID: inside the sandbox the one node bound is the only GPU CUDA can open; outside, its number
    assert _env("/out", Gpu(index=3, minor=5))["CUDA_VISIBLE_DEVICES"] == "0"
    outside = _env("/tmp/scratch", Gpu(index=3, minor=5))
    assert outside["CUDA_VISIBLE_DEVICES"] == "3" and outside["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


# ------------------------------------------------------------------------------------------------
# One submission per GPU


def _most_at_once(slots: DeviceSlots, threads: int, together: int = 1) -> tuple[dict[int | None, int], list[int | None]]:
    """`threads` evaluations through `slots`: the most that held each GPU at once, and which each got.
    Whoever holds a slot waits (no sleep: a barrier) until `together` holders are in, so the count
    shows what the slots allow, whatever the machine's load."""
    active: dict[int | None, int] = {}
    most: dict[int | None, int] = {}
    got: list[int | None] = []
    lock = threading.Lock()
    meet = threading.Barrier(together)

    def work() -> None:
        with slots.hold() as gpu:
            key = gpu.index if gpu is not None else None
            with lock:
                active[key] = active.get(key, 0) + 1
                most[key] = max(most.get(key, 0), active[key])
                got.append(key)
            try:
                meet.wait(timeout=60)
            except threading.BrokenBarrierError:  # fewer came in than expected: the assertion says so
                pass
            with lock:
                active[key] -= 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return most, got


def test_one_submission_at_a_time_per_gpu_unless_shared() -> None:
    one = Gpu(index=0, minor=0)
    assert _most_at_once(DeviceSlots([one]), 4)[0] == {0: 1}
    assert _most_at_once(DeviceSlots([one], per_gpu=2), 4, together=2)[0] == {0: 2}
    most, got = _most_at_once(DeviceSlots([one, Gpu(index=1, minor=1)]), 4, together=2)
    assert most == {0: 1, 1: 1} and sorted(got) == [0, 0, 1, 1]
    assert _most_at_once(DeviceSlots(), 3, together=3)[0] == {None: 3}  # the CPU: no waiting


def test_waiting_for_a_gpu_stops_on_ctrl_c() -> None:
    slots, cancel = DeviceSlots([Gpu(index=0, minor=0)]), threading.Event()
    with slots.hold():
        cancel.set()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt), slots.hold(cancel):
            pass
        assert time.monotonic() - start < 2
    with pytest.raises(KeyboardInterrupt), slots.hold(cancel):  # nor is new work started once cancelled
        pass
    with slots.hold() as gpu:  # the slot was given back
        assert gpu is not None


def test_slots_are_not_sent_to_another_machine() -> None:
    with pytest.raises(TypeError, match="make them where the work runs"):
        pickle.dumps(DeviceSlots([Gpu(index=0, minor=0)]))


def test_the_zygote_pool_runs_one_submission_per_gpu_on_a_zygote_of_that_gpu(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A zygote cannot be started with a GPU on a machine without one, so Zygote.run is a test double
    that records which zygote (bound to which GPU) ran, and how many ran on each GPU at once."""
    from grader.sandbox import zygote

    active: dict[int, int] = {0: 0, 1: 0}
    most: dict[int, int] = {0: 0, 1: 0}
    lock = threading.Lock()

    def run(self: zygote.Zygote, request: object, scratch: Path, *, timeout: float, cancel: object = None) -> str:
        assert self.gpu is not None
        with lock:
            active[self.gpu.index] += 1
            most[self.gpu.index] = max(most[self.gpu.index], active[self.gpu.index])
        time.sleep(0.1)
        with lock:
            active[self.gpu.index] -= 1
        return f"gpu{self.gpu.index}"

    monkeypatch.setattr(zygote.Zygote, "run", run)
    pool = zygote.ZygotePool(tmp_path, tmp_path / "slots", slots=DeviceSlots([Gpu(index=0, minor=0), Gpu(index=1, minor=1)]))
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(pool.run(None, tmp_path, timeout=5)))  # type: ignore[arg-type]
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == {0: 1, 1: 1} and sorted(set(answers)) == ["gpu0", "gpu1"]
    assert len(pool._all) == 2  # one zygote per GPU, reused


# ------------------------------------------------------------------------------------------------
# Out of memory, batch halving, streaming


def _tiny_model():  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])


def _tf_oom() -> BaseException:
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[256,512,28,28] and type float "
                                                        "on /job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc")


def _torch_oom() -> BaseException:
    torch = pytest.importorskip("torch")
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB")


def _jax_oom() -> BaseException:
    class XlaRuntimeError(RuntimeError):  # jaxlib's type, which this machine does not have installed
        pass

    return XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8589934592 bytes.")


def _wrapped(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise ValueError("predict failed") from exc
    except ValueError as outer:
        return outer


@pytest.mark.parametrize("make", [_tf_oom, _torch_oom, _jax_oom, lambda: _wrapped(_tf_oom())],
                         ids=["tensorflow", "torch", "jax", "chained"])
def test_device_out_of_memory_is_recognised(make) -> None:  # type: ignore[no-untyped-def]
    from grader.worker.backends import is_out_of_memory

    assert is_out_of_memory(make())


@pytest.mark.parametrize("exc", [MemoryError(), ValueError("shapes (3,) and (4,) not aligned"), RuntimeError("CUDA error: illegal address")])
def test_other_errors_are_not_out_of_memory(exc: BaseException) -> None:
    from grader.worker.backends import is_out_of_memory

    assert not is_out_of_memory(exc)


class _RunsOutOfMemory:
    """Test double for the one thing a CPU cannot do here: run out of GPU memory. It wraps a real Keras
    model and raises the error the library raises (a real tf.errors.ResourceExhaustedError, or
    torch.OutOfMemoryError) for batches larger than `fits`; smaller batches run the real model."""

    def __init__(self, model, fits: int, error) -> None:  # type: ignore[no-untyped-def]
        self.model, self.fits, self.error = model, fits, error
        self.asked: list[int] = []
        self.input_shape, self.output_shape = model.input_shape, model.output_shape

    def predict(self, x: np.ndarray, batch_size: int, verbose: int = 0) -> np.ndarray:
        self.asked.append(batch_size)
        if batch_size > self.fits:
            raise self.error()
        return self.model.predict(x, batch_size=batch_size, verbose=verbose)


@pytest.mark.parametrize("error", [_tf_oom, _torch_oom], ids=["tensorflow", "torch"])
def test_the_batch_is_halved_on_out_of_memory_and_the_outputs_do_not_change(error) -> None:  # type: ignore[no-untyped-def]
    model = _tiny_model()
    images = np.random.default_rng(0).integers(0, 256, (300, 28, 28), dtype=np.uint8)
    cand = adapt.Candidate("as-is", "unit")
    want = _predict(model, images, (None, 28, 28), cand, STATS, 256)
    double, batch = _RunsOutOfMemory(model, fits=64, error=error), Batch(256)
    got = _predict(double, images, (None, 28, 28), cand, STATS, batch)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert (batch.size, batch.halvings) == (64, 2) and double.asked == [256, 128, 64]
    _predict(double, images[:100], (None, 28, 28), cand, STATS, batch)  # the size that worked is kept
    assert double.asked[-1] == 64 and batch.halvings == 2


def test_out_of_memory_at_a_batch_of_one_is_the_model_s_error() -> None:
    double, batch = _RunsOutOfMemory(_tiny_model(), fits=0, error=_tf_oom), Batch(8)
    with pytest.raises(Exception, match="OOM when allocating"):
        _predict(double, np.zeros((10, 28, 28), np.uint8), (None, 28, 28), adapt.Candidate("as-is", "unit"), STATS, batch)
    assert double.asked == [8, 4, 2, 1] and batch.size == 1


def test_another_error_is_not_retried() -> None:
    calls = []

    def predict(size: int) -> None:
        calls.append(size)
        raise ValueError("Input 0 of layer dense is incompatible")

    with pytest.raises(ValueError):
        Batch(64).run(predict)
    assert calls == [64]


def test_the_hidden_set_is_converted_to_float_a_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The front on the device gets float32 chunks of a bounded size, never the whole set, and the
    outputs are those of the host path."""
    import keras

    from grader.worker import adapt_layers

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    images = np.random.default_rng(1).integers(0, 256, (200, 28, 28), dtype=np.uint8)
    seen: list[tuple[int, np.dtype]] = []
    real = adapt_layers.with_front

    class Spy:
        def __init__(self, front) -> None:  # type: ignore[no-untyped-def]
            self.front = front

        def predict(self, x: np.ndarray, batch_size: int, verbose: int = 0) -> np.ndarray:
            seen.append((len(x), x.dtype))
            return self.front.predict(x, batch_size=batch_size, verbose=verbose)

    monkeypatch.setattr(adapt_layers, "with_front", lambda *a, **k: Spy(real(*a, **k)))
    monkeypatch.setattr(evaluate, "_CHUNK_BYTES", 64 * 28 * 28 * 4)  # 64 source images as float32
    cand = adapt.Candidate("resize", "unit")
    streamed = _predict(model, images, (None, 32, 32, 3), cand, STATS, 32, on_device=True)
    assert seen == [(64, np.float32)] * 3 + [(8, np.float32)]
    host = _predict(model, images, (None, 32, 32, 3), cand, STATS, 32)
    np.testing.assert_allclose(streamed, host, atol=1e-5)
    assert np.array_equal(streamed.argmax(1), host.argmax(1))


# ------------------------------------------------------------------------------------------------
# What is recorded


def _public(fmnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from grader.inputs import datasets

    return datasets.load_split(datasets.resolve_split("fashion-mnist", "test", explicit_dir=fmnist_dir, download=False))


def test_a_cpu_evaluation_records_its_run(tmp_path: Path, fmnist_dir: Path) -> None:
    x, y = _public(fmnist_dir)
    _tiny_model().save(tmp_path / "m.keras")
    result = evaluate_one(WorkerModel(index=0, path=str(tmp_path / "m.keras")), x[:500], x[500:540], y[500:540], STATS, tmp_path, 128)
    assert result.ok, result.error
    run = result.run
    assert run is not None and (run.device, run.backend, run.batch_size, run.batch_halvings) == ("cpu", "tensorflow", 128, 0)
    # the hidden-set pass is part of the model's whole evaluation; the CPU peak is the worker's resident set
    assert 0 < run.seconds < result.seconds and run.peak_memory_bytes and run.peak_memory_bytes > 100 * 1024**2


def test_halvings_reach_the_model_s_record_and_warnings(tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """_load gives the OOM test double (see _RunsOutOfMemory) around a real model."""
    x, y = _public(fmnist_dir)
    double = _RunsOutOfMemory(_tiny_model(), fits=50, error=_tf_oom)
    monkeypatch.setattr(evaluate, "_load", lambda *a, **k: (double, "test loader", []))
    result = evaluate_one(WorkerModel(index=0, path="unused.keras"), x[:300], x[300:340], y[300:340], STATS, tmp_path, 200)
    assert result.ok, result.error
    assert result.run is not None and (result.run.batch_size, result.run.batch_halvings) == (50, 2)
    assert any("batches of 50 (2 halving(s))" in w for w in result.warnings)


@pytest.mark.slow
def test_the_run_reaches_results_json_and_the_teacher_s_page(tmp_path: Path, fmnist_dir: Path) -> None:
    """Through the real pipeline (sandboxed when bubblewrap works): results.json carries each model's
    run and the teacher's page shows it in one line; the student's own page does not."""
    from grader.pipeline import grade
    from grader.inputs.rubric import load_rubric

    subs = tmp_path / "class"
    (subs / "ann").mkdir(parents=True)
    _tiny_model().save(subs / "ann" / "model.keras")
    outcome = grade(subs, load_rubric(ROOT / "rubrics" / "hw10.yaml"),
                    Settings(out=tmp_path / "out", hidden_tests=fmnist_dir, download=False, public_sample=20, project_root=ROOT,
                             batch_size=512))
    assert outcome.results.run.device == "cpu" or outcome.results.run.device.startswith("gpu:")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    (model,) = saved["students"][0]["evidence"]["models"]
    run = model["run"]
    assert run["device"] == outcome.results.run.device and run["batch_size"] == 512 and run["batch_halvings"] == 0
    assert run["backend"] == "tensorflow" and run["seconds"] > 0 and run["peak_memory_bytes"] > 0
    teacher = (tmp_path / "out" / "students" / "ann.html").read_text()
    assert "hidden set on cpu" in teacher and "batches of 512" in teacher and "peak memory of the evaluating process" in teacher
    assert "hidden set on" not in (tmp_path / "out" / "feedback" / "ann.html").read_text()
