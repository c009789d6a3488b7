"""Fixtures shared by the engine tests: Dask clients for classify-many."""

import logging

import pytest


@pytest.fixture(scope="module")
def client():
    """A Dask client on two worker processes with one thread each on 127.0.0.1, shared by a module's tests."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def thread_client():
    """A Dask client on one worker thread inside this process: classify-many without starting processes."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        yield client
