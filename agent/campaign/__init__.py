"""A campaign: its configuration, state on disk (ledger, store), the job driver that
takes designs through an oracle, the loop's step, and the runner that starts or resumes.

Imports the core, the engines (`agent.models`, `generators`, `oracles`) and `agent.design`;
never the report, the CLI, Prefect or Ray (those wrap a campaign from outside).
"""
