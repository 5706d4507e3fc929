"""Shared fixtures: keep every test's caches and runs inside its tmp dir; one torch thread."""

import os
import socket
from collections.abc import Callable

import pytest
import torch

torch.set_num_threads(1)

#: test modules that fork, bind local ports, start gloo process groups or kill processes: under
#: pytest-xdist (``-n 2`` in pyproject's addopts) they run one after another on one worker,
#: never two at a time (the other worker goes on with the rest). A new test that forks, binds
#: a port or kills a process belongs in one of these modules (or a module added here).
SERIAL_MODULES = frozenset({
    "tests/cli/test_sweep.py", "tests/core/test_checkpoint.py", "tests/core/test_faults.py",
    "tests/runtime/test_distributed.py", "tests/runtime/test_lock.py",
    "tests/strategies/adaptation/test_runs.py", "tests/strategies/imagetext/test_losses.py",
    "tests/strategies/imagetext/test_strategies.py",  # cli_on_two_ranks
})


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """pytest-xdist's scheduler for this suite: a test module is one unit of work (its
    module-scoped fixtures are built once, on one worker), and the modules of
    :data:`SERIAL_MODULES` together are one unit. (``--dist loadgroup`` cannot express this
    under pytest 9, whose node ids xdist can no longer suffix with the group.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleOrSerial(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "serial" if module in SERIAL_MODULES else module

    return ModuleOrSerial(config, log)


def _cli_rank(rank: int, world: int, port: int, argv: list[str]) -> None:
    """One ``torchrun``-like rank of ``cl`` (gloo on CPU): the environment torchrun sets, then
    the CLI; a non-zero exit code fails the process."""
    from cl.cli import main

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), CUDA_VISIBLE_DEVICES="")
    code = main(argv)
    import torch.distributed as dist

    dist.destroy_process_group()
    if code != 0:
        raise SystemExit(code)


@pytest.fixture(scope="session")
def cli_on_two_ranks() -> Callable[[list[str]], None]:
    """``run(argv)``: ``cl *argv`` in two forked gloo processes on a free local port; raises
    if either process fails."""
    import torch.multiprocessing as mp

    def run(argv: list[str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ctx = mp.start_processes(_cli_rank, args=(2, port, argv), nprocs=2, join=True,
                                 start_method="fork")
        assert ctx is None or ctx.join()

    return run


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def caption_stream():
    """Factory of a small generated image-text stream (coloured shapes with captions), in memory.

    Task ``t`` draws its images from its own colours; every image has two captions
    ("a red square", "a red square on the left"). With ``categories=True`` every task
    also has query and gallery sets whose category is "<colour> <shape>" (mAP@K).
    """
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    from streams.imagetext.dataset import ImageTextDataset
    from streams.imagetext.tasks import image_text_stream, image_text_task

    colours = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220),
               "yellow": (230, 220, 20), "purple": (150, 30, 180), "cyan": (20, 210, 210)}
    shapes = ("square", "circle", "triangle")

    def pairs(names: list[str], n: int, seed: int, prefix: str) -> ImageTextDataset:
        rng = np.random.default_rng(seed)
        images, captions, cats = [], [], []
        for i in range(n):
            colour, shape = names[i % len(names)], shapes[(i // len(names)) % len(shapes)]
            img = Image.new("RGB", (32, 32), tuple(int(v) for v in rng.integers(0, 60, 3)))
            draw = ImageDraw.Draw(img)
            left = bool(rng.integers(2))
            x0, y0 = (2 if left else 16) + int(rng.integers(0, 3)), 8 + int(rng.integers(0, 6))
            box = (x0, y0, x0 + 12, y0 + 12)
            fill = colours[colour]
            if shape == "square":
                draw.rectangle(box, fill=fill)
            elif shape == "circle":
                draw.ellipse(box, fill=fill)
            else:
                draw.polygon([(x0, y0 + 12), (x0 + 12, y0 + 12), (x0 + 6, y0)], fill=fill)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            images.append(buf.getvalue())
            side = "left" if left else "right"
            captions.append((f"a {colour} {shape}", f"a {colour} {shape} on the {side}"))
            cats.append(f"{colour} {shape}")
        ids = [f"{prefix}-{i}" for i in range(n)]
        return ImageTextDataset(tuple(images), tuple(captions), ids=ids, categories=cats)

    def make(n_tasks: int = 2, *, n_train: int = 24, n_test: int = 12, scenario="task-incremental",
             categories: bool = False, name: str = "shapes-captions", trained=None):
        names = list(colours)
        per = len(names) // n_tasks
        tasks = []
        for t in range(n_tasks):
            mine = names[t * per:(t + 1) * per]

            def qg(mine=mine, t=t):
                return (pairs(mine, 6, 1000 + t, f"q{t}"), pairs(mine, 12, 2000 + t, f"g{t}"))

            tasks.append(image_text_task(
                f"colours-{t}", lambda mine=mine, t=t: pairs(mine, n_train, t, f"train{t}"),
                lambda mine=mine, t=t: pairs(mine, n_test, 100 + t, f"test{t}"),
                key=f"{name}:{t}:{n_train}:{n_test}",
                trained=True if trained is None else trained[t],
                load_query_gallery=qg if categories else None))
        return image_text_stream(name, tasks, scenario)

    return make


@pytest.fixture(scope="session")
def registered_captions(caption_stream):
    """``shapes-captions`` registered as a stream, so ``cl run --stream shapes-captions`` works."""
    import streams

    def shapes_captions(*, n_tasks: int = 2, n_train: int = 16, n_test: int = 8,
                        scenario: str = "task-incremental", categories: bool = False):
        return caption_stream(n_tasks, n_train=n_train, n_test=n_test, scenario=scenario,
                              categories=categories)

    if "shapes-captions" not in streams.STREAMS:
        streams.STREAMS.register("shapes-captions", shapes_captions,
                                 description="generated image-text test stream")
    return "shapes-captions"
