"""The subcommands of ``twinloop``, one module per command group.

Each module offers ``add_commands(sub)``, which adds its subcommands' parsers to the
top-level parser, and handlers ``args -> exit status`` that call the library. A handler
raises a :class:`~twinloop.errors.TwinLoopError` for what the user can fix; ``twinloop.cli``
prints it as one line and exits 2.
"""
