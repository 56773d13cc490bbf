"""Training logs: a CSV of every logged value and TensorBoard scalars."""

from __future__ import annotations

import csv
from pathlib import Path


class TrainingLog:
    """Append ``(stage, epoch, step, name, value)`` rows to ``metrics.csv`` and TensorBoard."""

    FIELDS = ("stage", "epoch", "step", "name", "value")

    def __init__(self, csv_path: Path, tensorboard_dir: Path | None = None) -> None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        self.csv_path = csv_path
        new = not self.csv_path.exists()
        self._file = self.csv_path.open("a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(self.FIELDS)
        self._tb = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(tensorboard_dir))

    def log(self, stage: str, epoch: int, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self._csv.writerow((stage, epoch, step, name, f"{value:.6g}"))
            if self._tb is not None:
                self._tb.add_scalar(f"{stage}/{name}", value, step)
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
