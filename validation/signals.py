"""What validation announces to the layers above it (post-market monitoring, trust scoring),
which it never imports: they connect receivers in their ``AppConfig.ready``.

Receivers run synchronously, inside the sender's transaction, so what they write commits or
rolls back with the run or report that caused it.
"""

from django.dispatch import Signal

# A run succeeded; sent in its closing transaction. Arguments: ``run`` (the ValidationRun) and
# ``findings`` (the drift and degradation findings of its comparison with the baseline, a list of
# ``radtrust_engine.report.DriftFinding``: kind, severity, subject, message and evidence).
run_succeeded = Signal()

# A run ended (succeeded, failed or cancelled); sent by the transaction that closes it.
# Argument: ``run``. The revalidation a deployment's run answers records its outcome.
run_finished = Signal()

# A site's agent submitted its aggregates for a federated job. Argument: ``job`` (the FederatedJob).
site_report_received = Signal()
