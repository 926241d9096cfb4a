"""Training from the app: the train dialog, the learning-rate sweep view and live runs."""
