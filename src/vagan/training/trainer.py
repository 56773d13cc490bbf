"""The training loop: stages run in order, each a short loop over deterministic batches.

Determinism: the patch list is fixed by ``data.split_seed``/``train.seed`` and each epoch's
batch order comes from a generator seeded by (seed, stage, epoch). A checkpoint records the
stage, epoch and batch reached, so ``--resume`` continues on exactly the batches an
uninterrupted run would have seen and ends with the same weights.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from vagan.data.paired import load_slice_pairs, load_split, patient_split
from vagan.data.patches import MixedPatchDataset, PatchPairDataset, SlicePair, SlicePairDataset
from vagan.devices import describe_machine, resolve_device
from vagan.errors import (
    CheckpointError,
    ConfigError,
    InputDataError,
    NonFiniteLossError,
    TrainingDivergedError,
)
from vagan.models.init import init_parameters
from vagan.precision import Precision, resolve_precision, to_channels_last
from vagan.training import distributed
from vagan.training.build import (
    build_discriminator,
    build_feature_net,
    build_generator,
    check_feature_net,
    needs_feature_net,
)
from vagan.training.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_module_state,
    read_meta,
    save_checkpoint,
)
from vagan.training.config import ExperimentConfig, MixSource, StageConfig
from vagan.training.logs import TrainingLog
from vagan.training.run_folder import (
    FINAL,
    LAST,
    METRICS_CSV,
    TENSORBOARD,
    check_run_folder,
    final_dir,
    open_run_folder,
    stage_dir,
)
from vagan.training.steps import (
    Networks,
    gan_step,
    psnr_step,
    wgan_step,
)
from vagan.training.validation import validate

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    """Training patches and validation slices of one run."""

    train: Dataset
    val: list[SlicePair] = field(default_factory=list)
    pixel_mm: tuple[float, float] | None = None  # smallest and largest pixel size the patches have (None: unknown)

    def describe(self) -> dict[str, object]:
        """What a checkpoint records of its training data, for the range check of ``vagan denoise``."""
        return {"pixel_mm": list(self.pixel_mm) if self.pixel_mm else None}


@dataclass
class Progress:
    """Where a stage stands: the next batch to run is ``batch`` of ``epoch``; ``seconds`` of wall time
    spent on it so far (steps and validations, every resumed process together; ``None`` when it was
    resumed from a checkpoint that did not record it)."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    seconds: float | None = 0.0


MIX_SHARE_SLACK = 0.05
"""A ``data.mix`` source whose realised share of the patches is further than this from its ``share`` is warned about."""


def load_data(cfg: ExperimentConfig) -> TrainData:
    """Patches of the training patients (and of the ``data.mix`` sources) and whole slices of the
    validation patients."""
    d = cfg.data
    if d.root is None:
        raise ConfigError("data.root is not set: point it at a dataset (`vagan simulate` writes one), e.g. --set data.root=DIR")
    root = Path(d.root)
    train_pairs = load_split(root, d.split, d.split_seed, "train", d.thickness, d.max_train_slices,
                             with_noise_pool=d.train_doses is not None)
    held_out = {name for subset in ("val", "test") for name in patient_split(root, d.split, d.split_seed,
                                                                             d.thickness).get(subset, [])} \
        if d.mix else set()  # listing the dataset again only when a mix must be checked against it
    mixed = [(m, _mix_pairs(m, i, root, held_out)) for i, m in enumerate(d.mix)]
    every = train_pairs + [pair for _, pairs in mixed for pair in pairs]
    smallest = min(min(p.ldct.shape) for p in every)
    if d.patch_size > smallest:
        raise ConfigError(f"data.patch_size {d.patch_size} is larger than the smallest training slice ({smallest} px)")
    patches = _patches(cfg, train_pairs, d.patches_per_slice, d.train_doses, cfg.train.seed, "data")
    if mixed:
        total = len(patches) / (1.0 - sum(m.share for m, _ in mixed))  # data.root keeps the rest of the shares
        parts = [patches] + [_patches(cfg, pairs, max(1, round(m.share * total / len(pairs))), m.train_doses,
                                      cfg.train.seed + 1 + i, f"data.mix[{i}]")
                             for i, (m, pairs) in enumerate(mixed)]
        patches = MixedPatchDataset(parts)
        log.info("training patches: %s", ", ".join(f"{name} {share:.0%}" for name, share in
                                                    zip([d.root] + [m.root for m, _ in mixed], patches.shares())))
        for i, ((m, _), share) in enumerate(zip(mixed, patches.shares()[1:])):
            if abs(share - m.share) > MIX_SHARE_SLACK:  # at least one patch per slice: a big source overshoots
                log.warning("data.mix[%d] gets %.0f%% of the patches, not %.0f%%: it has too many slices for one "
                            "patch each; list fewer of its patients or raise data.patches_per_slice", i,
                            100 * share, 100 * m.share)
    sizes = [p.pixel_mm for p in every]
    pixel_mm = (d.resample_mm if d.resample_mm is not None
                else (min(sizes), max(sizes)) if all(sizes) else None)  # type: ignore[type-var]
    val_pairs: list[SlicePair] = []
    if d.val_slices > 0:
        if patient_split(root, d.split, d.split_seed, d.thickness).get("val"):
            val_pairs = load_split(root, d.split, d.split_seed, "val", d.thickness, d.val_slices)
        else:
            log.warning("data.split has no validation patients: training runs without validation")
    return TrainData(train=patches, val=val_pairs, pixel_mm=pixel_mm)


