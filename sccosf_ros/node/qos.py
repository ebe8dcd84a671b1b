"""Which reliability the node's input subscriptions use: the ``input_qos: auto`` rule, without ROS.

Why not a fixed profile. REP-2003 says sensor subscribers use best effort, so they connect to any camera
driver. But a best-effort subscriber also turns a *reliable* driver's stream into best effort, and a 640x480
image is sent as ~15 UDP fragments (it does not fit Fast DDS's default 512 KiB shared-memory segment): one
late fragment loses the whole frame and nothing repairs it. Measured with ``benchmarks/bench_qos_matrix.py``
(docs/node.md): a reliable driver without our Fast DDS profile at 2 Hz got 0 of 40 pairs into a best-effort
node. A fixed *reliable* subscriber repairs the fragments, but hears nothing from a best-effort driver.

(The shipped Fast DDS profile's receive side avoids most of the loss where the kernel grants its 4 MiB socket
buffer; with a stock Ubuntu's 212992-byte cap a best-effort node got 6 of 40 pairs from a reliable driver, a
reliable one 40 of 40, 37 of them out. docs/node.md, "QoS".)

So ``auto`` does what ``ros2 bag record`` does: ask the graph what the matched publishers offer and subscribe
with that. Reliable when every publisher offers reliable (the writer then repairs lost fragments), best effort
when any publisher offers best effort (a reliable reader cannot match it), and best effort while there is no
publisher (it matches both kinds, so the first frames are not refused). The node re-checks every second and
re-subscribes when the answer changes, e.g. when the driver starts after the node.
"""

from __future__ import annotations

from collections.abc import Iterable

RELIABLE = "reliable"
BEST_EFFORT = "best_effort"
INPUT_QOS_CHOICES = ("auto", "sensor_data", "reliable", "best_effort", "system_default")
OUTPUT_QOS_CHOICES = ("sensor_data", "reliable", "best_effort", "system_default")
AUTO_CHECK_PERIOD_S = 1.0


def choose_reliability(offered: Iterable[str], current: str | None = None) -> str:
    """The reliability to subscribe with, given what each matched publisher offers.

    ``offered`` holds one lower-case reliability name per publisher (``"reliable"``, ``"best_effort"``, or
    anything else a middleware reports, which counts as best effort: a best-effort reader matches every
    writer). With no publisher the current choice stays (so a driver restarting does not flap the
    subscription), or best effort when there is none yet.
    """
    kinds = [str(k).lower() for k in offered]
    if not kinds:
        return current or BEST_EFFORT
    return RELIABLE if all(k == RELIABLE for k in kinds) else BEST_EFFORT


def describe(offered: Iterable[str]) -> str:
    """'2 reliable, 1 best_effort' for logs."""
    counts: dict[str, int] = {}
    for k in offered:
        counts[str(k).lower()] = counts.get(str(k).lower(), 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no publisher"
