"""`release dropmap`: derive a drop map from calibration text."""
