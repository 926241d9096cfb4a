"""The app's long-running work, Qt-free: job generators (jobs), opening and analysing a run
(loader), and the child process that runs them (processes)."""
