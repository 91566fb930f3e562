"""modgraph: modularity curves of deep networks (Lu et al., ECCV 2022)."""

__version__ = "0.1.0"
