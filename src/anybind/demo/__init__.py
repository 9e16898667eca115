"""The offline default bundle and ``anybind demo``: a procedural world, a LiT anchor trained on
it, audio / point clouds / depth bound to its images, and a report of what emerges."""

from anybind.demo.bundle import DemoRecipe as DemoRecipe
from anybind.demo.bundle import build_default_bundle as build_default_bundle
from anybind.demo.bundle import world_dir_of as world_dir_of
from anybind.demo.command_line import demo_world_from_command_line as demo_world_from_command_line
from anybind.demo.evaluate import evaluate_bundle as evaluate_bundle
from anybind.demo.bundle import load_demo_world as load_demo_world
