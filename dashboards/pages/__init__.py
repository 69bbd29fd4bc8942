"""The dashboard's pages: each a module with ``layout(ctx)`` and ``set_callbacks(app, ctx)``."""
