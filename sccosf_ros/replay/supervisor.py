"""The fusion node as a child process of the replay: its command line, its log, its start and stop."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from sccosf_ros.replay.config import ReplayConfig, ReplayError


def node_command(cfg: ReplayConfig, warmup_size: str = "") -> list[str]:
    """The node as ``ros2 run sccosf_ros fusion_node`` would start it, with the bag's topics remapped in.

    ``python -m`` rather than the ``fusion_node`` console script so a source checkout works uninstalled.
    The node's default ``input_qos: auto`` follows the player's reliable publishers; ``warmup_size`` (the
    bag's 'HxW') has it prepare the model for the bag's frames before it subscribes. ``node_args`` come
    last and override any of these.
    """
    params = {
        "device": cfg.device,
        "precision": cfg.precision,
        "sync_slop": cfg.slop,
        "sync_queue_size": cfg.queue_size,
        "num_threads": cfg.num_threads or 0,
        "backend": cfg.backend,
        "warmup_size": f"'{warmup_size}'",  # quoted: '' is a string, not an empty value
    }
    if cfg.checkpoint:
        params["checkpoint"] = str(cfg.checkpoint)
    cmd = [sys.executable, "-m", "sccosf_ros.node.fusion_node", "--ros-args"]
    cmd += ["-r", f"rgb/image:={cfg.rgb_topic}", "-r", f"thermal/image:={cfg.thermal_topic}"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    return cmd + list(cfg.node_args)


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log, for error messages ('' when unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class NodeProcess:
    """The fusion node as a child process, with its log in the output directory; stopped with SIGINT."""

    def __init__(self, cmd: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def check_alive(self) -> None:
        """Raise :class:`ReplayError` with the end of the node's log if it has exited."""
        code = self.proc.poll()
        if code is not None:
            log = self.log_path
            raise ReplayError(f"the fusion node exited with code {code}; its log ({log}) ends:\n{tail(log)}")

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT (the node shuts down cleanly), then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode
