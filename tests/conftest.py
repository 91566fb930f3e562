"""Fixtures shared by the test modules."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import pytest
import torch.nn as nn


@pytest.fixture
def stub_store(tmp_path, monkeypatch) -> Callable[[nn.Module, float], list]:
    """``stub_store(model, acc)``: a fresh MODGRAPH_HOME whose ``store.get_model`` returns ``model`` with
    final test accuracy ``acc`` (no training in unit tests); returns the list of specs it was asked for."""
    from modgraph import store

    def install(model: nn.Module, acc: float) -> list:
        monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
        calls: list = []

        def get_model(spec, device=None, progress=True):
            calls.append(spec)
            return SimpleNamespace(model=model, metrics={"final_test_acc": acc})

        monkeypatch.setattr(store, "get_model", get_model)
        return calls

    return install
