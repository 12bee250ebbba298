"""What users would otherwise write, as Lambda handler modules (``handler(event, context)``).

Each reads the target table's name from ``TARGET_TABLE`` and builds its boto3 client (or
resource) at import, in the init phase, as a Lambda function would. Neither is part of the
library; both exist to be measured against it.
"""
