"""The standard 112x112 face alignment: a similarity transform (rotation, uniform scale,
translation) that takes five landmarks (eye centres, nose tip, mouth corners, in image order:
the eye on the left of the picture first) onto fixed reference points, as OpenCV's
`FaceRecognizerSF.alignCrop` and InsightFace do. Plain arrays in, plain arrays out."""

from __future__ import annotations

import cv2
import numpy as np

SIZE = 112

# Where the five landmarks sit in a 112x112 chip (the ArcFace / SFace convention).
REFERENCE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def similarity(source: np.ndarray, target: np.ndarray = REFERENCE) -> np.ndarray:
    """The 2x3 least-squares similarity transform taking `source` points onto `target` (Umeyama)."""
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    mean_s, mean_t = source.mean(0), target.mean(0)
    s, t = source - mean_s, target - mean_t
    covariance = t.T @ s / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(covariance) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / (s**2).sum(1).mean()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mean_t - scale * rotation @ mean_s
    return matrix


def chip(image: np.ndarray, landmarks) -> np.ndarray:
    """The 112x112 aligned face (same channel order as `image`)."""
    matrix = similarity(np.asarray(landmarks, np.float64).reshape(5, 2))
    return cv2.warpAffine(image, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