def _mix_pairs(source: MixSource, index: int, data_root: Path, held_out: set[str]) -> list[SlicePair]:
    """The slice pairs of one ``data.mix`` source: its listed patients, or all of them. A source that
    is, holds or lies in ``data.root``, or that holds a patient of its validation or test subsets, is
    refused: the mix must never train on what the evaluation scores."""
    from vagan.io.mayo import list_mayo_patients

    where = f"data.mix[{index}]"
    root = Path(source.root)
    if not root.is_dir():
        raise InputDataError(f"{where}.root: {root} is not a folder; give a paired dataset (`vagan simulate` writes one)")
    mine, main = root.resolve(), data_root.resolve()
    if mine == main or main in mine.parents or mine in main.parents:
        raise ConfigError(f"{where}.root: {root} overlaps data.root {data_root}; mix in another dataset (its "
                          "validation and test patients would be trained on)")
    found = list_mayo_patients(root, thickness=source.thickness)
    patients = list(source.patients) if source.patients is not None else found
    unknown = sorted(set(patients) - set(found))
    if unknown or not patients:
        raise InputDataError(f"{where}: no paired {source.thickness} series for patient(s) {unknown or patients} in "
                             f"{root} (it holds {found[:5]})")
    shared = sorted(set(patients) & held_out)
    if shared:
        raise ConfigError(f"{where}: patient(s) {shared} are also validation or test patients of data.root; leave "
                          f"them out (data.mix[{index}].patients) or rename one dataset's patients")
    return load_slice_pairs(root, patients, source.thickness, with_noise_pool=source.train_doses is not None)


def _patches(cfg: ExperimentConfig, pairs: list[SlicePair], per_slice: int, doses: tuple[float, ...] | None,
             seed: int, where: str) -> PatchPairDataset:
    d = cfg.data
    try:
        return PatchPairDataset(pairs, d.patch_size, per_slice, seed=seed, augment=d.augment,
                                attention_mode=d.attention_mode, hu_range=d.hu_range, doses=doses,
                                resample_mm=d.resample_mm)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None


class _EpochBatches:
    """Batch sampler: the batches of one epoch, from a given batch on, in an order fixed by the seed and
    the epoch (this rank's share of each batch under DDP). :meth:`start` moves it to another epoch,
    so one DataLoader with persistent workers serves the whole stage and resume stays exact."""

    def __init__(self, n: int, batch_size: int, per_epoch: int, seed: int, world: distributed.World) -> None:
        self.n, self.batch_size, self.per_epoch, self.seed, self.world = n, batch_size, per_epoch, seed, world
        self.epoch, self.first = 0, 0

    def start(self, epoch: int, first_batch: int) -> None:
        self.epoch, self.first = epoch, first_batch

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        size, rank, world = self.batch_size, self.world.rank, self.world.size
        shift = self.epoch * self.n  # index i + e n is patch i in epoch e (fresh noise, PatchPairDataset)
        for b in range(self.first, self.per_epoch):
            yield [i + shift for i in order[b * size:(b + 1) * size][rank::world].tolist()]

    def __len__(self) -> int:
        return self.per_epoch - self.first


