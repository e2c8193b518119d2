"""neurop.runtime: the C allocator setting removes the page faults of re-allocating freed blocks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from neurop.runtime import _glibc, configure_cpu_allocator

GLIBC = _glibc() is not None

# Allocates, touches and frees a 64 MB tensor (above glibc's largest dynamic mmap threshold, 32 MB) 20
# times after 12 warm-up rounds, and prints the minor page faults of the 20. (glibc needs a few rounds
# before it reuses a freed 64-byte-aligned block: its heap grows until the freed chunks fit.)
_PROBE = """
import json, resource, sys, torch
from neurop.runtime import configure_cpu_allocator, cpu_allocator
on = configure_cpu_allocator(sys.argv[1])
def rounds(n):
    for _ in range(n):
        x = torch.empty(16 * 2**20)
        x.fill_(1.0)
        del x
rounds(12)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(20)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"on": on, "mode": cpu_allocator(), "faults": faults}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_unknown_allocator_setting_is_refused_naming_the_value() -> None:
    msg = r"cpu_allocator must be one of \('default', 'retain'\), got 'jemalloc'"
    with pytest.raises(ValueError, match=msg):
        configure_cpu_allocator("jemalloc")


@pytest.mark.skipif(not GLIBC, reason="the retain setting needs glibc")
def test_retain_removes_the_page_faults_of_reallocating_a_large_block() -> None:
    default, retain = _probe("default"), _probe("retain")
    assert default == {"on": False, "mode": "default", "faults": default["faults"]}
    assert retain["on"] is True and retain["mode"] == "retain"
    # default: every 64 MB block is mapped afresh and faulted in again (16384 pages of 4 KiB a block; the
    # kernel may map several per fault, hence the loose bound)
    assert default["faults"] > 20 * 2000, default
    # retain: the freed block is reused from the heap, already mapped
    assert retain["faults"] < 0.05 * default["faults"], (default, retain)
