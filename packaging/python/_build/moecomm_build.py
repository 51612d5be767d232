# SPDX-License-Identifier: Apache-2.0
"""PEP 517 build backend of the moecomm wheel: no dependencies, works offline.

The wheel holds the pure-Python package and, when one is found, a copy of the plugin as
``moecomm/_lib/libmoecomm.so`` (then it is tagged for this platform, since it carries an ELF file):
``MOECOMM_WHEEL_PLUGIN`` names it (``none``: no copy), else the source checkout's
``build/libmoecomm.so`` is taken when it exists.  ``make wheel`` sets MOECOMM_WHEEL_PLUGIN to
``BUILD``'s plugin.  Editable installs (``pip install -e``) point at the source tree, where the
package finds the build tree's plugin by itself.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import platform
import re
import sysconfig
import zipfile
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # packaging/python
PKG = os.path.join(HERE, "moecomm")
NAME = "moecomm"


def _version() -> str:
    with open(os.path.join(PKG, "__init__.py")) as f:
        m = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    if m is None:
        raise RuntimeError("moecomm/__init__.py has no __version__")
    return m.group(1)


def _plugin() -> Optional[str]:
    env = os.environ.get("MOECOMM_WHEEL_PLUGIN", "")
    if env == "none":
        return None
    if env:
        if not os.path.isfile(env):
            raise RuntimeError("MOECOMM_WHEEL_PLUGIN=%s: no such file" % env)
        return env
    tree = os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "libmoecomm.so")
    return tree if os.path.isfile(tree) else None


def _tag(with_plugin: bool) -> str:
    if not with_plugin:
        return "py3-none-any"
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    if not plat.startswith("linux_"):
        plat = "linux_" + platform.machine()
    return "py3-none-" + plat


def _license() -> bytes:
    """The Apache-2.0 text: the repository's LICENSE, or the sdist's copy of it."""
    for path in (os.path.join(HERE, "LICENSE"),
                 os.path.join(os.path.dirname(os.path.dirname(HERE)), "LICENSE")):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return f.read()
    raise RuntimeError("no LICENSE next to %s or at the repository root" % HERE)


def _metadata(version: str) -> str:
    with open(os.path.join(HERE, "README.md")) as f:
        readme = f.read()
    return ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n"
            "Summary: Python package of the moecomm communicator plugin (ctypes over its C ABI)\n"
            "Requires-Python: >=3.8\nLicense: Apache-2.0\n"
            "Classifier: License :: OSI Approved :: Apache Software License\n"
            "Provides-Extra: test\nRequires-Dist: numpy; extra == \"test\"\n"
            "Requires-Dist: pytest; extra == \"test\"\n"
            "Requires-Dist: ml_dtypes; extra == \"test\"\n"
            "Description-Content-Type: text/markdown\n\n%s" % (NAME, version, readme))


def _files(with_plugin: Optional[str]) -> List[Tuple[str, bytes]]:
    out = []
    for name in sorted(os.listdir(PKG)):
        if name.endswith(".py") or name == "py.typed":
            with open(os.path.join(PKG, name), "rb") as f:
                out.append(("moecomm/" + name, f.read()))
    if with_plugin:
        with open(with_plugin, "rb") as f:
            out.append(("moecomm/_lib/libmoecomm.so", f.read()))
    return out


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (path, digest, len(data))


def _write_wheel(directory: str, files: List[Tuple[str, bytes]], tag: str, purelib: bool) -> str:
    version = _version()
    info = "%s-%s.dist-info" % (NAME, version)
    meta: Dict[str, bytes] = {
        info + "/METADATA": _metadata(version).encode(),
        info + "/WHEEL": ("Wheel-Version: 1.0\nGenerator: moecomm_build\nRoot-Is-Purelib: %s\n"
                          "Tag: %s\n" % ("true" if purelib else "false", tag)).encode(),
        info + "/entry_points.txt": b"[console_scripts]\nmoecomm = moecomm.__main__:main\n",
        info + "/LICENSE": _license(),
    }
    everything = files + sorted(meta.items())
    record = [_record_line(p, d) for p, d in everything] + [info + "/RECORD,,"]
    name = "%s-%s-%s.whl" % (NAME, version, tag)
    os.makedirs(directory, exist_ok=True)
    with zipfile.ZipFile(os.path.join(directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in everything:
            zi = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = (0o755 if path.endswith(".so") else 0o644) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
        z.writestr(zipfile.ZipInfo(info + "/RECORD", date_time=(2020, 1, 1, 0, 0, 0)),
                   "\n".join(record) + "\n")
    return name


# ---- PEP 517 / PEP 660 hooks ----

def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[dict] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str,
                                     config_settings: Optional[dict] = None) -> str:
    info = "%s-%s.dist-info" % (NAME, _version())
    os.makedirs(os.path.join(metadata_directory, info), exist_ok=True)
    with open(os.path.join(metadata_directory, info, "METADATA"), "w") as f:
        f.write(_metadata(_version()))
    return info


def build_wheel(wheel_directory: str, config_settings: Optional[dict] = None,
                metadata_directory: Optional[str] = None) -> str:
    plugin = _plugin()
    return _write_wheel(wheel_directory, _files(plugin), _tag(plugin is not None), plugin is None)


def build_editable(wheel_directory: str, config_settings: Optional[dict] = None,
                   metadata_directory: Optional[str] = None) -> str:
    pth = ("moecomm_editable.pth", (HERE + "\n").encode())
    return _write_wheel(wheel_directory, [pth], "py3-none-any", True)


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    import tarfile
    version = _version()
    base = "%s-%s" % (NAME, version)
    name = base + ".tar.gz"
    os.makedirs(sdist_directory, exist_ok=True)
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tar:
        files = [(rel, open(os.path.join(HERE, rel), "rb").read())
                 for rel in ["pyproject.toml", "README.md", "_build/moecomm_build.py"]]
        files += _files(None) + [("LICENSE", _license()),
                                 ("PKG-INFO", _metadata(version).encode())]
        for rel, data in files:
            ti = tarfile.TarInfo(base + "/" + rel)
            ti.size = len(data)
            ti.mode = 0o644
            tar.addfile(ti, io.BytesIO(data))
    return name
