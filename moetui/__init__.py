"""moetui: make Mixture-of-Experts LLMs run as fast as your machine allows."""

__version__ = "0.1.0"
