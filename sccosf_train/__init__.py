"""Offline trainer for the SC-CoSF fusion/segmentation network (imports no ROS).

Submodules: ``dataset``/``augment``/``data`` (MSRS-layout folders and synthetic scenes from
``sccosf_synth``), ``losses``, ``train`` and the ``sccosf-train`` command line (``cli``); ``teachers``
(segmenters by name, MFNet first; training only), ``pseudo_labels`` (labels from teacher + boxes),
``compare_models`` (checkpoints and a teacher scored against detection boxes), ``model_card``,
``calibrate`` and ``half_precision`` (the float16 file that ships).
"""
