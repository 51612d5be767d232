# SPDX-License-Identifier: Apache-2.0
"""The package as a user meets it: import hygiene, version, plugin discovery (host_shim/loader.c's
rules and messages), the wheel and its bundled plugin, and ``python -m moecomm``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from typing import Dict, Optional

import pytest
from reference import KINDS, Topo

import moecomm
from moecomm import _loader

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # packaging/python
ROOT = os.path.dirname(os.path.dirname(HERE))


def _run(args: list, env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
         drop: tuple = ()) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    for k in drop:
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([sys.executable] + args, env=e, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_import_loads_nothing_heavy() -> None:
    code = ("import sys, moecomm, moecomm.launch, moecomm.selftest; "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, "
            "sorted(m for m in sys.modules if m in ('torch', 'numpy')); "
            "assert moecomm._loader._plugin is None; print('clean')")
    r = _run(["-c", code], env={"MOECOMM_PLUGIN": "none"})
    assert r.returncode == 0 and r.stdout.strip() == "clean", r.stderr


def test_version_matches_repository() -> None:
    with open(os.path.join(ROOT, "VERSION")) as f:
        assert moecomm.__version__ == f.read().strip()
    assert moecomm.plugin().plugin_version == moecomm.__version__


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("MOECOMM_PLUGIN", raising=False)
    monkeypatch.delenv("MOECOMM_PLUGIN_DIR", raising=False)
    return monkeypatch


def _load_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(moecomm.LoadError) as e:
        _loader.load()
    return e.value.message


def test_discovery_rules(clean_env: pytest.MonkeyPatch, build: str) -> None:
    m = clean_env
    plugin = os.path.join(build, "libmoecomm.so")
    assert _load_error(m, MOECOMM_PLUGIN="none") == "MOECOMM_PLUGIN=none: plugin disabled"
    msg = _load_error(m, MOECOMM_PLUGIN="/nonexistent/libx.so")
    assert msg.startswith("cannot load /nonexistent/libx.so")
    msg = _load_error(m, MOECOMM_PLUGIN="nosuch", MOECOMM_PLUGIN_DIR=build)
    assert msg.startswith("plugin 'nosuch': no libmoecomm-nosuch.so in %s (MOECOMM_PLUGIN_DIR)"
                          % build), msg
    assert "bundled with the package" in msg
    assert _load_error(m, MOECOMM_PLUGIN=" , ") == "MOECOMM_PLUGIN=' , ' names no plugin"
    m.setenv("MOECOMM_PLUGIN", "nosuch, %s" % plugin)  # a comma list: the first that loads
    assert _loader.load().path == os.path.realpath(plugin)
    m.setenv("MOECOMM_PLUGIN", "moecomm")  # the name moecomm also finds libmoecomm.so
    assert _loader.load().path == os.path.realpath(plugin)
    m.delenv("MOECOMM_PLUGIN")  # the default looks in MOECOMM_PLUGIN_DIR first
    assert _loader.load().path == os.path.realpath(plugin)
    alt = os.path.join(build, "abi", "libmoecomm-alt.so")
    if os.path.exists(alt):
        m.setenv("MOECOMM_PLUGIN", "alt")
        m.setenv("MOECOMM_PLUGIN_DIR", os.path.dirname(alt))
        p = _loader.load()
        assert p.name == "alt" and p.path == os.path.realpath(alt)


@pytest.mark.parametrize("fake,text", [
    ("libfake_v2only.so", "is not a moecomm plugin: it does not define moecomm_get_api_v1"),
    ("libfake_reexport.so", "comes from another object"),
    ("libfake_small_table.so", "function table is not an ABI 1.x table"),
    ("libfake_bad_version.so", "negotiated ABI 1.7, outside the requested range [1.0, "),
])
def test_refused_plugins(clean_env: pytest.MonkeyPatch, build: str, fake: str, text: str) -> None:
    path = os.path.join(build, "abi", fake)
    if not os.path.exists(path):
        pytest.skip("%s not built" % path)
    msg = _load_error(clean_env, MOECOMM_PLUGIN=path)
    assert text in msg and os.path.realpath(path) in msg, msg


def _record_ok(z: zipfile.ZipFile, record: str) -> bool:
    for line in z.read(record).decode().splitlines():
        path, digest, size = line.rsplit(",", 2)
        if not digest:
            continue
        data = z.read(path)
        want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if digest != "sha256=" + want or int(size) != len(data):
            return False
    return True


def _wheel(tmp: str, plugin: str) -> str:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", tmp, HERE],
                       env=dict(os.environ, MOECOMM_WHEEL_PLUGIN=plugin), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
    assert len(wheels) == 1, wheels
    return os.path.join(tmp, wheels[0])


def test_wheel_bundles_the_plugin(tmp_path: "os.PathLike[str]", build: str) -> None:
    plugin = os.path.join(build, "libmoecomm.so")
    whl = _wheel(str(tmp_path / "w"), plugin)
    assert os.path.basename(whl).startswith("moecomm-%s-py3-none-linux_" % moecomm.__version__)
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        info = "moecomm-%s.dist-info/" % moecomm.__version__
        assert {"moecomm/__init__.py", "moecomm/_lib/libmoecomm.so", "moecomm/py.typed",
                info + "METADATA", info + "WHEEL", info + "RECORD", info + "LICENSE"} <= names
        assert "\nLicense: Apache-2.0\n" in z.read(info + "METADATA").decode()
        assert z.read(info + "LICENSE") == open(os.path.join(HERE, "../../LICENSE"), "rb").read()
        assert z.read("moecomm/_lib/libmoecomm.so") == open(plugin, "rb").read()
        assert "Root-Is-Purelib: false" in z.read(info + "WHEEL").decode()
        assert _record_ok(z, info + "RECORD")
    site = str(tmp_path / "site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                        site, whl], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    # Installed, outside the source tree, with no MOECOMM_PLUGIN: the bundled copy is used.
    code = "import moecomm; print(moecomm.plugin().path)"
    r = _run(["-c", code], env={"PYTHONPATH": site}, cwd=str(tmp_path),
             drop=("MOECOMM_PLUGIN", "MOECOMM_PLUGIN_DIR"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == os.path.realpath(os.path.join(site, "moecomm/_lib/libmoecomm.so"))
    pure = _wheel(str(tmp_path / "p"), "none")
    assert pure.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(pure) as z:
        assert not [n for n in z.namelist() if n.endswith(".so")]


def test_cli_groups_match_design() -> None:
    topo = {"tp": 4, "ep": 4, "attn_cp": 2}
    r = _run(["-m", "moecomm", "groups", "--tp", "4", "--ep", "4", "--attn-cp", "2", "--json"],
             env={"MOECOMM_TIMEOUT_MS": "15000"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    ref = Topo(4, **topo)
    for rank, kinds in enumerate(out["ranks"]):
        for k in KINDS:
            assert kinds[k] == ref.group_of(k, rank), (rank, k)
    r = _run(["-m", "moecomm", "groups", "--tp", "8", "--ep", "2", "--per-rank"],
             env={"MOECOMM_TIMEOUT_MS": "15000"})
    assert r.returncode == 0 and "MOE_EP   [0,4] [1,5] [2,6] [3,7]" in r.stdout, r.stdout
    assert "rank 7: WORLD=0,1,2,3,4,5,6,7" in r.stdout
    r = _run(["-m", "moecomm", "groups", "--tp", "3", "--ep", "2"])
    assert r.returncode == 1 and "does not divide tp=3" in r.stderr, r.stderr


def test_cli_info_and_selftest() -> None:
    r = _run(["-m", "moecomm", "info"])
    assert r.returncode == 0, r.stderr
    assert moecomm.plugin().path in r.stdout and "shm     available" in r.stdout
    r = _run(["-m", "moecomm", "selftest", "--ranks", "3"], env={"MOECOMM_TIMEOUT_MS": "15000"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout and "backend shm" in r.stdout and "bfloat16" in r.stdout
