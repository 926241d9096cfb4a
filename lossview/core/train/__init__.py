"""Built-in problems, the trainer (a cancellable generator) and the Recorder."""
