"""recursa's version, in a module of its own so that any module may import it without
importing the package (``recursa/__init__`` imports the engine, which imports the trace)."""

__version__ = "0.1.0"
