"""Fixtures shared by the test suites."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    "Small MLPs and matrices run faster on one thread than on two shared, busy cores (no OpenMP waits); restored after."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
