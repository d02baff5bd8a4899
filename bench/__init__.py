"""hopbench: measure each hop from pod Ready to the first request served, per node."""

__version__ = "0.1.0"
