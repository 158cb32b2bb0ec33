"""The ``hwnas`` command line (import name ``hwnas.cli``): thin commands over the Python API."""
