"""bf16 autocast on a CPU that emulates it (no AVX512) is about 30x slower than fp32: a run says so once,
and the fine-tuned searches train in fp32."""
from __future__ import annotations

import warnings

import pytest
import torch

from lib.study.profiles import TUNING
from lib.training import train


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(train, "_warned_slow_bf16", False)


@pytest.mark.parametrize("capability", ["AVX2", "DEFAULT"])
def test_bf16_on_a_cpu_without_avx512_warns_once_with_the_fix(fresh, monkeypatch, capability):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    with pytest.warns(RuntimeWarning, match=rf"capability {capability}.*30x slower.*BF16 = False"):
        assert train.pick_device("cpu", bf16=True).type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train.pick_device("cpu", bf16=True)  # once per process


@pytest.mark.parametrize("capability,bf16", [("AVX512", True), ("AVX2", False)])
def test_no_warning_where_bf16_is_native_or_not_asked_for(fresh, monkeypatch, capability, bf16):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train.pick_device("cpu", bf16=bf16)


def test_the_fine_tuned_searches_train_in_fp32_and_the_frozen_ones_as_published():
    assert TUNING["finetune"]["training"]["BF16"] is False
    assert "BF16" not in TUNING["frozen"]["training"]  # the published frozen searches kept the notebooks' bf16
