"""The stage graph, declared once.

Both engines are derived from this list: `dvc.yaml` is rendered from it (`featdefense dvc-yaml`, a test
fails when the committed file differs), and the Snakemake rules (one loop over the graph,
workflow/rules/stages.smk) take their inputs, outputs, params and command from it. Paths may hold the wildcards {dataset} and {attack}.
"""
from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

from .attacks import ATTACKS
from .attacks import NAMES as ATTACK_NAMES
from .attacks import modules as attack_modules
from .datasets import DATASETS
from .datasets import listed as listed_datasets
from .defences import DEFENCES, Defence
from .targets import modules as target_modules

# the datasets params.yaml lists (a dataset module each); DVC's matrix reads the same list (${datasets})
WILDCARD_VALUES = {"dataset": listed_datasets(), "attack": list(ATTACK_NAMES)}
PARAMS_LIST = {"dataset": "datasets"}  # a wildcard whose values are a params list, as DVC names it
DATASET_MODULE = "datasets/{dataset}.py"  # a dataset's module (datasets/__init__.py refuses another name)
ATTACK_MODULE = "attacks/{attack}.py"     # an attack's module (attacks/__init__.py refuses another name)
# plug-ins a stage of one wildcard value finds by that value: its code is that one module, a template
BY_WILDCARD = {"dataset": ("datasets", DATASETS, DATASET_MODULE), "attack": ("attacks", ATTACKS, ATTACK_MODULE)}
PKG = "src/featdefense"
# the signal a scheduler sends a job before its time limit (resources.warn_before_limit): `featdefense run`
# saves what it is doing in its checkpoint and stops (checkpoints.ask_to_stop); the next job resumes it.
# SLURM signals every process of the job's step, Snakemake's own among them: URG is one whose default
# action is to be ignored (USR1's is to terminate), so they live on and pass the stage's exit status back.
STOP_SIGNAL = "URG"

PREPARED = "data/prepared/{dataset}.h5"
TARGET = "data/models/{dataset}/target.pt"
ADVERSARIAL = "data/adversarial/{dataset}/{attack}.h5"
LOSS_NET = "data/models/loss_net.pt"
DENOISER = "data/models/{dataset}/denoiser.pt"
TRAINED_DEFENCE = "data/models/{dataset}/{name}.pt"
EVALUATION = "data/metrics/{dataset}/evaluate_{name}.json"
ROBUSTNESS = "data/plots/{dataset}/robustness.csv"
RECORDS = "data/runs"


def adversarial(attack: str) -> str:
    return ADVERSARIAL.replace("{attack}", attack)


