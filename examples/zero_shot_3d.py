"""Zero-shot 3D and depth classification with the offline default bundle: point clouds and depth
maps of held-out world objects classified by shape (and material) from text prompts alone.

Point clouds go through PointCLIP-style depth views of the anchor's image tower plus a small
adapter trained against images; depth maps through a small CNN trained against images. Neither
saw text. Builds the default bundle first if it is not cached (about 5 minutes on 2 CPU cores).
Run: python examples/zero_shot_3d.py [--recipe default]
"""

from collections import Counter

from anybind.demo import demo_world_from_command_line

demo = demo_world_from_command_line(__doc__)
model, objects = demo.model, demo.test_objects
classes = demo.classes

for modality in ("pointcloud", "depth"):
    for attribute, templates in (("shape", "world-shape"), ("material", "world-material")):
        names = classes[attribute]
        probabilities = model.zero_shot(modality, [o[modality] for o in objects], names, templates=templates)
        predicted = [names[i] for i in probabilities.argmax(dim=1).tolist()]
        hits = Counter(o[attribute] for p, o in zip(predicted, objects) if p == o[attribute])
        accuracy = sum(hits.values()) / len(objects)
        print(f"{modality:>10} -> {attribute:<8}: accuracy {accuracy:.3f} on {len(objects)} test objects "
              f"(chance {1 / len(names):.3f}); most often right: {', '.join(n for n, _ in hits.most_common(3))}")

example = objects[0]
probabilities = model.zero_shot("pointcloud", [example["pointcloud"]], classes["shape"], templates="world-shape")[0]
top = probabilities.topk(3)
print(f"\nthe point cloud of {example['caption']!r}: " +
      ", ".join(f"{classes['shape'][i]} {p:.2f}" for p, i in zip(top.values.tolist(), top.indices.tolist())))
