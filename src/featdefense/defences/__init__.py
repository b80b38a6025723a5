"""Defences: one module each, found here by name, each evaluated and reported the same way.

A defence module defines `DEFENCE = Defence(...)`: its name, its row label, what kind of module it is
(a `preprocessor` mapping images to images in front of the target, or a `classifier` replacing the
target), how to build that module from its params section `defences.<name>` (with the JSON schema of
that section), and, when it learns, a `train(p, inp, out, dataset)` function. The stage graph
(pipeline.py) gives every defence an `evaluate_<name>` stage, a `train_<name>` stage when it trains, and
its rows in the report: nothing else needs to know about it. See README, "Adding a defence".

The declarations are read from the modules' source, not imported: a defence module imports torch, and the
stage graph, which Snakemake builds each time it starts (in every SLURM job too), needs only what the
declaration says. So DEFENCE's arguments are written as literals (module-level constants of literals
allowed); `build` may be any expression and `train` names a function of the module (or one it imports):
both are imported on first call.
"""
from __future__ import annotations

import ast
import copy
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from torch import nn

KINDS = ("preprocessor", "classifier")
# What a training stage may read, by name (the paths are the stage graph's, in pipeline.py).
TRAIN_INPUTS = ("prepared", "target", "fgsm", "pgd", "loss_net")


@dataclass(frozen=True)
class Defence:
    name: str
    label: str                                  # its name in the report's tables
    kind: str                                   # "preprocessor" | "classifier"
    build: Callable[[dict], nn.Module]          # (its params section, {} without one) -> the module
    schema: dict | None = None                  # JSON schema of params.yaml `defences.<name>`; None: no section
    train: Callable | None = None               # train(p, inp, out, dataset) -> writes out["model"], out["log"]
    train_inputs: tuple[str, ...] = ()          # what the training reads, out of TRAIN_INPUTS
    train_params: tuple[str, ...] = ()          # params it reads besides seed/device/threads and its section
    code: tuple[str, ...] = ()                  # files it uses besides its own module and what that imports
    trained_by: str | None = None               # a stage of the graph that trains it (the paper's denoiser)
    paper_key: str | None = None                # its rows in paper_results.yaml, if the paper has them
    order: int = 100                            # position in tables and figures
    description: str = ""
    module: str = field(default="", compare=False)  # filled in by discovery: its source file

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"defence {self.name}: kind {self.kind!r} is not one of {KINDS}")
        unknown = set(self.train_inputs) - set(TRAIN_INPUTS)
        if unknown:
            raise ValueError(f"defence {self.name}: unknown train_inputs {sorted(unknown)}; allowed {TRAIN_INPUTS}")

    @property
    def section(self) -> str | None:
        """Its params.yaml section (dotted), or None."""
        return f"defences.{self.name}" if self.schema is not None else None

    @property
    def trains(self) -> bool:
        return self.train is not None or self.trained_by is not None

    def params_of(self, p: dict) -> dict:
        return p.get("defences", {}).get(self.name, {}) if self.schema is not None else {}


@dataclass(frozen=True)
class Deferred:
    """A function a declaration names, imported on its first call: `attribute` of module `module`."""
    module: str      # dotted
    attribute: str   # dotted within the module: "train", or "DEFENCE.build" for an expression

    def resolve(self) -> Callable:
        found = importlib.import_module(self.module)
        for part in self.attribute.split("."):
            found = getattr(found, part)
        return found

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    @property
    def runner(self) -> str:
        """As the stage graph names a stage's function: module:function."""
        return f"{self.module}:{self.attribute}"


def _literal(node: ast.AST, constants: dict):
    """The value of a literal expression, in which names of the module's literal constants may appear."""
    if isinstance(node, ast.Name) and node.id in constants:
        return copy.deepcopy(constants[node.id])
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k, constants): _literal(v, constants) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e, constants) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    return ast.literal_eval(node)  # numbers, strings, None, booleans; ValueError for anything else


def _assigned(node: ast.stmt) -> tuple[str, ast.expr] | None:
    """`NAME = value` or `NAME: type = value` at a module's top level: (NAME, value)."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    return None


def declaration(path: Path, module: str) -> Defence | None:
    """The Defence a module's `DEFENCE = Defence(...)` declares, read from its source (None: it has none)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    bound = [n for n in ast.walk(tree)
             if isinstance(n, ast.Name) and n.id == "DEFENCE" and isinstance(n.ctx, ast.Store)]
    top = [n for n in tree.body if (named := _assigned(n)) and named[0] == "DEFENCE"]
    if len(bound) > 1 or len(bound) != len(top):
        raise ValueError(f"{path}, line {bound[-1].lineno}: DEFENCE must be bound once, at the module's top level, "
                         f"as `DEFENCE = Defence(...)`: the stage graph reads it from the source")
    constants, functions, found = {}, {}, None
    for node in tree.body:  # in order: a name means what it is bound to where DEFENCE is declared
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions[node.name] = (module, node.name)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            functions.update({a.asname or a.name: (base, a.name) for a in node.names})
        elif (named := _assigned(node)) and named[0] == "DEFENCE":
            found = _read_call(named[1], constants, functions, path, module)
        elif named:
            try:
                constants[named[0]] = _literal(named[1], constants)
            except (ValueError, TypeError, SyntaxError):
                constants.pop(named[0], None)  # not a literal (any more): no declaration can use it
    return found


def _read_call(call: ast.expr, constants: dict, functions: dict, path: Path, module: str) -> Defence:
    def refuse(what: str, node: ast.AST = call):
        return ValueError(f"{path}, line {node.lineno}: DEFENCE's {what} (the stage graph reads declarations "
                          f"from the source, without importing them)")

    if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Defence" and not call.args
            and all(kw.arg for kw in call.keywords)):
        raise refuse("value must be `Defence(...)` with keyword arguments only")
    kwargs = {}
    for kw in call.keywords:
        if kw.arg == "module":
            raise refuse("module is filled in by discovery, not declared", kw.value)
        if kw.arg == "build":
            kwargs["build"] = Deferred(module, "DEFENCE.build")
        elif kw.arg == "train" and not (isinstance(kw.value, ast.Constant) and kw.value.value is None):
            if not (isinstance(kw.value, ast.Name) and kw.value.id in functions):
                raise refuse("train must name a function the module defines or imports (its stage runs it by "
                             "name)", kw.value)
            kwargs["train"] = Deferred(*functions[kw.value.id])
        else:
            try:
                kwargs[kw.arg] = _literal(kw.value, constants)
            except (ValueError, TypeError, SyntaxError):
                raise refuse(f"{kw.arg} must be written as a literal (constants of literals allowed)",
                             kw.value) from None
    try:
        source = "/".join(module.split(".")[1:]) + ("/__init__.py" if path.name == "__init__.py" else ".py")
        return Defence(**kwargs, module=source)  # under src/featdefense: defences/<name>.py
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}, line {call.lineno}: {e}") from None


def _discover() -> dict[str, Defence]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        folder = Path(__path__[0])
        path = folder / info.name / "__init__.py" if info.ispkg else folder / f"{info.name}.py"
        d = declaration(path, f"{__name__}.{info.name}") if path.is_file() else None
        if d is not None:
            found.append(d)
    names = [d.name for d in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two defence modules share a name: {sorted(names)}")
    return {d.name: d for d in sorted(found, key=lambda d: (d.order, d.name))}


DEFENCES: dict[str, Defence] = _discover()

__all__ = ["Defence", "DEFENCES", "Deferred", "KINDS", "TRAIN_INPUTS", "declaration"]
