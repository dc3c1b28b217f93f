"""Several gunicorn workers per instance: how many, their share of the instance's limits, the
readiness of all of them, and the decode memory bound across them."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time

import pytest
import requests

from hw5kit import procs
from hw5kit.bench import stress
from hw5kit.photos import photo
from hw5kit.serving import capacity
from hw5kit.serving.errors import Overloaded
from hw5kit.serving.images import DecodeBudget
from hw5kit.serving.instance import Instance
from hw5kit.serving.settings import ServingSettings, cpu_count, default_instance_workers

MIB = 2**20
GIB = 2**30


def test_one_worker_per_cpu_as_the_memory_allows():
    # the default decode budget (801 MiB), front buffer and parsed copies (3 x 128), master
    reserved = 1249 * MIB
    assert default_instance_workers({}) >= 1
    lite0, resnet = ["efficientnet_lite0"], ["resnet50"]
    assert capacity.worker_count(2, lite0, 2 * GIB, reserved) == 2  # Cloud Run 2 GiB
    assert capacity.worker_count(4, lite0, 2 * GIB, reserved) == 2  # memory, not CPUs, bounds
    assert capacity.worker_count(2, resnet, 2 * GIB, reserved) == 1  # resnet50 keeps one
    assert capacity.worker_count(2, resnet, 4 * GIB, reserved) == 2  # unless memory rises
    # v2's three models in each worker do not fit twice in 2 GiB
    v2 = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert capacity.worker_count(2, v2, 2 * GIB, reserved) == 1
    assert capacity.worker_count(2, ["some_big_net"], 2 * GIB, reserved) == 1  # unknown: 1.5 GiB
    assert capacity.worker_count(2, lite0, None, reserved) == 1  # memory unknown
    assert capacity.worker_count(1, lite0, 24 * GIB, reserved) == 1
    assert capacity.worker_count(2, lite0, 100 * MIB, reserved) == 1  # never none


def test_the_memory_limit_is_the_cgroup_one_or_the_machine(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text("MemTotal:       24683664 kB\nMemFree: 1 kB\n")
    assert capacity.memory_limit_bytes(str(tmp_path)) == 24683664 * 1024
    cgroup = tmp_path / "sys" / "fs" / "cgroup"
    cgroup.mkdir(parents=True)
    (cgroup / "memory.max").write_text("max\n")  # no limit: the machine's
    assert capacity.memory_limit_bytes(str(tmp_path)) == 24683664 * 1024
    (cgroup / "memory.max").write_text(f"{2 * GIB}\n")
    assert capacity.memory_limit_bytes(str(tmp_path)) == 2 * GIB
    assert capacity.memory_limit_bytes(str(tmp_path / "nothing")) is None


def test_the_memory_limit_is_this_process_cgroup_or_an_ancestor(tmp_path):
    """A container without a cgroup namespace (this machine: cgroup v1, the process in
    ``memory:/process_api/<id>``) sees the host's root at /sys/fs/cgroup: the limit is its own
    cgroup's, or an ancestor's when smaller, never the root's alone."""
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "meminfo").write_text("MemTotal:       24683664 kB\n")
    (tmp_path / "proc" / "self" / "cgroup").write_text(
        "4:memory:/pod/box\n3:cpu,cpuacct:/pod/box\n0::/\n"
    )
    v1 = tmp_path / "sys" / "fs" / "cgroup" / "memory"
    (v1 / "pod" / "box").mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # the root: none
    (v1 / "pod" / "box" / "memory.limit_in_bytes").write_text(f"{2 * GIB}\n")
    assert capacity.memory_limit_bytes(str(tmp_path)) == 2 * GIB
    (v1 / "pod" / "memory.limit_in_bytes").write_text(f"{GIB}\n")  # a parent's is smaller
    assert capacity.memory_limit_bytes(str(tmp_path)) == GIB
    # cgroup v2, the process in /app.slice/run: its memory.max, ".." never leaves the mount
    (tmp_path / "proc" / "self" / "cgroup").write_text("0::/app.slice/../run\n")
    v2 = tmp_path / "sys" / "fs" / "cgroup"
    (v2 / "app.slice" / "run").mkdir(parents=True)
    (v2 / "app.slice" / "run" / "memory.max").write_text(f"{3 * GIB}\n")
    assert capacity.memory_limit_bytes(str(tmp_path)) == 3 * GIB


