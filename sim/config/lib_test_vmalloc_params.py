"""The parameters of the kernel's vmalloc test module, lib/test_vmalloc.c, as validation reads them.

The module as of Linux 6.3-6.13 (torvalds/linux @ 0791faebfe75): its ``test_case_array``, the
``run_test_mask`` bits, ``nr_threads`` clamping and the sizes its cases request. Validation
needs these without the model; the cases themselves are ``sim/workloads/lib_test_vmalloc.py``.
"""

from __future__ import annotations

from sim.config.loader import did_you_mean

INT_MAX = 2**31 - 1
USHRT_MAX = 65535


PMD_PAGES = 512
"""``vmalloc_huge`` maps with PMDs (2 MiB) from this size up."""


TESTS: tuple[tuple[str, str], ...] = (
    ("fix_size_alloc_test", "fix_size"),
    ("full_fit_alloc_test", "full_fit"),
    ("long_busy_list_alloc_test", "long_busy_list"),
    ("random_size_alloc_test", "random_size"),
    ("fix_align_alloc_test", "fix_align"),
    ("random_size_align_alloc_test", "random_size_align"),
    ("align_shift_alloc_test", "align_shift"),
    ("pcpu_alloc_test", "pcpu_alloc"),
    ("kvfree_rcu_1_arg_vmalloc_test", "kvfree_rcu_1_arg"),
    ("kvfree_rcu_2_arg_vmalloc_test", "kvfree_rcu_2_arg"),
    ("vm_map_ram_test", "vm_map_ram"),
)
"""``test_case_array`` in order (bit ``1 << i`` of ``run_test_mask``): kernel name, short name."""
NAMES = [full for full, _ in TESTS]
XFAIL = {"align_shift_alloc_test"}
"""The case the module says "is supposed to be failed"."""


def case_index(name: str) -> int:
    """The index in ``test_case_array`` of a test given by its kernel or short name."""
    for i, (full, short) in enumerate(TESTS):
        if name in (full, short):
            return i
    shorts = [short for _, short in TESTS]
    raise ValueError(f"expected test names ({', '.join(shorts)}, or the kernel's names such as "
                     f"fix_size_alloc_test), found unknown '{name}'"
                     f"{did_you_mean(name, shorts + NAMES)}")


def parse_test_mask(mask: int | list[str]) -> int:
    """``run_test_mask`` as the module's bit mask, from a mask or a list of test names."""
    if isinstance(mask, list):
        if not mask:
            raise ValueError("expected at least one test name, found an empty list")
        return sum({1 << case_index(str(name)) for name in mask})
    if not 1 <= mask <= INT_MAX:
        raise ValueError(f"expected a mask from 1 to {INT_MAX} (INT_MAX: every test), found "
                         f"{mask}")
    if not mask & ((1 << len(TESTS)) - 1):
        raise ValueError(f"expected a mask with one of bits 0-{len(TESTS) - 1} set (a test), "
                         f"found {mask:#x}")
    return mask


def selected_tests(mask: int) -> list[int]:
    """Indices of the tests a mask selects, in ``test_case_array`` order."""
    return [i for i in range(len(TESTS)) if mask >> i & 1]


def workers_of(nr_threads: int) -> int:
    """``nr_threads = clamp(nr_threads, 1, USHRT_MAX)``."""
    return min(max(nr_threads, 1), USHRT_MAX)


def fix_size_request(nr_pages: int, use_huge: bool) -> tuple[int, int]:
    """Pages and alignment (pages) of fix_size's allocation: ``nr_pages > 0 ? nr_pages : 1``;
    ``vmalloc_huge`` rounds a request of 2 MiB or more up to whole PMDs, PMD-aligned."""
    pages = nr_pages or 1
    if use_huge and pages >= PMD_PAGES:
        return -(-pages // PMD_PAGES) * PMD_PAGES, PMD_PAGES
    return pages, 1
