"""The engine: one completion as a tree of nodes, in three one-way layers.

- :mod:`~recursa.engine.run`: the state every node of a run shares and the one
  metered path of every model request (:meth:`Run.call_model`);
- :mod:`~recursa.engine.node`: the loop of one node (turns, cells, answers);
- :mod:`~recursa.engine.host`: what a node's REPL may ask the host for.

``node`` imports ``host`` and ``run``; ``host`` imports ``run``; ``run`` imports
neither (it sees nodes only as types). The engine is handed its settings and
a model source; it never picks a model, a sandbox backend or a trace reader
itself. See docs/architecture.md.
"""

from __future__ import annotations

from .host import Host
from .node import Node
from .run import Outcome, Run

__all__ = ["Host", "Node", "Outcome", "Run"]
