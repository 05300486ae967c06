"""Looking inside: Grad-CAM overlays and the native-vs-hybrid screen."""
