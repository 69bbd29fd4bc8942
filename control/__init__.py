"""Control: the policies, how they are trained and judged, and how they run live.

Policies (``policy``, ``baselines``, ``mpc``, ``agents``, ``catalog``) are trained in the twin
(``training``, ``sb3_env``, ``scaleout``), evaluated (``evaluation``, ``suites``,
``comparison``), pre-evaluated and passed through gate 1 (``preevaluation``, ``gate``,
``selection``), registered and approved in the reservoir (``reservoir``, ``approval``), and
run live behind the shield and the watchdog (``live``, ``service``, ``shield``, ``shielded``,
``watchdog``, ``site_link``, ``twin_tracker``). ``docs/architecture.md`` maps it.
"""
