"""The operator's dashboard (Dash): live hall, twin, policy reservoir and approvals, behind a
login with operator and viewer roles. Build it with :func:`dashboards.app.create_app`; serve
it with :class:`dashboards.server.DashboardServer` or ``twinloop dashboard``."""
