"""Run-or-load: each run's History is stored as ``RESULTS_DIR/NAME-KEY.json`` and found again by its key; the two
training schemes; learning-rate searches on seeds that are never reported.

The key is what was trained: the recipe, the data sizes, the network (its spec, read from models.py on disk)
and the code on disk of every helpers module a worker imports, found by following the imports (comments and
docstrings do not count; in models.py only the run's own network and what it uses). A result is found by its key,
not by its name: two cells may ask for the same run, an edited cell or helper file trains what it changes (one
line says what, against the last result of that name), and undoing the edit finds the earlier result. Runs train
side by side in worker processes (`pool.py`), each stored as it finishes, so an interrupt keeps them.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import psutil
import torch
from tqdm.auto import tqdm

from . import data, models, pool, report, sourcecode, workers
from .config import TOOLING, Profile, cores, workers_requested
from .device import matmul_gflops, pick
from .training import History, Recipe

# The two training schemes, fixed in advance; only their learning rate is ever searched (on validation).
DEMO = Recipe(model="base", optimizer="sgd", lr=1e-3, batch_size=64, epochs=10)  # the PyTorch quickstart's
CNN_SCHEME = Recipe(model="cnn", optimizer="adamw", lr=0.01, weight_decay=0.05, schedule="onecycle", batch_size=128,
                    flip=True, epochs=10)  # Q1.7: AdamW, one-cycle rate, batch 128, half the images mirrored
SCHEMES = {"demo": DEMO, "cnn": CNN_SCHEME}

WORKER_MB = 1200             # peak memory of one worker (torch, the splits, the largest run): README
GPU_RUNS = 4                 # runs sharing one GPU at once: a batch-64 run alone leaves it mostly idle
SILENT_EPOCHS = 20           # a run that sends nothing for this many times an epoch's expected time is stopped
SESSION = uuid.uuid4().hex[:12]  # this process: runs trained in one session are timed together
WorkerDied = pool.WorkerDied


def run_name(prefix: str, recipe: Recipe) -> str:
    """The name a run is stored under: 'PREFIX_lrLR_seedSEED'."""
    return f"{prefix}_lr{recipe.lr:g}_seed{recipe.seed}"


def grid(prefix: str, recipe: Recipe, rates: list[float], seeds: tuple[int, ...]) -> dict[str, Recipe]:
    """The recipe at every rate with every seed, by run name."""
    return {run_name(prefix, r): r for r in (replace(recipe, lr=lr, seed=seed) for lr in rates for seed in seeds)}


def run(recipes: dict[str, Recipe], profile: Profile, *, rerun: bool | None = None, workers_: int | None = None,
        log: Callable[[str], None] | None = None) -> dict[str, History]:
    """Each recipe's History: loaded when a result with its key exists, else trained (side by side) and stored.
    `rerun` (default: env A3_RERUN=1) retrains what was stored before the retrain began (`rerun_since`).
    `workers_=0` (or env A3_WORKERS=0) trains in this process."""
    if multiprocessing.parent_process() is not None:  # a worker process importing the main module
        raise RuntimeError("experiments.run() was called in a worker process, which imports the main module: keep "
                           "the code that trains under `if __name__ == \"__main__\":`")
    log = log or note
    rerun = os.environ.get("A3_RERUN") == "1" if rerun is None else rerun
    since = rerun_since(profile) if rerun else 0
    keys = {name: cache_key(recipe, profile) for name, recipe in recipes.items()}
    histories: dict[str, History] = {}
    for name, key in keys.items():
        found = stored(profile, key)
        history = load(found, key, log) if found is not None else None
        if history is not None and history.finished >= since:
            histories[name] = history
    missing = [name for name in recipes if name not in histories]
    for name in missing:
        if not rerun and (reason := why_again(profile, name, keys[name])):
            log(f"{name}: {reason}; training it")
    jobs: dict[str, str] = {}  # one job per distinct key: two names for one recipe train once
    for name in missing:
        jobs.setdefault(digest(keys[name]), name)
    if jobs:
        start = time.perf_counter()
        trained = train({name: recipes[name] for name in jobs.values()}, {name: keys[name] for name in jobs.values()},
                        profile, workers_)
        for name in missing:
            histories[name] = trained[jobs[digest(keys[name])]]
        log(f"trained {len(jobs)} of {len(recipes)} runs in {(time.perf_counter() - start) / 60:.1f} min; "
            f"{len(recipes) - len(missing)} loaded from {_shown(profile.results_dir)}/")
    else:
        log(f"all {len(recipes)} runs loaded from {_shown(profile.results_dir)}/")
    return {name: histories[name] for name in recipes}


def rerun_since(profile: Profile) -> int:
    """When the retrain under way began (ms since 1970): read from `profile.rerun_mark`, or written there now. The
    mark stays until the notebook ends (summary.save removes it), so a retrain that was cut off, in this session or
    an earlier one, keeps the runs it had stored and trains the rest."""
    try:
        return int(json.loads(profile.rerun_mark.read_text(encoding="utf-8"))["since"])
    except (OSError, ValueError, KeyError, TypeError):
        since = round(time.time() * 1000)
        write_json(profile.rerun_mark, {"since": since})
        return since


def cache_key(recipe: Recipe, profile: Profile) -> dict[str, Any]:
    """What a stored result must match to be reused: recipe, data sizes, network spec and the code of a run."""
    network = models.spec(recipe.model)
    return {"recipe": asdict(recipe), "data": profile.data_sizes, "network": network, "code": code_key(network)}


def code_key(network: dict[str, Any]) -> dict[str, str]:
    """The fingerprint of every helpers file a worker imports, by file name. In models.py the tables (the network
    spec carries them) and the code of the other networks are left out: what the network's class uses (block
    classes, functions, constants) is in, so an edit of one network retrains only that network's runs."""
    files = sourcecode.closure(Path(workers.__file__))
    return {path.name: sourcecode.fingerprint(path, not_used_by(network) if path.name == "models.py" else frozenset())
            for path in files}


