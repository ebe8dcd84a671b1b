"""Where the installed package keeps its data (shipped model, config, launch files).

One package runs three ways: installed by colcon into a ROS workspace (found through the ament index),
pip-installed into a venv (``data_files`` land under ``<sys.prefix>/share/sccosf_ros``), or straight from a
source checkout. Each lookup tries them in that order and returns the first that exists, so a user never
needs to pass a path to get the default model.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

PACKAGE = "sccosf_ros"
DEFAULT_MODEL_NAME = "sccosf_tiny.safetensors"

_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def _ament_share() -> Path | None:
    """The ament index share dir, or None without ament_index_python or outside a ROS install."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, ValueError, LookupError, OSError):
        return None


def share_dirs() -> list[Path]:
    """Candidate share directories, most specific install first, the source checkout last."""
    candidates = [_ament_share(), Path(sys.prefix) / "share" / PACKAGE, _SOURCE_ROOT]
    out: list[Path] = []
    for c in candidates:
        if c is not None and c.is_dir() and c not in out:
            out.append(c)
    return out


def find_data_file(relative: str | Path) -> Path | None:
    """First existing ``<share>/<relative>`` over :func:`share_dirs`, or None."""
    for base in share_dirs():
        candidate = base / relative
        if candidate.is_file():
            return candidate
    return None


def share_dir(subdir: str | None = None) -> Path | None:
    """The first share dir that has ``subdir`` (e.g. ``"config"``, ``"launch"``), or the first share dir."""
    for base in share_dirs():
        if subdir is None or (base / subdir).is_dir():
            return base if subdir is None else base / subdir
    return None


FASTDDS_PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"  # the variable Fast DDS 2.x (ROS 2 Jazzy) reads
FASTDDS_PROFILE_NAME = "fastdds_large_images.xml"


def fastdds_profile_path() -> Path | None:
    """The shipped Fast DDS profile with a shared-memory segment large enough for camera images."""
    return find_data_file(Path("config") / FASTDDS_PROFILE_NAME)


def with_fastdds_profile(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with :data:`FASTDDS_PROFILE_ENV` pointing at the shipped profile, unless already set.

    A value the user set (even empty, to opt out) is kept. Fast DDS reads the variable once per process,
    when its first participant is created: set it before ``rclpy.init`` or pass it to child processes.
    """
    out = dict(env)
    if FASTDDS_PROFILE_ENV not in out:
        path = fastdds_profile_path()
        if path is not None:
            out[FASTDDS_PROFILE_ENV] = str(path)
    return out


def default_checkpoint_path() -> Path | None:
    """The shipped ``models/sccosf_tiny.safetensors``, or None when no install or checkout has it."""
    return find_data_file(Path("models") / DEFAULT_MODEL_NAME)
