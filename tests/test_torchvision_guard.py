"""The torchvision guard: patches only when torchvision's ops cannot load, does nothing otherwise.

Each case runs in a fresh interpreter: operator schemas are process-global and cannot be undefined.
The "native" and "patched" paths are exercised on a private namespace with an injected extension loader,
so both are tested whatever this machine's torchvision build does.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run_py(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_real_environment_imports_timm_and_torchvision():
    out = run_py("""
        import mvd_lib, timm, torchvision
        from mvd_lib import torchvision_guard as g
        import torch
        print(g.STATUS, g.op_exists("torchvision", "nms"), g.op_exists("torchvision", "qnms"))
    """)
    status, nms, qnms = out.split()
    assert status in ("native", "patched")
    assert nms == qnms == "True"


def test_patched_path_defines_exactly_the_missing_schemas():
    out = run_py("""
        import torch
        from mvd_lib import torchvision_guard as g
        ns = "mvd_guard_test_patch"
        assert not g.op_exists(ns, "nms")
        status = g.install(namespace=ns, load_extension=lambda: False, torchvision_installed=lambda: True)
        schema = str(torch._C._dispatch_find_schema_or_throw(ns + "::nms", "").schema())
        print(status, g.op_exists(ns, "nms"), g.op_exists(ns, "qnms"))
        print(schema)
    """)
    first, schema = out.splitlines()[-2:]
    assert first == "patched True True"
    assert "float iou_threshold" in schema


def test_native_path_is_inert():
    """Where the extension loads (simulated: the loader registers the ops itself), nothing else is defined."""
    out = run_py("""
        import torch
        from mvd_lib import torchvision_guard as g
        ns = "mvd_guard_test_native"
        calls = []
        def loader():
            calls.append(1)
            lib = torch.library.Library(ns, "DEF")
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            loader.lib = lib
            return True
        n_before = len(g._LIBRARIES)
        status = g.install(namespace=ns, load_extension=loader, torchvision_installed=lambda: True)
        print(status, len(calls), len(g._LIBRARIES) - n_before)
        # already registered: a second install neither loads nor defines
        status2 = g.install(namespace=ns, load_extension=loader, torchvision_installed=lambda: True)
        print(status2, len(calls), len(g._LIBRARIES) - n_before)
    """)
    assert out.splitlines()[-2:] == ["native 1 0", "native 1 0"]


def test_absent_torchvision_is_left_alone():
    out = run_py("""
        from mvd_lib import torchvision_guard as g
        ns = "mvd_guard_test_absent"
        print(g.install(namespace=ns, load_extension=lambda: False, torchvision_installed=lambda: False),
              g.op_exists(ns, "nms"))
    """)
    assert out.splitlines()[-1] == "absent False"


@pytest.mark.parametrize("name", ["nms", "qnms"])
def test_schemas_match_torchvision_meta_registrations(name):
    """The schema argument list must fit the fake kernels torchvision registers (dets, scores, iou_threshold)."""
    from mvd_lib.torchvision_guard import SCHEMAS

    assert SCHEMAS[name].startswith("(Tensor dets, Tensor scores, float iou_threshold)")
