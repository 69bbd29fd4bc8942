"""First-principles models of a data center's cooling and power, and the simulated plant.

Every model here is a pure, vectorised numpy function of (state, inputs, parameters); the
plant (:mod:`physics.plant`) composes them into a simulated site. This package never
imports the twin, control or connector packages.
"""
