"""Every error a user can act on is a ``TwinLoopError`` (printed as one line, exit 2) and
keeps its older base, so ``except ValueError`` and ``except RuntimeError`` still catch it."""

from __future__ import annotations

import pytest

from control.approval import ApprovalError
from control.catalog import PolicyNotFoundError
from control.comparison import ComparisonError
from control.gate import GateConfigError
from control.preevaluation import PreEvaluationError
from control.scaleout import RayUnavailableError, ScaleOutError
from control.service import ServiceConfigError
from control.suites import SuiteError
from control.training import TrainConfigError
from dashboards.auth import AuthError
from dashboards.context import DataUnavailableError
from physics.plant.scenario import ScenarioError
from physics.weather import WeatherError
from physics.workload import WorkloadError
from twin.assimilation import AssimilationError
from twin.calibration import CalibrationError
from twin.dataset import DatasetError
from twin.ensemble import TwinLoadError
from twin.recording import RecordingError
from twin.report import ReportError
from twinloop.commands.arguments import CommandError
from twinloop.demo import DemoError
from twinloop.errors import TwinLoopError

USER_ERRORS: list[tuple[type[Exception], type[Exception]]] = [
    (WeatherError, ValueError),
    (ScenarioError, ValueError),
    (WorkloadError, ValueError),
    (DatasetError, ValueError),
    (ReportError, ValueError),
    (TwinLoadError, ValueError),
    (RecordingError, ValueError),
    (CalibrationError, ValueError),
    (AssimilationError, TypeError),
    (ServiceConfigError, ValueError),
    (ScaleOutError, RuntimeError),
    (RayUnavailableError, RuntimeError),
    (SuiteError, ValueError),
    (ComparisonError, ValueError),
    (PolicyNotFoundError, ValueError),
    (ApprovalError, ValueError),
    (TrainConfigError, ValueError),
    (GateConfigError, ValueError),
    (PreEvaluationError, ValueError),
    (AuthError, ValueError),
    (DataUnavailableError, RuntimeError),
    (CommandError, TwinLoopError),
    (DemoError, TwinLoopError),
]


@pytest.mark.parametrize(("error", "base"), USER_ERRORS, ids=lambda e: e.__name__)
def test_user_errors_are_twinloop_errors_and_keep_their_base(
    error: type[Exception], base: type[Exception]
) -> None:
    assert issubclass(error, TwinLoopError)
    assert issubclass(error, base)
