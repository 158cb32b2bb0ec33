"""Adapters that offer hwnas's spaces and strategies to other tools (each imports its tool
lazily, only when used): ``ray_tune`` (a Ray Tune searcher; the ``distributed`` extra)."""
