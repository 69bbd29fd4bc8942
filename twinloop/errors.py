"""The one error a user can act on.

Every package (``physics``, ``twin``, ``control``, ``connectors``, ``dashboards``) raises a
subclass of :class:`TwinLoopError` for what a user can fix: a bad scenario or config file,
an argument out of range, a name that does not exist, a request the current state refuses.
``twinloop``'s ``main()`` prints such an error as one line and exits 2. Any other exception
is a bug and keeps its traceback. This module imports nothing from the project, so any
package may import it.
"""

from __future__ import annotations


class TwinLoopError(Exception):
    """Base of every error caused by input a user can correct (reported as one line)."""