@dataclass(frozen=True)
class Stage:
    name: str
    wildcards: tuple[str, ...]
    code: tuple[str, ...] = ()                 # files under src/featdefense it runs besides what its runner
                                               # module imports (found in the source: see code_of)
    deps: dict[str, str] = field(default_factory=dict)
    params: tuple[str, ...] = ()               # dotted params.yaml keys, the only ones it reads
    outs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)
    directories: tuple[str, ...] = ()          # outs that are directories
    runner: str = ""                           # "module:function" it calls; default featdefense.stages.<name>:run
    fixed: dict = field(default_factory=dict)  # keyword arguments the runner gets besides the wildcards
    locations: bool = False                    # reads where its external inputs lie (sources.local.yaml):
                                               # not what they are (their checksums are its params)

    @property
    def function(self) -> str:
        return self.runner or f"featdefense.stages.{self.name}:run"

    @property
    def cmd(self) -> str:
        return " ".join(["featdefense run", self.name] + [f"--{w} {{{w}}}" for w in self.wildcards])

    @property
    def code_paths(self) -> list[str]:
        """Every source file it runs: its runner module and all it imports, the modules in `code` and all
        they import, and the other files in `code` (data the package ships). Plug-ins a stage finds by name
        are its code too: a stage that imports the targets package builds the target its model file names,
        which the graph cannot know, so every target module counts; a stage of one dataset (one attack) that
        imports the datasets (attacks) package reads that one's module, `datasets/{dataset}.py`
        (`attacks/{attack}.py`: a template, like its paths), and what any of those modules imports."""
        modules = [_file_of(self.function.split(":")[0])] + [SRC / c for c in self.code if c.endswith(".py")]
        own = code_of(*modules)
        if SRC / "targets" / "__init__.py" in own:
            modules += [SRC / m for m in target_modules()]
        templates = []
        for wildcard, (package, declared, template) in BY_WILDCARD.items():
            if wildcard in self.wildcards and SRC / package / "__init__.py" in own:
                templates.append(({SRC / d.module for d in declared.values()}, template))
                modules += [SRC / d.module for d in declared.values()]
                for d in declared.values():  # the template names one module: its siblings would go unnamed
                    siblings = {SRC / o.module for o in declared.values() if o is not d} & set(code_of(SRC / d.module))
                    if siblings:
                        raise ValueError(f"src/featdefense/{d.module} imports another {wildcard}'s module "
                                         f"({', '.join(sorted(s.name for s in siblings))}); allowed: what they "
                                         "share lives below both")
        files = set(code_of(*modules)) | {SRC / c for c in self.code if not c.endswith(".py")}
        for each, _ in templates:
            files -= each
        return sorted(f"{PKG}/{f.relative_to(SRC).as_posix()}" for f in files) + \
            [f"{PKG}/{template}" for _, template in templates]

    @property
    def record(self) -> str:
        """Its run record (a template): the state its outputs were made from and the software and device
        that made them. `featdefense run` writes it beside the outputs; a DVC output like them, so it
        travels with `dvc push` and tells lineage elsewhere what made a metric, a table or a figure."""
        return f"{RECORDS}/{self.instance_name(**{w: '{%s}' % w for w in self.wildcards})}.json"

    @property
    def made(self) -> dict[str, str]:
        """What the stage's code writes, by name."""
        return {**self.outs, **self.metrics, **self.plots}

    @property
    def products(self) -> dict[str, str]:
        """Every file a run of the stage leaves: what its code writes, and its run record."""
        return {**self.made, "record": self.record}

    def instances(self) -> list[dict[str, str]]:
        values = [WILDCARD_VALUES[w] for w in self.wildcards]
        return [dict(zip(self.wildcards, combo)) for combo in product(*values)]

    def instance_name(self, **wildcards: str) -> str:
        """DVC's name for one instance of a matrix stage: name@value1-value2."""
        return self.name + ("@" + "-".join(wildcards[w] for w in self.wildcards) if self.wildcards else "")

    def param_keys(self, **wildcards: str) -> list[str]:
        return [k.format(**wildcards) for k in self.params]


# -- a stage's code, found in its imports ------------------------------------------------------------

SRC = Path(__file__).resolve().parent


def _file_of(dotted: str) -> Path | None:
    """featdefense.a.b -> its source file (a/b.py or a/b/__init__.py); None outside the package."""
    parts = dotted.split(".")
    if parts[0] != SRC.name:
        return None
    base = SRC.joinpath(*parts[1:])
    return next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()), None)


def _with_packages(path: Path) -> set[Path]:
    """A module and the __init__.py of each package above it: importing it runs them all."""
    return {path} | {SRC / parent / "__init__.py" for parent in path.relative_to(SRC).parents}


def _imports(path: Path) -> set[Path]:
    """The package's source files that `path` imports, at its top level or inside functions."""
    dotted = ".".join((SRC.name, *path.relative_to(SRC).with_suffix("").parts))
    package = dotted.removesuffix(".__init__") if path.name == "__init__.py" else dotted.rsplit(".", 1)[0]
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]  # `from pkg import module` too
        else:
            continue
        for name in names:
            if (f := _file_of(name)) is not None:
                found |= _with_packages(f)
    return found


@functools.cache
def code_of(*modules: Path) -> tuple[Path, ...]:
    """The source files that running these modules runs: them, and all they import, transitively."""
    seen: set[Path] = set()
    todo = [f for m in modules for f in _with_packages(m)]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(_imports(path) - seen)
    return tuple(sorted(seen))


STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage("download", ("dataset",),
          params=("download.{dataset}",),
          outs={"raw": "data/raw/{dataset}"}, directories=("raw",), locations=True),
    Stage("prepare", ("dataset",),
          deps={"raw": "data/raw/{dataset}"},
          outs={"prepared": PREPARED}),
    Stage("train_target", ("dataset",),
          deps={"prepared": PREPARED},
          params=("seed", "device", "threads", "target"),
          outs={"target": TARGET},
          metrics={"metrics": "data/metrics/{dataset}/target.json"},
          plots={"log": "data/plots/{dataset}/target_train.csv"}),
    Stage("attack", ("dataset", "attack"),
          deps={"prepared": PREPARED, "target": TARGET},
          params=("seed", "device", "threads", "attack.train_size", "attack.test_size", "attack.test_sample_seed",
                  "attack.batch_size", "attack.{attack}"),
          outs={"adversarial": ADVERSARIAL}),
    Stage("loss_net", (),
          params=("seed", "loss_net"),
          outs={"loss_net": LOSS_NET}, locations=True),
    Stage("train_denoiser", ("dataset",),
          deps={"prepared": PREPARED, "fgsm": adversarial("fgsm"), "pgd": adversarial("pgd"),
                "loss_net": LOSS_NET},
          params=("seed", "device", "threads", "feature_loss", "denoiser"),
          outs={"denoiser": DENOISER},
          plots={"log": "data/plots/{dataset}/denoiser_train.csv"},
          runner="featdefense.defences.ours:train"),  # the defence owns its training, as madry and hgd do
]}


# -- defences: each gets a training stage (when it learns) and an evaluation; the report has them all ---

def defence_model(d: Defence) -> str | None:
    """The model file a defence's training writes, or None for a defence that needs none."""
    if d.trained_by:
        return STAGES[d.trained_by].outs[next(iter(STAGES[d.trained_by].outs))]
    return TRAINED_DEFENCE.replace("{name}", d.name) if d.train else None


def evaluation(name: str) -> str:
    return EVALUATION.replace("{name}", name)


ATTACK_FILES = {a: adversarial(a) for a in ATTACK_NAMES}  # every attack module's files
ARTIFACTS = {"prepared": PREPARED, "target": TARGET, **ATTACK_FILES, "loss_net": LOSS_NET}
RUN = ("seed", "device", "threads")


def _defence_stages() -> list[Stage]:
    stages = []
    for d in DEFENCES.values():
        section = (d.section,) if d.section else ()
        if d.train:
            stages.append(Stage(
                f"train_{d.name}", ("dataset",), code=(d.module,) + d.code,
                deps={k: ARTIFACTS[k] for k in d.train_inputs}, params=RUN + section + d.train_params,
                outs={"model": defence_model(d)}, plots={"log": f"data/plots/{{dataset}}/{d.name}_train.csv"},
                runner=d.train.runner))
        model = {"model": defence_model(d)} if d.trains else {}
        stages.append(Stage(
            f"evaluate_{d.name}", ("dataset",),
            code=(d.module,) + d.code + attack_modules(),  # it finds its defence and the attacks by name
            deps={"prepared": PREPARED, "target": TARGET, **ATTACK_FILES, **model},
            params=RUN + tuple(f"attack.{a}" for a in ATTACK_NAMES) + ("whitebox", "robustness", "sanity") + section,
            metrics={"metrics": evaluation(d.name)},
            runner="featdefense.stages.evaluate:run", fixed={"defence": d.name}))
    # the report: every defence's evaluation, and the models its figures show
    figures = {f"model_{d.name}": defence_model(d) for d in DEFENCES.values()
               if d.kind == "preprocessor" and d.trains}
    stages.append(Stage(
        "report", ("dataset",),
        code=tuple(sorted({f for d in DEFENCES.values() for f in (d.module,) + d.code})) + attack_modules()
        + ("paper_results.yaml",),
        deps={"prepared": PREPARED, "target": TARGET, **ATTACK_FILES,
              **{f"evaluation_{d.name}": evaluation(d.name) for d in DEFENCES.values()}, **figures},
        params=("threads", "report", "whitebox.attack") + tuple(d.section for d in DEFENCES.values()
                                             if d.section and d.kind == "preprocessor"),
        outs={"table_md": "data/reports/{dataset}/table.md", "table_csv": "data/reports/{dataset}/table.csv",
              "examples": "data/reports/{dataset}/examples.png",
              "feature_noise": "data/reports/{dataset}/feature_noise.png",
              "robustness_png": "data/reports/{dataset}/robustness.png", "robustness": ROBUSTNESS}))
    return stages


STAGES.update({s.name: s for s in _defence_stages()})


