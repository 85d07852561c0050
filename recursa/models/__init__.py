"""Model providers: one protocol (base.py), one module per provider family."""
