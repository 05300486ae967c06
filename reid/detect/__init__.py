"""Stage 2, photo -> crop: the YOLOv5 head detector (ultralytics) and the crop rule shared by
training, enrollment and matching."""
