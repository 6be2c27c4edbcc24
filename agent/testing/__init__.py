"""Fault-injection tools shipped with innloop, so a site can check that its own set-up
(oracle, scheduler, Ray, disks) survives a killed campaign: `agent.testing.crash` runs a
campaign and SIGKILLs it at a chosen point, `agent.testing.kills` resumes it with
``innloop run`` and checks, counted at the oracle, that nothing was lost or paid twice."""
