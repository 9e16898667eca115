"""Any-to-any search with the offline default bundle: one index holding images, sounds, point
clouds and depth maps of held-out world objects, queried with words, a sound or a point cloud.

Every modality lands in the same anchor space, so a sound can retrieve pictures and a sentence
can retrieve sounds although audio and text never met in training.
Builds the default bundle first if it is not cached (about 5 minutes on 2 CPU cores).
Run: python examples/any_to_any.py [--recipe default]
"""

import anybind
from anybind.demo import demo_world_from_command_line

demo = demo_world_from_command_line(__doc__)
model, objects = demo.model, demo.test_objects

index = anybind.Index(model)
for modality in ("image", "audio", "pointcloud", "depth"):
    index.add(model.embed(modality, [o[modality] for o in objects]), modality=modality,
              ids=[f"{modality}:{o['id']}" for o in objects], metadata=[{"caption": o["caption"]} for o in objects])
print(f"index: {len(objects)} test objects x 4 modalities\n")


def show(title: str, query: object, query_modality: str, target: str) -> None:
    """Print the top 3 `target` hits of one query."""
    result = model.search([query], query_modality, index, k=3, modality=target)
    print(f"{title} -> {target}:")
    for hit in result.hits(0):
        print(f"    {hit.score:.3f}  {hit.id:<22} {hit.metadata['caption']}")


show("text 'a ball'", "a ball", "text", "image")
show("text 'a metallic clang'", "a metallic clang", "text", "audio")
show("text 'something to drink coffee from'", "something to drink coffee from", "text", "pointcloud")
sound, cloud = objects[1], objects[2]
show(f"the sound of {sound['caption']!r}", sound["audio"], "audio", "image")
show(f"the point cloud of {cloud['caption']!r}", cloud["pointcloud"], "pointcloud", "image")
show(f"the depth map of {cloud['caption']!r}", cloud["depth"], "depth", "audio")