def test_each_worker_gets_its_share_and_the_instance_totals_stay():
    instance = capacity.plan(2)
    share = capacity.per_worker(instance, 2)
    assert share.inflight * 2 == instance.inflight == 8
    # any one worker may hold all Cloud Run sends (connections do not spread evenly)
    assert share.admitted == instance.admitted == 72
    assert share.threads >= share.admitted + 1
    assert capacity.per_worker(instance, 1) == instance
    assert capacity.share(128 * MIB, 2) == 64 * MIB

    cpus = cpu_count()
    one = ServingSettings.from_env("v1", {"HW5_WORKERS": "1"})
    two = ServingSettings.from_env("v1", {"HW5_WORKERS": "2"})
    assert two.max_inflight == max(1, one.max_inflight // 2)
    assert two.decode_budget_bytes == one.decode_budget_bytes // 2
    assert two.torch_threads == max(1, cpus // 2)
    assert two.workers == 2
    given = ServingSettings.from_env("v1", {"HW5_WORKERS": "2", "HW5_DECODE_MEMORY_MB": "100"})
    assert given.decode_budget_bytes == 50 * MIB


def test_hw5_workers_overrides_the_count():
    assert default_instance_workers({"MODEL_NAME": "efficientnet_lite0"}) >= 1
    assert ServingSettings.from_env("v1", {"HW5_WORKERS": "3"}).workers == 3


def test_readiness_counts_live_workers_only(tmp_path):
    instance = Instance(str(tmp_path), 2)
    assert not instance.all_ready()
    instance.mark_ready()  # this process
    assert instance.ready_workers() == 1 and not instance.all_ready()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    instance.mark_ready(int(gone.stdout))  # a worker that has exited since
    assert not instance.all_ready()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as alive:
        try:
            instance.mark_ready(alive.pid)
            assert instance.all_ready()
            instance.forget(alive.pid)  # what the master's child_exit does
            assert not instance.all_ready()
        finally:
            alive.kill()


def test_a_decode_over_a_workers_share_runs_alone_in_the_instance(tmp_path):
    """Two budgets stand for two workers' (flock locks belong to the open file, so two in one
    process conflict as two processes' do)."""
    instance = Instance(str(tmp_path), 2)
    first = DecodeBudget(100, timeout=0.3, instance=instance)
    second = DecodeBudget(100, timeout=0.3, instance=instance)
    with first.reserve(60):  # within the share: others decode beside it
        with second.reserve(60):
            pass
        # over the share: waits for the instance to be idle
        with pytest.raises(Overloaded), second.reserve(150):
            pass
    with first.reserve(150), pytest.raises(Overloaded), second.reserve(10):
        pass  # alone: nothing else starts
    with second.reserve(150):  # and once it ended, the next one goes
        pass


def predict(url: str) -> int:
    data = photo("chelsea.png").path.read_bytes()
    with requests.Session() as session:  # a connection of its own: any worker may take it
        answer = session.post(f"{url}/predict", files={"file": ("chelsea.png", data)}, timeout=60)
    return answer.status_code


@pytest.mark.slow
def test_the_default_serves_from_every_worker_once_all_are_ready(tmp_path, baked_home):
    """The image's command, no tuning variable: ``/readyz`` says 200 only with every worker
    loaded, and predictions sent before that wait for the load instead of failing."""
    home = baked_home  # baked as the image bakes it (conftest)
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = stress.production_env(
        home, PORT=str(port), HW5_BIND_HOST="127.0.0.1", TMPDIR=str(private_tmp)
    )
    expected = default_instance_workers(env)
    if cpu_count() >= 2:
        assert expected >= 2  # this machine has the memory for a worker per CPU
    proc = procs.start("workers", stress.image_command(), log_path=tmp_path / "w.log", env=env,
                       url=url)  # fmt: skip
    try:
        procs.wait_http(f"{url}/healthz", timeout=120, process=proc)
        # sent at once, while workers may still load: each waits for its worker's models
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            early = list(pool.map(lambda _: predict(url), range(16)))
        assert early == [200] * 16
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            answer = requests.get(f"{url}/readyz", timeout=10)
            if answer.status_code == 200:
                break
            assert answer.json()["workers"]["ready"] < expected
            time.sleep(0.05)
        body = answer.json()
        assert answer.status_code == 200, body
        assert body["workers"] == {"ready": expected, "total": expected}
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            assert list(pool.map(lambda _: predict(url), range(32))) == [200] * 32
        # /metrics sums the workers, whichever takes the scrape (each scrape on a new connection)
        for _ in range(6):
            text = requests.get(f"{url}/metrics", timeout=10, headers={"Connection": "close"}).text
            answered = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("hw5_http_requests_total{") and 'route="/predict"' in line
                and 'status="200"' in line
            )  # fmt: skip
            assert answered == 48, text[-2000:]
        # the master's private directory: one ready file per worker
        (private,) = private_tmp.glob("hw5-instance-*")
        assert private.stat().st_mode & 0o077 == 0
        assert len(list(private.glob("ready.*"))) == expected
    finally:
        proc.stop()
    assert not list(private_tmp.glob("hw5-instance-*"))  # removed when the master exits
