"""TwinLoop twin package (filled in by later issues)."""

from twin.registration import register_envs

register_envs()
