"""Local features: keypoints and descriptors, bag of words, VLAD and spatial verification."""
