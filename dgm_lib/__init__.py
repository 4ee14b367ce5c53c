"""dgm_lib: the models of the Deep Generative Models course companion, small, tested and
device-agnostic."""

__version__ = "0.1.0"
