"""Synthetic training faces with exact ground truth (random ICT faces rendered like photos).

    from msma.face_model import FaceModel
    from msma.synth import SyntheticFaceGenerator
    gen = SyntheticFaceGenerator(FaceModel.ict(), seed=0, backgrounds="../shared/data/faces_in_the_wild")
    batch = gen.sample(8)   # SyntheticBatch: images (8,3,224,224), coefficients, vertices, landmarks2d, mask

Every sample is a pure function of ``(seed, index)`` (``numpy.random.default_rng([seed, index])``): the generator is
deterministic per seed, shards of a cache can be rendered in parallel, and held-out seeds (e.g. 1000 for the benchmark)
never overlap the training seeds.

What a sample contains (priors):
  identity   N(0, s^2), s ~ U(0.8, 1.0) per face
  expression sparse ARKit: 0-4 active blendshapes (jawOpen / mouthSmile / eyeBlink more frequent, _L/_R mostly
             together), weights U(0.15, 1); 25 % of faces neutral
  pose       yaw: half N(0, 20 deg), half U(-60, 60) deg; pitch U(-25, 25) deg; roll N(0, 8 deg) clipped to 20 deg
  translation: the face is first placed so that its five alignment points match ``model.five_point_template()``
             with a scale + shift (what `msma.align` does to a real photo), then jittered (+-3 % scale, +-3 px),
             so the crop distribution matches real aligned crops (roll stays, as the alignment does not de-rotate)
  lighting   ambient + a random directional 2nd-order SH light, mostly monochrome (colour tint <= 5 %)
  albedo     texture coefficients: Laplacian modes N(0, 1) + a global skin tone (first three coefficients) drawn
             between light and dark skin; optionally a per-vertex albedo from a texture bank (real skin unwrapped by
             the fitter, see `vertex_albedo_from_photo`), then the texture target is its least-squares projection
  appearance not in the model (so the network learns to ignore them): dark iris/pupil on the eyeballs, a hair cap
             with a random hairline and colour (25 % bald)
  background random crops of real photos (``backgrounds`` folder / list) or random gradients + noise
  camera     2x supersampled rendering (anti-aliasing), occluders (rectangles / ellipses, 30 %), Gaussian blur,
             sensor noise, JPEG re-compression, global exposure / contrast jitter

Pre-rendering: `prerender_cache` / ``python -m msma.synth --out DIR --n N`` writes npz shards (uint8 images, uint8
masks, float16 coefficients, float32 landmarks) so training does not pay rendering twice; `SyntheticCache` reads them.
"""

from msma.synth.backgrounds import list_images, load_backgrounds, random_background
from msma.synth.cache import SyntheticCache, prerender_cache
from msma.synth.camera import camera_effects
from msma.synth.cli import main, save_preview
from msma.synth.generator import SyntheticBatch, SyntheticFaceGenerator
from msma.synth.priors import draw_parameters, expression_tables
from msma.synth.texture_bank import (
    build_texture_bank,
    tame_albedo,
    texture_bank_from_photos,
    vertex_albedo_from_photo,
)

__all__ = [
    "SyntheticBatch", "SyntheticCache", "SyntheticFaceGenerator", "build_texture_bank", "camera_effects",
    "draw_parameters", "expression_tables", "list_images", "load_backgrounds", "main", "prerender_cache",
    "random_background", "save_preview", "tame_albedo", "texture_bank_from_photos", "vertex_albedo_from_photo",
]
