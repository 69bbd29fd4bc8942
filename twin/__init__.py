"""The digital twin: a physics-informed surrogate of the plant, fitted from its sensor data.

Importing the package registers the Gymnasium environments ``TwinLoop/DataCenter-v0`` (the
twin) and ``TwinLoop/DataCenterPlant-v0`` (the plant). Recording exploration data
(``recording``), the data sets (``dataset``), the models (``surrogate``, ``neural``), fitting
(``training``), accuracy and its report (``accuracy``, ``report``), calibration and data
assimilation, the competence model, and the environments policies train and run in
(``spaces``, ``reward``, ``vec_env``, ``twin_env``, ``plant_env``). ``docs/architecture.md``
maps it.
"""

from twin.registration import register_envs

register_envs()
