"""Teola: end-to-end optimization of LLM applications.

The core lives in ``teola.optimizer`` (IR, lowering, passes), ``teola.runtime`` (schedulers and
engines) and ``teola.adapters`` (framework readers); users import ``teola_integrations``.
"""

__version__ = "0.1.0"
