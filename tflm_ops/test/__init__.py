"""Host test harness of the C++ kernels: case files (kernel_cases.py) and kernel_test.cc."""
