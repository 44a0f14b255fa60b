"""Learning-rate schedules, stepped once per optimizer update.

Each is a `torch.optim.lr_scheduler.LRScheduler`, so `state_dict()` / `load_state_dict()` work
for checkpoints. `step` below is the number of updates so far, counted from 1.

* `noamlr`   lr = base_lr * model_size^-0.5 * min(step^-0.5, step * warmup^-1.5)
             (the Transformer paper's schedule; ESPnet configs give lr ~ 4-5 and model_size 256)
* `warmuplr` lr = base_lr * warmup^0.5 * min(step^-0.5, step * warmup^-1.5)
             (ESPnet's WarmupLR: the same shape, but base_lr *is* the peak, reached at `warmup`)
* `warmup_linear` linear 0 -> base_lr over `warmup_steps`, then linear to `final_lr` at `total_steps`
* `constant` base_lr
"""

from torch.optim.lr_scheduler import LRScheduler

from asrdemo.errors import AsrdemoError


class _Schedule(LRScheduler):
    """Base: subclasses give `factor(step)`, the multiplier of each param group's base lr."""

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def get_lr(self):
        step = self.last_epoch + 1  # LRScheduler counts calls in last_epoch, starting at 0
        return [base * self.factor(step) for base in self.base_lrs]


class NoamLR(_Schedule):
    def __init__(self, optimizer, model_size=256, warmup_steps=25000, last_epoch=-1):
        self.model_size, self.warmup_steps = model_size, warmup_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step):
        return self.model_size**-0.5 * min(step**-0.5, step * self.warmup_steps**-1.5)


class WarmupLR(_Schedule):
    def __init__(self, optimizer, warmup_steps=25000, last_epoch=-1):
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step):
        return self.warmup_steps**0.5 * min(step**-0.5, step * self.warmup_steps**-1.5)


class WarmupLinearLR(_Schedule):
    def __init__(self, optimizer, warmup_steps=1000, total_steps=100000, final_lr_ratio=0.0, last_epoch=-1):
        if total_steps <= warmup_steps:
            raise AsrdemoError(f"warmup_linear: total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
        self.warmup_steps, self.total_steps, self.final = warmup_steps, total_steps, final_lr_ratio
        super().__init__(optimizer, last_epoch)

    def factor(self, step):
        if step <= self.warmup_steps:
            return step / max(1, self.warmup_steps)
        done = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return 1.0 + (self.final - 1.0) * done


class ConstantLR(_Schedule):
    def factor(self, step):
        return 1.0


SCHEDULERS = {"noamlr": NoamLR, "warmuplr": WarmupLR, "warmup_linear": WarmupLinearLR, "constant": ConstantLR}


def build_scheduler(name, optimizer, conf=None, total_steps=None):
    """`name` from the config's `scheduler:`, `conf` from `scheduler_conf:`. `total_steps` (the
    run's number of updates) fills in `warmup_linear`'s `total_steps` when the config has none."""
    if name not in SCHEDULERS:
        raise AsrdemoError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    conf = dict(conf or {})
    if name == "warmup_linear" and "total_steps" not in conf:
        if not total_steps:
            raise AsrdemoError("scheduler warmup_linear needs scheduler_conf.total_steps")
        conf["total_steps"] = total_steps
    try:
        return SCHEDULERS[name](optimizer, **conf)
    except TypeError as e:
        raise AsrdemoError(f"bad scheduler_conf for {name}: {e}")