class _Stage:
    """Runs one stage; kept small: the per-kind work lives in :mod:`vagan.training.steps`."""

    def __init__(self, cfg: ExperimentConfig, stage: StageConfig, index: int, run_dir: Path, data: TrainData,
                 device: torch.device, precision: Precision, world: distributed.World,
                 training_log: TrainingLog | None) -> None:
        self.cfg, self.stage, self.index, self.run_dir = cfg, stage, index, run_dir
        self.data, self.device, self.world, self.log = data, device, world, training_log
        self.dir = stage_dir(run_dir, stage.name)
        self.precision = precision
        self.autocast = precision.autocast
        self.scaler = precision.grad_scaler()
        init = torch.Generator().manual_seed(cfg.train.seed + index)  # same initial weights on every rank and run
        gen_module = to_channels_last(init_parameters(build_generator(cfg.model), init).to(device))
        disc_module = (to_channels_last(init_parameters(build_discriminator(cfg.model), init).to(device))
                       if stage.adversarial != "none" else None)
        self.modules = {"generator": gen_module} | ({"discriminator": disc_module} if disc_module is not None else {})
        self.opt_g = torch.optim.Adam(gen_module.parameters(), lr=stage.lr, betas=stage.betas)
        self.opt_d = (torch.optim.Adam(disc_module.parameters(), lr=stage.d_lr or stage.lr, betas=stage.betas)
                      if disc_module is not None else None)
        feature_net = to_channels_last(build_feature_net(cfg.train).to(device)) if needs_feature_net(stage) else None
        self.nets = Networks(generator=distributed.wrap(gen_module, world, device),
                             discriminator=distributed.wrap(disc_module, world, device) if disc_module is not None else None,
                             feature_net=feature_net)
        self.progress = Progress()
        self.clock: float | None = None  # perf_counter() up to which progress.seconds counts; set by run()
        self.rng = torch.Generator().manual_seed(cfg.train.seed + 7919 * (index + 1) + world.rank)
        per_batch = stage.batch_size
        if per_batch % world.size:
            raise ConfigError(f"stages[{index}].batch_size {per_batch} is not divisible by the {world.size} processes")
        self.batches_per_epoch = len(data.train) // per_batch
        if self.batches_per_epoch == 0:
            raise ConfigError(f"only {len(data.train)} training patches: fewer than one batch of {per_batch}")
        self.batches = _EpochBatches(len(data.train), per_batch, self.batches_per_epoch,
                                     seed=cfg.train.seed * 1_000_003 + index * 10_007, world=world)
        self.loader = self._make_loader()
        total = self.batches_per_epoch * stage.epochs
        self.total_steps = min(total, stage.max_steps) if stage.max_steps else total
        self.planned_steps = self.total_steps  # what the schedule spans, though a time budget may end it sooner

    # -- state -------------------------------------------------------------------------------
    def initialise_from(self, ckpt: Checkpoint) -> None:
        load_module_state(self.modules["generator"], ckpt, "generator")
        log.info("stage %s: generator initialised from %s", self.stage.name, ckpt.path)

    def resume_from(self, ckpt: Checkpoint) -> None:
        for name, module in self.modules.items():
            load_module_state(module, ckpt, name)
        try:
            self.opt_g.load_state_dict(ckpt.state["opt_g"])
            if self.opt_d is not None:
                self.opt_d.load_state_dict(ckpt.state["opt_d"])
            self.rng.set_state(ckpt.state["rng"])
            if "scaler" in ckpt.state:
                self.scaler.load_state_dict(ckpt.state["scaler"])
            p = ckpt.meta["progress"]
            self.progress = Progress(epoch=int(p["epoch"]), batch=int(p["batch"]), step=int(p["step"]),
                                     seconds=None if p.get("seconds") is None else float(p["seconds"]))
        except torch.OutOfMemoryError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{ckpt.path}: cannot resume from it, its training state is incomplete ({err})") from None
        log.info("stage %s: resumed at step %d from %s", self.stage.name, self.progress.step, ckpt.path)

    def save(self, name: str, metrics: dict[str, float] | None = None) -> Path | None:
        if not self.world.is_main:
            return None
        p = self.progress
        if self.clock is not None:
            now = time.perf_counter()
            if p.seconds is not None:
                p.seconds += now - self.clock
            self.clock = now
        meta = {"preset": self.cfg.preset, "stage": self.stage.name, "config": self.cfg.to_dict(),
                "precision": self.precision.name,
                "progress": {"epoch": p.epoch, "batch": p.batch, "step": p.step, "seconds": None if p.seconds is None else round(p.seconds, 3)},
                "complete": name == FINAL, "machine": describe_machine(self.device),
                "metrics": metrics or {}, "training_data": self.data.describe()}
        state = {"opt_g": self.opt_g.state_dict(), "rng": self.rng.get_state()}
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        if self.opt_d is not None:
            state["opt_d"] = self.opt_d.state_dict()
        return save_checkpoint(self.dir / name, self.modules, meta, state)

    # -- loop --------------------------------------------------------------------------------
    def _make_loader(self) -> DataLoader:
        """One loader per stage: its workers live across epochs (see :class:`_EpochBatches`)."""
        workers = self.cfg.train.num_workers
        return DataLoader(self.data.train, batch_sampler=self.batches, num_workers=workers,
                          persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                          pin_memory=self.device.type == "cuda")

    def _step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        kind = self.stage.adversarial
        if kind == "none":
            return psnr_step(self.nets, self.opt_g, batch, self.stage, self.autocast, self.scaler)
        if kind == "gan":
            return gan_step(self.nets, self.opt_g, self.opt_d, batch, self.stage, self.autocast, self.scaler)
        update_g = (self.progress.step + 1) % self.stage.critic_steps == 0
        return wgan_step(self.nets, self.opt_g, self.opt_d, batch, self.stage, self.autocast, self.scaler, update_g,
                         self.rng)

    def _set_learning_rates(self, step: int) -> None:
        """Both optimisers' rates for ``step`` under ``stages.*.lr_schedule`` (see :func:`lr_scale`)."""
        scale = lr_scale(self.stage.lr_schedule, step, self.planned_steps)
        for opt, base in ((self.opt_g, self.stage.lr), (self.opt_d, self.stage.d_lr or self.stage.lr)):
            for group in opt.param_groups if opt is not None else ():
                group["lr"] = base * scale

    def _validate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.world.is_main and self.data.val:
            metrics = validate(self.modules["generator"], SlicePairDataset(self.data.val, self.cfg.data.attention_mode,
                               self.cfg.data.hu_range), self.device, self.autocast)
            if self.log is not None:
                self.log.log(self.stage.name, self.progress.epoch, self.progress.step, metrics)
        distributed.barrier(self.world)
        return metrics

    def run(self) -> Path | None:
        from tqdm.auto import tqdm

        p = self.progress
        bar = tqdm(total=self.total_steps, initial=p.step, desc=f"{self.cfg.preset}/{self.stage.name}", unit="step",
                   disable=not (self.cfg.train.progress and self.world.is_main), dynamic_ncols=True)
        metrics: dict[str, float] = {}
        last_saved = self.dir / LAST
        budget = _TimeBudget(self.stage.max_minutes, p.step)
        self.clock = time.perf_counter()
        try:
            while p.step < self.total_steps:
                tick = time.perf_counter()
                self.batches.start(p.epoch, p.batch)
                for batch in self.loader:
                    waited = time.perf_counter() - tick
                    batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                    self._set_learning_rates(p.step)
                    try:
                        values = self._step(batch)
                    except NonFiniteLossError as err:
                        kept = f"the last good checkpoint is {last_saved}" if last_saved.exists() else "no checkpoint was written yet"
                        raise TrainingDivergedError(
                            f"stage {self.stage.name}: {err} at step {p.step + 1}; training stopped, {kept} "
                            f"(a resumed run would repeat it: lower stages.{self.stage.name}.lr and start a new run, with "
                            "another --out or --overwrite)") from None
                    p.step += 1
                    p.batch += 1
                    now = time.perf_counter()
                    values["patches_per_s"] = self.stage.batch_size / max(now - tick, 1e-9)
                    values["data_wait_s"] = waited
                    tick = now
                    if self.log is not None and p.step % self.cfg.train.log_every == 0:
                        self.log.log(self.stage.name, p.epoch, p.step, values)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in values.items() if k in ("loss_g", "loss_d", "patches_per_s")})
                    bar.update(1)
                    if budget.active and distributed.any_rank(budget.spent(now), self.world, self.device):
                        log.info("stage %s: its time budget of %g min ends it after %d steps", self.stage.name,
                                 self.stage.max_minutes, p.step)
                        self.total_steps = p.step
                    elif budget.active:
                        bar.total = min(self.total_steps, budget.projected_steps(p.step, now))
                        bar.refresh()
                    if p.step % self.cfg.train.checkpoint_every == 0 and p.step < self.total_steps:
                        self.save(LAST)
                    if p.step >= self.total_steps:
                        break
                if p.batch >= self.batches_per_epoch:
                    p.epoch += 1
                    p.batch = 0
                    metrics = self._validate()
                    if p.step < self.total_steps:
                        self.save(LAST, metrics)
            if p.batch != 0 or not metrics:
                metrics = self._validate()
        finally:
            bar.close()
        self.save(LAST, metrics)
        return self.save(FINAL, metrics)


