"""Run-or-load: each run's History is stored as ``RESULTS_DIR/NAME-KEY.json`` and found again by its key.

The key is what was trained: the recipe, the data sizes, the network (its spec and its class's code) and the
code that defines a run (`training`, `splits`, `gradients`; comments and docstrings do not count). A result
is found by its key, not by its name: two cells may ask for the same run, an edited cell trains what changed
(one line says what, against the last result of that name), and undoing the edit finds the earlier result.
Files are written atomically as each run finishes, so an interrupted call keeps every finished run.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from . import code, gradients, models, splits, training, workers
from .config import Profile, progress_enabled, rerun_requested
from .device import matmul_gflops, pick
from .training import History, Recipe

RUN_CODE = (training, splits, gradients)  # the modules whose code defines what a run means
TOOLING = "tooling"                        # output tag: run logs stay in the notebook and are left out of the PDF
_written: set[Path] = set()                # results this process trained (A3_RERUN does not train them again)


def run(recipes: dict[str, Recipe], profile: Profile, *, rerun: bool | None = None, workers_: int | None = None,
        log: Callable[[str], None] | None = None) -> dict[str, History]:
    """Each recipe's History: loaded when a result with its key exists, else trained (side by side) and stored.
    `workers_=0` trains in this process (tests)."""
    log = log or note
    rerun = rerun_requested() if rerun is None else rerun
    keys = {name: cache_key(recipe, profile) for name, recipe in recipes.items()}
    paths = {name: path_for(profile, name, key) for name, key in keys.items()}
    histories: dict[str, History] = {}
    for name, key in keys.items():
        found = stored(profile, key)
        if found is not None and not (rerun and found not in _written):
            history = load(found, key, log)
            if history is not None:
                histories[name] = history
                paths[name] = found
    missing = [name for name in recipes if name not in histories]
    for name in missing:
        if not rerun and (reason := why_again(profile, name, keys[name])):
            log(f"{name}: {reason}; training it")
    jobs = {}  # one job per distinct key: two names for one recipe train once
    for name in missing:
        jobs.setdefault(digest(keys[name]), name)
    if jobs:
        start = time.perf_counter()
        trained = train({name: recipes[name] for name in jobs.values()}, {name: keys[name] for name in jobs.values()},
                        {name: paths[name] for name in jobs.values()}, profile, workers_)
        for name in missing:
            histories[name] = trained[jobs[digest(keys[name])]]
        log(f"trained {len(jobs)} of {len(recipes)} runs in {(time.perf_counter() - start) / 60:.1f} min; "
            f"{len(recipes) - len(missing)} loaded from {_shown(profile.results_dir)}/")
    else:
        log(f"all {len(recipes)} runs loaded from {_shown(profile.results_dir)}/")
    return {name: histories[name] for name in recipes}


def cache_key(recipe: Recipe, profile: Profile) -> dict[str, Any]:
    """What a stored result must match to be reused: recipe, data sizes, network, and the code of a run."""
    network = models.spec(recipe.model)
    cls = models.SmallCNN if network["network"] == "SmallCNN" else models.MLP
    return {"recipe": asdict(recipe), "data": profile.data_sizes,
            "network": {**network, "parameters": _parameters(json.dumps(network)),
                        "code": code.fingerprint(models, cls.__name__) + code.fingerprint(models, "from_spec")},
            "code": {module.__name__.rpartition(".")[2]: code.fingerprint(module) for module in RUN_CODE}}


@functools.lru_cache(maxsize=None)
def _parameters(network: str) -> int:
    return models.count_parameters(models.from_spec(json.loads(network)))


def digest(key: dict[str, Any]) -> str:
    """12 hex digits naming a key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def path_for(profile: Profile, name: str, key: dict[str, Any]) -> Path:
    """Where the run `name` with `key` is stored."""
    return profile.results_dir / f"{_safe(name)}-{digest(key)}.json"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name)


def stored(profile: Profile, key: dict[str, Any]) -> Path | None:
    """A stored result made with `key`, whatever name it was stored under."""
    return next(iter(sorted(profile.results_dir.glob(f"*-{digest(key)}.json"))), None)


