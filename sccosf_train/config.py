"""Every option of ``sccosf-train`` as one validated dataclass (YAML keys and ``--flags`` share its names)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from sccosf_train.losses import LossWeights

# Options with a fixed set of values (checked in TrainConfig.__post_init__).
_CHOICES: dict[str, tuple[str, ...]] = {
    "schedule": ("cosine", "poly", "constant"),
    "amp": ("auto", "bf16", "fp16", "off"),
    "grad_mode": ("l1", "floor"),
    "fg_target": ("max", "thermal"),
    "seg_class_weights": ("none", "enet"),
    "best_metric": ("val_loss", "miou", "box_f"),
}


@dataclass
class TrainConfig:
    """Every option of ``sccosf-train`` (YAML keys and ``--flags`` have these names, ``_`` ↔ ``-``)."""

    # model
    preset: str = "tiny"
    num_classes: int = 9
    pretrained_encoder: str = "auto"  # auto (installed ImageNet MobileNetV2 weights) | none | PATH
    # data
    msrs_root: str | None = None
    val_split: str | None = "seafusion"  # seafusion | none (or None) | PATH (one name per line)
    label_dir: str | None = None  # default: first of Label/, Segmentation_labels/, labels/
    label_root: str | None = None  # a folder of label PNGs outside msrs_root (e.g. pseudo labels); wins
    holdout: str = "none"  # seafusion | none | PATH: pairs neither trained nor validated on
    boxes: str | None = None  # detection boxes (MSRS box layout) for the box score of real validation pairs
    synthetic_train: int = 180
    synthetic_val: int = 16
    synthetic_size: tuple[int, int] = (480, 640)
    synthetic_seed: int = 1
    synthetic_fresh: bool = False  # new synthetic scenes every epoch instead of the same n each epoch
    misregistration_px: float = 0.0
    crop: tuple[int, int] = (256, 320)
    augment: bool = True
    aug_scale: tuple[float, float] = (0.5, 1.25)  # random scale range (relative to what the crop needs)
    aug_aspect: float = 0.0  # anisotropic scale: exp(±aug_aspect) between height and width
    aug_rig: bool = False  # camera-rig randomisation (sccosf_train.rig_augment)
    paste_objects: int = 0  # copy-paste: up to N labelled objects pasted into each labelled real pair
    paste_classes: tuple[int, ...] = (2, 3)  # class ids whose objects are pasted (MSRS: person, bike)
    paste_height: tuple[float, float] = (0.04, 0.3)  # pasted object height / frame height (log-uniform)
    extra_real: tuple[str, ...] = ()  # more real training folders: "root=DIR,labels=DIR,split=FILE,repeat=N"
    # optimisation
    epochs: int = 30
    batch_size: int = 8
    max_steps_per_epoch: int | None = None
    max_minutes: float | None = None  # stop (saving the epoch so far) once training has run this long
    lr: float = 5e-4
    weight_decay: float = 1e-2
    schedule: str = "cosine"  # cosine | poly | constant
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    poly_power: float = 0.9
    grad_clip: float = 1.0
    amp: str = "auto"  # auto (bf16 if supported, else fp16, on CUDA; off on CPU) | bf16 | fp16 | off
    # loss weights: defaults are LossWeights' (one source; reasons in docs/training.md)
    w_seg: float = LossWeights.seg
    w_fusion: float = LossWeights.fusion
    w_int: float = LossWeights.intensity
    w_grad: float = LossWeights.gradient
    w_ssim: float = LossWeights.ssim
    fg_weight: float = LossWeights.fg_weight
    fg_classes: tuple[int, ...] = LossWeights.fg_classes
    fg_target: str = LossWeights.fg_target
    grad_mode: str = LossWeights.grad_mode
    ohem_thresh: float | None = None
    fusion_anchor: str | None = None  # checkpoint whose fused image the run's fused image is held close to
    w_anchor: float = 10.0  # weight of that L1 term
    seg_class_weights: str = "none"  # none | enet (estimated from the labelled training samples)
    class_weight_power: float = 1.0  # weights ** power: 1 = ENet's, 0.5 = a milder tilt to rare classes
    # validation
    val_every: int = 1
    val_batch_size: int = 4
    val_max_pairs: int | None = None
    fusion_metrics: bool = True
    best_metric: str = "val_loss"  # val_loss (lower is better) | miou | box_f (higher is better)
    # runtime
    device: str = "auto"
    workers: int = 2
    threads: int | None = None
    seed: int = 0
    deterministic: bool = False
    out: str = "runs/tiny"
    resume: str | None = None
    init_from: str | None = None  # engine checkpoint whose weights start the run (fine-tuning)
    train_only: tuple[str, ...] = ()  # parameter-name prefixes to train (empty: all); the rest is frozen
    log_every: int = 10
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, tuple(v))
        if self.val_split is None:  # the CLI reads "--val-split none" as None
            self.val_split = "none"
        if self.holdout is None:
            self.holdout = "none"
        for name, choices in _CHOICES.items():
            if getattr(self, name) is None and "none" in choices:  # the CLI reads "--x none" as None
                setattr(self, name, "none")
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        if self.resume and self.init_from:
            raise ValueError("give --resume (continue a run) or --init-from (start from weights), not both")
        if not 0 < self.class_weight_power <= 1:
            raise ValueError(f"class_weight_power must be in (0, 1], got {self.class_weight_power}")
        self._check_ranges()
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.batch_size < 2:  # BatchNorm needs two values per channel at the 1/32-scale feature map
            raise ValueError("batch_size must be >= 2 (per process)")

    def _check_ranges(self) -> None:
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        if len(self.aug_scale) != 2 or not 0 < self.aug_scale[0] <= self.aug_scale[1]:
            raise ValueError(f"aug_scale must be two numbers 0 < low <= high, got {self.aug_scale}")
        if self.paste_objects < 0:
            raise ValueError(f"paste_objects must be >= 0, got {self.paste_objects}")
        if len(self.paste_height) != 2 or not 0 < self.paste_height[0] <= self.paste_height[1] <= 1:
            raise ValueError(f"paste_height must be 0 < low <= high <= 1, got {self.paste_height}")
        if self.aug_aspect < 0:
            raise ValueError(f"aug_aspect must be >= 0, got {self.aug_aspect}")

    def loss_weights(self, class_weights: tuple[float, ...] | None = None) -> LossWeights:
        return LossWeights(
            seg=self.w_seg,
            fusion=self.w_fusion,
            intensity=self.w_int,
            gradient=self.w_grad,
            ssim=self.w_ssim,
            fg_weight=self.fg_weight,
            fg_classes=tuple(self.fg_classes),
            fg_target=self.fg_target,
            grad_mode=self.grad_mode,
            ohem_thresh=self.ohem_thresh,
            class_weights=class_weights,
        )
