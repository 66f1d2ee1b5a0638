"""keep_freed_memory: a CPU step's temporary tensors reuse freed pages instead of faulting in fresh ones."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from mimax.runtime.allocator import users_allocator_choice

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="glibc's malloc only")

# A step's pattern: several >128 KiB temporaries alive together, then all freed. Page faults per step, with
# glibc's initial thresholds set explicitly first (its dynamic raising of them depends on the heap's history:
# whether a given run faults varies; a CPU training step did, ~300 times per step in the demo), then after
# keep_freed_memory.
PROBE = textwrap.dedent("""
    import ctypes, resource, sys, torch
    from mimax.runtime.allocator import keep_freed_memory
    if "--initial" in sys.argv:
        ctypes.CDLL(None).mallopt(-3, 128 * 1024), ctypes.CDLL(None).mallopt(-1, 128 * 1024)
    def faults(n=30):
        t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            xs = [torch.ones(256, 1024) for _ in range(4)]  # 4 x 1 MiB, written
            del xs
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - t0) / n
    faults(5)
    before = faults()
    applied = keep_freed_memory()
    faults(5)
    print(before, applied, faults())
""")


def _probe(env: dict[str, str]) -> tuple[float, bool, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, "--initial"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    before, applied, after = out.stdout.split()
    return float(before), applied == "True", float(after)


@glibc
def test_freed_tensors_are_reused_without_page_faults(monkeypatch):
    import os

    env = {k: v for k, v in os.environ.items() if users_allocator_choice({k: v}) is None}
    before, applied, after = _probe(env)
    assert applied
    assert before >= 256, f"expected glibc to fault freed 1 MiB blocks back in, got {before} faults per step"
    assert after <= 2, f"{after} page faults per step after keep_freed_memory"


@glibc
def test_the_users_own_allocator_settings_are_left_alone():
    import os

    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "131072", "MALLOC_MMAP_THRESHOLD_": "131072"}
    before, applied, after = _probe(env)
    assert not applied and after >= 256


def test_users_allocator_choice_names_the_variable():
    assert users_allocator_choice({}) is None
    assert users_allocator_choice({"PATH": "/bin"}) is None
    assert users_allocator_choice({"MALLOC_MMAP_THRESHOLD_": "1"}) == "MALLOC_MMAP_THRESHOLD_"
    assert users_allocator_choice({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}) == "GLIBC_TUNABLES"
    assert users_allocator_choice({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"}) is None
    assert users_allocator_choice({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}) == "LD_PRELOAD"


@glibc
def test_a_cpu_training_run_keeps_freed_memory(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if users_allocator_choice({k: v}) is None}
    code = textwrap.dedent(f"""
        import resource, torch
        from mimax.cli import main
        assert main(["train", "--model_name", "JMI", "--dataset", "Gaussian", "--gm_train_size", "128",
                     "--gm_test_size", "64", "--gm_monitor_size", "64", "--batch_size", "64", "--epochs", "1",
                     "--num_threads", "1", "--output_dir", {str(tmp_path / "run")!r}]) == 0
        for _ in range(5):  # the heap grows to the pattern's size once
            xs = [torch.ones(256, 1024) for _ in range(4)]
            del xs
        t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(30):
            xs = [torch.ones(256, 1024) for _ in range(4)]
            del xs
        print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - t0) / 30)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[-1]) <= 2
