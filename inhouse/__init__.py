"""inhouse: train, compress, explain, serve and keep updating private models on Ray.

The core library (this package) imports no Ray, except ``inhouse.cli`` which loads
the Ray layers lazily. See ``../shared/DESIGN.md`` for the architecture.
"""

__version__ = "0.1.0"
