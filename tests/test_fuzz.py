"""A short fuzz run in the suite, derandomised so that CI sees the same inputs every time; the long, exploring
campaign is `make fuzz`. Any exception but BrainMRIError fails the test; the time per input is
benchmarks/robustness.py's to measure."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fuzz import check_file, check_manifest, fuzz_name, image_seeds, manifest_seed, mutate

SEEDS = image_seeds()
NAMES = sorted(SEEDS)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, len(NAMES) - 1), seed=st.integers(0, 2**32 - 1))
def test_mutated_images_end_in_slices_or_typed_errors(tmp_path, which, seed):
    name = NAMES[which]
    check_file(fuzz_name(f"input{seed}", name), mutate(SEEDS[name], np.random.default_rng(seed)), tmp_path)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_manifests_are_refused_or_valid(seed):
    text = mutate(manifest_seed().encode(), np.random.default_rng(seed)).decode("utf-8", errors="replace")
    check_manifest(text)


@settings(derandomize=True)
@given(st.text(max_size=200))
def test_arbitrary_text_manifests(text):
    check_manifest(text)
