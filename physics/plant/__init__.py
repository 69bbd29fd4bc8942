"""The simulated data center (plant): a high-fidelity stand-in for a real site.

It composes the physics models into a site with hidden per-site parameters, built-in site
control, sensor noise and scheduled faults. Callers other than the evaluator see it only
through its sensor readings.
"""
