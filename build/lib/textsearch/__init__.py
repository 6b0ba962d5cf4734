"""textsearch: hyperparameter search for handwriting recognition."""
