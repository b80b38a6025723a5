"""params.yaml: load, validate against the one schema, and slice per stage."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import FeatdefenseError

SCHEMA_PATH = Path(__file__).parent / "schemas" / "params.schema.yaml"
DEFAULT_PATH = Path("params.yaml")


class ParamsError(FeatdefenseError):
    pass


def schema() -> dict:
    """The schema file, with each defence module's schema for its section `defences.<name>` added, the
    dataset modules `datasets` may list (each with its section `download.<name>`), the target modules
    `target.architecture` may name, each attack module's schema for its section `attack.<name>` (the
    iterative ones `whitebox.attack` may name), and the stage names `resources.stages` may hold."""
    from .attacks import ATTACKS
    from .datasets import DATASETS
    from .defences import DEFENCES
    from .pipeline import STAGES
    from .targets import TARGETS

    full = yaml.safe_load(SCHEMA_PATH.read_text())
    sections = {name: d.schema for name, d in DEFENCES.items() if d.schema is not None}
    full["properties"]["defences"] = {"type": "object", "additionalProperties": False,
                                      "required": sorted(sections), "properties": sections}
    attack = full["properties"]["attack"]
    attack["required"] += list(ATTACKS)
    attack["additionalProperties"] = False
    attack["properties"].update({name: a.schema for name, a in ATTACKS.items()})
    full["properties"]["whitebox"]["properties"]["attack"]["enum"] = [n for n, a in ATTACKS.items() if a.iterative]
    full["properties"]["target"]["properties"]["architecture"] = {"enum": sorted(TARGETS)}
    full["properties"]["datasets"]["items"] = {"enum": list(DATASETS)}
    full["properties"]["download"].update(required=list(DATASETS), additionalProperties=False,
                                          properties={name: {"$ref": "#/$defs/source"} for name in DATASETS})
    full["properties"]["resources"]["properties"]["stages"].update(
        additionalProperties=False, properties={name: {"$ref": "#/$defs/job"} for name in STAGES})
    return full


def _where(path: Iterable) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _schema_errors(params: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    messages = []
    for err in sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path))):
        key = _where(err.absolute_path)
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - set(allowed))
            messages.append(f"{key}: unknown key(s) {extra}; allowed: {allowed}")
        elif err.validator == "required":
            messages.append(f"{key}: {err.message}")
        elif err.validator == "enum":
            messages.append(f"{key}: {err.instance!r} is not allowed; allowed: {err.validator_value}")
        else:
            rule = {k: v for k, v in err.schema.items() if k not in ("description", "$ref")}
            messages.append(f"{key}: {err.instance!r} is not allowed ({err.message}); rule: {rule}")
    return messages


def _semantic_errors(p: dict) -> list[str]:
    """Rules a JSON schema states badly: relations between keys."""
    errors = []
    for name, spec in p["attack"].items():
        if isinstance(spec, dict) and spec.get("step_size", 0) > spec["epsilon"]:
            errors.append(f"attack.{name}.step_size: {spec['step_size']} is larger than attack.{name}.epsilon "
                          f"{spec['epsilon']}; allowed: 0 < step_size <= epsilon")
    ref = p["whitebox"]["attack"]
    eps = p["attack"][ref]["epsilon"]
    too_big = [s for s in p["whitebox"]["step_sizes"] if s > eps]
    if too_big:
        errors.append(f"whitebox.step_sizes: {too_big} larger than attack.{ref}.epsilon {eps}; "
                      f"allowed: 0 < step <= epsilon")
    ln = p["loss_net"]
    if ln["weights"] == "file":
        if not ln["sha256"]:
            errors.append("loss_net.sha256: null is not allowed with loss_net.weights: file; "
                          "allowed: the file's 64-hex-digit SHA-256")
    madry = p["defences"].get("madry")
    if madry and madry["step_size"] > madry["epsilon"]:
        errors.append(f"defences.madry.step_size: {madry['step_size']} is larger than defences.madry.epsilon "
                      f"{madry['epsilon']}; allowed: 0 < step_size <= epsilon")
    if madry and madry["ramp_epochs"] > madry["epochs"]:
        errors.append(f"defences.madry.ramp_epochs: {madry['ramp_epochs']} is more than defences.madry.epochs "
                      f"{madry['epochs']}: training would end below its epsilon; allowed: 0 <= ramp_epochs <= epochs")
    r = p["resources"]
    for where, job in [("resources", r)] + [(f"resources.stages.{n}", {**r, **own}) for n, own in r["stages"].items()]:
        if job["warn_before_limit"] and job["warn_before_limit"] >= 60 * job["runtime"]:
            errors.append(f"{where}.warn_before_limit: {job['warn_before_limit']} s is not less than its runtime of "
                          f"{job['runtime']} min: SLURM would warn the job as it starts and the stage would stop "
                          "at its first save; allowed: fewer seconds than runtime x 60, or null")
    errors += _shape_errors(p)
    fl = p["feature_loss"]
    if not fl["layers"] and not fl["pixel"]:
        errors.append("feature_loss: no layers and pixel: false leaves an empty loss; "
                      "allowed: at least one layer, or pixel: true")
    return errors


def _shape_errors(p: dict) -> list[str]:
    """What each module declares must fit together: every dataset listed has the target's input shape and
    labels it tells apart, and every defence takes that input."""
    from .datasets import DATASETS
    from .defences import DEFENCES
    from .targets import TARGETS

    t = TARGETS[p["target"]["architecture"]]
    where = f"target.architecture: {t.name} ({t.module}: input_shape {t.input_shape}, classes {t.classes})"
    errors = [f"datasets: {d.name} ({d.module}) has images of shape {d.shape} and {d.classes} classes, but {where}; "
              f"allowed: a target of the same shape and at least as many classes"
              for d in (DATASETS[n] for n in p["datasets"]) if d.shape != t.input_shape or d.classes > t.classes]
    errors += [f"{where}, but {refused}; allowed: a target of that input shape"
               for refused in (d.refusal(t.input_shape) for d in DEFENCES.values()) if refused]
    return errors


def validate(params: Any, origin: str = "params") -> dict:
    if not isinstance(params, dict):
        raise ParamsError(f"{origin}: expected a mapping of sections, found {type(params).__name__}")
    errors = _schema_errors(params)
    if not errors:
        errors = _semantic_errors(params)
    if errors:
        raise ParamsError(f"{origin} is invalid:\n  " + "\n  ".join(errors))
    return params


def load(path: str | Path = DEFAULT_PATH) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file (run from the repository root)") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    return validate(params, str(path))


def get(params: dict, dotted: str) -> Any:
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def select(params: dict, keys: Iterable[str]) -> dict:
    """The sub-dict holding exactly `keys` (dotted), as nested dicts: what one stage may read."""
    out: dict = {}
    for dotted in keys:
        *parents, last = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(get(params, dotted))
    return out


def flat_keys(tree: dict, prefix: str = "") -> list[str]:
    """Dotted names of every leaf of a nested mapping."""
    return [k for key, v in tree.items()
            for k in (flat_keys(v, f"{prefix}{key}.") if isinstance(v, dict) else [f"{prefix}{key}"])]


def merge_into(base: dict, overlay: dict) -> None:
    """Deep-merge `overlay` into `base` in place (mappings merge, everything else replaces)."""
    for k, v in overlay.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and v:
            merge_into(base[k], v)
        else:
            base[k] = copy.deepcopy(v)


def merge(base: dict, overlay: dict) -> dict:
    """Deep-merge `overlay` onto `base` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    merge_into(out, overlay)
    return out
