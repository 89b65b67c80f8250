"""caterva.service.runner: how a service process is set up to run."""

import subprocess
import sys

# What a service does per chunk, in its event loop: a fresh MiB-sized buffer, filled, copied
# (a join, a bytes()), both freed. Prints how many page faults 50 rounds cost.
PROBE = """
import resource, sys
if sys.argv[1] == "tuned":
    from caterva.service.runner import tune_malloc
    tune_malloc()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    a = bytearray(2 << 20)
    a[::4096] = b"x" * 512
    b = bytes(a)
    del a, b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 50 * 2 * (2 << 20) // 4096  # every page of both buffers, each round


def faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_services_reuse_chunk_sized_buffers_instead_of_faulting_in_fresh_pages():
    # glibc's defaults fault in nearly every page here (about PAGES): a third of the CPU
    # of a cold download went to that
    assert faults("tuned") < PAGES // 10
