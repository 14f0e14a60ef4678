"""TensorBoard's own server reads a training run back: each curve whole, at its logged steps."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from gdtorch.train import run
from tests.cases import TINY, compose_train

RUN = "tensorboard"  # the logger's folder under the log dir (conf/logger/tensorboard.yaml)
CURVES = ["train/loss", "lr", "val/loss", "val/acc", "val/auroc", "grad_norm/net.0.weight"]
HP_METRICS = ["hp/val/loss", "hp/val/acc", "hp/test/acc", "hp/test/auroc"]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A 3-epoch run of 4 updates an epoch; returns its log dir and the config."""
    logdir = tmp_path_factory.mktemp("run")
    cfg = compose_train(
        logdir,
        *TINY,
        "data.batch_size=16",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
        "callbacks.tensorboard_extras.every_n_steps=3",
        "callbacks.tensorboard_extras.every_n_epochs=1",
        "callbacks.early_stopping=null",  # all three epochs, whatever val/loss does
    )
    run(cfg)
    return logdir, cfg


def _get(url: str, data: bytes | None = None) -> object:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _serve(logdir, log_path, *flags: str) -> tuple[subprocess.Popen, str]:
    """Starts ``tensorboard`` on a port the system picks; returns it and its address."""
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
    command += ["--host", "127.0.0.1", "--port", "0", *flags]
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        found = re.search(r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+/)", log_path.read_text())
        if found:
            return server, found.group(1)
        time.sleep(0.2)
    server.kill()
    raise AssertionError(f"TensorBoard did not start:\n{log_path.read_text()}")


def _wait_for_tags(base: str, wanted: set[str]) -> dict:
    """The scalar tags of every run, once the server lists ``wanted`` for ``RUN``."""
    deadline = time.monotonic() + 60
    while True:
        tags = _get(base + "data/plugin/scalars/tags")
        if wanted <= set(tags.get(RUN, {})) or time.monotonic() > deadline:
            return tags
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("loader", ["default", "--load_fast=false"])
def test_tensorboard_server_shows_every_curve_at_its_logged_steps(logged_run, tmp_path, loader):
    logdir, cfg = logged_run
    per_epoch = math.ceil(cfg.data.n_train / cfg.data.batch_size)
    updates = per_epoch * cfg.trainer.max_epochs  # 12
    expected = {
        "train/loss": list(range(0, updates, cfg.trainer.log_every_n_steps)),
        "lr": list(range(0, updates, cfg.trainer.log_every_n_steps)),
        # after each epoch's last update, at its step
        **{
            tag: [per_epoch * (epoch + 1) - 1 for epoch in range(cfg.trainer.max_epochs)]
            for tag in ("val/loss", "val/acc", "val/auroc")
        },
        "grad_norm/net.0.weight": list(
            range(0, updates, cfg.callbacks.tensorboard_extras.every_n_steps)
        ),
    }
    flags = () if loader == "default" else (loader,)
    log_path = tmp_path / "tensorboard.log"
    server, base = _serve(logdir, log_path, *flags)
    try:
        if loader == "default" and importlib.util.find_spec("tensorboard_data_server"):
            # with tensorboard-data-server installed, the default loader is its Rust server
            assert "fast data loading" in log_path.read_text()
        tags = _wait_for_tags(base, {*CURVES, *HP_METRICS})
        assert list(tags) == [RUN]
        assert {*CURVES, *HP_METRICS} <= set(tags[RUN])

        def steps(plugin: str, tag: str) -> list[int]:
            query = urllib.parse.urlencode({"run": RUN, "tag": tag})
            points = _get(f"{base}data/plugin/{plugin}/{plugin}?{query}")
            return [p["step"] if isinstance(p, dict) else p[1] for p in points]

        for tag, logged in expected.items():
            assert steps("scalars", tag) == logged, tag
        for tag in HP_METRICS:  # the hparams view's metrics: one point each, on their own tags
            assert steps("scalars", tag) == [0], tag
        assert steps("scalars", "test/acc") == [updates]  # after the last update
        # with every_n_epochs=1: every epoch, at the val/loss steps
        assert steps("histograms", "weights/net.0.weight") == expected["val/loss"]
        assert steps("images", "val/predictions") == expected["val/loss"]
        experiment = _get(base + "data/plugin/hparams/experiment", b'{"experimentName": ""}')
        hp_tags = {info["name"]["tag"] for info in experiment["metricInfos"]}
        assert set(HP_METRICS) <= hp_tags
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
