"""Cluster ids stay put on a steady population whatever the batch size: the default
learner trained through the worker's own pipeline (benchmarks/clustering.py's harness, at
a size for the test suite; the full sizes are in the benchmark)."""

import numpy as np
import pytest

from benchmarks.clustering import population, stream_stability
from online_models.features import FEATURES


@pytest.fixture(scope="module")
def people():
    ids, vectors, truth = population(4, 400, 30_000)
    return np.array([[v[f] for f in FEATURES] for v in vectors]), truth


@pytest.mark.parametrize("batch_size", [1, 10])
def test_at_most_two_percent_relabelled_per_snapshot(people, batch_size):
    rows, truth = people
    result = stream_stability("SeqKMeans", 4, 400, 30_000, batch_size, rows, truth)
    assert result["snapshots"] >= 5  # enough snapshots to speak of a median
    assert result["relabelled"] <= 0.02  # River's constant-step KMeans: ~47% at one event
    assert result["ari"] > 0.4  # and the clusters still mean something
