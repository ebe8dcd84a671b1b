"""Generators for demos, tests and training, kept out of the runtime (``sccosf_ros`` never imports them).

* :mod:`.scenes`: procedural synthetic road scenes (visible, thermal, MSRS-style labels);
* :mod:`.demo_bag`: a two-camera rosbag2 of those scenes, as free-running drivers record one
  (``sccosf-demo-bag``);
* :mod:`.demo`: ``make demo`` / ``sccosf-demo``, the whole path on a fresh clone.

It builds on the runtime (bag writing, the evaluator, the live replay), never the other way round
(``test/test_layering.py``).
"""
