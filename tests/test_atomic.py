"""Atomic writes leave files with the mode `open()` would give them, whoever wrote the bytes."""

from __future__ import annotations

import os
import stat

import numpy as np

from tvr.atomic import atomic_write_json, commit_temp, temp_path_beside


def test_a_file_written_by_name_gets_the_umask_mode_not_0600(tmp_path):
    from safetensors.numpy import save_file

    old = os.umask(0o022)
    try:
        target = tmp_path / "model.safetensors"
        tmp = temp_path_beside(target)
        save_file({"w": np.zeros(3, dtype=np.float32)}, str(tmp))  # safetensors recreates the file 0o600
        commit_temp(tmp, target)
        atomic_write_json(tmp_path / "config.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
