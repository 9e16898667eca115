"""Shipped configs (presets, preprocessing constants, templates, recipes): data files only."""
