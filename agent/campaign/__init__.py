"""A campaign: its configuration, state on disk (ledger, store, journal), the job driver
that takes designs through an oracle, an iteration's pure planning (`plan`) beside the
loop's effects and resume (`loop`), and the runner that starts or resumes.

Imports the core, the engines (`agent.models`, `generators`, `oracles`) and `agent.design`;
never the report, the CLI, Prefect or Ray (those wrap a campaign from outside).
"""
