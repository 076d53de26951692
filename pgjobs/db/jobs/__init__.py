"""Job state shared by producers and workers: the state machine and the status queries."""
