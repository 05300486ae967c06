"""Open-set re-identification of individual animals from photos.

The stages, one subpackage each, in the order a photo passes them: ``io`` (photo in) ->
``detect`` (crop) -> ``features`` (vector) -> ``gallery`` (search: candidates) -> ``matching``
(rescore) -> ``gallery.decide`` (known or NEW). ``training``, ``evaluation``, ``explain`` and
``synthetic`` serve them; ``pipeline`` strings them into the field workflow. Importing this package
imports nothing heavy: ``reid.gallery`` works on a machine with numpy and faiss only.
"""

__version__ = "0.1.0"
