"""Model monitoring: reference profiles of training data and scores, drift statistics."""
