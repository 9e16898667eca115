"""Emergent zero-shot audio: classify impact sounds by shape and material with text prompts, and
find sounds from words, with the offline default bundle.

The audio encoder was bound to the anchor's *images* only; it never saw a caption. Text works on
sounds because both land in the image tower's space, which was trained against a real sentence
encoder (all-MiniLM-L6-v2). The sounds are the held-out test objects of the bundle's world.
Builds the default bundle first if it is not cached (about 5 minutes on 2 CPU cores).
Run: python examples/zero_shot_audio.py [--recipe default]
"""

import torch

from anybind.demo import demo_world_from_command_line

demo = demo_world_from_command_line(__doc__)
model, objects = demo.model, demo.test_objects
classes = demo.classes
sounds = [o["audio"] for o in objects]

for attribute, templates in (("shape", "world-shape"), ("material", "world-material")):
    names = classes[attribute]
    probabilities = model.zero_shot("audio", sounds, names, templates=templates)
    predicted = [names[i] for i in probabilities.argmax(dim=1).tolist()]
    accuracy = sum(p == o[attribute] for p, o in zip(predicted, objects)) / len(objects)
    print(f"audio -> text {attribute}: accuracy {accuracy:.3f} on {len(objects)} test sounds "
          f"(chance {1 / len(names):.3f})")
    for obj, guess in list(zip(objects, predicted))[:4]:
        print(f"    {obj['caption']:<40} heard as: {guess}")

print("\ntext -> audio (top 3 test sounds; the captions are shown, not used):")
audio = model.embed("audio", sounds).as_subclass(torch.Tensor)
queries = ["a metallic clang", "a dull rubber thud", "a glass object", "a wooden box"]
text = model.embed("text", queries).as_subclass(torch.Tensor)
for query, row in zip(queries, (text @ audio.T).topk(3, dim=1).indices.tolist()):
    print(f"  {query!r:<24} -> " + "; ".join(objects[i]["caption"] for i in row))
