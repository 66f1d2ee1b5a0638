"""TrajectoryRecorder: trajectories.json is written with every checkpoint and at the end, so a stopped and
resumed run records the same epochs and the same embeddings as one that ran through."""

from __future__ import annotations

from conftest import TINY_GAUSSIAN
from mimax.api import resolved_config
from mimax.config import config_from_args
from mimax.engine.experiment import run_experiment
from mimax.experiments.trajectories import TrajectoryRecorder, load_trajectories


def _run(args: list[str], resume: str | None = None) -> None:
    cfg, ckpt = (resolved_config({"resume": resume})[:2] if resume else (config_from_args(args), None))
    run_experiment(cfg, ckpt, callbacks_factory=lambda cfg, run_dir: [TrajectoryRecorder(run_dir)], progress=False)


def test_records_of_a_resumed_run_equal_an_uninterrupted_one(tmp_path):
    base = ["--model_name", "SimCLR", *TINY_GAUSSIAN, "--epochs", "4", "--model_save_interval", "100"]
    _run([*base, "--output_dir", str(tmp_path / "through")])
    through = load_trajectories(tmp_path / "through" / "seed_0")["records"]
    assert [r["epoch"] for r in through] == [0, 1, 2, 3, 4]

    _run([*base, "--stop_after", "2", "--output_dir", str(tmp_path / "stopped")])
    seed = tmp_path / "stopped" / "seed_0"
    # written with the checkpoint of the stop (epoch 2), not after every epoch
    assert sorted(p.name for p in (seed / "checkpoints").iterdir()) == ["ckpt_epoch_0002.pt"]
    assert [r["epoch"] for r in load_trajectories(seed)["records"]] == [0, 1, 2]
    _run([], resume=str(tmp_path / "stopped"))
    assert load_trajectories(seed)["records"] == through


def test_the_file_is_written_before_each_checkpoint(tmp_path, monkeypatch):
    """A checkpoint never exists without the records up to it (a kill between the two writes leaves the
    records one checkpoint ahead, which a resume drops; never behind)."""
    import mimax.engine.records as records

    seen = []
    save = records.Checkpoints.save

    def spy(self, state, *args, **kwargs):
        seen.append((state.epoch, [r["epoch"] for r in load_trajectories(self.seed_dir.path)["records"]]))
        return save(self, state, *args, **kwargs)

    monkeypatch.setattr(records.Checkpoints, "save", spy)
    _run(["--model_name", "JMI", *TINY_GAUSSIAN, "--epochs", "3", "--model_save_interval", "2",
          "--output_dir", str(tmp_path / "run")])
    assert seen == [(2, [0, 1, 2]), (3, [0, 1, 2, 3])]
