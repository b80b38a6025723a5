"""Plug-ins: every kind (defence, target, ...) is a package of modules, one plug-in each, declared the same
way and found the same way.

A plug-in module binds one declaration at its top level, `DEFENCE = Defence(...)`, `TARGET = Target(...)`:
its kind's dataclass called with keyword arguments. The declarations are read from the modules' source, not
imported: a plug-in module imports torch, and the stage graph, which Snakemake builds each time it starts (in
every SLURM job too), needs only what the declaration says. So a declaration's arguments are written as
literals (module-level constants of literals allowed), but for two sorts of field its kind names:
- an *expression* field (`build`) may be any expression: it is evaluated on first call, by importing the module;
- a *function* field (`train`) names a function the module defines or imports: imported on first call.
`discover` finds every declaration of a package, in its `order` and then by name.
"""
from __future__ import annotations

import ast
import copy
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Kind:
    """A kind of plug-in: the name a module binds (DEFENCE), the dataclass it calls (Defence), and which of
    its fields are expressions and which name functions."""
    variable: str
    cls: type
    expressions: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()


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


def check_image_spec(what: str, field: str, shape, classes) -> None:
    """What a dataset or a target declares of its images: (channels, height, width) and a class count."""
    if not (isinstance(shape, tuple) and len(shape) == 3 and all(isinstance(s, int) and s > 0 for s in shape)):
        raise ValueError(f"{what}: {field} {shape!r}; allowed: (channels, height, width), positive integers")
    if not (isinstance(classes, int) and classes >= 2):
        raise ValueError(f"{what}: classes {classes!r}; allowed: an integer of at least 2")


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


def declaration(kind: Kind, path: Path, module: str):
    """The plug-in a module's `<VARIABLE> = <Class>(...)` declares, read from its source (None: it has none)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    bound = [n for n in ast.walk(tree)
             if isinstance(n, ast.Name) and n.id == kind.variable and isinstance(n.ctx, ast.Store)]
    top = [n for n in tree.body if (named := _assigned(n)) and named[0] == kind.variable]
    if len(bound) > 1 or len(bound) != len(top):
        raise ValueError(f"{path}, line {bound[-1].lineno}: {kind.variable} must be bound once, at the module's top "
                         f"level, as `{kind.variable} = {kind.cls.__name__}(...)`: the stage graph reads it from the "
                         "source")
    constants, functions, found = {}, {}, None
    for node in tree.body:  # in order: a name means what it is bound to where the declaration is
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions[node.name] = (module, node.name)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            functions.update({a.asname or a.name: (base, a.name) for a in node.names})
        elif (named := _assigned(node)) and named[0] == kind.variable:
            found = _read_call(kind, named[1], constants, functions, path, module)
        elif named:
            try:
                constants[named[0]] = _literal(named[1], constants)
            except (ValueError, TypeError, SyntaxError):
                constants.pop(named[0], None)  # not a literal (any more): no declaration can use it
    return found


def _read_call(kind: Kind, call: ast.expr, constants: dict, functions: dict, path: Path, module: str):
    what = kind.variable

    def refuse(problem: str, node: ast.AST = call):
        return ValueError(f"{path}, line {node.lineno}: {what}'s {problem} (the stage graph reads declarations "
                          f"from the source, without importing them)")

    if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == kind.cls.__name__ and not call.args
            and all(kw.arg for kw in call.keywords)):
        raise refuse(f"value must be `{kind.cls.__name__}(...)` with keyword arguments only")
    kwargs = {}
    for kw in call.keywords:
        if kw.arg == "module":
            raise refuse("module is filled in by discovery, not declared", kw.value)
        if kw.arg in kind.expressions:
            kwargs[kw.arg] = Deferred(module, f"{what}.{kw.arg}")
        elif kw.arg in kind.functions and not (isinstance(kw.value, ast.Constant) and kw.value.value is None):
            if not (isinstance(kw.value, ast.Name) and kw.value.id in functions):
                raise refuse(f"{kw.arg} must name a function the module defines or imports (its stage runs it by "
                             "name)", kw.value)
            kwargs[kw.arg] = Deferred(*functions[kw.value.id])
        else:
            try:
                kwargs[kw.arg] = _literal(kw.value, constants)
            except (ValueError, TypeError, SyntaxError):
                raise refuse(f"{kw.arg} must be written as a literal (constants of literals allowed)",
                             kw.value) from None
    try:
        source = "/".join(module.split(".")[1:]) + ("/__init__.py" if path.name == "__init__.py" else ".py")
        return kind.cls(**kwargs, module=source)  # under src/featdefense: <kind>/<name>.py
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}, line {call.lineno}: {e}") from None


def discover(kind: Kind, folder: str | Path, package: str, named: bool = False) -> dict:
    """Every plug-in of `package` (its folder), by name, in their `order` and then by name. `named`: each
    module must be named after its plug-in (`<folder>/<name>.py`), because the stage graph names a stage's
    module by its wildcard's value (pipeline.BY_WILDCARD)."""
    found = []
    folder = Path(folder)
    for info in pkgutil.iter_modules([str(folder)]):
        path = folder / info.name / "__init__.py" if info.ispkg else folder / f"{info.name}.py"
        d = declaration(kind, path, f"{package}.{info.name}") if path.is_file() else None
        if d is not None:
            found.append(d)
    names = [d.name for d in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two {kind.cls.__name__.lower()} modules share a name: {sorted(names)}")
    what = kind.cls.__name__.lower()
    for d in found if named else ():
        if d.module != f"{Path(folder).name}/{d.name}.py":
            raise ValueError(f"src/featdefense/{d.module}: declares {what} {d.name!r}; allowed: "
                             f"{'an' if what[0] in 'aeiou' else 'a'} {what} module "
                             f"named after its {what}, {Path(folder).name}/{d.name}.py")
    return {d.name: d for d in sorted(found, key=lambda d: (getattr(d, "order", 100), d.name))}


def lookup(found: dict, name: str, where: str = ""):
    """The plug-in `name` of those `discover` found, or an error naming `where` (a params key) and those allowed."""
    try:
        return found[name]
    except KeyError:
        what = type(next(iter(found.values()))).__name__.lower() if found else "plug-in"
        raise ValueError(f"{where + ': ' if where else ''}{what} {name!r} is not one of the {what} modules; allowed: "
                         f"{sorted(found)}") from None
