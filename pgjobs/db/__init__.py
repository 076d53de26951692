"""The database: engine and connections, the tables (models/), their read and input shapes
(schemas/), the one state machine every job transition goes through (jobs/state_machine.py),
statements run on the driver connection, migrations driven from Python, tenants."""
