"""gowide: the command-line front of the package.

The science lives in two packages: :mod:`meanfield` (particle simulations of mean-field
residual networks) and :mod:`empirical` (the three-stage method on small real models).
This package holds what both share: the command line, atomic file writing, and the
provenance stamped on every result file.
"""

__version__ = "0.1.0"
