"""Component ids, one enum per page (webviz-config style): every id is named once, here, and
callbacks refer to the enum member, never to a string built on the spot."""

from __future__ import annotations

from enum import StrEnum


class FrameIds(StrEnum):
    """The frame around every page: address, navigation, session notice."""

    URL = "frame-url"
    PAGE = "frame-page"
    USER = "frame-user"
    SESSION_NOTICE = "frame-session-notice"
    CLOCK = "frame-clock"
    TIME_BASE = "frame-time-base"


class HallIds(StrEnum):
    INTERVAL = "hall-interval"
    WINDOW = "hall-window"
    SUMMARY = "hall-summary"
    HEATMAP = "hall-heatmap"
    TEMPERATURES = "hall-temperatures"
    POWER = "hall-power"
    PUE = "hall-pue"
    ALARMS = "hall-alarms"
    STALE = "hall-stale"
    EVENTS = "hall-events"
    HOLDERS = "hall-holders"
    RANGE_START = "hall-range-start"
    RANGE_END = "hall-range-end"
    RANGE_MESSAGE = "hall-range-message"
    ZOOM = "hall-zoom"
    """The x-range shared by the page's time charts (:mod:`dashboards.shared_zoom`)."""
    SETPOINTS = "hall-setpoints"
    POD = "hall-pod"
    RACK = "hall-rack"
    DRILL = "hall-drill"


class TwinIds(StrEnum):
    INTERVAL = "twin-interval"
    WINDOW = "twin-window"
    POINT = "twin-point"
    SUMMARY = "twin-summary"
    COMPARE = "twin-compare"
    ERROR = "twin-error"
    PARAMETERS = "twin-parameters"
    RANGE_START = "twin-range-start"
    RANGE_END = "twin-range-end"
    RANGE_MESSAGE = "twin-range-message"
    ZOOM = "twin-zoom"


class ReservoirIds(StrEnum):
    INTERVAL = "reservoir-interval"
    TABLE = "reservoir-table"
    POLICY = "reservoir-policy"
    NOTICE = "reservoir-notice"
    DETAIL = "reservoir-detail"
    PLOTS = "reservoir-plots"
    IMAGES = "reservoir-images"


class ApprovalIds(StrEnum):
    INTERVAL = "approvals-interval"
    CONTROL = "approvals-control"
    PENDING = "approvals-pending"
    POLICY = "approvals-policy"
    REASON = "approvals-reason"
    APPROVE = "approvals-approve"
    REJECT = "approvals-reject"
    PROMOTE = "approvals-promote"
    """The confirmation around the promote button (its submit is the action)."""
    PROMOTE_BUTTON = "approvals-promote-button"
    ROLLBACK = "approvals-rollback"
    """The confirmation around the roll-back button (its submit is the action)."""
    ROLLBACK_BUTTON = "approvals-rollback-button"
    MESSAGE = "approvals-message"
    DECIDED = "approvals-decided"
    """When the last decision went through (refreshes the tables)."""
    DECISIONS = "approvals-decisions"
    WRITES = "approvals-writes"


class ShadowIds(StrEnum):
    INTERVAL = "shadow-interval"
    POLICY = "shadow-policy"
    """The policy the page shows (a store, refreshed with the page)."""
    CARDS = "shadow-cards"
    SUMMARY = "shadow-summary"
    FIGURES = "shadow-figures"
    REASON = "shadow-reason"
    PROMOTE = "shadow-promote"
    """The confirmation around the promote-to-live button (its submit is the action)."""
    PROMOTE_BUTTON = "shadow-promote-button"
    MESSAGE = "shadow-message"
    DECIDED = "shadow-decided"


class AlarmIds(StrEnum):
    INTERVAL = "alarms-interval"
    COUNTS = "alarms-counts"
    STANDING = "alarms-standing"
    SHELVED = "alarms-shelved"
    HISTORY = "alarms-history"
    CHOSEN = "alarms-chosen"
    HOURS = "alarms-hours"
    REASON = "alarms-reason"
    ACK = "alarms-ack"
    SHELVE = "alarms-shelve"
    UNSHELVE = "alarms-unshelve"
    MESSAGE = "alarms-message"
    ANSWERED = "alarms-answered"
    """When the last answer went through (refreshes the tables)."""
    EVALUATION = "alarms-evaluation"
    """Who evaluates the alarms, and when it last did (the live service)."""
