"""What ``effdl demo`` runs: the stages, the model sizes and the training budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Pipeline steps, in the order they run. ``convert`` adds the effdl-kernel form of
#: the float distilled and pruned students (fused depthwise-separable conv, 2:4 linear).
STEPS = ("teacher", "student", "distill", "prune", "ptq", "qat", "convert")
DEFAULT_PIPELINE = ("teacher", "student", "distill", "prune", "ptq", "convert")
PRUNE_METHODS = ("2:4", "unstructured", "channel")

# The teacher: a ResNet-10-style network for the 8x8 digits (about 0.3 M parameters).
TEACHER = {"num_classes": 10, "in_channels": 1, "depths": [1, 1, 1], "widths": [32, 64, 128]}
# The student: MobileNetV2 at half width with a shortened stage table, for 8x8 inputs
# (about 25 k parameters, one stride-2 stage). Channel counts are multiples of 8,
# so every pointwise conv and the classifier can be 2:4 sparse.
STUDENT = {"num_classes": 10, "in_channels": 1, "input_size": 8, "width_mult": 0.5, "last_channel": 256,
           "inverted_residual_setting": [[1, 16, 1, 1], [4, 24, 2, 2], [4, 32, 2, 1], [4, 64, 1, 1]],
           "dropout": 0.1}
QUICK_TEACHER = {"num_classes": 10, "in_channels": 1, "depths": [1, 1, 1], "widths": [16, 32, 64]}


@dataclass
class DemoConfig:
    """Options of one demo run (``effdl demo --help`` documents the command-line side)."""

    pipeline: tuple[str, ...] = DEFAULT_PIPELINE
    quick: bool = False
    out: str = "report"
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    prune_method: str = "2:4"
    sparsity: float = 0.5
    teacher: dict = field(default_factory=lambda: dict(TEACHER))
    student: dict = field(default_factory=lambda: dict(STUDENT))
    teacher_epochs: int = 12
    student_epochs: int = 30
    finetune_epochs: int = 10
    qat_epochs: int = 4
    lr: float = 0.05
    batch_size: int = 64
    batch_sizes: tuple[int, ...] = (1, 16, 128)
    timing_reps: int = 200
    temperature: float = 4.0
    alpha: float = 0.3

    @classmethod
    def make(cls, quick: bool = False, **overrides) -> DemoConfig:
        """The full configuration, or the ``--quick`` one (well under a minute, for CI)."""
        cfg = cls(quick=quick)
        if quick:
            cfg.teacher = dict(QUICK_TEACHER)
            cfg.teacher_epochs, cfg.student_epochs, cfg.finetune_epochs, cfg.qat_epochs = 2, 4, 1, 1
            cfg.lr = 0.1
            cfg.batch_sizes, cfg.timing_reps = (1, 16), 5
        for key, value in overrides.items():
            if value is not None:
                setattr(cfg, key, value)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        unknown = [s for s in self.pipeline if s not in STEPS]
        if unknown or not self.pipeline:
            raise ValueError(f"pipeline: unknown steps {unknown}; choose a comma-separated subset of {STEPS}")
        needs = {"distill": "teacher", "qat": "teacher"}
        for step, need in needs.items():
            if step in self.pipeline and need not in self.pipeline:
                raise ValueError(f"pipeline: {step!r} needs {need!r}")
        students = {"student", "distill"}
        for step in ("prune", "ptq", "qat", "convert"):
            if step in self.pipeline and not students & set(self.pipeline):
                raise ValueError(f"pipeline: {step!r} needs a student ('student' or 'distill')")
        if self.prune_method not in PRUNE_METHODS:
            raise ValueError(f"prune: must be one of {PRUNE_METHODS}, got {self.prune_method!r}")
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), got {self.sparsity}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes must be positive, got {self.batch_sizes}")
        self.pipeline = tuple(s for s in STEPS if s in self.pipeline)  # run order

    def as_dict(self) -> dict:
        return asdict(self)