def defence_training_stages() -> list[str]:
    return [f"train_{d.name}" for d in DEFENCES.values() if d.train]


def evaluation_stages() -> list[str]:
    return [f"evaluate_{d.name}" for d in DEFENCES.values()]


def final_products() -> list[str]:
    """What `snakemake all` builds: every product of every stage instance."""
    return [path.format(**w) for s in STAGES.values() for w in s.instances() for path in s.products.values()]


# -- what a job asks of a scheduler ----------------------------------------------------------------

def job_threads(stage: Stage, params: dict) -> int:
    """CPU threads one job of the stage uses (params `threads`, when the stage reads it; else one)."""
    return params["threads"] if "threads" in stage.params else 1


def job_resources(stage: Stage, params: dict) -> dict:
    """What one job of the stage asks of a scheduler, as Snakemake resources (the slurm profile's plugin
    makes them sbatch's --mem, --time and --gpus): params `resources`, under the stage's own entry there.
    A GPU only for a stage that runs on the device (reads `device`), and only when params ask for CUDA."""
    r = params["resources"]
    own = {k: r[k] for k in ("mem_mb", "runtime", "gpus", "warn_before_limit")} | r["stages"].get(stage.name, {})
    gpu = {"gpu": own["gpus"]} if "device" in stage.params and params["device"] == "cuda" and own["gpus"] else {}
    # SLURM's warning before the time limit (sbatch --signal): `featdefense run` saves and stops on it
    warn = {"slurm_extra": f"--signal={STOP_SIGNAL}@{own['warn_before_limit']}"} if own["warn_before_limit"] else {}
    return {"mem_mb": own["mem_mb"], "runtime": own["runtime"], **gpu, **warn}


# -- dvc.yaml -----------------------------------------------------------------------------------------

def _dvc_template(path: str, wildcards: tuple[str, ...]) -> str:
    return path.format(**{w: "${item.%s}" % w for w in wildcards})


def dvc_stages() -> dict:
    stages = {}
    for s in STAGES.values():
        t = lambda path: _dvc_template(path, s.wildcards)  # noqa: E731
        body: dict = {}
        if s.wildcards:
            body["matrix"] = {w: "${%s}" % PARAMS_LIST[w] if w in PARAMS_LIST else list(WILDCARD_VALUES[w])
                              for w in s.wildcards}
        body["cmd"] = t(s.cmd)
        body["deps"] = [t(p) for p in s.code_paths] + [t(p) for p in s.deps.values()]
        if s.params:
            body["params"] = [t(k) for k in s.params]
        body["outs"] = [t(p) for p in s.outs.values()] + [t(s.record)]
        if s.metrics:
            body["metrics"] = [t(p) for p in s.metrics.values()]
        if s.plots:
            body["plots"] = [t(p) for p in s.plots.values()]
        stages[s.name] = body
    return stages


def dvc_plots() -> list[dict]:
    """Top-level plots: robust accuracy against epsilon, one line per defence, per dataset."""
    return [{ROBUSTNESS.format(dataset=ds): {
        "x": "epsilon", "y": list(DEFENCES), "title": f"{ds}: accuracy under white-box PGD (params: robustness) against epsilon",
        "x_label": "epsilon (L-infinity)", "y_label": "accuracy"}} for ds in DATASETS]  # every declared one:
    # dvc.yaml is the same whichever datasets a run lists (a plot of a dataset not run has no file to show)


def dvc_yaml() -> str:
    import yaml

    header = ("# Rendered from src/featdefense/pipeline.py by `featdefense dvc-yaml > dvc.yaml`: edit that, "
              "not this.\n# tests/test_engines.py fails when the two disagree.\n")
    return header + yaml.safe_dump({"stages": dvc_stages(), "plots": dvc_plots()}, sort_keys=False, width=120)


def check_dvc_yaml(path: str = "dvc.yaml") -> None:
    """Fail, saying what to run, when dvc.yaml is not the graph's rendering (a plug-in module added?)."""
    from pathlib import Path

    from . import FeatdefenseError

    if not Path(path).is_file() or Path(path).read_text() != dvc_yaml():
        raise FeatdefenseError(f"{path} differs from the stage graph (a plug-in module added or removed?): run "
                               f"`featdefense dvc-yaml > {path}` so that Snakemake and DVC run the same stages")
