"""Suite-wide settings: the models under test are tiny, and torch's intra-op threads only add overhead there
(on a shared 2-core machine a single thread was up to 20x faster), so every test runs single-threaded."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
