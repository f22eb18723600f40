"""The allocator setting is applied (glibc keeps large blocks off mmap), and opted out of.

Each check runs in a fresh interpreter: mallopt cannot be undone in a process. Speed is not
tested (benchmarks/results records it); what is tested is that the setting takes effect.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from shiftpool.core.allocator import MALLOC_ENV, configure_malloc
from shiftpool.core.errors import InputError

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# bytes glibc holds in mmapped blocks (mallinfo2().hblkhd) after an 8 MiB malloc
PROBE = """
import ctypes, json, sys
{setup}
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
before = libc.mallinfo2().hblkhd
block = libc.malloc(8 << 20)
print(json.dumps({{"mapped": libc.mallinfo2().hblkhd - before, "record": record}}))
"""


def _probe(setup: str, env: dict[str, str]) -> dict:
    import json

    environment = {k: v for k, v in os.environ.items() if k not in (MALLOC_ENV, "LD_PRELOAD")}
    result = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)],
                            env={**environment, **env}, capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])  # after what the code printed


@pytest.mark.skipif(not GLIBC, reason="the setting applies to glibc only")
@pytest.mark.parametrize(("env", "setting", "mapped"), [
    ({}, "fast", False), ({MALLOC_ENV: "fast"}, "fast", False),
    ({MALLOC_ENV: "default"}, "default", True),
])
def test_fast_setting_keeps_large_blocks_in_the_heap(env, setting, mapped):
    setup = "from shiftpool.core.allocator import configure_malloc; record = configure_malloc()"
    found = _probe(setup, env)
    assert found["record"]["setting"] == setting
    assert (found["mapped"] >= 8 << 20) is mapped


@pytest.mark.skipif(not GLIBC, reason="the setting applies to glibc only")
@pytest.mark.parametrize(("env", "mapped"), [({}, False), ({MALLOC_ENV: "default"}, True)])
def test_the_command_line_applies_the_setting_at_start(env, mapped):
    setup = ("from shiftpool.cli import main; from shiftpool.core.allocator import "
             "malloc_setting\nmain(['list'])\nrecord = malloc_setting()")
    assert (_probe(setup, env)["mapped"] >= 8 << 20) is mapped


def test_an_unknown_setting_is_one_clear_error(monkeypatch):
    with pytest.raises(InputError, match=r"unknown allocator setting 'tc'; allowed: fast, "
                                         r"default"):
        configure_malloc("tc")
    monkeypatch.setenv(MALLOC_ENV, "jemalloc")
    with pytest.raises(InputError, match=rf"{MALLOC_ENV}: unknown allocator setting"):
        configure_malloc()


def test_the_command_line_refuses_an_unknown_setting_in_one_line(monkeypatch, capsys):
    from shiftpool.cli import main

    monkeypatch.setenv(MALLOC_ENV, "huge")
    assert main(["list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "SHIFTPOOL_MALLOC: unknown allocator setting 'huge'" in err
