"""vfiokit: see, judge, predict and safely change IOMMU groups for PCI passthrough."""

__version__ = "0.1.0"
