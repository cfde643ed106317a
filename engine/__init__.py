"""Driftwave engine: settings, schedules, prompts and (next) everything that touches pixels and models."""
