"""A procedural multimodal world: objects that exist as an image, a depth map, a point cloud,
an impact sound and captions, deterministic from a seed.

    from anybind.demo.world import generate_world
    world = generate_world(3000, seed=0, out_dir="world")   # arrays in memory + files/manifests
    world.images, world.depth, world.points, world.sounds, world.captions, world.shape, world.split

Classes, materials, colours, sizes, caption templates and the material looks/sounds are data in
``configs/world/default.yaml``.
"""

from anybind.demo.world.captions import class_prompts as class_prompts
from anybind.demo.world.config import WorldConfig as WorldConfig
from anybind.demo.world.config import load_world_config as load_world_config
from anybind.demo.world.files import read_objects as read_objects
from anybind.demo.world.generate import World as World
from anybind.demo.world.generate import generate_world as generate_world

__all__ = ['class_prompts', 'WorldConfig', 'load_world_config', 'read_objects', 'World', 'generate_world']
