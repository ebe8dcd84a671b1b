"""Teacher networks for training only (never imported by the runtime ``sccosf_ros``, never shipped).

``mfnet``: MFNet (Ha et al., IROS 2017), rebuilt from its published description so that the authors'
trained weights load strictly; a real RGB-thermal segmenter for the 9 MSRS classes, used for pseudo
labels and as the baseline a real-data segmentation score must beat.
"""
