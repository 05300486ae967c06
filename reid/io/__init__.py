"""Stage 1, photo in: decoding (EXIF orientation, HEIC, size limits), data sets and manifests,
video frames. Everything that turns a file on disk into an RGB array or a labelled record."""
