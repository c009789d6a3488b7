import logging

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The machine is shared: one thread per test process avoids oversubscribed, spinning threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