def why_again(profile: Profile, name: str, key: dict[str, Any]) -> str | None:
    """What changed since the newest result stored under `name` (None if there is none)."""
    earlier = sorted(profile.results_dir.glob(f"{_safe(name)}-" + "[0-9a-f]" * 12 + ".json"),
                     key=lambda path: path.stat().st_mtime)
    for path in reversed(earlier):
        try:
            return what_changed(json.loads(path.read_text())["key"], key)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A short phrase naming how two keys differ."""
    if old.get("code") != new["code"]:
        changed = [f"{name}.py" for name in new["code"] if (old.get("code") or {}).get(name) != new["code"][name]]
        return f"the training code changed ({', '.join(changed)})"
    if old.get("network") != new["network"]:
        before, after = (old.get("network") or {}).get("parameters"), new["network"]["parameters"]
        return (f"the network changed ({before:,} -> {after:,} parameters)" if isinstance(before, int) and before != after
                else "the network's definition changed")
    if old.get("data") != new["data"]:
        return f"the data sizes changed ({old.get('data')} -> {new['data']})"
    recipe = old.get("recipe") or {}
    return "the recipe changed (" + ", ".join(f"{k} {recipe.get(k)!r} -> {v!r}" for k, v in new["recipe"].items()
                                              if recipe.get(k) != v) + ")"


def load(path: Path, key: dict[str, Any], log: Callable[[str], None] = print) -> History | None:
    """The History stored at `path` if it is intact and was made with `key`, else None (saying why)."""
    try:
        content = json.loads(path.read_text())
        if content["key"] != key:
            raise ValueError("its key does not match its name")
        return History.from_dict(content["history"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        log(f"{path.name}: unreadable ({type(error).__name__}); training it again")
        return None


def write_json(path: Path, content: Any) -> None:
    """Write JSON atomically: a temp file in the same folder, then rename over `path`; no temp file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    try:
        with open(partial, "w") as f:
            json.dump(content, f, separators=(",", ":"), allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def train(recipes: dict[str, Recipe], keys: dict[str, dict], paths: dict[str, Path], profile: Profile,
          workers_: int | None = None) -> dict[str, History]:
    """Train the recipes, longest first, storing each as it finishes."""
    device = pick()
    order = sorted(recipes, key=lambda name: -recipes[name].epochs * models.training_flops(recipes[name].model))
    count = workers.worker_count(device, len(order)) if workers_ is None else workers_
    bar = tqdm(total=sum(r.epochs for r in recipes.values()), unit="epoch", disable=not progress_enabled(),
               desc=f"training {len(order)} runs" + (f" ({count} at once)" if count > 1 else ""))
    done: dict[str, History] = {}
    conditions = {"side_by_side": max(count, 1)}
    if device.type == "cpu":
        conditions["matmul_gflops"] = round(matmul_gflops())  # this machine's floor rate, measured now

    def save(name: str, history: History) -> None:
        history.machine = {**history.machine, **conditions}
        write_json(paths[name], {"key": keys[name], "history": history.to_dict()})
        _written.add(paths[name])
        bar.total -= recipes[name].epochs - history.epochs  # runs that stopped early
        bar.refresh()
        done[name] = History.from_dict(history.to_dict())  # fresh and stored runs read alike

    try:
        if count == 0:
            for name in order:
                save(name, workers.train_one(recipes[name], models.spec(recipes[name].model), profile, device,
                                             on_epoch=lambda epoch: bar.update()))
        else:
            jobs = [(name, recipes[name], models.spec(recipes[name].model)) for name in order]
            workers.train(jobs, profile, device, count, on_epoch=bar.update, on_done=save)
    finally:
        bar.close()
    return done


def note(line: str) -> None:
    """Print a log line; in a notebook, as an output tagged TOOLING so the PDF leaves it out."""
    try:
        from IPython import get_ipython
        from IPython.display import Pretty, display
        if get_ipython() is not None:
            display(Pretty(line), metadata={"tags": [TOOLING]})
            return
    except ImportError:
        pass
    print(line)


def _shown(path: Path) -> str:
    """The path relative to the working directory when possible (shorter in notebook output)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
