"""Offline trainer for the SC-CoSF fusion/segmentation network (imports no ROS).

Submodules: ``synthetic`` (labelled procedural scenes), ``dataset``/``augment`` (MSRS-layout folders),
``losses``, ``train`` and the ``sccosf-train`` command line (``cli``); ``teachers`` (MFNet, training only),
``box_score`` (models scored against detection boxes) and ``pseudo_labels`` (labels from teacher + boxes).
"""