def not_used_by(network: dict[str, Any]) -> frozenset[str]:
    """The top-level definitions of models.py that are not part of this network: its tables, and the code that
    only the other networks' classes use."""
    networks = sourcecode.reachable(models, set(sourcecode.classes(models)))
    return frozenset(networks - sourcecode.reachable(models, {network["network"]})) | frozenset(models.TABLES)


def digest(key: dict[str, Any]) -> str:
    """12 hex digits naming a key (a Recipe holds only plain numbers, strings and booleans: it checks them)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def path_for(profile: Profile, name: str, key: dict[str, Any]) -> Path:
    """Where the run `name` with `key` is stored."""
    return profile.results_dir / f"{re.sub(r'[^A-Za-z0-9_.]+', '_', name)}-{digest(key)}.json"


def stored(profile: Profile, key: dict[str, Any]) -> Path | None:
    """The newest stored result made with `key`, whatever name it was stored under."""
    return max(profile.results_dir.glob(f"*-{digest(key)}.json"), key=lambda p: p.stat().st_mtime_ns, default=None)


def why_again(profile: Profile, name: str, key: dict[str, Any]) -> str | None:
    """What changed since the newest readable result stored under `name` with another key (None if there is none)."""
    stem = path_for(profile, name, key).name.rsplit("-", 1)[0]
    earlier = sorted(profile.results_dir.glob(f"{stem}-" + "[0-9a-f]" * 12 + ".json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(earlier):
        try:
            old = json.loads(path.read_text(encoding="utf-8"))["key"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(old, dict) and digest(old) != digest(key):  # by digest: 1 == 1.0, but they are two keys
            return what_changed(old, key)
    return None


PARTS = {"network": "the network", "code": "the code of a run", "data": "the data sizes", "recipe": "the recipe"}


def what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    """In words, every entry in which two keys differ, by part: 'the recipe changed (lr 0.1 -> 0.05)', 'the code
    of a run changed (training.py)'; a part that is not a table of entries is named whole ('recipe 7 -> ...')."""
    def leaves(value: Any, path: str) -> dict[str, str]:
        if not isinstance(value, dict):
            return {path: repr(value)}  # repr: 1 and 1.0 differ, as they do in the stored JSON
        return {k: v for name, item in value.items() for k, v in leaves(item, f"{path}.{name}").items()}
    parts = []
    for part, words in PARTS.items():
        a, b = ({} if part not in key else leaves(key[part], part) for key in (old, new))
        shown = []
        for k in sorted(a.keys() | b.keys()):
            entry = k.partition(".")[2] or k  # 'recipe.lr' -> 'lr'; a part that is not a table: its own name
            if a.get(k) != b.get(k):
                shown.append(entry if part == "code" else f"{entry} {a.get(k, 'absent')} -> {b.get(k, 'absent')}")
        if shown:
            parts.append(f"{words} changed ({', '.join(shown)})")
    return "; ".join(parts) or "the stored key is in an older format"


