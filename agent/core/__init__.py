"""The core every layer may use: errors, atomic files, the state folder, design spaces,
materials and their structure builders, observation tables.

It imports nothing else of innloop and no heavy framework (torch, Prefect, Ray): an
oracle, a generator or a job process started on a compute node loads it cheaply.
"""
