"""Embed a few images and captions with the tiny offline anchor and print their similarity table.

The tiny anchor is random-init, so the numbers carry no meaning; this shows the API end to end
(`anybind.load`, `model.embed`, unit-norm vectors carrying their anchor) in a few seconds, offline.
Run: python examples/quickstart.py
"""

import torch
from PIL import Image, ImageDraw

import anybind


def draw(shape: str, colour: str) -> Image.Image:
    """A 96x96 picture of one coloured shape on white."""
    image = Image.new("RGB", (96, 96), "white")
    pen = ImageDraw.Draw(image)
    box = (20, 20, 76, 76)
    {"circle": pen.ellipse, "square": pen.rectangle}[shape](box, fill=colour)
    return image


model = anybind.load("tiny")
images = [draw("circle", "red"), draw("square", "blue"), draw("circle", "green")]
captions = ["a red circle", "a blue square", "a green circle"]
vectors = model.embed({"image": images, "text": captions})
similarity = (vectors["image"] @ vectors["text"].T).as_subclass(torch.Tensor)

print(f"model: {model}")
print(f"vectors: image {tuple(vectors['image'].shape)}, text {tuple(vectors['text'].shape)}, unit norm, "
      f"anchor {vectors['image'].anchor}")
print(f"\n{'cosine':<18}" + "".join(f"{c:>16}" for c in captions))
for row, name in zip(similarity.tolist(), ["red circle.png", "blue square.png", "green circle.png"]):
    print(f"{name:<18}" + "".join(f"{value:>16.3f}" for value in row))
print("\n(the tiny anchor is random-init: the table shows the API, not meaning)")