def load(path: Path, key: dict[str, Any], log: Callable[[str], None] = print) -> History | None:
    """The History stored at `path` if it is intact and was made with `key`, else None (saying why)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if digest(content["key"]) != digest(key):
            raise ValueError("its key does not match its name")
        return History.from_dict(content["history"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        log(f"{path.name}: unreadable ({type(error).__name__}); training it again")
        return None


def write_json(path: Path, content: Any) -> None:
    """Write JSON atomically: a temp file of this process's own in the same folder, then renamed over `path`; no
    temp file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(content, separators=(",", ":"), allow_nan=False)  # before any file: NaN raises here
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def free_memory_mb() -> float:
    """Memory available to new processes, in MB: the machine's, or less where a container limits this process
    (cgroup v2 or v1, as JupyterHub and Binder do)."""
    free = psutil.virtual_memory().available
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            cap, current = Path(limit).read_text().strip(), int(Path(used).read_text())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 2 ** 60:  # "max" or a huge number: no limit
            free = min(free, int(cap) - current)
        break
    return max(free, 0) / 2 ** 20


def worker_count(device: torch.device, jobs: int) -> int:
    """How many runs train at once: A3_WORKERS, else by cores and free memory (CUDA: up to GPU_RUNS; MPS: 1);
    0 means in this process."""
    asked = workers_requested()
    if asked is None:
        fitting = int(free_memory_mb() // WORKER_MB)
        limit = {"cpu": cores(), "cuda": min(cores(), GPU_RUNS)}.get(device.type, 1)
        asked = max(1, min(limit, fitting))
    return min(asked, jobs)


def epoch_seconds(recipe: Recipe, profile: Profile, gflops_per_core: float) -> float:
    """What an epoch of `recipe` should take on one core at the measured matrix-multiply rate (its compute floor)."""
    sizes = profile.data_sizes
    work = models.run_flops(sizes["train"], sizes["train_eval"] + sizes["validation"] + sizes["test"],
                            models.training_flops(recipe.model), models.multiply_adds(recipe.model))
    return work / (gflops_per_core * 1e9)


def train(recipes: dict[str, Recipe], keys: dict[str, dict], profile: Profile,
          workers_: int | None = None) -> dict[str, History]:
    """Train the recipes, longest first, side by side in `workers_` processes (0: here), storing each as it
    finishes; a worker that dies or goes silent stops the call with one line naming its run."""
    device = pick()
    order = sorted(recipes, key=lambda name: -recipes[name].epochs * models.training_flops(recipes[name].model))
    count = worker_count(device, len(order)) if workers_ is None else min(workers_, len(order))
    if count == 0:
        refuse_stale_code()
    bar = tqdm(total=sum(r.epochs for r in recipes.values()), unit="epoch", disable=os.environ.get("A3_PROGRESS") == "0",
               desc=f"training {len(order)} runs" + (f" ({count} at once)" if count > 1 else ""))
    rate = matmul_gflops()  # this machine's floor rate (all cores), measured now
    conditions = {"side_by_side": max(count, 1), "session": SESSION}
    if device.type == "cpu":
        conditions["matmul_gflops"] = round(rate)
    done: dict[str, History] = {}

    def save(name: str, history: dict[str, Any]) -> None:
        history["machine"] = {**history["machine"], **conditions}
        write_json(path_for(profile, name, keys[name]), {"key": keys[name], "history": history})
        done[name] = History.from_dict(json.loads(json.dumps(history)))  # fresh and stored runs read alike
        bar.total -= recipes[name].epochs - done[name].epochs  # runs that diverged
        bar.refresh()

    jobs = {name: (name, recipes[name], models.spec(recipes[name].model), profile.data_sizes, profile.data_root,
                   device.type) for name in order}
    silence = {name: 60 + SILENT_EPOCHS * epoch_seconds(recipes[name], profile, rate / cores()) for name in order}
    try:
        if count == 0:
            for name in order:
                save(name, workers.train_one(*jobs[name], on_epoch=lambda epoch: bar.update()))
        else:
            data.prepare(Path(profile.data_root).resolve())  # once, here: the workers then only read the files
            pool.train(jobs, count, save, bar.update, silence)
    finally:
        bar.close()
    return done


def refuse_stale_code() -> None:
    """Training in this process uses the helpers it imported: refuse, in one line, when their code has changed on
    disk since (the key would say the new code trained)."""
    edited = sourcecode.edited_since_import(sourcecode.closure(Path(workers.__file__)), {"models.py": frozenset(models.TABLES)})
    if edited:
        raise RuntimeError(f"A3_WORKERS=0 trains with the helpers this kernel imported, but {', '.join(edited)} "
                           f"changed on disk since: restart the kernel, or unset A3_WORKERS to train in fresh workers")


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


# --- choosing a setting on validation accuracy --------------------------------------------------------------

def best_on_validation(groups: dict[Any, list[History]]) -> Any:
    """The setting whose runs have the highest mean report.selection_score."""
    def score(runs: list[History]) -> tuple[float, float]:
        scores = [report.selection_score(run) for run in runs]
        return sum(a for a, _ in scores) / len(scores), sum(b for _, b in scores) / len(scores)
    return max(groups, key=lambda setting: score(groups[setting]))


@dataclass
class Search:
    """A learning-rate search: the recipe, the runs per rate (in seed order) and the rate chosen on validation."""

    recipe: Recipe
    runs: dict[float, list[History]]
    chosen: float

    @property
    def inside(self) -> bool:
        """True when the chosen rate has a tried rate on each side (the grid brackets it)."""
        return min(self.runs) < self.chosen < max(self.runs)


def neighbour(lr: float, up: bool) -> float:
    """The next rate on the 1-3-10 ladder above or below `lr` (0.3 -> 1, 0.03 -> 0.01)."""
    step = round(2 * math.log10(lr)) + (1 if up else -1)
    return float(f"{10 ** (step / 2):.0g}")


def prefix(name: Any) -> str:
    """A search's name as the prefix of its runs' names: ('cnn', 'demo') -> 'cnn_demo'."""
    return "_".join(map(str, name if isinstance(name, tuple) else [name]))


def tune(searches: dict[Any, tuple[Recipe, list[float]]], seeds: tuple[int, ...], profile: Profile,
         extensions: int = 3) -> dict[Any, Search]:
    """For each search (name -> recipe, rates): train the recipe at each rate with each of `seeds` (the selection
    seeds) and choose the rate on validation (best_on_validation); while a chosen rate is the highest or lowest
    tried, add the next rate beyond it (at most `extensions` times). All searches train side by side."""
    grids = {name: list(rates) for name, (_, rates) in searches.items()}
    while True:
        runs = run({n: r for name, rates in grids.items() for n, r in grid(prefix(name), searches[name][0], rates,
                                                                            seeds).items()}, profile)
        found = {}
        for name, rates in grids.items():
            groups = {lr: [runs[run_name(prefix(name), replace(searches[name][0], lr=lr, seed=s))] for s in seeds]
                      for lr in sorted(rates, reverse=True)}
            found[name] = Search(searches[name][0], groups, best_on_validation(groups))
        edge = [name for name, result in found.items() if not result.inside]
        if not edge or extensions == 0:
            return found
        for name in edge:
            grids[name].append(neighbour(found[name].chosen, up=found[name].chosen == max(grids[name])))
        extensions -= 1


def at_chosen_rates(searches: dict[Any, Search], seeds: tuple[int, ...], profile: Profile,
                    **changes: Any) -> dict[Any, list[History]]:
    """Each search's recipe (with `changes`, e.g. epochs=50) trained at its chosen rate with `seeds` (the reported
    seeds), in seed order."""
    recipes = {name: grid(prefix(name), replace(s.recipe, **changes), [s.chosen], seeds) for name, s in searches.items()}
    runs = run({n: r for named in recipes.values() for n, r in named.items()}, profile)
    return {name: [runs[n] for n in named] for name, named in recipes.items()}