LR_FLOOR = 0.01
"""The fraction of its rate a cosine schedule ends at."""


def lr_scale(schedule: str, step: int, total: int) -> float:
    """The factor on the base learning rate at ``step`` of ``total`` (0-based): 1 for ``constant``;
    for ``cosine`` ``LR_FLOOR + (1 - LR_FLOOR) (1 + cos(pi step / total)) / 2``."""
    if schedule == "constant":
        return 1.0
    return LR_FLOOR + (1.0 - LR_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


class _TimeBudget:
    """A stage's wall-clock budget (``max_minutes``), counted from its start in this process."""

    def __init__(self, minutes: float | None, first_step: int) -> None:
        self.active = minutes is not None
        self.seconds = 60.0 * minutes if minutes is not None else math.inf
        self.start, self.first_step = time.perf_counter(), first_step

    def spent(self, now: float) -> bool:
        return self.active and now - self.start >= self.seconds

    def projected_steps(self, step: int, now: float) -> int:
        """The step the budget will end at, at the pace so far (for the progress bar)."""
        per_step = (now - self.start) / max(step - self.first_step, 1)
        return step + int((self.seconds - (now - self.start)) / max(per_step, 1e-9))


def _most_advanced(folder: Path) -> Checkpoint | None:
    """The saved checkpoint of a stage (``last`` or ``final``) that reached the highest step."""
    found = [load_checkpoint(folder / name, with_state=True) for name in (LAST, FINAL) if (folder / name).exists()]
    return max(found, key=lambda c: c.meta["progress"]["step"], default=None)


def _resumed_precision(saved: Checkpoint | None, chosen: Precision, cfg: ExperimentConfig,
                       device: torch.device) -> Precision:
    """A resumed stage keeps the precision it was trained in (exact resume) where this machine runs it
    and the user did not ask for another one; otherwise it continues in ``chosen``, with a warning."""
    before = saved.meta.get("precision") if saved is not None else None
    if before is None or before == chosen.name:
        return chosen
    if cfg.train.precision == "auto":
        try:
            return resolve_precision(before, device)
        except ConfigError:
            pass
    log.warning("stage %s was trained in %s and continues in %s: the weights will differ slightly from an "
                "uninterrupted run", saved.meta.get("stage"), before, chosen.name)
    return chosen


def _check_stage_sources(cfg: ExperimentConfig, wanted: list[str], run_dir: Path, resume: bool, overwrite: bool) -> None:
    """A stage that starts from an earlier one not run now needs that stage's final checkpoint in the run."""
    for name in wanted:
        stage = cfg.stage(name)
        if not stage.init_from or stage.init_from in wanted:
            continue
        if resume and any((stage_dir(run_dir, name) / saved).exists() for saved in (LAST, FINAL)):
            continue  # it continues from its own checkpoint
        source = final_dir(run_dir, stage.init_from)
        if overwrite or not source.exists():
            raise CheckpointError(f"stage {name} starts from stage {stage.init_from}, but {source} does not exist"
                             f"{' after --overwrite' if overwrite else ''}; run stage {stage.init_from} first")


def init_weights_checkpoint(cfg: ExperimentConfig) -> Path | None:
    """The checkpoint ``train.init_weights`` names (a shipped model, a checkpoint or run folder), checked
    to hold a generator of this run's architecture; ``None`` without one. Read before any work."""
    from vagan.inference.pretrained import resolve_model
    from vagan.training.run_folder import final_checkpoint

    spec = cfg.train.init_weights
    if not spec:
        return None
    path = resolve_model(spec) or Path(spec).expanduser()
    if not path.exists():
        raise InputDataError(f"train.init_weights: {spec} is neither a shipped model nor a checkpoint or run folder")
    checkpoint = final_checkpoint(path)
    stored = read_meta(checkpoint).get("config", {})
    theirs = stored.get("model", {}) if isinstance(stored, dict) else {}
    ours = dataclasses.asdict(cfg.model)
    differ = sorted(k for k in ours if k.startswith(("generator", "attention")) and theirs.get(k) != ours[k])
    if differ:
        raise ConfigError(f"train.init_weights: {spec} has another generator ({', '.join(f'model.{k} {theirs.get(k)!r}' for k in differ)}"
                          f", this run {', '.join(repr(ours[k]) for k in differ)}); set the same model.* values")
    return checkpoint


def train(cfg: ExperimentConfig, run_dir: Path, stages: list[str] | None = None, resume: bool = False,
          overwrite: bool = False, data: TrainData | None = None) -> Path:
    """Run the stages of ``cfg`` (all, or the ones named) into ``run_dir``; return the last final checkpoint."""
    run_dir = Path(run_dir)
    device = resolve_device(cfg.train.device)
    world = distributed.init_world(device.type)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    wanted = stages or [s.name for s in cfg.stages]
    warm_start = init_weights_checkpoint(cfg)
    inputs = tuple(Path(p) for p in (cfg.data.root, cfg.train.vgg_weights, *(m.root for m in cfg.data.mix),
                                     warm_start) if p)
    if world.is_main:
        check_run_folder(run_dir, resume=resume, overwrite=overwrite, inputs=inputs)  # before reading any data
    _check_stage_sources(cfg, wanted, run_dir, resume, overwrite)
    if any(needs_feature_net(cfg.stage(name)) for name in wanted):
        check_feature_net(cfg.train)  # a missing or bad VGG19 file fails now, not after hours of stage 1
    try:
        data = data or load_data(cfg)  # bad data fails before anything is written
        # an unsupported precision fails before any work; every DDP process makes the same choice (no timing probe)
        precision = resolve_precision(cfg.train.precision, device, measure=not world.distributed)
        log.info("precision: %s", precision.describe())
        # a damaged checkpoint refuses the resume before the run folder is touched (config, logs)
        saved_by_stage = {name: _most_advanced(stage_dir(run_dir, name)) for name in wanted} if resume else {}
        lock = None
        if world.is_main:
            lock = open_run_folder(run_dir, cfg, resume=resume, overwrite=overwrite, inputs=inputs)
        distributed.barrier(world)
        training_log = None
        final: Path | None = None
        try:
            training_log = TrainingLog(run_dir / METRICS_CSV, run_dir / TENSORBOARD) if world.is_main else None
            for index, stage in enumerate(cfg.stages):
                if stage.name not in wanted:
                    continue
                finished = final_dir(run_dir, stage.name)
                saved = saved_by_stage.get(stage.name)
                stage_precision = _resumed_precision(saved, precision, cfg, device)
                runner = _Stage(cfg, stage, index, run_dir, data, device, stage_precision, world, training_log)
                if saved is not None and saved.meta["progress"]["step"] >= runner.total_steps and finished.exists():
                    log.info("stage %s already complete (%s)", stage.name, finished)
                    final = finished
                    continue
                if saved is not None:
                    runner.resume_from(saved)
                elif stage.init_from:
                    source = final_dir(run_dir, stage.init_from)  # checked by _check_stage_sources
                    runner.initialise_from(load_checkpoint(source, expect_preset=cfg.preset))
                elif warm_start is not None:
                    runner.initialise_from(load_checkpoint(warm_start))
                final = runner.run() or finished
        finally:
            if training_log is not None:
                training_log.close()
            if lock is not None:
                lock.release()
        if final is None:
            raise ConfigError(f"no stage ran: {wanted}")
        return final
    finally:
        distributed.shutdown(world)
