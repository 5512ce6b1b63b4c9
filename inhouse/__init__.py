"""inhouse: train, compress, explain, serve and keep updating private models on Ray.

The core library (this package) imports no Ray, except ``inhouse.cli`` which loads
the Ray layers lazily. See ``docs/architecture.md`` for the layers.
"""

import os as _os

__version__ = "0.1.0"

# serve/, jobs/, actors/ and benchmarks/ sit beside this package in a source checkout and are
# installed as inhouse.serve, inhouse.jobs, ... (pyproject.toml's package-dir). In a checkout,
# the parent folder joins this package's path, so inhouse.serve is the serve/ beside *this*
# inhouse/ however it was found: PYTHONPATH, a Ray job's working_dir copy (on any node), or an
# editable install (whose finder maps inhouse.serve to the installed checkout's folder only).
_ROOT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_ROOT, "pyproject.toml")) and _os.path.isfile(
    _os.path.join(_ROOT, "serve", "__init__.py")
):
    __path__.append(_ROOT)
