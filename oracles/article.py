"""The seed article's script and how to point lspci at a tree on disk: shared by the tests (which
run them as oracles) and the benchmarks (which time them), so neither imports the other."""

from __future__ import annotations

from pathlib import Path

# The article's script, verbatim from the seed text (tabs included); only the folder it lists is
# made a variable so it can run against a materialized tree instead of the real /sys.
ARTICLE_SCRIPT = """\
#!/bin/bash
shopt -s nullglob
for iommu_group in $(ls -v $SYS/kernel/iommu_groups)
\tdo echo "IOMMU Group $iommu_group"
    for device in $SYS/kernel/iommu_groups/$iommu_group/devices/*
    \tdo echo -n $'\\t'
        lspci -s "${device##*/}" "$@"
    done
 done
"""


def lspci_args(tree: Path) -> list[str]:
    """Point lspci at a materialized tree, with names from pci.ids only (no udev hwdb)."""
    return ["-A", "linux-sysfs", "-O", f"sysfs.path={tree}/sys/bus/pci", "-O", "hwdb.disable=1"]
