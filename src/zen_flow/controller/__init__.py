"""The controller process: wiring (`app`), the reconcile path (`reconciler`, `provisioning`), probes and
metrics. Read `app.serve` first, then `reconciler.Controller.reconcile`.
"""
