"""A backend written outside the package, to show what adding one takes: this file and one ``register`` line.

It runs no network: the fused image is the RGB frame and the mask marks thermal pixels above mid-grey
(class 1). Settings it owns: CPU only, fp32 only, and one option of its own, ``echo_class``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sccosf_ros.backends import BackendOptions, BackendOutput, Device
from sccosf_ros.checkpoint import read_checkpoint_meta
from sccosf_ros.errors import ConfigError


class EchoBackend:
    name = "echo"
    precision = "fp32"
    has_refine = False
    seg_refine = False

    def __init__(self, checkpoint: Path, hot_class: int) -> None:
        self.meta = read_checkpoint_meta(checkpoint)  # class names and palette, as every backend reports
        self.device = Device("cpu")
        self.hot_class = hot_class

    @classmethod
    def check(cls, options: BackendOptions) -> BackendOptions:
        if options.device.type == "cuda" or options.precision != "fp32":
            raise ConfigError("backend 'echo' runs on the CPU in fp32 only")
        return options

    @classmethod
    def open(cls, checkpoint: Path, options: BackendOptions) -> EchoBackend:
        return cls(checkpoint, int(options.extra.get("echo_class", 1)))

    def run(self, rgb: np.ndarray, thermal: np.ndarray, want_probs: bool) -> BackendOutput:
        t = time.perf_counter()
        hot = thermal > (127 if thermal.dtype == np.uint8 else 0.5)
        mask = np.where(hot, self.hot_class, 0).astype(np.uint8)
        return BackendOutput(rgb.copy(), mask, None, t, time.perf_counter())

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "device": "cpu"}

    def close(self) -> None:
        pass
